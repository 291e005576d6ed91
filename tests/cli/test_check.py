"""`gateway check`: the shipped config passes; each broken config names file:line:column and the fix."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, Project, run_gateway

BASE = """\
version: 1
sources:
  go:
    token: ${GO_WEBHOOK_TOKEN:-segredo}
destinations:
  slack-vendas:
    type: slack
    url: https://hooks.slack.com/services/T0/B0/x
routes:
  - name: pedido-criado
    when:
      event_id: ORDER_CREATED
    send:
      to: slack-vendas
      template: slack/order_created.json.j2
"""

SECOND_ROUTE = """\
  - name: pedido-criado
    when: {event_id: ORDER_CANCEL}
    send: {to: slack-vendas, template: slack/order_cancel.json.j2}
"""

BILLION_LAUGHS = """\
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
"""


def edit(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


# (case id, routes.yaml text, expected start of the message line)
BROKEN = [
    ("unknown destination", edit("to: slack-vendas", "to: slak-vendas"),
     "routes.yaml:14:11: route 'pedido-criado' sends to unknown destination 'slak-vendas' (did you mean 'slack-vendas'?)"),
    ("unknown top-level key", edit("routes:", "route:"),
     "routes.yaml:9:1: unknown top-level key 'route' (did you mean 'routes'?)"),
    ("unknown destination key", edit("    url: https", "    ulr: https"),
     "routes.yaml:8:5: unknown key 'ulr' in destination 'slack-vendas' (did you mean 'url'?)"),
    ("unknown matcher", edit("event_id: ORDER_CREATED", "event_id: {equal: ORDER_CREATED}"),
     "routes.yaml:12:18: unknown matcher 'equal' (did you mean 'equals'?)"),
    ("bad regex", edit("      event_id: ORDER_CREATED\n", "      event_id: ORDER_CREATED\n      data.user.email: {matches: '([a-z'}\n"),
     "routes.yaml:13:34: the regular expression \"([a-z\" is invalid: unterminated character set at position 1"),
    ("duration with a space", edit("segredo}\n", "segredo}\n    dedupe: 5 m\n"),
     "routes.yaml:5:13: dedupe: '5 m' has spaces; write '5m'"),
    ("duration without unit", edit("segredo}\n", "segredo}\n    dedupe: 600\n"),
     "routes.yaml:5:13: dedupe: write the unit: '600s' for seconds, '600m' for minutes"),
    ("missing template file", edit("slack/order_created.json.j2", "slack/order_creatd.json.j2"),
     "routes.yaml:15:17: template file not found: templates/slack/order_creatd.json.j2 (did you mean 'slack/order_created.json.j2'?)"),
    ("duplicate route name", BASE + SECOND_ROUTE,
     "routes.yaml:16:11: two routes are named 'pedido-criado' (the first at line 10); names must be unique"),
    ("tab indentation", edit("    type: slack", "\ttype: slack"),
     "routes.yaml:7:1: YAML syntax error: found character '\\t' that cannot start any token (YAML indents with spaces, not tabs)"),
    ("unknown destination type", edit("type: slack", "type: slak"),
     "routes.yaml:7:11: destination 'slack-vendas' has unknown type 'slak' (did you mean 'slack'?)"),
    ("empty when", edit("    when:\n      event_id: ORDER_CREATED\n", "    when: {}\n"),
     "routes.yaml:11:11: 'when' must list at least one condition"),
    ("path outside the event", edit("      event_id: ORDER_CREATED\n", "      event_id: ORDER_CREATED\n      dados.status: 1\n"),
     "routes.yaml:13:7: 'dados.status' is not a field of a GO event (did you mean 'data'?)"),
    ("template context prefix in a path", edit("      event_id: ORDER_CREATED\n", "      event_id: ORDER_CREATED\n      event.data.status: 1\n"),
     "routes.yaml:13:7: 'event.data.status' is not a field of a GO event (write 'data.status': paths start inside the event)"),
    ("unsupported version", edit("version: 1", "version: 2"),
     "routes.yaml:1:10: version 2 is not supported; this gateway reads 'version: 1'"),
    ("duplicate key", edit("services/T0/B0/x\n", "services/T0/B0/x\n    url: https://example.com\n"),
     "routes.yaml:9:5: the key 'url' appears twice in this mapping (first at line 8); keep one"),
    ("python object tag", edit("url: https://hooks.slack.com/services/T0/B0/x", "url: !!python/object/apply:os.system ['true']"),
     "routes.yaml:8:10: the tag tag:yaml.org,2002:python/object/apply:os.system is not allowed in this file"),
    ("alias bomb", BILLION_LAUGHS + BASE,
     "routes.yaml:1:44: the file expands to more than 100000 values; are anchors (&) and aliases (*) nested?"),
    ("bad rate", edit("services/T0/B0/x\n", "services/T0/B0/x\n    rate: fast\n"),
     "routes.yaml:9:11: 'fast' is not a rate; write requests/period, like '1/s', '100/10s' or '30/min'"),
    ("template and body together", edit("      template: slack/order_created.json.j2\n", "      template: slack/order_created.json.j2\n      body: '{}'\n"),
     "routes.yaml:14:7: route 'pedido-criado': each send needs exactly one of 'template:'"),
    ("'in' without a list", edit("event_id: ORDER_CREATED", "event_id: {in: ORDER_CREATED}"),
     "routes.yaml:12:22: 'in' takes a non-empty list with commas between the values, like [2, 3], not \"ORDER_CREATED\""),
    ("route without send", edit("    send:\n      to: slack-vendas\n      template: slack/order_created.json.j2\n", ""),
     "routes.yaml:10:5: route 'pedido-criado' is missing the required key 'send'"),
    ("unknown source", edit("    when:\n", "    source: gp\n    when:\n"),
     "routes.yaml:11:13: route 'pedido-criado' takes events from unknown source 'gp' (did you mean 'go'?)"),
    ("bad IP range", edit("segredo}\n", "segredo}\n    allow_ips: [203.0.113.0/33]\n"),
     "routes.yaml:5:17: '203.0.113.0/33' is not an IP address or range"),
    ("malformed variable", edit("url: https://hooks.slack.com/services/T0/B0/x", "url: ${SLACK WEBHOOK}"),
     "routes.yaml:8:10: '${SLACK WEBHOOK}' is not a variable name: use only letters, digits and _, like ${SLACK_WEBHOOK}"),
    ("invalid http method", edit("    url: https://hooks.slack.com/services/T0/B0/x\n", "    url: https://hooks.slack.com/services/T0/B0/x\n  espelho:\n    type: http\n    url: https://example.com/erp\n    method: PSOT\n"),
     "routes.yaml:12:13: 'PSOT' is not allowed for 'method' (did you mean 'POST'?)"),
    ("wrong value type", edit("type: slack\n", "type: slack\n    concurrency: muitas\n"),
     "routes.yaml:8:18: 'concurrency' must be a whole number, not text"),
    ("inline template syntax error", edit("      template: slack/order_created.json.j2\n", "      body: '{\"text\": \"{{ data.code }\"}'\n"),
     "routes.yaml:15:37: template syntax error: unexpected '}'"),
]


@pytest.mark.parametrize(("routes", "expected"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN])
def test_broken_config_exits_1_naming_file_line_column(project: Project, routes: str, expected: str) -> None:
    """Each broken config fails check with exit 1 and a file:line:column message with the fix."""
    project.routes(routes)
    result = project.gateway("check")
    assert result.returncode == 1, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert any(line.startswith(expected) for line in lines), "\n".join(lines)
    assert "Traceback" not in result.stderr


def test_template_file_syntax_error_names_the_template_line(project: Project) -> None:
    """A syntax error inside a template file points at that file and line."""
    project.write("templates/slack/quebrado.json.j2", '{\n  "text": "{{ data.code }"\n}\n')
    project.routes(BASE.replace("slack/order_created.json.j2", "slack/quebrado.json.j2"))
    result = project.gateway("check")
    assert result.returncode == 1
    assert "templates/slack/quebrado.json.j2:2:25: template syntax error: unexpected '}'" in result.stdout


def test_template_that_renders_invalid_json_is_an_error(project: Project) -> None:
    """A JSON destination's template that renders invalid JSON fails check, naming the template."""
    project.write("templates/slack/nulo.json.j2", '{\n  "text": {{ data.user.phone }}\n}\n')
    project.routes(BASE.replace("slack/order_created.json.j2", "slack/nulo.json.j2"))
    result = project.gateway("check")
    assert result.returncode == 1
    assert "templates/slack/nulo.json.j2:3:1: the rendered body is not valid JSON: Expecting value" in result.stdout
    assert "use '| tojson'" in result.stdout


