"""Safe YAML loading that remembers where every value came from.

PyYAML's composer gives nodes with positions; we build plain Python values from them ourselves
so that every later message can point at `file:line:column`. Building it ourselves is also where
the hostile cases are refused: unknown tags (`!!python/object`), duplicate keys, alias bombs and
self-referencing anchors, and oversized files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor

from gateway.errors import ConfigError, Location, Problem

KeyPath = tuple[str | int, ...]

MAX_FILE_BYTES = 2 * 1024 * 1024
MAX_VALUES = 100_000  # after alias expansion; a real routes.yaml has a few thousand at most

_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_TEXT_TAGS = {"tag:yaml.org,2002:timestamp"}  # keep dates as the text the user wrote
_CONSTRUCTOR = SafeConstructor()


@dataclass
class YamlDocument:
    """Plain data from a YAML file plus the position of every value and key in it."""

    file: str
    data: Any
    _values: dict[KeyPath, Location] = field(default_factory=dict)
    _keys: dict[KeyPath, Location] = field(default_factory=dict)
    block_scalars: set[KeyPath] = field(default_factory=set)  # `key: |` values, whose text starts a line later

    def where(self, path: KeyPath) -> Location:
        """Where the value at `path` starts; the nearest enclosing value if it is absent."""
        for end in range(len(path), -1, -1):
            found = self._values.get(path[:end])
            if found:
                return found
        return Location(self.file, 1, 1)

    def value_at(self, path: KeyPath, missing: Any = None) -> Any:
        """The value written at `path`, or `missing` when there is none."""
        value: Any = self.data
        for part in path:
            if not isinstance(value, (dict, list)):
                return missing
            try:
                value = value[part]  # type: ignore[index]
            except (KeyError, IndexError, TypeError):
                return missing
        return value

    def key_where(self, path: KeyPath) -> Location:
        """Where the key naming `path` starts (for 'unknown key' messages)."""
        return self._keys.get(path) or self.where(path)


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def load_yaml_file(path: str, display_name: str | None = None) -> YamlDocument:
    """Read and parse a YAML file; ConfigError with a location on any problem."""
    return parse_yaml_bytes(read_yaml_bytes(path, display_name), display_name or path)


def read_yaml_bytes(path: str, display_name: str | None = None) -> bytes:
    """A YAML file's bytes, up to MAX_FILE_BYTES (one more, so that parsing says it is too big)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([Problem(f"cannot read the file: {exc.strerror}", Location(display_name or path, 1, 1))]) from None


def parse_yaml_bytes(raw: bytes, name: str) -> YamlDocument:
    """Check the size and the encoding, then parse; ConfigError with a location on any problem."""
    if len(raw) > MAX_FILE_BYTES:
        limit = MAX_FILE_BYTES // (1024 * 1024)
        raise ConfigError([Problem(f"the file is larger than {limit} MiB; is it the right file?", Location(name, 1, 1))])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"the file is not UTF-8 text (byte {exc.start}); save it as UTF-8"
        raise ConfigError([Problem(message, Location(name, 1, 1))]) from None
    return parse_yaml(text, name)


def parse_yaml(text: str, file: str) -> YamlDocument:
    """Parse YAML text into a YamlDocument; ConfigError with a location on any problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        location = Location(file, mark.line + 1, mark.column + 1) if mark else Location(file, 1, 1)
        problem = f"YAML syntax error: {exc.problem or exc.context}"
        hint = _syntax_hint(exc)
        raise ConfigError([Problem(problem + hint, location)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(f"YAML syntax error: {exc}", Location(file, 1, 1))]) from None
    document = YamlDocument(file=file, data=None)
    if root is not None:
        document.data = _Builder(document).build(root, ())
    return document


def _syntax_hint(exc: yaml.MarkedYAMLError) -> str:
    problem = str(exc.problem or "")
    if "found character '\\t'" in problem:
        return " (YAML indents with spaces, not tabs)"
    if "mapping values are not allowed" in problem:
        return " (a value containing ': ' must be quoted, or a key is indented wrongly)"
    if "expected <block end>" in problem or "could not find expected ':'" in problem:
        return " (check the indentation of this line against the lines above)"
    return ""


class _Builder:
    """Turns composed nodes into Python values, recording positions and refusing abuse."""

    def __init__(self, document: YamlDocument) -> None:
        self.document = document
        self.count = 0
        self.active: set[int] = set()

    def location(self, node: yaml.Node) -> Location:
        return Location(self.document.file, node.start_mark.line + 1, node.start_mark.column + 1)

    def fail(self, node: yaml.Node, message: str) -> ConfigError:
        return ConfigError([Problem(message, self.location(node))])

    def build(self, node: yaml.Node, path: KeyPath) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise self.fail(node, f"the file expands to more than {MAX_VALUES} values; are anchors (&) and aliases (*) nested?")
        self.document._values.setdefault(path, self.location(node))
        if id(node) in self.active:
            raise self.fail(node, "an alias (*) refers to a value that contains it; remove the loop")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self.sequence(node, path)
            if node.style in ("|", ">"):
                self.document.block_scalars.add(path)
            return self.scalar(node)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode, path: KeyPath) -> dict[str, Any]:
        if node.tag != "tag:yaml.org,2002:map":
            raise self.fail(node, _tag_message(node.tag))
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise self.fail(key_node, "merge keys (<<) are not supported; write the keys out")
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, "a key must be a plain word, not a list or a mapping")
            key = str(key_node.value)
            if key in result:
                first = self.document._keys[(*path, key)]
                raise self.fail(key_node, f"the key '{key}' appears twice in this mapping (first at line {first.line}); keep one")
            self.document._keys[(*path, key)] = self.location(key_node)
            result[key] = self.build(value_node, (*path, key))
        return result

    def sequence(self, node: yaml.SequenceNode, path: KeyPath) -> list[Any]:
        if node.tag != "tag:yaml.org,2002:seq":
            raise self.fail(node, _tag_message(node.tag))
        return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]

    def scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag in _TEXT_TAGS:
            return node.value
        if node.tag not in _SCALAR_TAGS:
            raise self.fail(node, _tag_message(node.tag))
        return SafeConstructor.yaml_constructors[node.tag](_CONSTRUCTOR, node)


def _tag_message(tag: str) -> str:
    return f"the tag {tag} is not allowed in this file; remove it (only plain values are read)"
