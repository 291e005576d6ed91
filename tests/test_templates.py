"""Templates: sandbox escapes refused, limits enforced, JSON escaping, errors located."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.errors import Location, TemplateError
from gateway.templates import TemplateEngine

CONTEXT = {
    "event": {"event_id": "ORDER_CREATED", "data": {"code": "1", "user": {"name": "Ana"}}},
    "data": {"code": "1", "user": {"name": "Ana", "phone": None}, "total": 10},
    "event_id": "ORDER_CREATED",
}


@pytest.fixture
def engine(tmp_path: Path) -> TemplateEngine:
    (tmp_path / "slack").mkdir()
    (tmp_path / "slack" / "ok.json.j2").write_text('{"text": "Pedido {{ data.code }}"}')
    return TemplateEngine(tmp_path, "templates")


def render(engine: TemplateEngine, source: str, json_mode: bool = False, context: dict | None = None) -> str:
    return engine.from_string(source, Location("routes.yaml", 10, 7), json_mode).render(context or CONTEXT)


ESCAPES = [
    ("class of a string", "{{ ''.__class__ }}"),
    ("mro walk", "{{ ''.__class__.__mro__[1].__subclasses__() }}"),
    ("cycler globals", "{{ cycler.__init__.__globals__ }}"),
    ("joiner globals", "{{ joiner.__init__.__globals__.os }}"),
    ("lipsum globals", "{{ lipsum.__globals__['os'] }}"),
    ("attr filter", "{{ ''|attr('__class__') }}"),
    ("attr filter chain", "{{ (''|attr('__class__')|attr('__base__')|attr('__subclasses__'))() }}"),
    ("format to reach internals", "{{ '{0.__class__}'.format('') }}"),
    ("request-free config access", "{{ self.__init__.__globals__ }}"),
    ("dict methods to mutate", "{{ data.update({'x': 1}) }}"),
]


@pytest.mark.parametrize("source", [c[1] for c in ESCAPES], ids=[c[0] for c in ESCAPES])
def test_sandbox_escapes_are_refused(engine: TemplateEngine, source: str) -> None:
    """Classic Jinja sandbox escapes fail with a TemplateError, never reach Python internals."""
    with pytest.raises(TemplateError) as info:
        render(engine, source)
    assert info.value.location is not None
    assert "<class" not in str(info.value)


def test_huge_range_is_refused(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match="range is limited"):
        render(engine, "{% for i in range(10**8) %}{% endfor %}")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'A' * 50000000 }}", "grew past"),
        ("{{ 2 ** 99999999999 }}", "exponents are limited"),
        ("{{ '%099999999d' % 1 }}", "format widths"),
        ("{{ '{:>99999999}'.format('x') }}", "format widths"),
        ("{{ 'x'|center(999999999) }}", "center width"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}", "output grew past"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "took longer than"),
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", "too deeply"),
    ],
)
def test_resource_bombs_are_stopped(engine: TemplateEngine, source: str, message: str) -> None:
    """Size, exponent, format-width, output, time and recursion limits stop bombs quickly."""
    started = time.monotonic()
    with pytest.raises(TemplateError, match=message):
        render(engine, source)
    assert time.monotonic() - started < 30  # bounded: a failure here means the limit did not fire


def test_include_outside_templates_folder_is_refused(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match="not found"):
        render(engine, "{% include '../../etc/passwd' %}")


def test_payload_text_is_never_rendered_as_template(engine: TemplateEngine) -> None:
    """Data like '{{7*7}}' in the event comes out literally."""
    context = {**CONTEXT, "data": {"user": {"name": "{{ 7*7 }}"}}}
    assert render(engine, "{{ data.user.name }}", context=context) == "{{ 7*7 }}"


def test_json_templates_escape_values(engine: TemplateEngine) -> None:
    """Quotes, backslashes and newlines in data cannot break a JSON body."""
    context = {**CONTEXT, "data": {"user": {"name": 'Ana "Nina"\\\nSilva'}}}
    body = render(engine, '{"text": "Olá {{ data.user.name }}"}', json_mode=True, context=context)
    assert json.loads(body) == {"text": 'Olá Ana "Nina"\\\nSilva'}


def test_json_templates_keep_tojson_raw_and_map_scalars(engine: TemplateEngine) -> None:
    """tojson output is inserted as JSON; numbers, booleans and null become JSON literals."""
    source = '{"user": {{ data.user | tojson }}, "total": {{ data.total }}, "ok": {{ true }}, "phone": "{{ data.user.phone }}"}'
    body = json.loads(render(engine, source, json_mode=True))
    assert body == {"user": {"name": "Ana", "phone": None}, "total": 10, "ok": True, "phone": ""}


def test_nan_in_a_json_body_is_refused(engine: TemplateEngine) -> None:
    """Python's json reads NaN; receivers do not. The body must be strict JSON."""
    with pytest.raises(TemplateError) as info:
        render(engine, '{"total": NaN}', json_mode=True)
    assert "NaN or Infinity, which JSON does not allow" in str(info.value)


def test_invalid_json_names_template_and_output_line(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError) as info:
        render(engine, '{"text": {{ data.user.phone }}}', json_mode=True)
    assert "not valid JSON" in str(info.value)
    assert info.value.location == Location("routes.yaml", 10, 1)


def test_missing_field_names_it_and_suggests(engine: TemplateEngine) -> None:
    """The error names the missing field, the closest present one, and the line."""
    with pytest.raises(TemplateError) as info:
        render(engine, "linha 1\n{{ data.user.nome }}")
    assert "the field 'nome' is not in this object (did you mean 'name'?)" in str(info.value)
    assert info.value.location == Location("routes.yaml", 11, 14)


def test_block_scalar_body_lines_start_after_the_bar(engine: TemplateEngine) -> None:
    """In `body: |` (YAML line 10), template line 2 is file line 12."""
    template = engine.from_string("linha 1\n{{ data.user.nome }}", Location("routes.yaml", 10, 9), False, block=True)
    with pytest.raises(TemplateError) as info:
        template.render(CONTEXT)
    assert info.value.location == Location("routes.yaml", 12, 14)


def test_file_template_errors_name_the_file_and_line(engine: TemplateEngine, tmp_path: Path) -> None:
    (tmp_path / "slack" / "bad.json.j2").write_text('{\n"a": 1,\n"b": "{{ data.nada }}"\n}')
    fresh = TemplateEngine(tmp_path, "templates")  # the folder is read when an engine is made
    with pytest.raises(TemplateError) as info:
        fresh.from_file("slack/bad.json.j2", json_mode=True).render(CONTEXT)
    assert info.value.location == Location("templates/slack/bad.json.j2", 3, 15)


def test_missing_file_suggests_the_closest(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match=r"templates/slack/okk.json.j2 \(did you mean 'slack/ok.json.j2'\?\)"):
        engine.from_file("slack/okk.json.j2", json_mode=True)


def test_filter_errors_are_template_errors(engine: TemplateEngine) -> None:
    with pytest.raises(TemplateError, match="brl needs an amount"):
        render(engine, "{{ 'abc' | brl }}")


def test_file_template_renders(engine: TemplateEngine) -> None:
    assert json.loads(engine.from_file("slack/ok.json.j2", json_mode=True).render(CONTEXT)) == {"text": "Pedido 1"}


def test_a_template_that_is_not_utf8_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "latin1.j2").write_bytes("Olá".encode("latin-1"))
    with pytest.raises(TemplateError, match=r"templates/latin1.j2 is not UTF-8 text \(byte 2\)"):
        TemplateEngine(tmp_path, "templates").from_file("latin1.j2", json_mode=False)
