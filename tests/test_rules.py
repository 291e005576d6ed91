"""Rule matching: every matcher, nesting, type-aware comparisons and explanations."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.errors import Location
from gateway.rules import MISSING, AllOf, RouteIndex, RuleCompiler, indexed_event_ids, lookup

EVENT = {
    "event_id": "ORDER_CREATED",
    "data": {
        "id": "100",
        "code": "0000593098",
        "status": 1,
        "total": 1234.5,
        "user": {"id": 2, "document": "123421341234", "email": "ana@empresa.com.br", "phone": None},
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
        "tags": ["vip", "atacado"],
    },
}


def compile_when(when: dict[str, Any]):
    where = lambda at: Location("routes.yaml", 1, 1)  # noqa: E731
    compiler = RuleCompiler(where, where)
    condition = compiler.compile_when(when, ("when",))
    assert not compiler.problems, compiler.problems
    return condition


# (description, when, matches?)
CASES = [
    ("scalar equals", {"event_id": "ORDER_CREATED"}, True),
    ("scalar differs", {"event_id": "ORDER_CANCEL"}, False),
    ("list is one-of", {"event_id": ["ORDER_CANCEL", "ORDER_CREATED"]}, True),
    ("number equals number", {"data.status": 1}, True),
    ("text never equals a number", {"data.status": "1"}, False),
    ("number never equals text", {"data.id": 100}, False),
    ("text id equals text", {"data.id": "100"}, True),
    ("true is not 1", {"data.status": True}, False),
    ("int equals float", {"data.total": {"equals": 1234.5}}, True),
    ("not_equals", {"data.status": {"not_equals": 2}}, True),
    ("in", {"data.status": {"in": [1, 2]}}, True),
    ("in with text values does not match number", {"data.status": {"in": ["1", "2"]}}, False),
    ("not_in", {"data.status": {"not_in": [2, 3]}}, True),
    ("not_in excludes", {"data.status": {"not_in": [1]}}, False),
    ("exists true", {"data.user.email": {"exists": True}}, True),
    ("exists false on missing", {"data.user.cpf": {"exists": False}}, True),
    ("exists false on null is present", {"data.user.phone": {"exists": False}}, False),
    ("equals null", {"data.user.phone": None}, True),
    ("matches regex", {"data.user.email": {"matches": r"@empresa\.com\.br$"}}, True),
    ("matches fails", {"data.user.email": {"matches": r"@outra\.com$"}}, False),
    ("matches on a number is false", {"data.status": {"matches": "1"}}, False),
    ("contains text", {"data.code": {"contains": "5930"}}, True),
    ("contains list item", {"data.tags": {"contains": "vip"}}, True),
    ("contains missing list item", {"data.tags": {"contains": "novo"}}, False),
    ("startswith", {"data.code": {"startswith": "0000"}}, True),
    ("gt", {"data.total": {"gt": 1000}}, True),
    ("gte boundary", {"data.status": {"gte": 1}}, True),
    ("lt", {"data.status": {"lt": 1}}, False),
    ("lte", {"data.total": {"lte": 1234.5}}, True),
    ("range with two matchers", {"data.total": {"gt": 1000, "lt": 2000}}, True),
    ("gt between text and number is false", {"data.id": {"gt": 50}}, False),
    ("list index path", {"data.items.0.sku": "A-1"}, True),
    ("list index beyond the end is missing", {"data.items.5.sku": {"exists": False}}, True),
    ("missing field does not match", {"data.user.cpf": "123"}, False),
    ("path through a scalar is missing", {"data.code.x": {"exists": True}}, False),
    ("all conditions must hold", {"event_id": "ORDER_CREATED", "data.status": 2}, False),
    ("any holds if one holds", {"any": [{"data.status": 2}, {"data.user.id": 2}]}, True),
    ("any fails if none holds", {"any": [{"data.status": 2}, {"data.user.id": 3}]}, False),
    ("all group", {"all": [{"data.status": 1}, {"data.user.id": 2}]}, True),
    ("not inverts", {"not": {"data.status": 2}}, True),
    ("not of a holding condition", {"not": {"data.status": 1}}, False),
    ("nested any / not", {"any": [{"data.status": {"in": [2, 3]}}, {"not": {"data.user.document": {"exists": False}}}]}, True),
]


@pytest.mark.parametrize(("when", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_condition(when: dict[str, Any], expected: bool) -> None:
    """Each matcher and combinator decides as documented, and explain agrees with test."""
    condition = compile_when(when)
    assert condition.test(EVENT) is expected
    assert (not condition.explain(EVENT)) is expected


def test_explanation_names_condition_and_actual_value() -> None:
    """A failed equality says the path, the actual value and what the rule wanted."""
    reasons = compile_when({"data.status": 2}).explain(EVENT)
    assert [r.text for r in reasons] == ["data.status is 1, the rule wants 2"]


def test_explanation_gives_the_fix_for_text_versus_number() -> None:
    """Comparing GO's number with text explains the quoting fix."""
    reasons = compile_when({"data.status": "1"}).explain(EVENT)
    assert reasons[0].text == 'data.status is 1, the rule wants "1"; GO sends a number here: write 1 without quotes'
    reasons = compile_when({"data.id": 100}).explain(EVENT)
    assert reasons[0].text == "data.id is \"100\", the rule wants 100; GO sends text here: write '100' in quotes"


