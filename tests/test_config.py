"""Loading routes.yaml: interpolation, inactive destinations, secrets, compiled routes."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_config
from gateway.errors import ConfigError
from gateway.units import Duration, Rate

BASE = """\
version: 1
sources:
  go:
    token: ${GO_TOKEN}
    dedupe: {window: 5m, key: "{{ event_id }}:{{ data.id }}"}
destinations:
  sink:
    type: http
    url: ${SINK_URL:-http://127.0.0.1:9/x}
    headers: {Authorization: "Bearer ${SINK_TOKEN}"}
    ordered_by: "{{ data.id }}"
routes:
  - name: r
    when: {event_id: [ORDER_CREATED, ORDER_CANCEL]}
    send: {to: sink, body: "{{ event | tojson }}"}
"""


def write(tmp_path: Path, text: str = BASE) -> Path:
    (tmp_path / "routes.yaml").write_text(text)
    return tmp_path / "routes.yaml"


def test_interpolation_defaults_and_secrets(tmp_path: Path) -> None:
    config = load_config(write(tmp_path), environ={"GO_TOKEN": "go-token-1", "SINK_TOKEN": "sink-token-2"})
    assert config.sources["go"].token == "go-token-1"
    assert config.sources["go"].dedupe_window == 300
    assert config.destinations["sink"].spec.url == "http://127.0.0.1:9/x"
    assert config.destinations["sink"].spec.headers == {"Authorization": "Bearer sink-token-2"}
    assert config.destinations["sink"].inactive is None
    assert config.secrets == {"go-token-1", "sink-token-2"}
    assert config.routes[0].event_ids == {"ORDER_CREATED", "ORDER_CANCEL"}
    assert "sink" in config.ordering_templates


def test_unset_variable_makes_destination_inactive(tmp_path: Path) -> None:
    config = load_config(write(tmp_path), environ={"GO_TOKEN": "go-token-1"})
    assert config.destinations["sink"].inactive == "SINK_TOKEN not set"
    assert any("destination 'sink' is inactive" in w.message for w in config.warnings)


def test_unset_source_token_makes_source_inactive(tmp_path: Path) -> None:
    config = load_config(write(tmp_path), environ={"SINK_TOKEN": "x"})
    assert config.sources["go"].inactive == "GO_TOKEN not set"


def test_dollar_escape(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BASE.replace("Bearer ${SINK_TOKEN}", "Bearer $${LITERAL}")), environ={"GO_TOKEN": "g"})
    assert config.destinations["sink"].spec.headers["Authorization"] == "Bearer ${LITERAL}"


def test_version_hash_changes_with_the_file(tmp_path: Path) -> None:
    first = load_config(write(tmp_path), environ={}).version
    second = load_config(write(tmp_path, BASE.replace("name: r", "name: r2")), environ={}).version
    assert first != second and len(first) == 12


def test_the_version_covers_every_template_file_and_no_hidden_one(tmp_path: Path) -> None:
    """An include the routes never name changes the version too; an editor's swap file does not."""
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "_parte.j2").write_text("1")
    path = write(tmp_path)
    first = load_config(path, environ={}).version
    (tmp_path / "templates" / ".routes.swp").write_text("editor state")
    assert load_config(path, environ={}).version == first
    (tmp_path / "templates" / "_parte.j2").write_text("2")
    assert load_config(path, environ={}).version != first


def test_a_config_loads_again_from_its_files_whatever_the_disk_holds_now(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "t.j2").write_text('{"v": 1}')
    path = write(tmp_path, BASE.replace('body: "{{ event | tojson }}"', "template: t.j2"))
    loaded = load_config(path, environ={})
    (tmp_path / "templates" / "t.j2").write_text('{"v": 2}')
    path.write_text("version: 1\nroutes: [")
    again = load_config(loaded.files, environ={})
    assert again.version == loaded.version
    assert again.routes[0].sends[0].template.render({"event": {}, "data": {}}) == '{"v": 1}'


def test_templates_beside_routes_yaml_and_a_database(tmp_path: Path) -> None:
    """`templates: .` in a folder that also holds the database: its files are no templates,
    they change the version by name only, and a route that uses one is told why."""
    (tmp_path / "t.j2").write_text('{"v": 1}')
    (tmp_path / "gateway.db").write_bytes(b"SQLite format 3\x00\xff\xfe" * 100)
    text = BASE.replace("version: 1\n", "version: 1\nsettings: {templates: .}\n", 1).replace('body: "{{ event | tojson }}"', "template: t.j2")
    path = write(tmp_path, text)
    first = load_config(path, environ={})
    (tmp_path / "gateway.db").write_bytes(b"SQLite format 3\x00\xff\xfe" * 200)  # written by the gateway meanwhile
    assert load_config(path, environ={}).version == first.version
    assert set(first.files.templates) == {"routes.yaml", "t.j2"} and "gateway.db" in first.files.unusable
    with pytest.raises(ConfigError, match=r"gateway.db is not UTF-8 text \(byte 16\)"):
        load_config(write(tmp_path, text.replace("template: t.j2", "template: gateway.db")), environ={})


