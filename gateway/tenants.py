"""Tenants: many GO shops on one gateway, a file each.

`routes.d/<tenant>.yaml` beside routes.yaml holds one shop's sources, destinations and routes.
Its destinations and routes are known to the gateway by qualified names (`loja-a/crm`), so two
shops may both call a destination `crm`; its sources are paths (`POST /hooks/<source>`), which
the whole gateway shares, so one path is claimed by one file only. A tenant's file uses
routes.yaml's templates and samples folders unless its `settings:` names its own (read from the
folder of routes.yaml, as there); what the whole gateway shares (database, retention, egress)
is set in routes.yaml alone.

This module knows the files and the names; config.py compiles each file and merges them.
"""

from __future__ import annotations

import re
from pathlib import Path

from gateway.errors import Location, Problem

TENANTS_DIR = "routes.d"
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SEPARATOR = "/"  # between a tenant and a name: "loja-a/crm"


def tenant_paths(main_path: str) -> dict[str, Path]:
    """Each tenant's file in routes.d/ beside routes.yaml, by tenant name (the file's stem), in
    name order; {} when there is no such folder (a single-shop gateway)."""
    folder = Path(main_path).parent / TENANTS_DIR
    if not folder.is_dir():
        return {}
    found = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    return {p.stem: p for p in found}


def tenants_folder(main_path: str) -> Path:
    return Path(main_path).parent / TENANTS_DIR


def name_problem(tenant: str, path: str) -> Problem | None:
    """A file whose name cannot be a tenant's (it becomes part of every name and label)."""
    if TENANT_NAME.fullmatch(tenant):
        return None
    return Problem(
        f"'{tenant}' cannot name a shop: rename the file with lowercase letters, digits, '-' and '_' only (like loja-a.yaml)", Location(path, 1, 1)
    )


def tenant_of(name: str) -> str | None:
    """The tenant of a qualified destination or route name; None for routes.yaml's own."""
    tenant, separator, _ = name.partition(SEPARATOR)
    return tenant if separator else None


def log_extra(tenant: str | None) -> dict[str, str]:
    """`extra=` of a log line about one shop's event or delivery: a JSON log line carries a
    `tenant` field to filter by (a text line already names the shop: `loja-a/crm`)."""
    return {"tenant": tenant} if tenant else {}


def local_name(name: str) -> str:
    """The name as its own file writes it: `crm` for `loja-a/crm`."""
    return name.partition(SEPARATOR)[2] or name


def sources_claimed_twice(claims: list[tuple[str, str | None, Location]]) -> list[Problem]:
    """(source, tenant, where) for every file's sources: a path claimed by two files is an
    error at each, naming the other (GO's URL reaches one shop only)."""
    first: dict[str, tuple[str | None, Location]] = {}
    problems = []
    for source, tenant, where in claims:
        if source not in first:
            first[source] = (tenant, where)
            continue
        _, other = first[source]
        problems.append(
            Problem(
                f"the source '{source}' (POST /hooks/{source}) is claimed by {other} too; each shop needs a source of its own: rename one of them",
                where,
            )
        )
    return problems
