"""The store contract, run against every backend (tests/store/conftest.py lists them)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.store.base import (
    DEAD,
    DELIVERED,
    FAILED,
    PENDING,
    SENDING,
    Activity,
    AttemptResult,
    ConsoleSession,
    DeliveryFilter,
    EventQuery,
    Incident,
    NewDelivery,
    NewEvent,
    Store,
)

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0


def event(number: int, *, deliveries: int = 1, dedupe_key: str | None = None, at: float = T0, ordering_key: str | None = None, destination: str = "sink", window: float = 600) -> NewEvent:
    return NewEvent(
        id=f"e{number}",
        source="go",
        event_type="ORDER_CREATED",
        body=f'{{"event_id": "ORDER_CREATED", "n": {number}}}',
        received_at=at,
        config_version="v1",
        deliveries=tuple(NewDelivery(f"d{number}-{i}", "route", destination, f'{{"n": {number}}}', PENDING, ordering_key=ordering_key) for i in range(deliveries)),
        dedupe_key=dedupe_key,
        dedupe_window=window if dedupe_key else None,
    )


def attempt(delivery_id: str, outcome: str, *, at: float = T0, next_at: float | None = None, status: int | None = 200) -> AttemptResult:
    return AttemptResult(delivery_id, at, 12.5, outcome, status, "resposta", None if outcome == "delivered" else "HTTP 503", next_at)


async def test_add_event_stores_event_and_deliveries(store: Store) -> None:
    """An event and its deliveries are stored together and can be read back."""
    result = await store.add_event(event(1, deliveries=2))
    assert (result.id, result.duplicate, result.deliveries) == ("e1", False, 2)
    stored = await store.get_event("e1")
    assert stored is not None and stored.body == '{"event_id": "ORDER_CREATED", "n": 1}'
    assert [d.id for d in stored.deliveries] == ["d1-0", "d1-1"]
    assert all(d.status == PENDING for d in stored.deliveries)


async def test_dedupe_inside_window_only(store: Store) -> None:
    """The same key within the window is a duplicate of the first; after it, a new event."""
    await store.add_event(event(1, dedupe_key="k"))
    duplicate = await store.add_event(event(2, dedupe_key="k", at=T0 + 599))
    assert (duplicate.id, duplicate.duplicate, duplicate.deliveries) == ("e1", True, 0)
    later = await store.add_event(event(3, dedupe_key="k", at=T0 + 601))
    assert not later.duplicate
    assert await store.get_event("e2") is None


async def test_concurrent_duplicates_store_one_event(store: Store) -> None:
    """Many identical events at once produce exactly one stored set of deliveries."""
    results = await asyncio.gather(*(store.add_event(event(n, dedupe_key="same")) for n in range(50)))
    assert sum(not r.duplicate for r in results) == 1
    assert len(await store.list_deliveries(DeliveryFilter(statuses=(PENDING,)))) == 1


async def test_duplicates_of_events_stored_before_a_restart(store_factory: Callable[[], Store]) -> None:
    first = store_factory()
    await first.open()
    await first.add_event(event(1, dedupe_key="k"))
    await first.close()
    second = store_factory()
    await second.open()
    try:
        duplicate = await second.add_event(event(2, dedupe_key="k", at=T0 + 10))
    finally:
        await second.close()
    assert (duplicate.id, duplicate.duplicate) == ("e1", True)


async def test_duplicates_of_events_another_process_stored(store_factory: Callable[[], Store]) -> None:
    """Two stores on one database (two processes, as SQLite sees them), each having stored
    keys already: what one stores, the other finds."""
    one, other = store_factory(), store_factory()
    await one.open()
    await other.open()
    try:
        await one.add_event(event(1, dedupe_key="a"))
        await other.add_event(event(2, dedupe_key="b", at=T0 + 1))
        found_by_one = await one.add_event(event(3, dedupe_key="b", at=T0 + 2))
        found_by_other = await other.add_event(event(4, dedupe_key="a", at=T0 + 3))
    finally:
        await one.close()
        await other.close()
    assert (found_by_one.id, found_by_one.duplicate) == ("e2", True)
    assert (found_by_other.id, found_by_other.duplicate) == ("e1", True)


@pytest.mark.parametrize("forget", ["erase", "purge"])
async def test_an_erased_or_purged_event_is_nobodys_original(store_factory: Callable[[], Store], forget: str) -> None:
    """Once an event is erased or purged (here by another process), the same key stores anew."""
    writer, other = store_factory(), store_factory()
    await writer.open()
    await other.open()
    try:
        await writer.add_event(event(1, dedupe_key="k"))
        if forget == "erase":
            assert await other.erase_event("e1")
        else:
            assert await other.purge(T0 + 1) == 0  # e1's delivery is pending: kept...
            await other.record_attempt(attempt("d1-0", "dead"), T0)
            assert await other.purge(T0 + 1) == 1  # ...until it is finished
        again = await writer.add_event(event(2, dedupe_key="k", at=T0 + 5))
    finally:
        await writer.close()
        await other.close()
    assert (again.id, again.duplicate) == ("e2", False)


async def test_a_longer_window_reaches_events_older_than_the_last_one(store: Store) -> None:
    """routes.yaml reloaded with a longer window: events stored before are found again."""
    await store.add_event(event(1, dedupe_key="a", at=T0))
    await store.add_event(event(2, dedupe_key="b", at=T0 + 1000))  # the 600 s window no longer reaches e1
    assert not (await store.add_event(event(3, dedupe_key="a", at=T0 + 1001))).duplicate
    longer = await store.add_event(event(4, dedupe_key="b", at=T0 + 5000, window=3600 * 2))
    assert (longer.id, longer.duplicate) == ("e2", True)


async def test_an_event_that_failed_to_store_is_nobodys_original(store: Store) -> None:
    """Its transaction undone, its key must not answer the resend "duplicate" (it would be lost)."""
    await store.add_event(event(1))
    clash = NewEvent(**{**event(1, dedupe_key="k").__dict__, "deliveries": ()})  # id e1 again: the insert fails
    with pytest.raises(Exception, match="(?i)unique"):
        await store.add_event(clash)
    resent = await store.add_event(event(2, dedupe_key="k", at=T0 + 1))
    assert (resent.id, resent.duplicate) == ("e2", False)


async def test_claim_due_respects_time_and_leases(store: Store) -> None:
    await store.add_event(event(1))
    assert await store.claim_due(T0 - 1, {"sink": 10}, 30) == []
    claimed = await store.claim_due(T0, {"sink": 10}, 30)
    assert [c.id for c in claimed] == ["d1-0"]
    assert await store.claim_due(T0 + 10, {"sink": 10}, 30) == []  # leased
    again = await store.claim_due(T0 + 31, {"sink": 10}, 30)  # the lease expired: a crashed sender's work comes back
    assert [c.id for c in again] == ["d1-0"]


async def test_claims_take_at_most_each_destinations_quota(store: Store) -> None:
    """Only what can start is claimed: each destination's free slots, none for a busy one."""
    for n in range(4):
        await store.add_event(event(n, destination="a", at=T0 + n))
        await store.add_event(event(10 + n, destination="b", at=T0 + n))
    claimed = await store.claim_due(T0 + 10, {"a": 2, "b": 0}, 30)
    assert sorted(c.id for c in claimed) == ["d0-0", "d1-0"]  # the oldest first
    claimed = await store.claim_due(T0 + 10, {"a": 1, "b": 3}, 30)
    assert sorted(c.id for c in claimed) == ["d10-0", "d11-0", "d12-0", "d2-0"]
    assert (await store.stats()).by_status == {PENDING: 2, SENDING: 6}


