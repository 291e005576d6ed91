"""Payload templates: sandboxed Jinja with limits, Brazilian filters and located errors.

Templates are written by operators, but they render data that customers typed (names,
addresses), so the sandbox assumes both can be hostile: no Python internals, no file outside
`templates/`, bounded output size, string sizes and render time. Payload text is data, never
template source.

JSON templates (every vendor destination, and `http` unless told otherwise) escape each
`{{ value }}` as JSON string content, so a customer named `Ana "Nina"` or an address with a line
break cannot break the message; `{{ x | tojson }}` inserts JSON as it is.
"""

from __future__ import annotations

import contextvars
import itertools
import json
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes
import msgspec
from jinja2 import StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2.filters import do_center, do_format, do_indent
from jinja2.loaders import split_template_path
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment, SecurityError

from gateway.errors import Location, Problem, TemplateError, did_you_mean
from gateway.filters import FILTERS, JsonText

MAX_OUTPUT_CHARS = 1_000_000
MAX_STRING_CHARS = 1_000_000
RENDER_SECONDS = 2.0
MAX_FILE_BYTES = 1024 * 1024  # a template this big is some other file (a database beside routes.yaml?)
MAX_FOLDER_BYTES = 32 * 1024 * 1024
_FORMAT_WIDTH = re.compile(r"\d{5,}|\*")

_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("template_deadline", default=float("inf"))


class TemplateLimitError(SecurityError):
    """A template went over a size or time limit."""


def _check_deadline() -> None:
    if time.monotonic() > _deadline.get():
        raise TemplateLimitError(f"rendering took longer than {RENDER_SECONDS:g} s; is there a loop inside a loop?")


def _check_size(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) > MAX_STRING_CHARS:
        raise TemplateLimitError(f"a value grew past {MAX_STRING_CHARS:,} characters or items")
    return value


def _check_format(spec: Any) -> None:
    if isinstance(spec, str) and _FORMAT_WIDTH.search(spec):
        raise TemplateLimitError("format widths over 9999 (or taken from arguments) are not allowed")


def _guarded_range(*args: int) -> Iterator[int]:
    if len(range(*args)) > MAX_RANGE:
        raise TemplateLimitError(f"range is limited to {MAX_RANGE:,} items")
    for index, number in enumerate(range(*args)):
        if index % 1000 == 0:
            _check_deadline()
        yield number


def _guarded_center(value: Any, width: int = 80) -> str:
    if width > 10_000:
        raise TemplateLimitError("center width is limited to 10,000")
    return do_center(value, width)


