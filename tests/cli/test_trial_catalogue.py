"""The mistakes a new user made in a trial with only the README (issue 16), each as `gateway`
answers it now: an error at the right file:line with the fix, an exit code that means
something, the database `serve` uses. (The trial mistakes not yet answered are listed in the
session notes, not here.)"""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.conftest import Project

BASE = """\
version: 1
settings: {{egress_allow: [127.0.0.0/8]}}
sources: {{go: {{token: t0ken-de-teste}}}}
destinations:
  erp:
{destination}
routes:
  - name: pedido
    when: {{event_id: ORDER_CREATED}}
    send: {{to: erp, body: '{body}'}}
"""
HTTP = "    type: http\n    url: http://127.0.0.1:9/erp"


def routes(destination: str = HTTP, body: str = '{"id": "{{ data.id }}"}') -> str:
    return BASE.format(destination=destination, body=body)


@pytest.mark.parametrize(
    ("destination", "location", "words"),
    [
        ("    type: http\n    url: hooks.example.com/erp", "routes.yaml:7:10", "the address in 'url' cannot be used: it must start with http:// or https://"),
        ('    type: slack\n    url: "${SLACK_WEBHOOK_URL"', "routes.yaml:7:10", "the variable SLACK_WEBHOOK_URL is not closed: write ${SLACK_WEBHOOK_URL}"),
        ("    type: http\n    url: http://10.0.0.7/erp", "routes.yaml:7:10", "10.0.0.7 is a private address (in 10.0.0.0/8), not reachable on the internet; allow its range in settings.egress_allow"),
    ],
)
def test_check_names_the_key_the_variable_and_the_fix(project: Project, destination: str, location: str, words: str) -> None:
    project.routes(routes(destination))
    result = project.gateway("check")
    assert result.returncode == 1
    assert f"{location}: destination 'erp'" in result.stdout or f"{location}: {words}" in result.stdout, result.stdout
    assert words in result.stdout


def test_a_location_past_line_99_prints_as_a_location_not_an_emoji(project: Project) -> None:
    """rich turned ':100:' into 💯 (routes.yaml💯1) in check, dry-run and events show."""
    filler = "".join(f"  - name: r{n}\n    when: {{event_id: ORDER_CANCEL}}\n    send: {{to: erp, body: '{{}}'}}\n" for n in range(31))
    text = routes() + filler + "  - name: broken\n    when: {event_id: ORDER_CREATED, data.status: {gt: muitos}}\n    send: {to: erp, body: '{}'}\n"
    project.routes(text)
    line = text.splitlines().index("    when: {event_id: ORDER_CREATED, data.status: {gt: muitos}}") + 1
    assert line >= 100
    result = project.gateway("check")
    assert "💯" not in result.stdout + result.stderr
    assert f"routes.yaml:{line}:" in result.stdout + result.stderr


def test_dry_run_exits_1_when_a_matched_route_fails_to_render(project: Project) -> None:
    project.routes(routes(body='{"x": "{{ data.nada }}"}'))
    result = project.gateway("dry-run", "examples/events/order_created.json")
    assert result.returncode == 1, result.stdout
    assert "template failed" in result.stdout


def test_dry_run_exits_1_when_an_address_from_a_variable_would_be_refused(project: Project) -> None:
    project.routes(routes('    type: http\n    url: "${ERP_URL}"').replace("settings: {egress_allow: [127.0.0.0/8]}\n", ""))
    result = project.gateway("dry-run", "examples/events/order_created.json", env={"ERP_URL": "http://192.168.0.10/erp"})
    assert result.returncode == 1
    assert "would be dead at once, the address cannot be used: 192.168.0.10 is a private address" in result.stdout
    shown = json.loads(project.gateway("dry-run", "--json", "examples/events/order_created.json", env={"ERP_URL": "http://192.168.0.10/erp"}).stdout)
    assert "192.168.0.10 is a private address" in shown["routes"][0]["deliveries"][0]["address_refused"]


def test_a_failing_dry_run_does_not_say_nothing_was_changed(project: Project) -> None:
    project.routes(routes().replace("to: erp", "to: erpp"))
    result = project.gateway("dry-run", "examples/events/order_created.json")
    assert result.returncode == 1
    assert "nothing was changed" not in result.stderr and "1 error: " in result.stderr and "was not loaded" in result.stderr


@pytest.mark.parametrize("verb", [["events"], ["events", "show", "x"], ["replay"], ["purge"], ["plan", "routes.yaml"]])
def test_admin_verbs_never_create_a_missing_database_and_name_its_path(project: Project, verb: list[str]) -> None:
    """They used to create ./data/gateway.db and answer as if all were well ("No changes")."""
    project.routes(routes())
    result = project.gateway(*verb)
    assert result.returncode == 1
    expected = project.root / "data" / "gateway.db"
    assert f"there is no database at {expected}" in result.stderr, result.stderr
    assert not expected.exists() and not (project.root / "data").exists()


def test_every_verb_uses_the_database_settings_database_names(project: Project) -> None:
    """settings.database in routes.yaml (relative to the file), below --db and GATEWAY_DATABASE_URL."""
    project.routes(routes().replace("settings: {egress_allow: [127.0.0.0/8]}", "settings: {egress_allow: [127.0.0.0/8], database: 'sqlite:///banco/go.db'}"))
    database = project.root / "banco" / "go.db"
    database.parent.mkdir()
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE marker (x)")  # the migrations run on open; events then lists nothing
    elsewhere = project.root / "sub"
    elsewhere.mkdir()
    listed = project.gateway("events", "--config", str(project.root / "routes.yaml"))
    assert listed.returncode == 0, listed.stderr
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] >= 1  # it opened that file
    other = project.root / "other.db"
    refused = project.gateway("events", env={"GATEWAY_DATABASE_URL": f"sqlite:///{other}"})
    assert refused.returncode == 1 and f"there is no database at {other}" in refused.stderr  # the environment comes first


