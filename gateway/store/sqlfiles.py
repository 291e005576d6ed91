"""The SQL files of a dialect (gateway/store/sql/<dialect>/): numbered migrations, and the
queries as named blocks in `queries.sql` (as procrastinate keeps its queries):

    -- name: claim_due
    UPDATE deliveries SET ...;

A backend asks for its queries by name; the Python code holds no SQL text of its own.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from importlib.abc import Traversable

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@functools.cache
def queries(dialect: str) -> dict[str, str]:
    """Every named query of `dialect`, without comments or the closing ';'."""
    text = (_folder(dialect) / "queries.sql").read_text("utf-8")
    parts = _NAME.split(text)
    found = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        found[name] = "\n".join(lines).strip().rstrip(";").strip()
    return found


def migrations(dialect: str) -> list[tuple[int, list[str]]]:
    """(version, statements) of each migration file `NNN_*.sql`, in version order."""
    scripts = sorted((p for p in _folder(dialect).iterdir() if p.name[:1].isdigit() and p.name.endswith(".sql")), key=lambda p: p.name)
    return [(int(p.name.split("_", 1)[0]), statements(p.read_text("utf-8"))) for p in scripts]


def statements(script: str) -> list[str]:
    """Statements of a migration file (our SQL has no ';' or '--' inside string literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _folder(dialect: str) -> Traversable:
    return resources.files("gateway.store") / "sql" / dialect
