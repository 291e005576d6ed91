"""routes.yaml: schema, `${VAR}` interpolation, validation with located messages, compilation.

`load_config` is the one loader that `check`, `dry-run`, `test` and `serve` all use. It collects
every problem it can find in one pass and raises `ConfigError` with all of them; warnings
(inactive destinations, unknown event ids, …) travel on the returned `Config`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Union

import msgspec
import yaml

from gateway.destinations import TYPES as DESTINATION_TYPES
from gateway.destinations.base import DestinationSpec
from gateway.delivery.egress import Network, literal_address_refused, url_problem
from gateway.masking import mask_text, remember_secrets, secret_forms
from gateway.errors import ConfigError, Location, Problem, TemplateError, did_you_mean, one_of
from gateway.rules import Condition, RouteIndex, RuleCompiler, indexed_event_ids
from gateway.schema import Schema, SchemaReader
import gateway.tenants as tenants
from gateway.alerts.settings import Alerts, AlertsSpec, compile_alerts
from gateway.templates import CompiledTemplate, TemplateEngine, read_templates
from gateway.quotas import Quota
from gateway.units import Duration, Rate
from gateway.yamlfile import KeyPath as YamlPath
from gateway.yamlfile import YamlDocument, display_path, parse_yaml_bytes, read_yaml_bytes

GO_EVENT_IDS = (
    "ORDER_CREATED",
    "ORDER_CANCEL",
    "TAX_INVOICE_CHANGE_STATUS",
    "FINANCIAL_PAYMENT_DISCHARGE",
    "FINANCIAL_PAYMENT_STATUS",
    "ORDER_DELIVERY_CHANGE_STATUS",
)
LONG_DEDUPE_SECONDS = 3600  # longer windows swallow real repeats (design.md, Dedupe)
TOP_LEVEL_KEYS = ("version", "settings", "sources", "destinations", "routes", "alerts")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
GATEWAY_WIDE_SETTINGS = ("database", "retention", "egress_allow")
TENANT_SETTINGS = ("templates", "samples", "rule_tests")  # a shop's own, routes.yaml's unless its file says
MAX_SOURCE_TOKENS = 2
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
# Settings that name things rather than unlock them: values from the environment here are shown.
_NEVER_SECRET = frozenset({"company", "channel", "object", "action", "find_in", "upsert_by", "method", "timeout", "rate", "concurrency"})
_SECRET_MIN_LENGTH = 6


class SettingsSpec(Schema, kw_only=True):
    """`settings:` — where things are, and what deliveries may reach."""

    templates: str = "templates"
    samples: str = "examples/events"
    rule_tests: str = "tests/routes"
    egress_allow: list[str] = []  # private ranges deliveries may reach, e.g. [127.0.0.0/8]
    retention: Duration = Duration(30 * 86400, "30d")
    database: str | None = None  # the database every verb uses for this file (--db and GATEWAY_DATABASE_URL first)


class DedupeSpec(Schema, kw_only=True):
    window: Duration = Duration(600, "10m")
    key: str | None = None


class QuotaSpec(Schema, kw_only=True):
    rate: Rate  # events accepted per period, like 20/s or 600/min
    burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] | None = None  # at once after a quiet while; the rate's count by default


class SourceSpec(Schema, kw_only=True):
    token: Union[str, list[str], None] = None  # noqa: UP007 (a list of two during a rotation: the new one and the old one)
    allow_ips: list[str] = []
    trusted_proxies: list[str] = []
    dedupe: Union[str, int, float, DedupeSpec, bool] = "10m"  # noqa: UP007 (numbers only to say "write the unit")
    quota: QuotaSpec | None = None


class SendSpec(Schema, kw_only=True):
    to: str
    template: str | None = None
    body: str | None = None


class RouteSpec(Schema, kw_only=True):
    name: str
    when: dict[str, Any]
    send: Union[SendSpec, list[SendSpec]]  # noqa: UP007
    source: str | None = None
    shadow: bool = False
    description: str | None = None


# --------------------------------------------------------------------------- compiled config


@dataclass(frozen=True)
class Source:
    name: str
    token: str | None  # the first listed: the one `gateway send` uses
    allow_ips: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    trusted_proxies: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    dedupe_window: float | None
    dedupe_key: CompiledTemplate | None
    inactive: str | None
    location: Location
    tenant: str | None = None  # the routes.d/<tenant>.yaml it is declared in; None: routes.yaml
    quota: Quota | None = None  # events per second past which ingest answers 429
    tokens: tuple[str, ...] = ()  # every token accepted: two during a rotation

    def __post_init__(self) -> None:
        if self.token is not None and not self.tokens:
            object.__setattr__(self, "tokens", (self.token,))


@dataclass(frozen=True)
class Destination:
    name: str  # "crm" in routes.yaml; "loja-a/crm" in routes.d/loja-a.yaml (two shops may both have a crm)
    spec: DestinationSpec
    inactive: str | None  # why deliveries to it are skipped (an unset variable), or None
    location: Location
    tenant: str | None = None

    @property
    def type(self) -> str:
        return str(self.spec.__struct_config__.tag)


@dataclass(frozen=True)
class Send:
    destination: str
    template: CompiledTemplate
    location: Location


@dataclass(frozen=True)
class Route:
    name: str  # qualified by its tenant as destinations are: "loja-a/pedido-criado"
    source: str
    condition: Condition
    event_ids: frozenset[str] | None
    sends: tuple[Send, ...]
    shadow: bool
    location: Location
    tenant: str | None = None


class ConfigFiles(msgspec.Struct, frozen=True):
    """The exact bytes a config was loaded from: routes.yaml and every file of its templates
    folder, each read once. `gateway serve` hands them to its child processes, so all three run
    the very version the HTTP process checked, whatever the files on disk say by then."""

    path: str  # routes.yaml, as given (its folder anchors the relative paths in settings)
    routes: bytes
    templates: dict[str, bytes] = {}  # by path inside the templates folder
    unusable: dict[str, str] = {}  # other files there (binary, too big): why, if a route uses one
    tenants: dict[str, ConfigFiles] = {}  # routes.d/<tenant>.yaml, each with its templates: the versions in force


@dataclass(frozen=True)
class Config:
    file: str
    version: str  # short hash of routes.yaml and every template of the templates folder
    settings: SettingsSpec
    base_dir: Path
    sources: dict[str, Source]
    destinations: dict[str, Destination]
    routes: tuple[Route, ...]
    secrets: frozenset[str]
    warnings: tuple[Problem, ...] = ()
    ordering_templates: dict[str, CompiledTemplate] = field(default_factory=dict)  # by destination
    egress_allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # private ranges deliveries may reach
    files: ConfigFiles | None = None  # what it was loaded from
    tenants: dict[str, Config] = field(default_factory=dict)  # each routes.d/<tenant>.yaml in force, compiled alone (gateway/tenants.py)
    own: Config | None = None  # with tenants merged in: routes.yaml's own part, compiled alone
    refused: dict[str, tuple[Problem, ...]] = field(default_factory=dict)  # by tenant: edits a reload refused (its last good version runs)
    tenant: str | None = None  # for one tenant's file compiled alone
    alerts: Alerts | None = None  # routes.yaml's alerts: section (gateway/alerts/)
    index: RouteIndex[Route] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", RouteIndex(self.routes))

    def path(self, relative: str) -> Path:
        """A settings path, relative to the folder of routes.yaml."""
        return (self.base_dir / relative).resolve()


# --------------------------------------------------------------------------- interpolation


@dataclass
class _Interpolation:
    environ: Mapping[str, str]
    unset: dict[YamlPath, list[str]] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)

    def walk(self, value: Any, at: YamlPath, doc: YamlDocument) -> Any:
        if isinstance(value, dict):
            return {k: self.walk(v, (*at, k), doc) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v, (*at, i), doc) for i, v in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            return self.substitute(value, at, doc)
        return value

    def substitute(self, text: str, at: YamlPath, doc: YamlDocument) -> str:
        def replace(match: re.Match[str]) -> str:
            whole, name, default = match.group(0), match.group(1), match.group(2)
            if whole == "$$":
                return "$"
            if name is None:
                message = _malformed_variable(text[match.end():])
                self.problems.append(Problem(f"{message}; write $$ for a literal $", doc.where(at)))
                return whole
            if name in self.environ:
                if len(self.environ[name]) >= _SECRET_MIN_LENGTH and at[-1] not in _NEVER_SECRET:
                    self.secrets.update(secret_forms(self.environ[name]))
                return self.environ[name]
            if default is not None:
                return default
            self.unset.setdefault(at, []).append(name)
            return whole  # keep ${NAME} visible, so dry-run shows what is missing

        return _VARIABLE.sub(replace, text)

    def unset_under(self, prefix: YamlPath) -> list[str]:
        return sorted({name for at, names in self.unset.items() if at[: len(prefix)] == prefix for name in names})

    def first_unset(self, prefix: YamlPath) -> YamlPath:
        return next((at for at in self.unset if at[: len(prefix)] == prefix), prefix)


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike[str] | ConfigFiles, environ: Mapping[str, str] | None = None, previous: Config | None = None) -> Config:
    """Load, validate and compile routes.yaml and the tenants' files of routes.d/ beside it
    (gateway/tenants.py); ConfigError listing every problem found. From the files on disk, or
    from the `ConfigFiles` an earlier load read (`config.files`: the same tenants' files too).

    With `previous` (a reload), a tenant whose file is now broken keeps its version in force
    while the others go on: its problems travel on the result's `refused`. Without it (a start,
    `check`), any problem is an error."""
    files = path if isinstance(path, ConfigFiles) else None
    main_path = files.path if files else str(path)
    environ = os.environ if environ is None else environ
    if files is not None:
        found: dict[str, Path | ConfigFiles] = dict(files.tenants)
    else:
        found = dict(tenants.tenant_paths(main_path))
    if not found:
        return _Loader(main_path, environ, files).load()
    return _load_tenants(main_path, environ, files, found, previous)


def _load_tenants(main_path: str, environ: Mapping[str, str], files: ConfigFiles | None, found: dict[str, Path | ConfigFiles], previous: Config | None) -> Config:
    base_dir = Path(main_path).resolve().parent
    if files is None and not Path(main_path).exists():  # routes.d/ instead of routes.yaml: the gateway's defaults
        files = ConfigFiles(main_path, b"version: 1\n")
    main = _Loader(main_path, environ, files, tenants_beside=True).load()  # its errors are the whole gateway's: raised
    parts: dict[str, Config] = {}
    problems: list[Problem] = []
    refused: dict[str, list[Problem]] = {}
    for tenant, where in found.items():
        tenant_files = where if isinstance(where, ConfigFiles) else None
        path = tenant_files.path if tenant_files else display_path(where)  # type: ignore[arg-type]
        bad_name = tenants.name_problem(tenant, path)
        try:
            if bad_name:
                raise ConfigError([bad_name])
            parts[tenant] = _Loader(path, environ, tenant_files, tenant, base_dir, gateway_egress=main.egress_allow, inherited=main.settings).load()
        except ConfigError as exc:
            kept = previous.tenants.get(tenant) if previous is not None else None
            if previous is None:
                problems.extend(exc.problems)
            else:
                refused[tenant] = list(exc.problems)
                if kept is not None:
                    parts[tenant] = kept  # its last good version goes on; a new shop's broken file stays out until fixed
    problems += _claimed_twice(main, parts, previous, refused)
    if problems:
        raise ConfigError(sorted(problems, key=_position))
    return merged(main, parts, {tenant: tuple(found) for tenant, found in refused.items()})


def _claimed_twice(main: Config, parts: dict[str, Config], previous: Config | None, refused: dict[str, list[Problem]]) -> list[Problem]:
    """A source path claimed by two files: at a start, an error; at a reload, the tenant whose
    file changed keeps its last good version (or stays out, if it had none)."""
    claims = [(name, None, source.location) for name, source in main.sources.items()]
    claims += [(name, tenant, source.location) for tenant, part in parts.items() for name, source in part.sources.items()]
    clashes = tenants.sources_claimed_twice(claims)
    if not clashes or previous is None:
        return clashes
    for problem in clashes:
        tenant = next((t for t, part in parts.items() if problem.location and problem.location.file == part.file), None)
        kept = previous.tenants.get(tenant) if tenant else None
        if tenant is None or (kept is not None and kept.version == parts[tenant].version):
            return clashes  # routes.yaml itself, or an unchanged file, claims it: nothing to fall back on
        refused.setdefault(tenant, []).append(problem)
        if kept is not None:
            parts[tenant] = kept
        else:
            del parts[tenant]
    return tenants.sources_claimed_twice(
        [(n, None, s.location) for n, s in main.sources.items()] + [(n, t, s.location) for t, part in parts.items() for n, s in part.sources.items()]
    )


def merged(main: Config, parts: dict[str, Config], refused: Mapping[str, tuple[Problem, ...]] | None = None) -> Config:
    """routes.yaml's config with every tenant's sources, destinations and routes beside its own
    (names qualified, so nothing collides but source paths, checked before)."""
    digest = hashlib.sha256(main.version.encode())
    for tenant in sorted(parts):
        digest.update(f"\0{tenant}\0{parts[tenant].version}".encode())
    assert main.files is not None
    files = msgspec.structs.replace(main.files, tenants={tenant: part.files for tenant, part in parts.items() if part.files is not None})
    return replace(
        main,
        version=digest.hexdigest()[:12],
        files=files,
        sources={**main.sources, **{n: s for part in parts.values() for n, s in part.sources.items()}},
        destinations={**main.destinations, **{n: d for part in parts.values() for n, d in part.destinations.items()}},
        routes=main.routes + tuple(r for part in parts.values() for r in part.routes),
        secrets=main.secrets.union(*(part.secrets for part in parts.values())),
        warnings=main.warnings + tuple(w for part in parts.values() for w in part.warnings),
        ordering_templates={**main.ordering_templates, **{n: t for part in parts.values() for n, t in part.ordering_templates.items()}},
        tenants=dict(parts),
        own=main,
        refused=dict(refused or {}),
    )


class _Loader:
    def __init__(
        self,
        path: str,
        environ: Mapping[str, str],
        files: ConfigFiles | None = None,
        tenant: str | None = None,
        base_dir: Path | None = None,
        tenants_beside: bool = False,
        gateway_egress: tuple[Network, ...] = (),
        inherited: SettingsSpec | None = None,
    ) -> None:
        self.path = path
        self.files = files
        self.tenant = tenant  # loading routes.d/<tenant>.yaml: its names are qualified by it
        self.tenants_beside = tenants_beside  # routes.yaml with tenant files beside it: routes are optional here
        self.base_dir = base_dir or Path(path).resolve().parent
        self.gateway_egress = gateway_egress  # a tenant's deliveries may reach what routes.yaml allows
        self.inherited = inherited  # routes.yaml's settings: a tenant's file uses its folders unless it names its own
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.env = _Interpolation(environ)
        self.doc: YamlDocument = YamlDocument(path, None)
        self.converter = SchemaReader(self.doc, self.problems)

    def error(self, message: str, location: Location | None) -> None:
        problem = Problem(message, location)
        if problem not in self.problems:  # a template file used by many routes is one mistake to fix, said once
            self.problems.append(problem)

    def template_errors(self, exc: TemplateError, at: YamlPath) -> None:
        """Every place of a template's mistake (TemplateError.also), each at its own line."""
        for problem in exc.problems():
            self.error(problem.message, problem.location or self.doc.where(at))

    def warn(self, message: str, location: Location | None) -> None:
        self.warnings.append(Problem(message, location, "warning"))

    def load(self) -> Config:
        raw = self.files.routes if self.files else read_yaml_bytes(self.path)
        self.doc = parse_yaml_bytes(raw, self.path)
        self.converter.doc = self.doc
        top = self.top_level()
        data = self.env.walk(top, (), self.doc)
        self.problems.extend(self.env.problems)
        settings = self.settings(data.get("settings"))
        self.tenant_settings(data.get("settings"))
        self.database_setting(settings)
        egress_allow = self.gateway_egress if self.tenant else self.networks(settings.egress_allow, ("settings", "egress_allow"))
        engine = self.template_engine(settings)
        sources = self.sources(data.get("sources"), engine)
        destinations = self.destinations(data.get("destinations"), egress_allow)
        ordering = self.ordering_templates(destinations, engine)
        routes = self.routes(data.get("routes"), sources, destinations, engine)
        alerts = self.alerts(data.get("alerts"), destinations)
        remember_secrets(self.env.secrets)  # for log lines and messages whose origin nobody checked
        if self.problems:
            raise ConfigError(sorted((self.masked(p) for p in self.problems), key=_position))
        files = self.files or ConfigFiles(self.path, raw, dict(engine.sources), dict(engine.unusable))
        return Config(
            file=self.path,
            version=_version(files),
            files=files,
            settings=settings,
            base_dir=self.base_dir,
            sources=sources,
            destinations={d.name: d for d in destinations.values()},
            routes=tuple(routes),
            secrets=frozenset(self.env.secrets),
            warnings=tuple(sorted((self.masked(w) for w in self.warnings), key=_position)),
            ordering_templates=ordering,
            egress_allow=egress_allow,
            tenant=self.tenant,
            alerts=alerts,
        )

    def alerts(self, raw: Any, destinations: dict[str, Destination]) -> Alerts | None:
        if raw is None:
            return None
        if self.tenant is not None:
            self.error("alerts: are about the whole gateway, every shop's destinations too: set them in routes.yaml, not in a shop's file", self.doc.key_where(("alerts",)))
            return None
        spec = self.converter.convert(raw, AlertsSpec, ("alerts",), "alerts")
        if spec is None:
            return None
        return compile_alerts(spec, {name: d.type for name, d in destinations.items()}, self.doc.where, self.error)

    def qualified(self, name: str) -> str:
        """A destination's or route's name as the gateway knows it: scoped by the tenant."""
        return f"{self.tenant}/{name}" if self.tenant else name

    def tenant_settings(self, raw: Any) -> None:
        """A tenant's file names its own templates and samples; what the whole gateway shares
        (the database, the retention, the private ranges deliveries may reach) is set in routes.yaml."""
        if self.tenant is None or not isinstance(raw, dict):
            return
        for key in GATEWAY_WIDE_SETTINGS:
            if key in raw:
                self.error(f"settings.{key} applies to the whole gateway, every shop alike: set it in routes.yaml, not in a shop's file", self.doc.key_where(("settings", key)))

    def masked(self, problem: Problem) -> Problem:
        """A message may quote a value read from a variable (a type error does): never a secret."""
        text = mask_text(problem.message, self.env.secrets)
        return problem if text == problem.message else replace(problem, message=text)

    def template_engine(self, settings: SettingsSpec) -> TemplateEngine:
        folder = self.resolve(settings.templates)
        try:
            sources, unusable = (self.files.templates, self.files.unusable) if self.files else read_templates(folder)
        except TemplateError as exc:
            self.error(exc.detail, self.doc.where(("settings", "templates")))
            sources, unusable = {}, {}
        return TemplateEngine(folder, display_path(folder), sources, unusable)

    def resolve(self, relative: str) -> Path:
        return (self.base_dir / relative).resolve()

    def top_level(self) -> dict[str, Any]:
        data = self.doc.data
        start = Location(self.path, 1, 1)
        if not isinstance(data, dict):
            raise ConfigError([Problem("routes.yaml must be a mapping starting with 'version: 1'", start)])
        for key in data:
            if key not in TOP_LEVEL_KEYS:
                hint = did_you_mean(key, TOP_LEVEL_KEYS)
                self.error(f"unknown top-level key '{key}'{hint}; allowed: {', '.join(TOP_LEVEL_KEYS)}", self.doc.key_where((key,)))
        if "version" not in data:
            self.error("missing 'version: 1' at the top of the file", start)
        elif data["version"] != 1 or isinstance(data["version"], bool):
            self.error(f"version {data['version']!r} is not supported; this gateway reads 'version: 1'", self.doc.where(("version",)))
        return data

    # -- settings and sources

    def database_setting(self, settings: SettingsSpec) -> None:
        url = settings.database
        if url is not None and not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
            self.error(f"settings.database must be a database URL like sqlite:///data/gateway.db, not '{url}'", self.doc.where(("settings", "database")))

    def settings(self, raw: Any) -> SettingsSpec:
        if self.inherited is not None and isinstance(raw or {}, dict):
            raw = {**{key: getattr(self.inherited, key) for key in TENANT_SETTINGS}, **(raw or {})}
        return self.converter.convert(raw or {}, SettingsSpec, ("settings",), "settings") or SettingsSpec()

    def network(self, text: str, at: YamlPath) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
        try:
            return ipaddress.ip_network(text, strict=False)
        except ValueError:
            self.error(f"'{text}' is not an IP address or range; write it like 203.0.113.7 or 203.0.113.0/24", self.doc.where(at))
            return None

    def named_section(self, raw: Any, section: str, required: bool) -> dict[str, Any]:
        if raw is None:
            if required:
                self.error(f"missing '{section}:'; see the shipped routes.yaml for an example", Location(self.path, 1, 1))
            return {}
        if not isinstance(raw, dict):
            self.error(f"'{section}' must be a mapping of names to settings", self.doc.where((section,)))
            return {}
        for name in raw:
            if not _NAME.fullmatch(name):
                self.error(f"the name '{name}' may only use lowercase letters, digits, '-' and '_'", self.doc.key_where((section, name)))
        return raw

    def sources(self, raw: Any, engine: TemplateEngine) -> dict[str, Source]:
        sources: dict[str, Source] = {}
        for name, item in self.named_section(raw, "sources", required=not self.tenants_beside and self.tenant is None).items():
            at: YamlPath = ("sources", name)
            spec = self.converter.convert(item or {}, SourceSpec, at, f"source '{name}'")
            if spec is None:
                continue
            unset = self.env.unset_under(at)
            inactive = f"{', '.join(unset)} not set" if unset else None
            if inactive:
                self.warn(f"source '{name}' is inactive: {inactive}; its events are refused until you set it", self.doc.where(self.env.first_unset(at)))
            elif not spec.token and not spec.allow_ips:
                self.warn(f"source '{name}' has neither a token nor allow_ips: anyone can send it events", self.doc.where(at))
            window, key = self.dedupe(spec.dedupe, (*at, "dedupe"), engine)
            tokens = self.source_tokens(spec.token, (*at, "token"))
            sources[name] = Source(
                name=name,
                token=tokens[0] if tokens else None,
                tokens=tokens,
                allow_ips=self.networks(spec.allow_ips, (*at, "allow_ips")),
                trusted_proxies=self.networks(spec.trusted_proxies, (*at, "trusted_proxies")),
                dedupe_window=window,
                dedupe_key=key,
                inactive=inactive,
                location=self.doc.key_where(at),
                tenant=self.tenant,
                quota=self.quota(spec.quota) if spec.quota else None,
            )
        return sources

    def source_tokens(self, raw: str | list[str] | None, at: YamlPath) -> tuple[str, ...]:
        """A token, or two while GO's URL changes from the old one to the new one. An empty one
        is never a token (a rotation's old one left unset, `${OLD:-}`, is simply not there)."""
        if raw is None:
            return ()
        listed = (raw,) if isinstance(raw, str) else tuple(raw)
        tokens = tuple(t for t in listed if t)
        if not tokens:
            self.error("token: it is empty; give the token GO sends (?token=...) or leave out 'token:' and use allow_ips", self.doc.where(at))
        elif len(listed) > MAX_SOURCE_TOKENS:
            self.error(f"token: give one token, or a list of two while you rotate it (the new one and the old one); this list has {len(listed)}", self.doc.where(at))
        elif len(set(tokens)) != len(tokens):
            self.error("token: the same token is listed twice; a rotation lists the new one and the old one", self.doc.where(at))
        return tokens[:MAX_SOURCE_TOKENS]

    def quota(self, spec: QuotaSpec) -> Quota:
        return Quota(spec.rate.count / spec.rate.per_seconds, float(spec.burst or spec.rate.count), spec.rate.text)

    def networks(self, texts: list[str], at: YamlPath) -> tuple[Any, ...]:
        found = (self.network(text, (*at, index)) for index, text in enumerate(texts))
        return tuple(net for net in found if net is not None)

    def dedupe(self, raw: str | float | DedupeSpec | bool, at: YamlPath, engine: TemplateEngine) -> tuple[float | None, CompiledTemplate | None]:
        if raw is False:
            return None, None
        if raw is True:
            raw = DedupeSpec()
        if not isinstance(raw, DedupeSpec):
            try:
                raw = DedupeSpec(window=Duration.parse(raw))
            except ValueError as exc:
                self.error(f"dedupe: {exc}", self.doc.where(at))
                return None, None
        if raw.window.seconds > LONG_DEDUPE_SECONDS:
            self.warn(
                f"dedupe window of {raw.window}: an order whose status comes back to an earlier one sends the same body again,"
                " and inside the window it is taken for a duplicate and not sent on; keep it to minutes (the default is 10m)",
                self.doc.where(at),
            )
        key = self.inline_template(raw.key, (*at, "key"), engine, json_mode=False) if raw.key else None
        return raw.window.seconds, key

    # -- destinations

    def destinations(self, raw: Any, egress_allow: tuple[Network, ...] = ()) -> dict[str, Destination]:
        destinations: dict[str, Destination] = {}
        for name, item in self.named_section(raw, "destinations", required=False).items():
            at: YamlPath = ("destinations", name)
            what = f"destination '{name}'"
            kind = item.get("type") if isinstance(item, dict) else None
            if not isinstance(item, dict) or kind is None:
                self.error(f"{what} needs 'type:', one of {one_of(DESTINATION_TYPES)}", self.doc.where(at))
                continue
            if kind not in DESTINATION_TYPES:
                hint = did_you_mean(str(kind), DESTINATION_TYPES)
                self.error(f"{what} has unknown type '{kind}'{hint}; types are {one_of(DESTINATION_TYPES)}", self.doc.where((*at, "type")))
                continue
            spec_type = DESTINATION_TYPES[kind].Spec
            spec = self.converter.convert(item, spec_type, at, what)
            if spec is None:
                continue
            unset = self.env.unset_under(at)
            inactive = f"{', '.join(unset)} not set" if unset else None
            if inactive:
                self.warn(f"{what} is inactive ({inactive}): its deliveries will be recorded as skipped", self.doc.where(self.env.first_unset(at)))
            else:
                for key, message in spec.problems():
                    self.error(f"{what}: {message}", self.doc.where((*at, key)))
                self.addresses(spec, at, what, egress_allow)
            self.literal_secrets(item, at, what)
            destinations[name] = Destination(self.qualified(name), spec, inactive, self.doc.key_where(at), self.tenant)
        return destinations

    def addresses(self, spec: DestinationSpec, at: YamlPath, what: str, egress_allow: tuple[Network, ...]) -> None:
        """Addresses that cannot work, or that the egress guard would refuse at delivery, are
        errors here; from a variable, a warning (the delivery is dead with the same reason). A
        value from a variable may be a secret: the variable is named, the value never quoted."""
        for key in ("url", "base_url"):
            url = getattr(spec, key, None)
            if not isinstance(url, str):
                continue
            written = self.doc_value((*at, key))
            origin = f" (from {written.strip()})" if isinstance(written, str) and "${" in written else ""
            problem = url_problem(url)
            if problem is None and not origin:
                problem = literal_address_refused(url, egress_allow)
            if problem and origin:  # the value may differ where the gateway runs: warned here, dead with this reason there
                self.warn(f"{what}: the address in '{key}'{origin} cannot be used: {problem}; its deliveries will be dead", self.doc.where((*at, key)))
            elif problem:
                self.error(f"{what}: the address in '{key}' cannot be used: {problem}", self.doc.where((*at, key)))

    def ordering_templates(self, destinations: dict[str, Destination], engine: TemplateEngine) -> dict[str, CompiledTemplate]:
        compiled = {}
        for name, destination in destinations.items():
            if destination.spec.ordered_by:
                at = ("destinations", name, "ordered_by")
                template = self.inline_template(destination.spec.ordered_by, at, engine, json_mode=False)
                if template:
                    compiled[destination.name] = template
        return compiled

    def literal_secrets(self, item: dict[str, Any], at: YamlPath, what: str) -> None:
        """Secrets written into routes.yaml leak through backups and git: say so."""
        for key in ("token", "sign"):
            value = self.doc_value((*at, key))
            if isinstance(value, str) and value and "${" not in value:
                self.env.secrets.add(item[key])
                self.warn(f"{what} has its {key} written in the file; use ${{VARIABLE}} and keep it in the environment", self.doc.where((*at, key)))

    def declared(self, section: str) -> list[str]:
        """Names written under a section, valid or not (to avoid reporting one mistake twice)."""
        raw = self.doc_value((section,))
        return [str(name) for name in raw] if isinstance(raw, dict) else []

    def doc_value(self, at: YamlPath) -> Any:
        return self.doc.value_at(at)

    # -- routes

    def routes(self, raw: Any, sources: dict[str, Source], destinations: dict[str, Destination], engine: TemplateEngine) -> list[Route]:
        if raw is None or raw == []:
            if not self.tenants_beside:
                self.warn("there are no routes: events will be stored but sent nowhere", Location(self.path, 1, 1))
            return []
        if not isinstance(raw, list):
            self.error("'routes' must be a list, each route starting with '- name:'", self.doc.where(("routes",)))
            return []
        routes: list[Route] = []
        seen: dict[str, Location] = {}
        for index, item in enumerate(raw):
            route = self.route(item, ("routes", index), sources, destinations, engine, seen)
            if route:
                routes.append(route)
        return routes

    def route(self, item: Any, at: YamlPath, sources: dict[str, Source], destinations: dict[str, Destination], engine: TemplateEngine, seen: dict[str, Location]) -> Route | None:
        label = f"route '{item.get('name')}'" if isinstance(item, dict) and isinstance(item.get("name"), str) else f"route #{at[-1] + 1}"
        spec = self.converter.convert(item, RouteSpec, at, label)
        if spec is None:
            return None
        if spec.name in seen:
            self.error(f"two routes are named '{spec.name}' (the first at line {seen[spec.name].line}); names must be unique", self.doc.where((*at, "name")))
        seen.setdefault(spec.name, self.doc.where((*at, "name")))
        source = self.route_source(spec, at, sources, label)
        compiler = RuleCompiler(self.doc.where, self.doc.key_where)
        condition = compiler.compile_when(spec.when, (*at, "when"))
        self.problems.extend(compiler.problems)
        self.check_event_ids(spec.when, (*at, "when"))
        sends = spec.send if isinstance(spec.send, list) else [spec.send]
        if not sends:
            self.error(f"{label} sends nowhere; give 'send:' a destination", self.doc.where((*at, "send")))
        send_at = (*at, "send") if not isinstance(spec.send, list) else None
        compiled = [self.send(s, send_at or (*at, "send", i), destinations, engine, label) for i, s in enumerate(sends)]
        if condition is None or source is None or None in compiled:
            return None
        return Route(self.qualified(spec.name), source, condition, indexed_event_ids(spec.when), tuple(compiled), spec.shadow, self.doc.where(at), self.tenant)  # type: ignore[arg-type]

    def route_source(self, spec: RouteSpec, at: YamlPath, sources: dict[str, Source], label: str) -> str | None:
        declared = self.declared("sources")
        if spec.source is None:
            if len(declared) == 1:
                return declared[0] if declared[0] in sources else None
            self.error(f"{label} must say which source it takes events from: source: {one_of(declared)}", self.doc.where(at))
            return None
        if spec.source not in declared:
            hint = did_you_mean(spec.source, sources)
            self.error(f"{label} takes events from unknown source '{spec.source}'{hint}; sources are {one_of(declared)}", self.doc.where((*at, "source")))
            return None
        return spec.source if spec.source in sources else None

    def check_event_ids(self, when: dict[str, Any], at: YamlPath) -> None:
        for event_id in sorted(indexed_event_ids(when) or ()):
            if event_id not in GO_EVENT_IDS:
                hint = did_you_mean(event_id, GO_EVENT_IDS)
                self.warn(f"GO sends no event '{event_id}'{hint}; GO's events are {', '.join(GO_EVENT_IDS)}", self.doc.where((*at, "event_id")))

    def send(self, spec: SendSpec, at: YamlPath, destinations: dict[str, Destination], engine: TemplateEngine, label: str) -> Send | None:
        destination = destinations.get(spec.to)
        if destination is None:
            if spec.to in self.declared("destinations"):
                return None  # that destination has its own error already
            hint = did_you_mean(spec.to, destinations)
            known = f"; destinations are {one_of(destinations)}" if destinations else "; define it under 'destinations:'"
            self.error(f"{label} sends to unknown destination '{spec.to}'{hint}{known}", self.doc.where((*at, "to")))
            return None
        if (spec.template is None) == (spec.body is None):
            self.error(f"{label}: each send needs exactly one of 'template:' (a file under templates/) or 'body:' (inline)", self.doc.where(at))
            return None
        json_mode = destination.spec.json_body
        if spec.template is not None:
            template = self.file_template(spec.template, (*at, "template"), engine, json_mode)
        else:
            template = self.inline_template(spec.body, (*at, "body"), engine, json_mode)
        return Send(destination.name, template, self.doc.where(at)) if template else None

    def file_template(self, name: str, at: YamlPath, engine: TemplateEngine, json_mode: bool) -> CompiledTemplate | None:
        try:
            template = engine.from_file(name, json_mode)
        except TemplateError as exc:
            self.template_errors(exc, at)
            return None
        return template

    def inline_template(self, source: str | None, at: YamlPath, engine: TemplateEngine, json_mode: bool) -> CompiledTemplate | None:
        try:
            return engine.from_string(source or "", self.doc.where(at), json_mode, block=at in self.doc.block_scalars)
        except TemplateError as exc:
            self.template_errors(exc, at)
            return None