async def test_others_are_deliveries_to_destinations_not_named(store: Store) -> None:
    """Deliveries to a destination routes.yaml no longer has are claimed only as `others`."""
    await store.add_event(event(1, destination="a"))
    await store.add_event(event(2, destination="removed"))
    await store.add_event(event(3, destination="removed"))
    assert [c.id for c in await store.claim_due(T0, {"a": 0}, 30)] == []
    assert [c.id for c in await store.claim_due(T0, {"a": 0}, 30, others=1)] == ["d2-0"]
    assert sorted(c.id for c in await store.claim_due(T0, {"a": 5}, 30, others=5)) == ["d1-0", "d3-0"]


async def test_ordering_key_holds_back_later_deliveries(store: Store) -> None:
    """With the same ordering key, a delivery waits until the earlier one is done."""
    for n in range(3):
        await store.add_event(event(n, ordering_key="pedido-100", at=T0 + n))
    await store.add_event(event(9, ordering_key="outro", at=T0))
    first = await store.claim_due(T0 + 10, {"sink": 10}, 30)
    assert sorted(c.id for c in first) == ["d0-0", "d9-0"]
    await store.record_attempt(attempt("d9-0", "delivered"), T0 + 11)
    await store.record_attempt(attempt("d0-0", "retry", next_at=T0 + 100, status=503), T0 + 11)
    assert await store.claim_due(T0 + 20, {"sink": 10}, 30) == []  # d1 must not overtake the failed d0
    assert [c.id for c in await store.claim_due(T0 + 100, {"sink": 10}, 30)] == ["d0-0"]
    await store.record_attempt(attempt("d0-0", "delivered"), T0 + 101)
    assert [c.id for c in await store.claim_due(T0 + 101, {"sink": 10}, 30)] == ["d1-0"]


