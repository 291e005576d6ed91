"""The `when:` rule language: compile, evaluate, explain, index.

A condition node is one of `AllOf`, `AnyOf`, `NotOf` or `FieldMatch`. Every node can `test` an
event (fast, for ingest) and `explain` why it does not hold (for dry-run and `gateway test`).
Mistakes are refused when the config loads (empty rules, unknown matchers, bad regexes, paths
that cannot exist), because a rule that silently never matches loses a business's events.

Comparisons are type-aware: GO sends `data.id` as text and `data.status` as a number, and
`"1"` never equals `1`. The explanation says so and shows the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from gateway.errors import Location, Problem, did_you_mean, one_of

# Top-level fields of a GO event; a path must start with one of them.
EVENT_ROOTS = ("event_id", "data")
# What our Portuguese-speaking users write by habit, and what they mean.
_PORTUGUESE_ROOTS = {"dados": "data", "evento": "event_id", "id_evento": "event_id", "tipo": "event_id"}
COMBINATORS = ("all", "any", "not")
MISSING = object()


@dataclass(frozen=True, slots=True)
class Reason:
    """Why one condition did not hold, and where that condition is written."""

    text: str
    location: Location | None = None

    def __str__(self) -> str:
        return f"{self.text} ({self.location})" if self.location else self.text


class Condition(Protocol):
    def test(self, event: Mapping[str, Any]) -> bool: ...

    def explain(self, event: Mapping[str, Any]) -> list[Reason]:
        """Reasons it does not hold; empty when it holds."""
        ...

    def describe(self) -> str: ...


# --------------------------------------------------------------------------- values


def show(value: Any) -> str:
    """A value as the user would write it, shortened for one line."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:77] + "..."


def kind(value: Any) -> str:
    """The name of a value's JSON type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def same_value(actual: Any, expected: Any) -> bool:
    """Equality without Python's or YAML's coercions: 1 == 1.0, but "1" != 1 and True != 1."""
    if _is_number(actual) and _is_number(expected):
        return actual == expected
    return type(actual) is type(expected) and actual == expected


def type_hint(actual: Any, expected: Any) -> str:
    """A fix for the common text-versus-number slip, in the user's own value, or ''."""
    if _is_number(actual) and isinstance(expected, str):
        number = _as_number(expected)
        return f"; GO sends a number here: write {show(number)} without quotes" if number is not None else "; GO sends a number here: compare it with a number"
    if isinstance(actual, str) and _is_number(expected):
        return f"; GO sends text here: write '{show(expected)}' in quotes"
    if kind(actual) != kind(expected) and actual is not None:
        return f"; the event has {kind(actual)} here, the rule has {kind(expected)}"
    return ""


