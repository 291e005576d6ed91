"""The positioned YAML loader: positions, and hostile files refused quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from gateway.errors import ConfigError, Location
from gateway.yamlfile import MAX_FILE_BYTES, load_yaml_file, parse_yaml


def test_positions_of_values_and_keys() -> None:
    doc = parse_yaml("a:\n  b: [1, 2]\n  c: x\n", "f.yaml")
    assert doc.data == {"a": {"b": [1, 2], "c": "x"}}
    assert doc.where(("a", "b", 1)) == Location("f.yaml", 2, 10)
    assert doc.key_where(("a", "c")) == Location("f.yaml", 3, 3)
    assert doc.where(("a", "missing")) == Location("f.yaml", 2, 3)  # nearest enclosing value


def test_dates_stay_text_and_keys_are_text() -> None:
    doc = parse_yaml("when: 2021-03-02\n1: um\nyes: sim\n", "f.yaml")
    assert doc.data == {"when": "2021-03-02", "1": "um", "yes": "sim"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: !!python/object/apply:os.system ['true']\n", "the tag tag:yaml.org,2002:python/object/apply:os.system is not allowed"),
        ("a: !!python/name:os.system\n", "is not allowed"),
        ("a: !custom 1\n", "the tag !custom is not allowed"),
        ("a: 1\na: 2\n", "the key 'a' appears twice"),
        ("base: &b {x: 1}\nother:\n  <<: *b\n", "merge keys (<<) are not supported"),
        ("a: &a [*a]\n", "refers to a value that contains it"),
        ("a: [1, 2\n", "YAML syntax error"),
        ("? [a, b]\n: 1\n", "a key must be a plain word"),
    ],
)
def test_hostile_or_broken_yaml_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_yaml(text, "f.yaml")
    assert message in str(info.value)
    assert str(info.value).startswith("f.yaml:")


def test_alias_bomb_stops_fast() -> None:
    """Billion laughs is refused in well under a second."""
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
    started = time.monotonic()
    with pytest.raises(ConfigError, match="expands to more than"):
        parse_yaml("\n".join(lines), "f.yaml")
    assert time.monotonic() - started < 5


def test_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("a: " + "x" * (MAX_FILE_BYTES + 10))
    with pytest.raises(ConfigError, match="larger than 2 MiB"):
        load_yaml_file(str(path))


def test_non_utf8_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("nome: João".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_yaml_file(str(path))