def test_undefined_field_in_template_suggests_the_right_one(project: Project) -> None:
    """A template reading a field the event lacks names it and suggests the closest one."""
    project.write("templates/slack/nome.json.j2", '{\n  "text": "{{ data.user.nome }}"\n}\n')
    project.routes(BASE.replace("slack/order_created.json.j2", "slack/nome.json.j2"))
    result = project.gateway("check")
    assert result.returncode == 1
    assert "templates/slack/nome.json.j2:2:25: the field 'nome' is not in this object (did you mean 'name'?)" in result.stdout


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('  "text": "{{ data.user.nome }}"', ":2:25: the field 'nome' is not in this object"),
        ('  "text": "{{ data["user"]["nome"] }}"', ":2:29: the field 'nome' is not in this object"),
        ('  "text": "{{ data.code }} {{ data.user.email | brl }}"', ":2:49: brl needs an amount"),
        ('  "text": "{{ 1 // 0 }}"', ":2:15: integer division or modulo by zero"),
    ],
)
def test_a_render_failure_points_at_its_column(project: Project, line: str, expected: str) -> None:
    """Jinja says only the line of a failure; check points at the field or filter that failed."""
    project.write("templates/slack/falha.json.j2", "{\n" + line + "\n}\n")
    project.routes(BASE.replace("slack/order_created.json.j2", "slack/falha.json.j2"))
    result = project.gateway("check")
    assert result.returncode == 1
    assert "templates/slack/falha.json.j2" + expected in result.stdout, result.stdout