def _as_number(text: str) -> int | float | None:
    """'2' -> 2, '2.5' -> 2.5, anything else -> None."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text) if text.strip() and text.strip().lower() not in ("nan", "inf", "-inf", "infinity") else None
    except ValueError:
        return None


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _orderable(value: Any) -> bool:
    """What gt/gte/lt/lte compare with: a number, or a date written like 2024-01-31."""
    return _is_number(value) or (isinstance(value, str) and _ISO_DATE.match(value) is not None)


def _a_list_of_values(value: Any) -> bool:
    """A non-empty list, and not one whose item is a list written without commas ('2 3')."""
    return isinstance(value, list) and bool(value) and not any(isinstance(v, str) and len(v.split()) > 1 and all(_as_number(p) is not None for p in v.split()) for v in value)


def lookup(event: Any, segments: tuple[str, ...]) -> Any:
    """The value at a dotted path, or MISSING; list items are reached by index."""
    current = event
    for segment in segments:
        if isinstance(current, Mapping):
            current = current.get(segment, MISSING)
        elif isinstance(current, list) and segment.isdigit():
            index = int(segment)
            current = current[index] if index < len(current) else MISSING
        else:
            return MISSING
        if current is MISSING:
            return MISSING
    return current


# --------------------------------------------------------------------------- matchers

@dataclass(frozen=True, slots=True)
class Check:
    """One matcher: a fast predicate for ingest, and the sentence explaining a failure."""

    holds: Callable[[Any], bool]
    failure: Callable[[Any], str]


def _equals(expected: Any) -> Check:
    return Check(
        lambda actual: same_value(actual, expected),
        lambda actual: f"is {show(actual)}, the rule wants {show(expected)}{type_hint(actual, expected)}",
    )


def _not_equals(expected: Any) -> Check:
    return Check(lambda actual: not same_value(actual, expected), lambda actual: f"is {show(actual)}, which the rule excludes")


def _one_of(options: list[Any]) -> Check:
    def failure(actual: Any) -> str:
        hint = type_hint(actual, options[0]) if all(kind(o) == kind(options[0]) for o in options) else ""
        return f"is {show(actual)}, the rule wants one of {show(options)}{hint}"

    return Check(lambda actual: any(same_value(actual, option) for option in options), failure)


def _not_in(options: list[Any]) -> Check:
    return Check(
        lambda actual: not any(same_value(actual, option) for option in options),
        lambda actual: f"is {show(actual)}, which the rule excludes (not_in {show(options)})",
    )


def _matches(pattern: re.Pattern[str]) -> Check:
    def failure(actual: Any) -> str:
        if not isinstance(actual, str):
            return f"is {kind(actual)} ({show(actual)}); 'matches' works on text"
        return f"is {show(actual)}, which does not match /{pattern.pattern}/"

    return Check(lambda actual: isinstance(actual, str) and pattern.search(actual) is not None, failure)


def _contains(expected: Any) -> Check:
    def holds(actual: Any) -> bool:
        if isinstance(actual, str) and isinstance(expected, str):
            return expected in actual
        return isinstance(actual, list) and any(same_value(item, expected) for item in actual)

    def failure(actual: Any) -> str:
        if not isinstance(actual, (str, list)):
            return f"is {kind(actual)} ({show(actual)}); 'contains' works on text and lists"
        return f"is {show(actual)}, which does not contain {show(expected)}"

    return Check(holds, failure)


def _startswith(prefix: str) -> Check:
    def failure(actual: Any) -> str:
        if not isinstance(actual, str):
            return f"is {kind(actual)} ({show(actual)}); 'startswith' works on text"
        return f"is {show(actual)}, which does not start with {show(prefix)}"

    return Check(lambda actual: isinstance(actual, str) and actual.startswith(prefix), failure)


_ORDER = {
    "gt": (lambda a, b: a > b, "greater than"),
    "gte": (lambda a, b: a >= b, "at least"),
    "lt": (lambda a, b: a < b, "less than"),
    "lte": (lambda a, b: a <= b, "at most"),
}


def _ordered(name: str, bound: Any) -> Check:
    compare, words = _ORDER[name]

    def comparable(actual: Any) -> bool:
        return (_is_number(actual) and _is_number(bound)) or (isinstance(actual, str) and isinstance(bound, str))

    def failure(actual: Any) -> str:
        if not comparable(actual):
            return f"is {show(actual)}, which cannot be compared with {show(bound)}{type_hint(actual, bound)}"
        return f"is {show(actual)}, the rule wants {words} {show(bound)}"

    return Check(lambda actual: comparable(actual) and compare(actual, bound), failure)


@dataclass(frozen=True, slots=True)
class _MatcherSpec:
    build: Callable[[Any], Check]
    accepts: Callable[[Any], bool]
    expects: str


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


MATCHERS: dict[str, _MatcherSpec] = {
    "equals": _MatcherSpec(_equals, lambda v: True, "a value"),
    "not_equals": _MatcherSpec(_not_equals, lambda v: True, "a value"),
    "in": _MatcherSpec(_one_of, _a_list_of_values, "a non-empty list with commas between the values, like [2, 3]"),
    "not_in": _MatcherSpec(_not_in, _a_list_of_values, "a non-empty list with commas between the values, like [2, 3]"),
    "exists": _MatcherSpec(lambda v: Check(lambda a: True, str), lambda v: isinstance(v, bool), "true or false"),
    "matches": _MatcherSpec(_matches, lambda v: isinstance(v, str), "a regular expression in quotes"),
    "contains": _MatcherSpec(_contains, _scalar, "a single value"),
    "startswith": _MatcherSpec(_startswith, lambda v: isinstance(v, str), "text"),
    **{
        name: _MatcherSpec(lambda v, n=name: _ordered(n, v), _orderable, "a number (or a date written like 2024-01-31)")
        for name in _ORDER
    },
}


# --------------------------------------------------------------------------- nodes


@dataclass(frozen=True, slots=True)
class FieldMatch:
    """`path: matcher` — every check on the value at `path` must hold."""

    path: str
    segments: tuple[str, ...]
    checks: tuple[Check, ...]
    exists: bool | None  # the `exists:` matcher, handled apart because it decides about absence
    expected: tuple[Any, ...]  # literal values compared against, for `check`'s type warnings
    text: str
    location: Location | None

    def test(self, event: Mapping[str, Any]) -> bool:
        actual = lookup(event, self.segments)
        if actual is MISSING:
            return self.exists is False
        return self.exists is not False and all(check.holds(actual) for check in self.checks)

    def explain(self, event: Mapping[str, Any]) -> list[Reason]:
        failure = self._failure(event)
        return [Reason(f"{self.path} {failure}", self.location)] if failure else []

    def describe(self) -> str:
        return f"{self.path}: {self.text}"

    def _failure(self, event: Mapping[str, Any]) -> str | None:
        actual = lookup(event, self.segments)
        if actual is MISSING:
            return None if self.exists is False else "is missing from the event"
        if self.exists is False:
            return f"exists ({show(actual)}), the rule wants it absent"
        for check in self.checks:
            if not check.holds(actual):
                return check.failure(actual)
        return None


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Condition, ...]
    location: Location | None = None

    def test(self, event: Mapping[str, Any]) -> bool:
        return all(child.test(event) for child in self.children)

    def explain(self, event: Mapping[str, Any]) -> list[Reason]:
        return [reason for child in self.children for reason in child.explain(event)]

    def describe(self) -> str:
        return " and ".join(child.describe() for child in self.children)


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Condition, ...]
    location: Location | None = None

    def test(self, event: Mapping[str, Any]) -> bool:
        return any(child.test(event) for child in self.children)

    def explain(self, event: Mapping[str, Any]) -> list[Reason]:
        failures = [child.explain(event) for child in self.children]
        if any(not reasons for reasons in failures):
            return []
        detail = "; ".join(f"({n}) " + ", ".join(r.text for r in reasons) for n, reasons in enumerate(failures, 1))
        return [Reason(f"none of the 'any' alternatives holds: {detail}", self.location)]

    def describe(self) -> str:
        return "any of (" + "; ".join(child.describe() for child in self.children) + ")"


@dataclass(frozen=True, slots=True)
class NotOf:
    child: Condition
    location: Location | None = None

    def test(self, event: Mapping[str, Any]) -> bool:
        return not self.child.test(event)

    def explain(self, event: Mapping[str, Any]) -> list[Reason]:
        if self.child.test(event):
            return [Reason(f"'not' excludes it: {self.child.describe()} holds", self.location)]
        return []

    def describe(self) -> str:
        return f"not ({self.child.describe()})"


# --------------------------------------------------------------------------- compiling

Locate = Callable[[tuple[str | int, ...]], Location]


class RuleCompiler:
    """Compiles a `when:` mapping, collecting every problem with its location."""

    def __init__(self, where: Locate, key_where: Locate) -> None:
        self.where = where
        self.key_where = key_where
        self.problems: list[Problem] = []

    def error(self, message: str, location: Location) -> None:
        self.problems.append(Problem(message, location))

    def compile_when(self, raw: Any, at: tuple[str | int, ...]) -> Condition | None:
        if not isinstance(raw, dict) or not raw:
            self.error(
                "'when' must list at least one condition, like 'event_id: ORDER_CREATED'; "
                "an empty rule would never say what it takes",
                self.where(at),
            )
            return None
        children = [self.compile_entry(key, value, (*at, key)) for key, value in raw.items()]
        valid = tuple(child for child in children if child is not None)
        return valid[0] if len(valid) == 1 else AllOf(valid, self.where(at))

    def compile_entry(self, key: str, value: Any, at: tuple[str | int, ...]) -> Condition | None:
        if key in ("all", "any"):
            return self.compile_group(key, value, at)
        if key == "not":
            child = self.compile_when(value, at)
            return NotOf(child, self.key_where(at)) if child else None
        return self.compile_field(key, value, at)

    def compile_group(self, key: str, value: Any, at: tuple[str | int, ...]) -> Condition | None:
        if not isinstance(value, list) or not value:
            self.error(f"'{key}' takes a list of conditions, each starting with '- '", self.where(at))
            return None
        children = [self.compile_when(item, (*at, index)) for index, item in enumerate(value)]
        valid = tuple(child for child in children if child is not None)
        if len(valid) != len(children):
            return None
        node = AllOf if key == "all" else AnyOf
        return node(valid, self.key_where(at))

    def compile_field(self, path: str, value: Any, at: tuple[str | int, ...]) -> Condition | None:
        if not self.valid_path(path, at):
            return None
        if isinstance(value, dict):
            return self.compile_matchers(path, value, at)
        if isinstance(value, list):
            if not value:
                self.error(f"the list of values for '{path}' is empty; give at least one", self.where(at))
                return None
            return self.field(path, at, [_one_of(value)], None, tuple(value), show(value))
        return self.field(path, at, [_equals(value)], None, (value,), show(value))

    def compile_matchers(self, path: str, spec: dict[str, Any], at: tuple[str | int, ...]) -> Condition | None:
        if not spec:
            self.error(f"'{path}' has an empty matcher {{}}; write a value or a matcher like {{in: [1, 2]}}", self.where(at))
            return None
        checks: list[Check] = []
        expected: list[Any] = []
        exists: bool | None = None
        ok = True
        for name, argument in spec.items():
            matcher = MATCHERS.get(name)
            if matcher is None:
                self.error(
                    f"unknown matcher '{name}'{did_you_mean(name, MATCHERS)}; matchers are {one_of(MATCHERS)} "
                    "(to compare with an object, use 'equals:')",
                    self.key_where((*at, name)),
                )
                ok = False
                continue
            if not matcher.accepts(argument):
                self.error(f"'{name}' takes {matcher.expects}, not {show(argument)}", self.where((*at, name)))
                ok = False
                continue
            if name == "exists":
                exists = argument
                continue
            if name == "matches":
                argument = self.compile_regex(argument, (*at, name))
                if argument is None:
                    ok = False
                    continue
            else:
                expected.extend(argument if name in ("in", "not_in") else [argument])
            checks.append(matcher.build(argument))
        if not ok:
            return None
        text = ", ".join(f"{name} {show(arg)}" for name, arg in spec.items())
        return self.field(path, at, checks, exists, tuple(expected), text)

    def compile_regex(self, pattern: str, at: tuple[str | int, ...]) -> re.Pattern[str] | None:
        try:
            return re.compile(pattern)
        except re.error as exc:
            self.error(
                f"the regular expression {show(pattern)} is invalid: {exc.msg} at position {exc.pos}; "
                "in YAML, write it in single quotes so backslashes stay as they are",
                self.where(at),
            )
            return None

    def valid_path(self, path: str, at: tuple[str | int, ...]) -> bool:
        segments = path.split(".")
        if any(not segment for segment in segments):
            self.error(f"the path '{path}' has an empty part; write it like data.user.email", self.key_where(at))
            return False
        if segments[0] in EVENT_ROOTS:
            return True
        if segments[0] == "event" and len(segments) > 1 and segments[1] in EVENT_ROOTS:
            hint = f" (write '{'.'.join(segments[1:])}': paths start inside the event)"
        else:
            meant = _PORTUGUESE_ROOTS.get(segments[0].lower())
            hint = f" (did you mean '{meant}'?)" if meant else did_you_mean(segments[0], (*EVENT_ROOTS, *COMBINATORS))
            hint = f"{hint}; paths start with {one_of(EVENT_ROOTS)}, combinators are {one_of(COMBINATORS)}"
        self.error(f"'{path}' is not a field of a GO event{hint}", self.key_where(at))
        return False

    def field(
        self,
        path: str,
        at: tuple[str | int, ...],
        checks: list[Check],
        exists: bool | None,
        expected: tuple[Any, ...],
        text: str,
    ) -> FieldMatch:
        return FieldMatch(path, tuple(path.split(".")), tuple(checks), exists, expected, text, self.key_where(at))


def indexed_event_ids(raw_when: Any) -> frozenset[str] | None:
    """The event_ids a rule is limited to by a top-level `event_id:`, or None (any event)."""
    if not isinstance(raw_when, dict) or "event_id" not in raw_when:
        return None
    value = raw_when["event_id"]
    if isinstance(value, dict) and len(value) == 1:
        value = value.get("equals", value.get("in"))
    if isinstance(value, str):
        return frozenset([value])
    if isinstance(value, list) and value and all(isinstance(item, str) for item in value):
        return frozenset(value)
    return None


def field_matches(condition: Condition) -> Iterable[FieldMatch]:
    """Every FieldMatch in a condition tree (for checks that look at literal values)."""
    if isinstance(condition, FieldMatch):
        yield condition
    elif isinstance(condition, (AllOf, AnyOf)):
        for child in condition.children:
            yield from field_matches(child)
    elif isinstance(condition, NotOf):
        yield from field_matches(condition.child)


# --------------------------------------------------------------------------- index


class Indexed(Protocol):
    @property
    def event_ids(self) -> frozenset[str] | None: ...


T = TypeVar("T", bound=Indexed)


class RouteIndex(dict[str, tuple[T, ...]]):
    """Routes by event_id, so matching cost does not grow with routes for other events.

    Maps each event_id to the routes that may take it, in file order; `candidates` of an
    event_id nobody names are the routes without an event_id condition.
    """

    def __init__(self, routes: Iterable[T]) -> None:
        ordered = list(routes)
        self.unindexed: tuple[T, ...] = tuple(r for r in ordered if r.event_ids is None)
        names = {name for route in ordered for name in (route.event_ids or ())}
        super().__init__(
            (name, tuple(r for r in ordered if r.event_ids is None or name in r.event_ids)) for name in names
        )

    def candidates(self, event_id: str) -> tuple[T, ...]:
        return self.get(event_id, self.unindexed)