async def test_record_attempt_outcomes_and_history(store: Store) -> None:
    await store.add_event(event(1))
    await store.claim_due(T0, {"sink": 10}, 30)
    await store.record_attempt(attempt("d1-0", "retry", next_at=T0 + 5, status=503), T0 + 1)
    assert await store.next_due_at() == T0 + 5
    await store.claim_due(T0 + 5, {"sink": 10}, 30)
    await store.record_attempt(attempt("d1-0", "delivered"), T0 + 6)
    stored = await store.get_event("e1")
    delivery = stored.deliveries[0]
    assert (delivery.status, delivery.attempts, delivery.last_error) == (DELIVERED, 2, None)
    assert [(a.number, a.outcome, a.status_code) for a in delivery.attempt_log] == [(1, "retry", 503), (2, "delivered", 200)]
    assert await store.next_due_at() is None


async def test_dead_then_requeue(store: Store) -> None:
    """Replay makes dead deliveries pending and due now, keeping their history."""
    await store.add_event(event(1))
    await store.claim_due(T0, {"sink": 10}, 30)
    await store.record_attempt(attempt("d1-0", "dead", status=400), T0 + 1)
    assert (await store.get_event("e1")).deliveries[0].status == DEAD
    assert await store.requeue(DeliveryFilter(statuses=(DEAD,), destination="other"), T0 + 2) == 0
    assert await store.requeue(DeliveryFilter(statuses=(DEAD,)), T0 + 2) == 1
    delivery = (await store.get_event("e1")).deliveries[0]
    assert (delivery.status, delivery.next_attempt_at, len(delivery.attempt_log)) == (PENDING, T0 + 2, 1)


async def test_failed_render_is_stored_not_sendable(store: Store) -> None:
    new = NewEvent("e1", "go", "ORDER_CREATED", "{}", T0, "v1", (NewDelivery("d1", "r", "sink", None, FAILED, "templates/x.j2:3:1: boom"),))
    await store.add_event(new)
    assert await store.claim_due(T0 + 1, {"sink": 10}, 30) == []
    assert await store.requeue(DeliveryFilter(statuses=(FAILED,)), T0) == 0  # no body to resend
    assert (await store.get_event("e1")).deliveries[0].last_error == "templates/x.j2:3:1: boom"


async def test_release_gives_claims_back(store: Store) -> None:
    await store.add_event(event(1))
    await store.claim_due(T0, {"sink": 10}, 30)
    await store.release(["d1-0"], T0 + 1)
    assert [c.id for c in await store.claim_due(T0 + 1, {"sink": 10}, 30)] == ["d1-0"]


async def test_purge_keeps_unfinished_events(store: Store) -> None:
    """Retention removes old finished events, never ones with deliveries still to make."""
    await store.add_event(event(1, at=T0))
    await store.add_event(event(2, at=T0))
    await store.claim_due(T0, {"sink": 1}, 30)
    await store.record_attempt(attempt("d1-0", "delivered"), T0)
    assert await store.purge(T0 + 1) == 1
    assert await store.get_event("e1") is None
    assert await store.get_event("e2") is not None


