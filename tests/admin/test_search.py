"""The events list's text search reads one window of events per page (issue #26): a page costs
the same whatever the number of stored events, and `next` carries the search further back until
it has read them all. On a real SQLite file, through the admin API's own function."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.admin import api
from gateway.admin.tokens import AdminTokens
from gateway.config import load_config
from gateway.service.topology import Runtime
from gateway.store import EventQuery, open_store
from gateway.store.base import NewEvent

pytestmark = pytest.mark.anyio
T0 = 1_700_000_000.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_text_search_pages_through_windows_until_every_event_was_read(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text("version: 1\nsources: {go: {}}\nroutes: []\n")
    store = open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
    await store.open()
    try:
        for n in range(10):  # "Ana" in the oldest and in the third newest
            body = f'{{"event_id": "ORDER_CREATED", "data": {{"code": "{n}", "customer": "{"Ana" if n in (0, 7) else "Bia"}"}}}}'
            await store.add_event(NewEvent(f"e{n}", "go", "ORDER_CREATED", body, T0 + n, "v1", code=str(n)))
        runtime = Runtime(config=load_config(tmp_path / "routes.yaml"), store=store)
        pages, before = [], None
        for _ in range(10):
            page = await api.list_events(runtime, EventQuery(limit=50, text="Ana", before=before), window=3)
            pages.append(([e.id for e in page.events], page.next, page.searched_to))
            before = page.next
            if before is None:
                break
        everything = await api.list_events(runtime, EventQuery(limit=50, text="Ana"), window=100)
    finally:
        await store.close()
    assert pages == [
        (["e7"], "e7", T0 + 7),  # read e9, e8, e7
        ([], "e4", T0 + 4),  # read e6, e5, e4: nothing, and the page says how far it read
        ([], "e1", T0 + 1),
        (["e0"], None, None),  # fewer than 3 left: the end
    ]
    assert [e.id for e in everything.events] == ["e7", "e0"] and everything.next is None and everything.searched_to is None


def test_the_console_says_how_far_back_a_text_search_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The events page tells that older events were not searched yet, and links to them."""
    from litestar.testing import TestClient

    from gateway.service.app import create_app
    from gateway.service.topology import Topology

    monkeypatch.setattr(api, "TEXT_SEARCH_WINDOW", 3)
    token = "token-admin-de-teste-0123456789"
    (tmp_path / "routes.yaml").write_text("version: 1\nsources: {go: {token: t0ken-de-teste, dedupe: false}}\nroutes: []\n")
    runtime = Runtime(config=load_config(tmp_path / "routes.yaml"), store=open_store(f"sqlite:///{tmp_path / 'gateway.db'}"), topology=Topology.IN_PROCESS_NO_DELIVER, admin_tokens=AdminTokens(token))
    with TestClient(create_app(runtime)) as client:
        for n in range(6):
            event = {"event_id": "ORDER_CREATED", "data": {"id": n, "code": str(n), "customer": "Ana" if n == 0 else "Bia"}}
            assert client.post("/hooks/go?token=t0ken-de-teste", json=event).status_code == 202
        assert client.post("/console/login", data={"token": token}, follow_redirects=False).status_code == 303
        first = client.get("/console/events", params={"q": "Ana"}).text
        assert 'id="searched-to"' in first and "há eventos mais antigos" in first and "Buscar nos mais antigos" in first
        assert first.count("data-event-id=") == 0
        older = first.split('class="button" href="', 1)[1].split('"', 1)[0].replace("&amp;", "&")
        second = client.get(older).text
    assert second.count("data-event-id=") == 1 and 'id="searched-to"' not in second and "Mais antigos" not in second