def _guarded_indent(value: str, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    if (isinstance(width, int) and width > 100) or (isinstance(width, str) and len(width) > 100):
        raise TemplateLimitError("indent width is limited to 100")
    return do_indent(value, width, first, blank)


def _guarded_format(value: str, *args: Any, **kwargs: Any) -> str:
    _check_format(value)
    return do_format(value, *args, **kwargs)


class _Undefined(StrictUndefined):
    """StrictUndefined whose message names the missing field and the closest one present."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        if self._undefined_hint is None and isinstance(self._undefined_obj, Mapping):
            fields = [str(k) for k in self._undefined_obj]
            hint = did_you_mean(self._undefined_name, fields)
            shown = ", ".join(fields[:12])
            raise self._undefined_exception(f"the field '{self._undefined_name}' is not in this object{hint}; it has: {shown}")
        return super()._fail_with_undefined_error(*args, **kwargs)

    __str__ = __iter__ = __len__ = __eq__ = __ne__ = __bool__ = __hash__ = _fail_with_undefined_error  # type: ignore[assignment]
    __getattr__ = __getitem__ = __add__ = __lt__ = __le__ = __gt__ = __ge__ = __int__ = __float__ = _fail_with_undefined_error  # type: ignore[assignment]


class GatewaySandbox(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox (templates cannot change the event) plus limits on sizes,
    format widths and render time."""

    intercepted_binops = frozenset(["*", "**", "%", "+"])

    def getattr(self, obj: Any, attribute: str) -> Any:
        """`data.user.name` on payload objects reads the key first.

        Payload fields win over dict methods (GO's `data.items` is a field, not `dict.items`),
        and skipping the failed attribute lookup makes rendering about twice as fast. Keys
        are data, never Python internals, so the sandbox has nothing to check there.
        """
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _check_deadline()
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 100:
            raise TemplateLimitError("exponents are limited to 100")
        if operator == "*":
            for count, other in ((left, right), (right, left)):
                if isinstance(other, (str, list, tuple)) and isinstance(count, int) and count * len(other) > MAX_STRING_CHARS:
                    raise TemplateLimitError(f"a value grew past {MAX_STRING_CHARS:,} characters or items")
        if operator == "%":
            _check_format(left)
        return _check_size(super().call_binop(context, operator, left, right))

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        for argument in (*args, *kwargs.values()):
            _check_size(argument)
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def make_globals(self, d: Any) -> dict[str, Any]:
        """A plain dict instead of Jinja's ChainMap: every render and every `include` copies the
        globals, and copying a ChainMap was a third of the rendering time. Our environment's
        globals are set once, before any template is loaded, so nothing needs the live view."""
        return {**self.globals, **(d or {})}

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format(getattr(value, "__self__", ""))
            return wrapped(*args, **kwargs)

        return checked


_escape_json_string = json.encoder.encode_basestring  # the C escaper json.dumps itself uses


def _json_finalize(value: Any) -> Any:
    """Each {{ value }} in a JSON template: JSON text as is, everything else escaped."""
    if type(value) is str:  # the common cases first
        return _escape_json_string(value)[1:-1]
    if type(value) is int:  # not bool, a subclass: that is below
        return str(value)
    if isinstance(value, JsonText):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return _escape_json_string(str(value))[1:-1]


def _text_finalize(value: Any) -> Any:
    return "" if value is None else value


def read_templates(folder: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """Every template of the folder, read at once, by its path inside it ('slack/x.j2'), and
    the files that cannot be templates with why (binary, too big, unreadable). A config version
    renders with exactly these bytes, includes too, whatever changes on disk later. Hidden files
    and folders (editors' swap files, .git) are left out."""
    found: dict[str, bytes] = {}
    unusable: dict[str, str] = {}
    if not folder.is_dir():
        return found, unusable
    total = 0
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            continue
        name = relative.as_posix()
        data, why = _read_text(path)
        if data is None:
            unusable[name] = why
            continue
        found[name] = data
        total += len(data)
        if total > MAX_FOLDER_BYTES:
            raise TemplateError(f"the templates folder holds more than {MAX_FOLDER_BYTES // (1024 * 1024)} MiB of text; is settings.templates the right folder?")
    return found, unusable


def _read_text(path: Path) -> tuple[bytes | None, str]:
    """A template's bytes, or why the file cannot be one."""
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return None, f"is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
        data = path.read_bytes()
        data.decode("utf-8")
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror})"
    except UnicodeDecodeError as exc:
        return None, f"is not UTF-8 text (byte {exc.start}); save it as UTF-8"
    return data, ""


def _snapshot_loader(templates_dir: Path, display_dir: str, sources: Mapping[str, bytes], unusable: Mapping[str, str]) -> jinja2.BaseLoader:
    def load(name: str) -> tuple[str, str, Any] | None:
        key = "/".join(split_template_path(name))  # '..' is refused, './' dropped, as FileSystemLoader does
        if key in unusable:
            raise TemplateError(f"{display_dir}/{key} {unusable[key]}")
        data = sources.get(key)
        if data is None:
            return None
        return data.decode("utf-8"), str(templates_dir / key), lambda: True

    return jinja2.FunctionLoader(load)


def _make_environment(loader: jinja2.BaseLoader, json_mode: bool) -> GatewaySandbox:
    env = GatewaySandbox(
        loader=loader,
        undefined=_Undefined,
        autoescape=False,
        keep_trailing_newline=False,
        auto_reload=False,  # a config reload compiles templates anew; no stat() per include
        finalize=_json_finalize if json_mode else _text_finalize,
    )
    env.filters.update(FILTERS)
    env.filters.update(center=_guarded_center, indent=_guarded_indent, format=_guarded_format)
    env.globals["range"] = _guarded_range
    return env


