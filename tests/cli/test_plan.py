"""`gateway plan`: exactly the events and bodies a change affects, on a stored history."""

from __future__ import annotations

import asyncio
import json
import time

from gateway.store import open_store
from gateway.store.base import NewEvent
from tests.conftest import EVENTS, Project

RUNNING = """
version: 1
sources: {go: {token: abcdefgh}}
destinations: {erp: {type: http, url: "https://erp.example.com/in"}}
routes:
  - name: status-um
    when: {event_id: ORDER_CREATED, data.status: 1}
    send: {to: erp, body: '{"status": {{ data.status }}}'}
  - name: todos
    when: {event_id: ORDER_CREATED}
    send: {to: erp, template: pedido.json.j2}
  - name: cancelados
    when: {event_id: ORDER_CANCEL}
    send: {to: erp, body: '{"cancelado": "{{ data.id }}"}'}
"""


def seed(project: Project, count: int = 120) -> str:
    database = project.root / "data" / "gateway.db"
    template = json.loads((EVENTS / "order_created.json").read_text())

    async def run() -> None:
        store = open_store(f"sqlite:///{database}")
        await store.open()
        for number in range(count):
            body = {**template, "data": {**template["data"], "id": str(number), "status": number % 3 + 1}}
            await store.add_event(NewEvent(f"e{number:03d}", "go", "ORDER_CREATED", json.dumps(body), time.time() - count + number, "v0"))
        await store.close()

    asyncio.run(run())
    return f"sqlite:///{database}"


def setup(project: Project) -> dict[str, str]:
    project.write("templates/pedido.json.j2", '{"pedido": "{{ data.code }}"}')
    project.write("novo/templates/pedido.json.j2", '{"pedido": "{{ data.code }}", "cliente": "{{ data.user.name }}"}')
    project.routes(RUNNING)
    new = RUNNING.replace("data.status: 1}", "data.status: {in: [1, 2]}}")
    project.write("novo/routes.yaml", "settings: {templates: templates}\n" + new)
    return {"GATEWAY_DATABASE_URL": seed(project)}


def test_plan_reports_exactly_the_affected_events_and_bodies(project: Project) -> None:
    """One condition widened (+40 events) and one template changed (120 bodies): exit 2."""
    env = setup(project)
    result = project.gateway("plan", "novo/routes.yaml", "--last", "500", "--json", env=env)
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert report["events"] == 120
    assert report["starts"] == {"status-um": [f"e{n:03d}" for n in range(120) if n % 3 + 1 == 2]}
    assert report["stops"] == {}
    changes = report["body_changes"]
    assert list(changes) == ["todos/erp"] and len(changes["todos/erp"]) == 120
    assert '+  "cliente": "teste",' in changes["todos/erp"][0]["diff"]


def test_plan_text_summary_and_last_n(project: Project) -> None:
    env = setup(project)
    result = project.gateway("plan", "novo/routes.yaml", env=env)
    assert result.returncode == 2
    assert "Plan: 100 events" in result.stdout
    assert "+ status-um starts firing for 33 events" in result.stdout
    assert "~ todos/erp: the body changes for 100 events" in result.stdout
    assert result.stdout.index("starts firing for 33") < result.stdout.index("todos/erp, event")  # summary first


def test_plan_without_changes_exits_0_and_invalid_config_exits_1(project: Project) -> None:
    env = setup(project)
    same = project.gateway("plan", "routes.yaml", env=env)
    assert same.returncode == 0 and "No changes" in same.stdout
    project.write("quebrado.yaml", RUNNING.replace("to: erp, template", "to: epr, template"))
    broken = project.gateway("plan", "quebrado.yaml", env=env)
    assert broken.returncode == 1
    assert "quebrado.yaml:10:16: route 'todos' sends to unknown destination 'epr' (did you mean 'erp'?)" in broken.stderr


def test_plan_with_event_files(project: Project) -> None:
    setup(project)
    result = project.gateway("plan", "novo/routes.yaml", "--event", "examples/events/order_created.json", "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 2 and report["events"] == 1 and list(report["body_changes"]) == ["todos/erp"]