def test_explanation_of_missing_field() -> None:
    assert compile_when({"data.user.cpf": "1"}).explain(EVENT)[0].text == "data.user.cpf is missing from the event"


def test_explanation_lists_every_failed_any_alternative() -> None:
    """When no `any` alternative holds, each one's reason is listed."""
    reasons = compile_when({"any": [{"data.status": 2}, {"data.user.id": 3}]}).explain(EVENT)
    assert reasons[0].text == "none of the 'any' alternatives holds: (1) data.status is 1, the rule wants 2; (2) data.user.id is 2, the rule wants 3"


def test_explanation_of_not() -> None:
    reasons = compile_when({"not": {"data.status": 1}}).explain(EVENT)
    assert reasons[0].text == "'not' excludes it: data.status: 1 holds"


def test_all_failures_are_reported() -> None:
    condition = compile_when({"event_id": "ORDER_CANCEL", "data.status": 3})
    assert isinstance(condition, AllOf)
    assert len(condition.explain(EVENT)) == 2


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ({}, "'when' must list at least one condition"),
        ({"data.status": {}}, "'data.status' has an empty matcher"),
        ({"data.status": {"equal": 1}}, "unknown matcher 'equal' (did you mean 'equals'?)"),
        ({"data.status": {"in": 1}}, "'in' takes a non-empty list"),
        ({"data.status": {"exists": "yes"}}, "'exists' takes true or false"),
        ({"data.status": []}, "the list of values for 'data.status' is empty"),
        ({"any": []}, "'any' takes a list of conditions"),
        ({"any": {"data.status": 1}}, "'any' takes a list of conditions"),
        ({"data..status": 1}, "the path 'data..status' has an empty part"),
        ({"dados.status": 1}, "'dados.status' is not a field of a GO event (did you mean 'data'?)"),
        ({"dat.status": 1}, "'dat.status' is not a field of a GO event (did you mean 'data'?)"),
        ({"data.email": {"matches": "(["}}, "the regular expression \"([\" is invalid"),
        ({"data.status": {"gt": [1]}}, "'gt' takes a number"),
        ({"not": {}}, "'when' must list at least one condition"),
    ],
)
def test_invalid_rules_are_refused_when_loading(when: dict[str, Any], message: str) -> None:
    """Rules that could never match as meant are errors at load, not silent non-matches."""
    where = lambda at: Location("routes.yaml", 3, 7)  # noqa: E731
    compiler = RuleCompiler(where, where)
    compiler.compile_when(when, ("when",))
    assert any(message in p.message for p in compiler.problems), compiler.problems


def test_lookup_distinguishes_missing_from_null() -> None:
    assert lookup(EVENT, ("data", "user", "phone")) is None
    assert lookup(EVENT, ("data", "user", "cpf")) is MISSING


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ({"event_id": "A"}, frozenset({"A"})),
        ({"event_id": ["A", "B"]}, frozenset({"A", "B"})),
        ({"event_id": {"in": ["A"]}}, frozenset({"A"})),
        ({"event_id": {"equals": "A"}}, frozenset({"A"})),
        ({"event_id": {"matches": "A"}}, None),
        ({"data.status": 1}, None),
        ({"any": [{"event_id": "A"}]}, None),
    ],
)
def test_indexed_event_ids(when: dict[str, Any], expected: frozenset[str] | None) -> None:
    """Only a top-level event_id equality or list narrows a route to event ids."""
    assert indexed_event_ids(when) == expected


class FakeRoute:
    def __init__(self, name: str, event_ids: frozenset[str] | None) -> None:
        self.name = name
        self.event_ids = event_ids


def test_index_keeps_file_order_and_includes_unindexed_routes() -> None:
    """Candidates are the routes for that event_id plus routes without one, in file order."""
    routes = [FakeRoute("a", frozenset({"X"})), FakeRoute("any", None), FakeRoute("b", frozenset({"Y", "X"})), FakeRoute("c", frozenset({"Y"}))]
    index = RouteIndex(routes)
    assert [r.name for r in index.candidates("X")] == ["a", "any", "b"]
    assert [r.name for r in index.candidates("Y")] == ["any", "b", "c"]
    assert [r.name for r in index.candidates("UNKNOWN")] == ["any"]