async def test_erase_removes_personal_data_and_cancels_pending(store: Store) -> None:
    await store.add_event(event(1))
    assert await store.erase_event("e1")
    stored = await store.get_event("e1")
    assert stored.body is None and stored.deliveries[0].body is None
    assert stored.deliveries[0].status == DEAD
    assert not await store.erase_event("nope")


async def test_list_events_newest_first_and_stats(store: Store) -> None:
    for n in range(3):
        await store.add_event(event(n, at=T0 + n))
    assert [e.id for e in await store.list_events(EventQuery(limit=2))] == ["e2", "e1"]
    await store.claim_due(T0 + 5, {"sink": 1}, 30)
    assert (await store.stats()).by_status == {PENDING: 2, SENDING: 1}


async def test_data_survives_reopening(store_factory) -> None:
    """What add_event returned is there after the store is closed and opened again."""
    first = store_factory()
    await first.open()
    await first.add_event(event(1))
    await first.close()
    second = store_factory()
    await second.open()
    assert (await second.get_event("e1")) is not None
    await second.close()


async def test_events_filtered_by_their_deliveries_and_their_status_counts(store: Store) -> None:
    await store.add_event(event(1, deliveries=2, destination="a"))
    await store.add_event(event(2, destination="b", at=T0 + 1))
    await store.claim_due(T0 + 5, {"a": 1}, 30)  # d1-0 is being sent
    await store.record_attempt(attempt("d1-0", "dead", status=400), T0 + 6)
    assert [e.id for e in await store.list_events(EventQuery(status=DEAD))] == ["e1"]
    assert [e.id for e in await store.list_events(EventQuery(destination="b"))] == ["e2"]
    assert [e.id for e in await store.list_events(EventQuery(status=PENDING, destination="a"))] == ["e1"]
    assert await store.list_events(EventQuery(status=DELIVERED)) == []
    assert await store.delivery_statuses(["e1", "e2", "nada"]) == {"e1": {DEAD: 1, PENDING: 1}, "e2": {PENDING: 1}}


def go_event(number: int, *, at: float, code: str | int, source: str = "go", event_type: str = "ORDER_CREATED", name: str = "Maria") -> NewEvent:
    body = f'{{"event_id": "{event_type}", "data": {{"code": {code if isinstance(code, int) else repr(code).replace(chr(39), chr(34))}, "customer": "{name}"}}}}'
    return NewEvent(f"g{number}", source, event_type, body, at, "v1", (NewDelivery(f"gd{number}", "rota", "sink", "{}", PENDING),), code=str(code))


async def test_events_filtered_by_source_time_code_and_text(store: Store) -> None:
    await store.add_event(go_event(1, at=T0, code="0000593098"))
    await store.add_event(go_event(2, at=T0 + 10, code=42, source="loja", name="João"))
    await store.add_event(go_event(3, at=T0 + 20, code="777", event_type="ORDER_CANCEL"))

    async def ids(**query: object) -> list[str]:
        return [e.id for e in await store.list_events(EventQuery(**query))]  # type: ignore[arg-type]

    assert await ids() == ["g3", "g2", "g1"]
    assert await ids(source="loja") == ["g2"]
    assert await ids(event_type="ORDER_CANCEL") == ["g3"]
    assert await ids(since=T0 + 5, until=T0 + 20) == ["g2"]
    assert await ids(code="0000593098") == ["g1"]
    assert await ids(code="42") == ["g2"]  # GO's code may arrive as a number
    assert await ids(code="593098") == []
    assert await ids(text="João") == ["g2"]


