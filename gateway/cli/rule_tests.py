"""`gateway test`: rule test cases kept in YAML, so users can keep their integrations tested.

A case file looks like:

    cases:
      - name: pedido criado vai para o Slack
        event: ../../examples/events/order_created.json   # or an inline mapping
        set: {data.status: 2}                              # optional changes to the event
        expect:
          routes: [pedido-criado-no-slack]                 # exactly the routes that match
          bodies:
            pedido-criado-no-slack:                        # or 'route/destination'
              - "Novo pedido 0000593098"                   # text the body contains
              - {text: "Novo pedido 0000593098"}           # a JSON fragment the body contains

A failing case shows a diff: '-' what was expected, '+' what happened, with the reason a route
did not match.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.errors import ConfigError, EventError, Location, Problem
from gateway.routing import RoutingResult, read_event_file, route_event, validate_event
from gateway.rules import show
from gateway.schema import Schema, SchemaReader
from gateway.yamlfile import YamlDocument, display_path, load_yaml_file


class ExpectSpec(Schema, kw_only=True):
    routes: list[str] | None = None
    bodies: dict[str, Any] = {}


class CaseSpec(Schema, kw_only=True):
    name: str
    event: str | dict[str, Any]
    set: dict[str, Any] = {}
    expect: ExpectSpec


class CaseFileSpec(Schema, kw_only=True):
    cases: list[CaseSpec]


@dataclass
class CaseResult:
    name: str
    location: Location
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


def find_case_files(config: Config, paths: list[str]) -> list[Path]:
    """The case files named, or every *.yaml under the config's rule_tests folder."""
    if not paths:
        paths = [str(config.path(config.settings.rule_tests))]
    found: list[Path] = []
    for name in paths:
        path = Path(name)
        found.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path])
    return found


def run_case_file(config: Config, path: Path) -> list[CaseResult]:
    """Run every case in one file; ConfigError (with file:line) if the file itself is wrong."""
    doc = load_yaml_file(str(path), display_path(path))
    problems: list[Problem] = []
    spec = SchemaReader(doc, problems).convert(doc.data, CaseFileSpec, (), "the rule test file")
    if spec is None:
        raise ConfigError(problems)
    return [_run_case(config, case, doc, path, index) for index, case in enumerate(spec.cases)]


def _run_case(config: Config, case: CaseSpec, doc: YamlDocument, path: Path, index: int) -> CaseResult:
    result = CaseResult(case.name, doc.where(("cases", index)))
    try:
        event = _event(case, path)
    except EventError as exc:
        result.failures.append(str(exc))
        return result
    routed = route_event(config, event, explain=True)
    if case.expect.routes is not None:
        result.failures.extend(_route_diff(case.expect.routes, routed))
    for key, fragments in case.expect.bodies.items():
        result.failures.extend(_body_failures(key, fragments, routed))
    return result


def _event(case: CaseSpec, path: Path) -> dict[str, Any]:
    if isinstance(case.event, str):
        event = read_event_file(str(path.parent / case.event))
    else:
        event = validate_event(copy.deepcopy(case.event))
    for dotted, value in case.set.items():
        _set_path(event, dotted.split("."), value)
    return validate_event(event)


def _set_path(target: Any, segments: list[str], value: Any) -> None:
    for segment in segments[:-1]:
        if isinstance(target, list) and segment.isdigit():
            target = target[int(segment)]
        else:
            target = target.setdefault(segment, {})
    last = segments[-1]
    if isinstance(target, list) and last.isdigit():
        target[int(last)] = value
    else:
        target[last] = value


def _route_diff(expected: list[str], routed: RoutingResult) -> list[str]:
    matched = routed.matched_routes
    if sorted(expected) == sorted(matched):
        return []
    reasons = {v.route.name: "; ".join(r.text for r in v.reasons) for v in routed.verdicts}
    lines = ["routes differ (- expected, + actual):"]
    for name in sorted(set(expected) | set(matched)):
        if name in expected and name not in matched:
            why = reasons.get(name, "no route has this name")
            lines.append(f"  - {name}    (did not match: {why})")
        elif name in matched and name not in expected:
            lines.append(f"  + {name}    (matched, not expected)")
        else:
            lines.append(f"    {name}")
    return ["\n".join(lines)]


def _body_failures(key: str, fragments: Any, routed: RoutingResult) -> list[str]:
    route, _, destination = key.partition("/")
    bodies = [d for d in routed.deliveries if d.route == route and (not destination or d.destination == destination)]
    if not bodies:
        return [f"{key}: no delivery was rendered for it (did the route match?)"]
    failures = []
    for delivery in bodies:
        if delivery.error:
            failures.append(f"{key}: the template failed: {delivery.error}")
            continue
        for fragment in fragments if isinstance(fragments, list) else [fragments]:
            failure = _fragment_failure(fragment, delivery.body or "")
            if failure:
                failures.append(f"{key}: {failure}")
    return failures


def _fragment_failure(fragment: Any, body: str) -> str | None:
    if isinstance(fragment, str):
        if fragment in body:
            return None
        return f"the body does not contain the text (- expected, + closest line):\n  - {fragment}\n  + {_closest_line(fragment, body)}"
    try:
        actual = json.loads(body)
    except json.JSONDecodeError:
        return "the body is not JSON, so a JSON fragment cannot be compared"
    differences = list(_subset_diff(fragment, actual, ""))
    if not differences:
        return None
    return "the JSON body differs (- expected, + actual):\n" + "\n".join(differences)


def _subset_diff(expected: Any, actual: Any, at: str) -> Any:
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key, value in expected.items():
            path = f"{at}.{key}" if at else key
            if key not in actual:
                yield f"  - {path}: {show(value)}\n  + {path}: (missing)"
            else:
                yield from _subset_diff(value, actual[key], path)
    elif isinstance(expected, list) and isinstance(actual, list) and len(expected) <= len(actual):
        for index, value in enumerate(expected):
            yield from _subset_diff(value, actual[index], f"{at}.{index}")
    elif expected != actual or type(expected) is not type(actual):
        yield f"  - {at}: {show(expected)}\n  + {at}: {show(actual)}"


def _closest_line(fragment: str, body: str) -> str:
    lines = [line.strip() for line in body.splitlines() if line.strip()] or [""]
    return max(lines, key=lambda line: SequenceMatcher(None, fragment, line).ratio())[:200]
