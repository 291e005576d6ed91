"""What `gateway check`, `serve` and every hot reload verify: the config loads, and every
template renders for the sample events. One function, so nothing goes live that check refuses.

Beyond loading, it renders each route's templates against the sample events of its event_ids,
and warns where a rule compares with a value of another type than GO sends, or names a field
the sample events do not have — the mistakes that otherwise make a route silently never match.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.config import Config, Route, load_config, merged
from gateway.errors import ConfigError, EventError, Problem, TemplateError, did_you_mean
from gateway.routing import read_event_file, render_send, route_event, template_context
from gateway.rules import MISSING, field_matches, kind, lookup, show, type_hint
from gateway.yamlfile import display_path

# `received_at` while rendering samples: fixed, so check output is the same on every run.
SAMPLE_TIME = datetime(2021, 3, 2, 21, 2, 53, tzinfo=UTC)


@dataclass(frozen=True)
class Sample:
    file: str
    event: dict[str, Any]


@dataclass
class CheckReport:
    config: Config | None
    problems: list[Problem] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    renders: int = 0
    failing_tenants: dict[str, list[Problem]] = field(default_factory=dict)  # render errors of tenants' routes

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def check(config_path: str, samples_dir: str | None = None, environ: Mapping[str, str] | None = None, previous: Config | None = None) -> CheckReport:
    """Everything `gateway check` finds, errors and warnings, in file order. With `previous`
    (a reload), a tenant whose routes now fail keeps its version in force (on `refused`)."""
    try:
        config = load_config(config_path, environ, previous)
    except ConfigError as exc:
        return CheckReport(None, list(exc.problems))
    report = CheckReport(config, list(config.warnings))
    report.samples = _load_samples(config, samples_dir, report.problems)
    for route in config.routes:
        relevant = [s for s in report.samples if route.event_ids is None or s.event["event_id"] in route.event_ids]
        _check_types(route, relevant, report.problems)
        _check_renders(config, route, relevant, report)
    if previous is not None and report.failing_tenants:
        _keep_last_good(report, previous)
    return report


def _keep_last_good(report: CheckReport, previous: Config) -> None:
    """Tenants whose routes fail to render go on with their version in force (a new one stays
    out); their errors become the config's `refused`, and the others' edits apply."""
    config = report.config
    if config is None or config.own is None or any(p.severity == "error" and p not in _all(report.failing_tenants) for p in report.problems):
        return  # routes.yaml's own routes fail too: the whole edit is refused
    parts = dict(config.tenants)
    refused = {tenant: list(found) for tenant, found in config.refused.items()}
    for tenant, problems in report.failing_tenants.items():
        refused.setdefault(tenant, []).extend(problems)
        if tenant in previous.tenants:
            parts[tenant] = previous.tenants[tenant]
        else:
            parts.pop(tenant, None)
    report.config = merged(config.own, parts, {tenant: tuple(found) for tenant, found in refused.items()})
    report.problems = [p for p in report.problems if p not in _all(report.failing_tenants)]


def _all(by_tenant: dict[str, list[Problem]]) -> list[Problem]:
    return [p for found in by_tenant.values() for p in found]


def _load_samples(config: Config, samples_dir: str | None, problems: list[Problem]) -> list[Sample]:
    folder = Path(samples_dir) if samples_dir else config.path(config.settings.samples)
    if not folder.is_dir():
        problems.append(Problem(f"no sample events folder {folder}: templates were not rendered", None, "warning"))
        return []
    samples = []
    for path in sorted(folder.glob("*.json")):
        try:
            samples.append(Sample(display_path(path), read_event_file(str(path))))
        except EventError as exc:
            problems.append(Problem(str(exc), None))
    return samples


def _check_types(route: Route, samples: list[Sample], problems: list[Problem]) -> None:
    for match in field_matches(route.condition):
        if match.path == "event_id" or not samples:
            continue
        present = [(s, lookup(s.event, match.segments)) for s in samples]
        present = [(s, value) for s, value in present if value is not MISSING]
        if not present:
            known = sorted({path for s in samples for path in _paths(s.event)})
            hint = did_you_mean(match.path, known)
            problems.append(Problem(f"'{match.path}' is not in the sample events for this route{hint}; the route may never match", match.location, "warning"))
            continue
        sample, actual = present[0]
        for expected in match.expected:
            if expected is not None and actual is not None and kind(expected) != kind(actual) and not _both_numbers(expected, actual):
                hint = type_hint(actual, expected)
                problems.append(
                    Problem(f"'{match.path}' is compared with {show(expected)} ({kind(expected)}) but {sample.file} has {show(actual)}{hint}", match.location, "warning")
                )
                break


def _both_numbers(a: Any, b: Any) -> bool:
    return kind(a) == kind(b) == "a number"


def _paths(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            yield path
            yield from _paths(item, path)
    elif isinstance(value, list):
        for index, item in enumerate(value[:3]):
            path = f"{prefix}.{index}"
            yield path
            yield from _paths(item, path)


def _check_renders(config: Config, route: Route, samples: list[Sample], report: CheckReport) -> None:
    if not samples:
        wanted = ", ".join(sorted(route.event_ids or ())) or "any event"
        report.problems.append(Problem(f"no sample event for route '{route.name}' ({wanted}): its templates were not rendered", route.location, "warning"))
        return
    matching = [s for s in samples if _matches(config, route, s.event)]
    if not matching:  # an event built to satisfy the route, from the closest sample
        built = _satisfying(config, route, samples)
        matching = [built] if built else []
    severity = "error" if matching else "warning"
    note = "" if matching else " (on a sample the route does not match)"
    for sample in matching or samples:
        context = template_context(sample.event, route.source, SAMPLE_TIME, route.name)
        for send in route.sends:
            report.renders += 1
            try:
                render_send(config, send, context)
            except TemplateError as exc:
                for problem in (Problem(exc.detail, exc.location), *send.template.same_mistake(exc, context)):
                    found = Problem(f"{problem.message} — rendering for {sample.file}{note}", problem.location, severity)
                    if found not in report.problems:  # a template file shared by many routes: one mistake, said once
                        report.problems.append(found)
                    if route.tenant is not None and severity == "error":
                        report.failing_tenants.setdefault(route.tenant, []).append(found)


def _matches(config: Config, route: Route, event: dict[str, Any]) -> bool:
    return bool(route_event(config, event, source=route.source, only_route=route.name, explain=True).matched_routes)


def _satisfying(config: Config, route: Route, samples: list[Sample]) -> Sample | None:
    """A sample changed to satisfy the route's conditions (each field set to the first value
    it is compared with), so its templates are rendered even when no sample event matches,
    or None when the conditions cannot be satisfied that simply."""
    for sample in samples:
        event = copy.deepcopy(sample.event)
        for match in field_matches(route.condition):
            if match.expected and match.segments[0] != "event_id":
                _set_path(event, match.segments, match.expected[0])
        if _matches(config, route, event):
            changed = ", ".join(f"{m.path}: {show(m.expected[0])}" for m in field_matches(route.condition) if m.expected and m.segments[0] != "event_id")
            return Sample(f"{sample.file} with {changed}", event)
    return None


def _set_path(event: dict[str, Any], segments: tuple[str, ...], value: Any) -> None:
    current: Any = event
    for segment in segments[:-1]:
        nxt = current.get(segment) if isinstance(current, dict) else None
        if not isinstance(nxt, dict):
            nxt = {}
            if isinstance(current, dict):
                current[segment] = nxt
        current = nxt
    if isinstance(current, dict):
        current[segments[-1]] = value


def load_verified(config_path: str, environ: Mapping[str, str] | None = None, previous: Config | None = None) -> Config:
    """The config, if `gateway check` finds no error in it; ConfigError with check's errors
    otherwise (a template that fails on a sample event it matches included). With `previous`
    (a reload), a tenant's errors refuse that tenant's edit only (the result's `refused`)."""
    report = check(config_path, environ=environ, previous=previous)
    if report.errors or report.config is None:
        raise ConfigError(report.errors)
    return report.config