@dataclass(frozen=True)
class CompiledTemplate:
    """A template ready to render, with what is needed to locate its errors."""

    template: jinja2.Template
    display_name: str  # 'templates/slack/x.json.j2' or 'routes.yaml'
    line_offset: int  # for inline bodies: the line in routes.yaml where the body starts, minus 1
    json_mode: bool
    source: str = ""  # to find the column of a failure on its line
    column_offset: int = 0  # a one-line body: where it starts on its line in routes.yaml

    def render(self, context: Mapping[str, Any]) -> str:
        """Render, enforcing the limits; TemplateError with file:line on any failure."""
        token = _deadline.set(time.monotonic() + RENDER_SECONDS)
        try:
            output = self._render_bounded(context)
        except TemplateError:
            raise
        except RecursionError:
            raise TemplateError("templates call themselves too deeply (a macro calling itself?)", self.location(1)) from None
        except Exception as exc:  # every failure inside user code becomes a located TemplateError
            message = _describe(exc)
            line = self._failing_line(exc)
            raise TemplateError(message, self.location(line, self._failure_column(line, message))) from None
        finally:
            _deadline.reset(token)
        if self.json_mode:
            self._check_json(output)
        return output

    def _render_bounded(self, context: Mapping[str, Any]) -> str:
        # Chunks are taken 64 at a time, so the size and the clock are checked per batch,
        # in C, rather than per chunk in Python: a template yields dozens of chunks.
        chunks = self.template.generate(dict(context))
        output: list[str] = []
        size = 0
        while batch := list(itertools.islice(chunks, 64)):
            size += sum(map(len, batch))
            if size > MAX_OUTPUT_CHARS:
                raise TemplateLimitError(f"the output grew past {MAX_OUTPUT_CHARS:,} characters")
            output += batch
            _check_deadline()  # loops, calls and operators check it too
        return "".join(output).strip()

    def _check_json(self, output: str) -> None:
        try:
            msgspec.json.decode(output)  # the fast check; json below only to say where it fails
            return
        except msgspec.DecodeError:
            pass
        try:
            json.loads(output)
        except json.JSONDecodeError as exc:
            lines = output.splitlines() or [""]
            shown = lines[min(exc.lineno, len(lines)) - 1].strip()[:120]
            raise TemplateError(
                f"the rendered body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno} "
                f"of the output (`{shown}`); {_json_cause(output, exc.pos)}",
                self.location(exc.lineno),
            ) from None
        raise TemplateError("the rendered body has NaN or Infinity, which JSON does not allow; check the numbers it prints", self.location(1))

    def _failing_line(self, exc: BaseException) -> int:
        line = getattr(exc, "lineno", None)
        traceback = exc.__traceback__
        while traceback is not None:
            if traceback.tb_frame.f_code.co_filename == (self.template.filename or "<template>"):
                line = traceback.tb_lineno
            traceback = traceback.tb_next
        return line or 1

    def location(self, line: int, column: int = 1) -> Location:
        return Location(self.display_name, self.line_offset + line, column)

    def same_mistake(self, error: TemplateError, context: Mapping[str, Any]) -> tuple[Problem, ...]:
        """The other places of this template that read the field a render found missing, off
        an object that lacks it in the same `context` (rendering stops at the first one; check
        names them all). Places inside included templates are not followed."""
        missing = re.match(r"the field '([^']+)' is not in this object", error.detail)
        if missing is None or error.location is None or error.location.file != self.display_name:
            return ()
        name, lines = missing.group(1), self.source.splitlines()
        reads: dict[int, int] = {}  # line -> how many reads of the field there lack it
        for node in self.template.environment.parse(self.source).find_all((jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
            if _field_read(node) == name and _lacks(_evaluated(node.node, context), name):
                reads[node.lineno] = reads.get(node.lineno, 0) + 1
        places = []
        for line, count in sorted(reads.items()):
            text = lines[line - 1] if line <= len(lines) else ""
            columns = [m.start(1) + 1 + self.column_offset for m in re.finditer(rf"(?:\.\s*|\[\s*['\"])({re.escape(name)})\b", text)][:count] or [1]
            places += [self.location(line, column) for column in columns]
        return tuple(Problem(error.detail, place) for place in places if place != error.location)

    def _failure_column(self, line: int, message: str) -> int:
        """Where on its line a render failure is (Jinja gives the line only): the field or the
        filter the message names, else the line's first expression; 1 when it cannot be told."""
        lines = self.source.splitlines()
        if not 0 < line <= len(lines):
            return 1
        text = lines[line - 1]
        field = re.match(r"the field '([^']+)'", message)
        word = re.match(r"(\w+) ", message)
        patterns = [rf"\.\s*({re.escape(field.group(1))})\b", rf"\[\s*['\"]({re.escape(field.group(1))})['\"]"] if field else []
        patterns += [rf"\|\s*({re.escape(word.group(1))})\b"] if word else []
        patterns.append(r"\{[{%]-?\s*()")
        for pattern in patterns:
            if found := re.search(pattern, text):
                return found.start(1) + 1 + self.column_offset
        return 1


def _field_read(node: jinja2.nodes.Getattr | jinja2.nodes.Getitem) -> str | None:
    """The field a `x.name` or `x['name']` reads (None for `x[i]` with a computed index)."""
    if isinstance(node, jinja2.nodes.Getattr):
        return node.attr
    return node.arg.value if isinstance(node.arg, jinja2.nodes.Const) and isinstance(node.arg.value, str) else None


_UNKNOWN = object()


def _evaluated(node: jinja2.nodes.Node, context: Mapping[str, Any]) -> Any:
    """The value of a plain chain of names and fields (`data.user`) in `context`; _UNKNOWN for
    anything else (a loop variable, a call, a filter)."""
    if isinstance(node, jinja2.nodes.Name):
        return context.get(node.name, _UNKNOWN)
    if isinstance(node, (jinja2.nodes.Getattr, jinja2.nodes.Getitem)):
        base, key = _evaluated(node.node, context), _field_read(node)
        return base.get(key, _UNKNOWN) if isinstance(base, Mapping) and key is not None else _UNKNOWN
    return _UNKNOWN


def _lacks(value: Any, name: str) -> bool:
    return isinstance(value, Mapping) and name not in value


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TemplateLimitError):
        return f"stopped: {exc}"
    if isinstance(exc, SecurityError):
        return f"not allowed in a template: {exc}"
    if isinstance(exc, TemplateNotFound):
        return f"template file not found: {exc.name} (includes are read from the templates folder only)"
    if isinstance(exc, jinja2.UndefinedError):
        return str(exc)
    if isinstance(exc, (ValueError, TypeError, ArithmeticError, LookupError)):
        return f"{exc}"
    return f"{type(exc).__name__}: {exc}"


# What every template can read (routing.template_context builds it).
CONTEXT_NAMES = frozenset({"event", "data", "event_id", "source", "received_at", "route"})


_TOKEN_TEXT = {"end of print statement": "}}", "end of statement block": "%}", "end of template": ""}


def _syntax_column(source: str | None, exc: TemplateSyntaxError) -> int:
    """Where on its line a syntax error is (Jinja gives the line only): the token it names,
    looked for after the line's first '{{' or '{%'; 1 when it cannot be told."""
    lines = (source or "").splitlines()
    if not exc.lineno or exc.lineno > len(lines):
        return 1
    line = lines[exc.lineno - 1]
    found = re.search(r"got '([^']+)'|unexpected '([^']+)'", exc.message or "")
    token = _TOKEN_TEXT.get(found.group(1) or found.group(2), found.group(1) or found.group(2)) if found else ""
    if not token:
        return 1
    opened = [i for i in (line.find("{{"), line.find("{%")) if i >= 0]
    at = line.find(token, (min(opened) + 2) if opened else 0)
    return at + 1 if at >= 0 else 1


def _json_cause(output: str, position: int) -> str:
    """The likely cause of a JSON error near `position`, and its fix."""
    before = output[:position]
    number = re.search(r"(?<![\w\".])(0\d+)\s*$", before) or re.match(r"\s*(0\d+)", output[max(0, position - 1):])
    if number:
        return (
            f"{number.group(1)} has leading zeros, which a JSON number cannot: it is a code, so put the "
            "value in double quotes, like \"{{ data.code }}\""
        )
    return "check commas and quotes, and use '| tojson' for lists, objects and null"


class TemplateEngine:
    """Compiles template files from one folder and inline bodies, with a cache per file.

    The folder's files are read once (`read_templates`), or given (`sources`: the files an
    earlier load read, which `gateway serve` hands to its child processes)."""

    def __init__(
        self, templates_dir: Path, display_dir: str = "templates", sources: Mapping[str, bytes] | None = None, unusable: Mapping[str, str] | None = None
    ) -> None:
        self.templates_dir = templates_dir
        self.display_dir = display_dir
        if sources is None:
            sources, unusable = read_templates(templates_dir)
        self.sources, self.unusable = sources, unusable or {}
        loader = _snapshot_loader(templates_dir, display_dir, self.sources, self.unusable)
        self._environments = {mode: _make_environment(loader, mode) for mode in (True, False)}

    def from_file(self, name: str, json_mode: bool) -> CompiledTemplate:
        """Compile templates/<name>; TemplateError naming the file and line when it cannot."""
        display = f"{self.display_dir}/{name}"
        try:
            template = self._environments[json_mode].get_template(name)
        except TemplateNotFound as exc:
            missing = f"{self.display_dir}/{exc.name}" if exc.name != name else display
            raise TemplateError(f"template file not found: {missing}{self._near(name)}") from None
        except TemplateSyntaxError as exc:
            column = _syntax_column(self._source_of(name), exc)
            raise TemplateError(f"template syntax error: {self._syntax(exc)}", Location(display, exc.lineno, column)) from None
        self._check_names(json_mode, self._source_of(name), display, 0, set())
        return CompiledTemplate(template, display, 0, json_mode, self._source_of(name) or "")

    def from_string(self, source: str, where: Location, json_mode: bool, block: bool = False) -> CompiledTemplate:
        """Compile an inline `body:`; errors point into routes.yaml.

        `block` is true for a YAML block scalar (`body: |`), whose text starts on the next line.
        """
        offset = where.line if block else where.line - 1
        try:
            template = self._environments[json_mode].from_string(source)
        except TemplateSyntaxError as exc:
            column = _syntax_column(source, exc)
            if column > 1 and not block and "\n" not in source:
                column += where.column  # a one-line body: columns count from its start in routes.yaml
            raise TemplateError(f"template syntax error: {self._syntax(exc)}", Location(where.file, offset + exc.lineno, column)) from None
        self._check_names(json_mode, source, where.file, offset, set(), where if not block and "\n" not in source else None)
        one_line = not block and "\n" not in source
        return CompiledTemplate(template, where.file, offset, json_mode, source, where.column if one_line else 0)

    def _syntax(self, exc: TemplateSyntaxError) -> str:
        """Jinja's message, with the filter it probably meant when it names an unknown one."""
        unknown = re.match(r"No filter named '(\w+)'", exc.message or "")
        if unknown:
            return f"there is no filter '{unknown.group(1)}'{did_you_mean(unknown.group(1), self._environments[True].filters)}"
        return str(exc.message)

    def _source_of(self, name: str) -> str | None:
        try:
            data = self.sources.get("/".join(split_template_path(name)))
        except TemplateNotFound:  # '..': refused where it is included, with its own message
            return None
        return data.decode("utf-8", "replace") if data is not None else None

    def _check_names(self, json_mode: bool, source: str | None, display: str, offset: int, seen: set[str], inline: Location | None = None) -> None:
        """Every name a template (and each template it includes) reads must be one the context
        has: `dados.code` would fail on every event, so it fails here, at every line and column
        that reads it (one TemplateError, the other places in its `also`)."""
        found = self._unknown_names(json_mode, source, display, offset, seen, inline)
        if found:
            first, *rest = found
            raise TemplateError(first.message, first.location, tuple(rest))

    def _unknown_names(self, json_mode: bool, source: str | None, display: str, offset: int, seen: set[str], inline: Location | None) -> list[Problem]:
        if source is None:
            return []
        environment = self._environments[json_mode]
        tree = environment.parse(source)
        unknown = jinja2.meta.find_undeclared_variables(tree) - CONTEXT_NAMES - set(environment.globals)
        lines = source.splitlines()
        found: list[Problem] = []
        per_line: dict[tuple[int, str], int] = {}  # how many of a name's places on a line are taken
        for node in tree.find_all(jinja2.nodes.Name):
            if node.name in unknown and node.ctx == "load":
                text = lines[node.lineno - 1] if node.lineno <= len(lines) else ""
                nth = per_line.get((node.lineno, node.name), 0)
                per_line[(node.lineno, node.name)] = nth + 1
                columns = [m.start() for m in re.finditer(rf"(?<![\w.]){re.escape(node.name)}\b", text)] or [0]
                column = columns[min(nth, len(columns) - 1)] + 1 + (inline.column if inline else 0)
                hint = did_you_mean(node.name, sorted(CONTEXT_NAMES))
                found.append(Problem(f"templates see {', '.join(sorted(CONTEXT_NAMES))}; there is no '{node.name}'{hint}", Location(display, offset + node.lineno, column)))
        for included in jinja2.meta.find_referenced_templates(tree):
            if isinstance(included, str) and included not in seen:
                seen.add(included)
                found += self._unknown_names(json_mode, self._source_of(included), f"{self.display_dir}/{included}", 0, seen, None)
        return found

    def _near(self, name: str) -> str:
        if not self.sources and not self.templates_dir.is_dir():
            return f" (the folder {self.display_dir}/ does not exist)"
        known = list(self.sources)
        return did_you_mean(name, known)