def test_all_problems_are_reported_in_one_run(project: Project) -> None:
    """Several independent mistakes are all listed, not one per run."""
    text = BASE.replace("to: slack-vendas", "to: slak").replace("event_id: ORDER_CREATED", "event_id: {equal: X}")
    project.routes(text)
    result = project.gateway("check")
    assert result.returncode == 1
    assert "routes.yaml:12:18: unknown matcher 'equal'" in result.stdout
    assert "routes.yaml:14:11: route 'pedido-criado' sends to unknown destination 'slak'" in result.stdout


def test_type_mismatch_and_unknown_field_are_warnings(project: Project) -> None:
    """check warns when a rule compares text with GO's number, or names a field samples lack."""
    project.routes(BASE.replace("      event_id: ORDER_CREATED\n", '      event_id: ORDER_CREATED\n      data.status: "1"\n      data.user.mail: {exists: true}\n'))
    result = project.gateway("check")
    assert result.returncode == 0, result.stdout
    assert "routes.yaml:13:7: warning: 'data.status' is compared with \"1\" (text) but examples/events/order_created.json has 1; GO sends a number here: write 1 without quotes" in result.stdout
    assert "routes.yaml:14:7: warning: 'data.user.mail' is not in the sample events for this route (did you mean 'data.user.email'?)" in result.stdout


def test_unset_variable_makes_destination_inactive_not_invalid(project: Project) -> None:
    """A destination whose ${VAR} is unset is a warning; the config still passes."""
    project.routes(BASE.replace("url: https://hooks.slack.com/services/T0/B0/x", "url: ${SLACK_WEBHOOK_URL}"))
    result = project.gateway("check")
    assert result.returncode == 0
    assert "routes.yaml:8:10: warning: destination 'slack-vendas' is inactive (SLACK_WEBHOOK_URL not set)" in result.stdout
    with_env = project.gateway("check", env={"SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T1/B1/y"})
    assert with_env.returncode == 0
    assert "inactive" not in with_env.stdout


def test_unknown_event_id_is_warned_with_suggestion(project: Project) -> None:
    """An event_id GO never sends is flagged, with the closest real one."""
    project.routes(BASE.replace("event_id: ORDER_CREATED", "event_id: ORDER_CREATE"))
    result = project.gateway("check")
    assert "routes.yaml:12:17: warning: GO sends no event 'ORDER_CREATE' (did you mean 'ORDER_CREATED'?)" in result.stdout