def test_events_show_takes_db_after_its_id(project: Project) -> None:
    project.routes(routes())
    result = project.gateway("events", "show", "nada", "--db", f"sqlite:///{project.root / 'x.db'}")
    assert result.returncode == 1 and "there is no database at" in result.stderr and "No such option" not in result.stderr


def test_check_says_errors_and_warnings_with_the_right_plural(project: Project) -> None:
    project.routes(routes())
    result = project.gateway("check")
    assert result.returncode == 0, result.stdout
    assert "1 route, 1 destination, 1 source" in result.stdout and "0 errors" in result.stdout
    assert "(s)" not in result.stdout


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        ("when: {event_id: ORDER_CREATED}", "when: {event_id: ORDER_CREATED, data.status: {gt: muitos}}", "routes.yaml:10:55: 'gt' takes a number (or a date written like 2024-01-31), not \"muitos\""),
        ("when: {event_id: ORDER_CREATED}", "when: {event_id: ORDER_CREATED, data.status: {in: [2 3]}}", "'in' takes a non-empty list with commas between the values, like [2, 3], not [\"2 3\"]"),
        ("    url: http://127.0.0.1:9/erp", "    url: http://127.0.0.1:9/erp\n    retry: {attempts: -1}", "routes.yaml:8:23: 'attempts' must be at least 1, not -1"),
        ("    url: http://127.0.0.1:9/erp", "    url: http://127.0.0.1:9/erp\n    concurrency: 0", "routes.yaml:8:18: 'concurrency' must be at least 1, not 0"),
    ],
)
def test_values_of_the_wrong_kind_or_out_of_range_are_errors(project: Project, old: str, new: str, words: str) -> None:
    """They passed `check` with exit 0 (a comparison with text, a negative number of attempts)."""
    project.routes(routes().replace(old, new))
    result = project.gateway("check")
    assert result.returncode == 1
    assert words in result.stdout, result.stdout


def test_the_hint_quotes_the_users_own_value(project: Project) -> None:
    """`data.status: "2"` was told to "write 1 without quotes" (the sample's value)."""
    project.routes(routes().replace("when: {event_id: ORDER_CREATED}", 'when: {event_id: ORDER_CREATED, data.status: "2"}'))
    result = project.gateway("check")
    assert "GO sends a number here: write 2 without quotes" in result.stdout and "write 1 without" not in result.stdout


def test_a_name_no_template_can_see_is_an_error_at_its_line_and_column_and_reload_refuses_it(project: Project) -> None:
    """`{{ dados.code }}` was a warning (or nothing), `0 error(s)`, and a hot reload took it."""
    from gateway.config import load_config
    from gateway.errors import ConfigError

    project.routes(routes(body='{"c": "{{ dados.code }}"}'))
    result = project.gateway("check")
    assert result.returncode == 1
    assert "routes.yaml:11:38: templates see data, event, event_id, received_at, route, source; there is no 'dados'" in result.stdout, result.stdout
    with pytest.raises(ConfigError, match="there is no 'dados'"):  # the loader the reload uses refuses it too
        load_config(project.root / "routes.yaml")


def test_a_route_no_sample_matches_is_rendered_on_an_event_built_for_it(project: Project) -> None:
    """A route for cancelled orders with status 2 was never rendered (the sample has status 1)."""
    project.routes(routes(body='{"c": "{{ data.usr.name }}"}').replace("when: {event_id: ORDER_CREATED}", "when: {event_id: ORDER_CANCEL, data.status: 2}"))
    result = project.gateway("check")
    assert result.returncode == 1
    assert "the field 'usr' is not in this object (did you mean 'user'?)" in result.stdout
    assert "rendering for examples/events/order_cancel.json with data.status: 2" in result.stdout


def test_an_unknown_filter_says_which_one_was_meant(project: Project) -> None:
    project.routes(routes(body='{"c": "{{ data.code | brll }}"}'))
    result = project.gateway("check")
    assert result.returncode == 1 and "there is no filter 'brll' (did you mean 'brl'?)" in result.stdout


def test_a_json_error_from_an_unquoted_code_says_so(project: Project) -> None:
    """It said "Expecting ',' delimiter at column 13"; the cause was {{ data.code }} unquoted."""
    project.routes(routes(body='{"pedido": {{ data.code }}, "x": 1}'))
    result = project.gateway("check")
    assert result.returncode == 1
    assert "0000593098 has leading zeros, which a JSON number cannot: it is a code, so put the value in double quotes" in result.stdout


def test_a_template_syntax_error_points_at_its_column(project: Project) -> None:
    """They always said column 1."""
    project.routes(routes(body='{"c": "{{ data.code: }}"}'))
    result = project.gateway("check")
    assert result.returncode == 1
    assert "routes.yaml:11:47: template syntax error: expected token 'end of print statement', got ':'" in result.stdout, result.stdout
    project.write("templates/x.json.j2", '{\n  "c": "{{ data.code | }}"\n}\n')
    project.routes(routes().replace("send: {to: erp, body: '{\"id\": \"{{ data.id }}\"}'}", "send: {to: erp, template: x.json.j2}"))
    result = project.gateway("check")
    assert "templates/x.json.j2:2:24: template syntax error: expected token 'name', got 'end of print statement'" in result.stdout, result.stdout