def _malformed_variable(rest: str) -> str:
    """What is wrong with a '${' and the text after it, with the fix."""
    closing = rest.find("}")
    name = re.match(r"[A-Za-z_][A-Za-z0-9_]*", rest)
    if closing < 0 and name:
        return f"the variable {name.group(0)} is not closed: write ${{{name.group(0)}}}"
    if closing > 0:
        inside = rest[:closing]
        suggestion = re.sub(r"\W+", "_", inside.strip()).upper() or "HUBSPOT_TOKEN"
        return f"'${{{inside}}}' is not a variable name: use only letters, digits and _, like ${{{suggestion}}}"
    return "'${' must be followed by a variable name and '}', like ${HUBSPOT_TOKEN}"


def configured_database(path: str | os.PathLike[str]) -> str | None:
    """`settings.database` of a routes.yaml, a relative sqlite path made relative to the file's
    folder; None when it has none. Read from the YAML alone when the file has other mistakes
    (its stored events can be looked at meanwhile), and None when it cannot be read at all."""
    try:
        raw = load_config(path).settings.database
    except (ConfigError, OSError):
        raw = _raw_setting(Path(path), "database")
    if not isinstance(raw, str) or not raw:
        return None
    return resolve_sqlite_url(raw, Path(path).resolve().parent)


def resolve_sqlite_url(url: str, folder: Path) -> str:
    """A sqlite:/// URL with a relative path, made absolute from `folder`; others unchanged."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url.endswith(":memory:") or Path(url[len(prefix):]).is_absolute():
        return url
    return prefix + str((folder / url[len(prefix):]).resolve())


def _raw_setting(path: Path, key: str) -> Any:
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    settings = data.get("settings") if isinstance(data, dict) else None
    return settings.get(key) if isinstance(settings, dict) else None


def _version(files: ConfigFiles) -> str:
    """Changes with any byte of routes.yaml or of a template, includes too: a hot reload that
    sees another version swaps everything in. Files that are no templates count by name only
    (a database kept in the folder changes all the time)."""
    digest = hashlib.sha256(files.routes)
    for name in sorted(files.templates):
        digest.update(b"\0" + name.encode() + b"\0")
        digest.update(files.templates[name])
    for name in sorted(files.unusable):
        digest.update(b"\1" + name.encode() + b"\0" + files.unusable[name].encode())
    return digest.hexdigest()[:12]


def _position(problem: Problem) -> tuple[str, int, int]:
    where = problem.location
    return (where.file, where.line, where.column) if where else ("", 0, 0)
