"""Typed, strict schemas for the YAML files users write, with messages a person can act on.

msgspec does the checking (unknown keys, types, enums, our duration and rate types); this
module turns its terse messages into located sentences with suggestions.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args, get_origin

import msgspec

from gateway.errors import Problem, did_you_mean, one_of
from gateway.units import Duration, Rate
from gateway.yamlfile import KeyPath as YamlPath
from gateway.yamlfile import YamlDocument


class Schema(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Base of every routes.yaml structure: frozen, keyword-only, unknown keys refused."""


_TYPE_WORDS = {
    "str": "text",
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "object": "a mapping (indented 'key: value' lines)",
    "array": "a list (lines starting with '- ')",
    "null": "nothing",
}
_PATH_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


def _words(types: str) -> str:
    return " or ".join(_TYPE_WORDS.get(t.strip(), t.strip()) for t in types.split("|"))


def _field_type(owner: Any, name: str) -> Any:
    for option in get_args(owner) or (owner,):
        if isinstance(option, type) and issubclass(option, msgspec.Struct):
            for spec_field in msgspec.structs.fields(option):
                if spec_field.name == name:
                    return spec_field.type
    return None


def _struct_keys(owner: Any) -> list[str]:
    for option in get_args(owner) or (owner,):
        if isinstance(option, type) and issubclass(option, msgspec.Struct):
            return [f.name for f in msgspec.structs.fields(option)]
    return []


def _walk_type(root: Any, tokens: list[str | int]) -> Any:
    current = root
    for token in tokens:
        if isinstance(token, int):
            options = [current] if get_origin(current) is list else [a for a in get_args(current) if get_origin(a) is list]
            current = get_args(options[0])[0] if options else None
        else:
            current = _field_type(current, token)
        if current is None:
            return None
    return current


class SchemaReader:
    """Runs msgspec on one piece of the document and turns its message into a located one."""

    def __init__(self, doc: YamlDocument, problems: list[Problem]) -> None:
        self.doc = doc
        self.problems = problems

    def convert(self, raw: Any, spec_type: Any, at: YamlPath, what: str) -> Any:
        try:
            return msgspec.convert(raw, spec_type, dec_hook=_decode_unit)
        except msgspec.ValidationError as exc:
            self.problems.append(self.translate(str(exc), spec_type, at, what))
            return None

    def translate(self, message: str, spec_type: Any, at: YamlPath, what: str) -> Problem:
        text, _, where = message.rpartition(" - at `")
        if not text:
            text, where = message, "$"
        tokens: list[str | int] = []
        for match in _PATH_TOKEN.finditer(where.rstrip("`")[1:]):
            if match.group(0) == "[...]":
                break
            tokens.append(match.group(1) if match.group(1) is not None else int(match.group(2)))
        path = (*at, *tokens)
        owner = _walk_type(spec_type, tokens)
        if found := re.match(r"Object contains unknown field `(.+)`", text):
            key = found.group(1)
            keys = _struct_keys(owner)
            hint = did_you_mean(key, keys)
            return Problem(f"unknown key '{key}' in {what}{hint}; allowed keys: {', '.join(keys)}", self.doc.key_where((*path, key)))
        if found := re.match(r"Object missing required field `(.+)`", text):
            return Problem(f"{what} is missing the required key '{found.group(1)}'", self.doc.where(path))
        if found := re.match(r"Expected `(.+)`, got `(.+)`", text):
            return Problem(f"'{tokens[-1] if tokens else what}' must be {_words(found.group(1))}, not {_words(found.group(2))}", self.doc.where(path))
        if found := re.match(r"Expected `(int|float)` (>=|<=) (\S+)", text):
            bound = "at least" if found.group(2) == ">=" else "at most"
            value = self.doc.value_at(path, "?")
            return Problem(f"'{tokens[-1] if tokens else what}' must be {bound} {found.group(3)}, not {value}", self.doc.where(path))
        if found := re.match(r"Invalid enum value '(.*)'", text):
            choices = [str(c) for c in get_args(owner)] if get_origin(owner) is Literal else []
            hint = did_you_mean(found.group(1), choices)
            return Problem(f"'{found.group(1)}' is not allowed for '{tokens[-1]}'{hint}; use {one_of(choices)}", self.doc.where(path))
        return Problem(text[0].lower() + text[1:] if text else message, self.doc.where(path))



def _decode_unit(kind: type, value: Any) -> Any:
    if kind in (Duration, Rate):
        return kind.parse(value)
    raise NotImplementedError(kind)