def test_shipped_config_passes_check() -> None:
    """The shipped routes.yaml and every example config are valid out of the box."""
    result = run_gateway("check", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 errors" in result.stdout
    assert "12 renders against 6 sample events" in result.stdout


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples" / "routes").glob("*.yaml")))
def test_example_configs_pass_check(example: str) -> None:
    """Every config under examples/routes/ passes check."""
    result = run_gateway("check", "--config", f"examples/routes/{example}", cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


def test_missing_config_file_is_a_clear_error(project: Project) -> None:
    """Pointing at a file that does not exist says so, without a traceback."""
    result = project.gateway("check", "--config", "nao-existe.yaml")
    assert result.returncode == 1
    assert "nao-existe.yaml:1:1: cannot read the file" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_check_json_output_lists_problems(project: Project) -> None:
    """`check --json` gives the same problems as data."""
    import json

    project.routes(edit("to: slack-vendas", "to: slak-vendas"))
    result = project.gateway("check", "--json")
    assert result.returncode == 1
    problems = json.loads(result.stdout)
    assert problems[0]["location"] == "routes.yaml:14:11"
    assert problems[0]["severity"] == "error"


def test_slack_message_over_the_limits_fails_check(project: Project) -> None:
    """A Slack template producing more than 50 blocks fails check, naming the template."""
    project.write("templates/slack/longa.json.j2", '{"text": "x", "blocks": [{% for i in range(51) %}{"type": "divider"}{% if not loop.last %},{% endif %}{% endfor %}]}')
    project.routes(BASE.replace("slack/order_created.json.j2", "slack/longa.json.j2"))
    result = project.gateway("check")
    assert result.returncode == 1
    assert "templates/slack/longa.json.j2:1:1: Slack allows at most 50 blocks in a message; this one has 51" in result.stdout


def many_routes(body: str, count: int) -> str:
    """BASE's source and Slack destination with `count` routes sending `body` (one line each)."""
    head = BASE.split("routes:")[0].replace("type: slack\n    url: https://hooks.slack.com/services/T0/B0/x", "type: http\n    url: https://example.com/x")
    routes = "".join(f"  - name: rota-{n}\n    when: {{event_id: ORDER_CREATED}}\n    send: {{to: slack-vendas, body: '{body}'}}\n" for n in range(count))
    return head + "routes:\n" + routes


def test_an_unknown_name_is_reported_at_every_place_it_is_read(project: Project) -> None:
    """80 routes reading `users` twice each, and a shared template reading it on two lines:
    every file:line:column is reported in one run, the shared template once (not once a route)."""
    text = many_routes('{"a": "{{ users.name }}", "b": "{{ users.id }}"}', 80)
    text += "  - name: compartilhada-1\n    when: {event_id: ORDER_CREATED}\n    send: {to: slack-vendas, template: users.json.j2}\n"
    text += "  - name: compartilhada-2\n    when: {event_id: ORDER_CANCEL}\n    send: {to: slack-vendas, template: users.json.j2}\n"
    project.write("templates/users.json.j2", '{"a": "{{ users.a }}",\n "b": "{{ users.b }}"}\n')
    project.routes(text)
    result = project.gateway("check")
    assert result.returncode == 1
    lines = [line for line in result.stdout.splitlines() if "there is no 'users'" in line]
    routes_yaml = sorted({line.split(": ", 1)[0] for line in lines if line.startswith("routes.yaml:")})
    body_line = text.splitlines().index("    send: {to: slack-vendas, body: '{\"a\": \"{{ users.name }}\", \"b\": \"{{ users.id }}\"}'}") + 1
    first, second = (text.splitlines()[body_line - 1].index(f"users.{f}") + 1 for f in ("name", "id"))
    expected = sorted(f"routes.yaml:{body_line + 3 * n}:{column}" for n in range(80) for column in (first, second))
    assert routes_yaml == expected  # 160 places, each once
    assert [line.split(": ", 1)[0] for line in lines if line.startswith("templates/")] == ["templates/users.json.j2:1:11", "templates/users.json.j2:2:11"]
    assert f"{len(lines)} errors" in result.stdout and len(lines) == 162


def test_a_missing_field_is_reported_at_every_place_a_render_reads_it(project: Project) -> None:
    """Rendering stops at the first `data.users`; check names every read of it (not `data.user`)."""
    project.routes(many_routes('{"a": "{{ data.users.name }}", "ok": "{{ data.user.name }}", "b": "{{ data["users"].id }}"}', 3))
    result = project.gateway("check")
    assert result.returncode == 1
    lines = [line.split(": ", 1)[0] for line in result.stdout.splitlines() if "the field 'users' is not in this object (did you mean 'user'?)" in line]
    text = (project.root / "routes.yaml").read_text().splitlines()
    body_line = next(n for n, line in enumerate(text, 1) if "data.users.name" in line)
    first, second = text[body_line - 1].index("users.name") + 1, text[body_line - 1].index('["users"]') + 3
    assert lines == [f"routes.yaml:{body_line + 3 * n}:{column}" for n in range(3) for column in (first, second)]
