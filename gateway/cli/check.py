"""How `gateway check` reports what gateway/verify.py finds: the summary line and --json."""

from __future__ import annotations

import json

from gateway.errors import Problem, plural
from gateway.verify import CheckReport


def sample_summary(report: CheckReport) -> str:
    config = report.config
    if config is None:
        return f"{plural(len(report.errors), 'error')}: the config was not loaded"
    parts = [
        plural(len(config.routes), "route"),
        plural(len(config.destinations), "destination"),
        plural(len(config.sources), "source"),
        f"{plural(report.renders, 'render')} against {plural(len(report.samples), 'sample event')}",
    ]
    shops = f" and {plural(len(config.tenants), 'shop')} in routes.d/ ({', '.join(config.tenants)})" if config.tenants else ""
    return f"{config.file}{shops}: " + ", ".join(parts) + f"; {plural(len(report.errors), 'error')}, {plural(len(report.warnings), 'warning')}"


def dumps_problems(problems: list[Problem]) -> str:
    return json.dumps([{"severity": p.severity, "location": str(p.location) if p.location else None, "message": p.message} for p in problems], ensure_ascii=False, indent=2)