def test_a_templates_folder_too_big_is_a_located_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.templates

    monkeypatch.setattr(gateway.templates, "MAX_FOLDER_BYTES", 10)
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "grande.bin").write_bytes(b"x" * 11)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path), environ={})
    assert "the templates folder holds more than" in str(info.value)


@pytest.mark.parametrize(("dedupe", "warned"), [("dedupe: 2h", True), ("dedupe: {window: 1d}", True), ("dedupe: 1h", False), ("dedupe: false", False)])
def test_a_long_dedupe_window_warns(tmp_path: Path, dedupe: str, warned: bool) -> None:
    text = BASE.replace('    dedupe: {window: 5m, key: "{{ event_id }}:{{ data.id }}"}', f"    {dedupe}")
    config = load_config(write(tmp_path, text), environ={"GO_TOKEN": "g"})
    warnings = [w for w in config.warnings if "dedupe window" in w.message]
    assert bool(warnings) is warned
    if warned:
        assert warnings[0].location.line == 5 and "taken for a duplicate" in warnings[0].message


def test_literal_token_warns(tmp_path: Path) -> None:
    text = BASE.replace("  sink:\n", "  crm:\n    type: hubspot\n    token: pat-na1-literal\n  sink:\n")
    config = load_config(write(tmp_path, text), environ={"GO_TOKEN": "g", "SINK_TOKEN": "s"})
    assert any("has its token written in the file" in w.message for w in config.warnings)
    assert "pat-na1-literal" in config.secrets


def test_errors_are_sorted_by_position(tmp_path: Path) -> None:
    text = BASE.replace("type: http", "type: htp").replace("to: sink", "to: snk")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert [p.location.line for p in info.value.problems] == [8, 15]


def test_send_to_a_broken_destination_is_not_reported_twice(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, BASE.replace("type: http", "type: htp")), environ={})
    assert len(info.value.problems) == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("5m", 300), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert Duration.parse(text).seconds == seconds


@pytest.mark.parametrize("text", ["5 m", "10", "m", "0s", "-1s", "1w", 10, True, None])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        Duration.parse(text)


@pytest.mark.parametrize(("text", "count", "per"), [("1/s", 1, 1), ("100/10s", 100, 10), ("30/min", 30, 60), ("5/h", 5, 3600)])
def test_rates(text: str, count: int, per: float) -> None:
    rate = Rate.parse(text)
    assert (rate.count, rate.per_seconds) == (count, per)


@pytest.mark.parametrize("text", ["fast", "0/s", "1/0s", "1", 5])
def test_bad_rates(text: object) -> None:
    with pytest.raises(ValueError):
        Rate.parse(text)


def _problems(tmp_path: Path, destination: str, environ: dict[str, str] | None = None, settings: str = "") -> list[str]:
    text = f"version: 1\n{settings}sources: {{go: {{token: t0ken-de-teste}}}}\ndestinations:\n  alvo:\n{destination}routes: []\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ=environ or {})
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("hooks.example.com/erp", "must start with http:// or https://"),
        ("ftp://hooks.example.com/erp", "only http:// and https://"),
        ("http://user:senha-secreta@hooks.example.com/erp", "user name or password"),
        ("http://ｈｏｏｋｓ.example.com/erp", "not a valid address"),
        ("http://127.0.0.1:9000/erp", "127.0.0.1 is a loopback address"),
        ("http://localhost:9000/erp", "loopback"),
        ("http://169.254.169.254/latest", "link-local (cloud metadata)"),
    ],
)
def test_an_address_that_cannot_work_is_an_error_at_its_line_naming_the_key(tmp_path: Path, url: str, words: str) -> None:
    problems = _problems(tmp_path, f"    type: http\n    url: '{url}'\n")
    assert len(problems) == 1
    assert "routes.yaml:6:10: destination 'alvo': the address in 'url' cannot be used" in problems[0]
    assert words in problems[0]
    assert "senha-secreta" not in problems[0]


def test_an_allowed_private_range_is_no_error(tmp_path: Path) -> None:
    text = "version: 1\nsettings: {egress_allow: [127.0.0.0/8]}\nsources: {go: {token: t0ken-de-teste}}\ndestinations:\n  alvo: {type: http, url: 'http://127.0.0.1:9/x'}\nroutes: []\n"
    assert load_config(write(tmp_path, text), environ={}).destinations["alvo"].spec.url == "http://127.0.0.1:9/x"


def test_an_address_from_a_variable_is_warned_about_by_name_never_quoted(tmp_path: Path) -> None:
    """The variable's value may be a secret (a Slack webhook URL is one): the warning names the
    variable, and the delivery will be dead with the same reason."""
    text = "version: 1\nsources: {go: {token: t0ken-de-teste}}\ndestinations:\n  alvo:\n    type: http\n    url: ${MIRROR_URL}\nroutes: []\n"
    config = load_config(write(tmp_path, text), environ={"MIRROR_URL": "https://bot:s3nha-do-espelho@hooks.example.com/x"})
    warnings = [str(w) for w in config.warnings if "address" in w.message]
    assert len(warnings) == 1
    assert "routes.yaml:6:10: warning: destination 'alvo': the address in 'url' (from ${MIRROR_URL}) cannot be used: it has a user name or password" in warnings[0]
    assert "s3nha-do-espelho" not in warnings[0] and "hooks.example.com" not in warnings[0]
