"""What a delivery's steps created at the receiver, on every backend: another process (a replica
retrying the delivery) reads it, and it goes when the event is purged."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from gateway.store import Store
from gateway.store.base import DELIVERED, PENDING, NewDelivery, NewEvent

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0


async def test_what_a_step_created_is_read_by_another_process_and_purged_with_its_event(store_factory: Callable[[], Store]) -> None:
    one, other = store_factory(), store_factory()
    await one.open()
    await other.open()
    try:
        await one.add_event(NewEvent("e1", "go", "ORDER_CREATED", "{}", T0, "v1", (NewDelivery("d1", "r", "crm", "{}", PENDING),)))
        await one.add_event(NewEvent("e2", "go", "ORDER_CREATED", "{}", T0, "v1", (NewDelivery("d2", "r", "crm", "{}", DELIVERED),)))
        assert await other.records_created("d1") == {}
        await one.record_created("d1", "person", "71", T0 + 1)
        await one.record_created("d1", "deal", "900", T0 + 2)
        await one.record_created("d2", "person", "72", T0 + 1)
        assert await other.records_created("d1") == {"person": "71", "deal": "900"}
        await other.record_created("d1", "deal", "901", T0 + 3)  # a later attempt's answer wins
        assert await one.records_created("d1") == {"person": "71", "deal": "901"}
        assert await one.purge(older_than=T0 + 10) == 1  # e2 only: e1 is still pending
        assert await other.records_created("d2") == {} and await other.records_created("d1") == {"person": "71", "deal": "901"}
    finally:
        await one.close()
        await other.close()