async def test_events_page_after_page(store: Store) -> None:
    for n in range(5):
        await store.add_event(go_event(n, at=T0 + (n // 2), code=str(n)))  # two events share each second
    pages, before = [], None
    for _ in range(4):
        page = [e.id for e in await store.list_events(EventQuery(limit=2, before=before))]
        if not page:
            break
        pages.append(page)
        before = page[-1]
    assert [i for page in pages for i in page] == [e.id for e in await store.list_events(EventQuery(limit=10))]
    assert len(pages) == 3 and sorted(i for page in pages for i in page) == [f"g{n}" for n in range(5)]


async def test_a_text_search_reads_one_window_at_a_time(store: Store) -> None:
    """window_end names where `size` events end (two share each second: ties keep arrival
    order), and list_events with `down_to` reads no further; other filters narrow the window."""
    for n in range(10):
        await store.add_event(go_event(n, at=T0 + (n // 2), code=str(n), name="Ana" if n in (1, 8) else "Bia", event_type="ORDER_CANCEL" if n % 2 else "ORDER_CREATED"))
    end = await store.window_end(EventQuery(text="Ana"), 3)
    assert end is not None and end[0] == "g7" and end[1] == T0 + 3
    assert [e.id for e in await store.list_events(EventQuery(text="Ana", down_to=end[0]))] == ["g8"]  # of g9, g8, g7
    assert [e.id for e in await store.list_events(EventQuery(text="Bia", down_to=end[0]))] == ["g9", "g7"]
    assert (await store.window_end(EventQuery(before="g7"), 3) or ("",))[0] == "g4"
    assert (await store.window_end(EventQuery(event_type="ORDER_CANCEL"), 2) or ("",))[0] == "g7"  # g9, g7
    assert await store.window_end(EventQuery(before="g2"), 3) is None  # g1, g0: fewer than 3
    assert await store.window_end(EventQuery(before="g2"), 2) is None  # g1, g0 exactly: the window reaches the oldest
    assert (await store.window_end(EventQuery(before="g3"), 2) or ("",))[0] == "g1"  # g2, g1, and g0 is older
    assert [e.id for e in await store.list_events(EventQuery(text="Ana", before="g2"))] == ["g1"]


async def test_activity_per_minute_and_route_counts(store: Store) -> None:
    await store.add_event(event(1, at=T0))
    await store.add_event(event(2, at=T0 + 61, deliveries=2))
    await store.claim_due(T0 + 70, {"sink": 3}, 30)
    await store.record_attempt(attempt("d1-0", "delivered", at=T0 + 70), T0 + 70)
    await store.record_attempt(attempt("d2-0", "dead", at=T0 + 71, status=400), T0 + 71)
    minute = T0 // 60 * 60
    found = await store.activity(T0 - 120, 60)
    assert found == Activity({minute: 1, minute + 60: 1}, {minute + 60: {"delivered": 1, "dead": 1}})
    assert await store.activity(T0 + 3600) == Activity()
    assert await store.route_counts(T0 - 1) == {"route": 2}
    assert await store.route_counts(T0 + 30) == {"route": 1}


def shop_event(number: int, tenant: str | None, at: float = T0) -> NewEvent:
    """An event taken by a shop's source, delivered to that shop's destination (`shop/crm`)."""
    plain = event(number, at=at, destination=f"{tenant}/crm" if tenant else "crm")
    return NewEvent(**{**plain.__dict__, "source": f"go-{tenant or 'gateway'}", "tenant": tenant})


async def test_each_query_reads_one_shops_part_when_asked(store: Store) -> None:
    """Events by the shop whose source took them; deliveries, their counts and the activity by
    the shop's destinations (`shop/...`); a shop named `loja` is not a prefix of `loja-b`."""
    for number, tenant in enumerate(["loja", "loja-b", None, "loja"]):
        await store.add_event(shop_event(number, tenant, at=T0 + number))
    await store.record_attempt(attempt("d1-0", "dead", at=T0 + 10), T0 + 10)
    await store.record_attempt(attempt("d0-0", "delivered", at=T0 + 10), T0 + 10)
    assert [e.id for e in await store.list_events(EventQuery(tenant="loja"))] == ["e3", "e0"]
    assert [e.tenant for e in await store.list_events(EventQuery(tenant="loja-b"))] == ["loja-b"]
    assert len(await store.list_events(EventQuery())) == 4
    assert await store.list_events(EventQuery(tenant="loja", source="go-loja-b")) == []
    assert (await store.get_event("e1")).tenant == "loja-b"  # type: ignore[union-attr]
    assert (await store.stats("loja")).by_status == {PENDING: 1, DELIVERED: 1}
    assert (await store.stats("loja-b")).by_status == {DEAD: 1}
    assert sum((await store.stats()).by_status.values()) == 4
    assert [d.id for d in await store.list_deliveries(DeliveryFilter(statuses=(DEAD,), tenant="loja"))] == []
    assert await store.count_deliveries(DeliveryFilter(statuses=(DEAD,), tenant="loja-b")) == 1
    assert await store.list_deliveries(DeliveryFilter(ids=("d1-0", "e1"), tenant="loja")) == []
    activity = await store.activity(T0 - 60, 60, "loja")
    assert sum(activity.events.values()) == 2 and sum(n for by in activity.attempts.values() for n in by.values()) == 1
    assert sum((await store.activity(T0 - 60, 60)).events.values()) == 4


async def test_a_console_session_keeps_its_shop(store: Store) -> None:
    """A session records the shop whose token logged in (None: the gateway's)."""
    await store.add_session(ConsoleSession("s1", T0, "203.0.113.1", "Firefox", tenant="loja"), forget_before=T0 - 1)
    await store.add_session(ConsoleSession("s2", T0, "203.0.113.2", "Chrome"), forget_before=T0 - 1)
    assert (await store.get_session("s1")).tenant == "loja"  # type: ignore[union-attr]
    assert {s.id: s.tenant for s in await store.active_sessions(since=T0 - 1)} == {"s1": "loja", "s2": None}


def incident(key: str, at: float = T0, number: int = 1) -> Incident:
    return Incident(f"i{number}", key, "failing", key.split(":")[-1], "HTTP 503", at)


async def test_one_incident_per_key_is_open_and_each_notice_is_claimed_once(store_factory: Callable[[], Store]) -> None:
    """Two stores on one database (two replicas): an incident opens once, each of its notices is
    claimed by one of them, a failed notice comes back after its retry time, a resolved one
    gets its own notice, and the key can open again after."""
    first, second = store_factory(), store_factory()
    await first.open()
    await second.open()
    try:
        assert await first.open_incident(incident("failing:crm"))
        assert not await second.open_incident(incident("failing:crm", number=2))  # open already
        claimed = [await store.claim_notices(T0, 30, 5) for store in (first, second)]
        assert [[i.id for i in c] for c in claimed] == [["i1"], []] and claimed[0][0].notice_due == "opened"
        await first.notice_sent("i1", "opened", T0 + 1, error="HTTP 500", retry_at=T0 + 60)
        assert await second.claim_notices(T0 + 31, 30, 5) == []  # the claim expired, the retry time not yet
        retried = await second.claim_notices(T0 + 61, 30, 5)
        assert [(i.id, i.notice_attempts, i.notice_error) for i in retried] == [("i1", 1, "HTTP 500")]
        await second.notice_sent("i1", "opened", T0 + 62)
        assert await first.claim_notices(T0 + 200, 30, 5) == []  # told
        assert await second.resolve_incident("failing:crm", T0 + 300) and not await first.resolve_incident("failing:crm", T0 + 301)
        resolved = await first.claim_notices(T0 + 302, 30, 5)
        assert [(i.notice_due, i.open_notified_at, i.resolved_at) for i in resolved] == [("resolved", T0 + 62, T0 + 300)]
        await first.notice_sent("i1", "resolved", T0 + 303)
        assert await second.open_incident(incident("failing:crm", T0 + 400, number=3))  # a new incident for the same key
        assert [i.id for i in await first.incidents()] == ["i3", "i1"]
        assert (await first.incidents())[1].resolved_notified_at == T0 + 303
    finally:
        await first.close()
        await second.close()


async def test_a_notice_that_keeps_failing_stops_after_its_attempts(store: Store) -> None:
    """After max_attempts failures a notice is no longer claimed (the console shows its error)."""
    await store.open_incident(incident("dead_over"))
    for n in range(3):
        assert [i.id for i in await store.claim_notices(T0 + n, 0.5, 3)] == ["i1"]
        await store.notice_sent("i1", "opened", T0 + n, error="recusado", retry_at=T0 + n + 0.5)
    assert await store.claim_notices(T0 + 10, 1, 3) == []
    assert (await store.incidents())[0].notice_error == "recusado"


async def test_the_oldest_pending_delivery(store: Store) -> None:
    """When the oldest delivery still pending was created; None with none pending."""
    assert await store.oldest_pending_at() is None
    await store.add_event(event(1, at=T0 + 5))
    await store.add_event(event(2, at=T0 + 9))
    assert await store.oldest_pending_at() == T0 + 5
    await store.record_attempt(attempt("d1-0", "delivered", at=T0 + 10), T0 + 10)
    assert await store.oldest_pending_at() == T0 + 9
