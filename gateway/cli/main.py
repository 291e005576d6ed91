"""The `gateway` command: serve, worker, check, dry-run, test, events, replay, purge, plan.

One handler at the top turns every expected error into its message and an exit code; a
traceback is shown only with GATEWAY_DEBUG=1, because the people running this are not
programmers and a stack trace tells them nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape

from gateway import verify
from gateway.cli import admin, plan, rule_tests
from gateway.cli import check as check_report
from gateway.cli import dry_run as dry_runs
from gateway.config import Config, configured_database, load_config
from gateway.errors import ConfigError, GatewayError, Problem, did_you_mean, plural
from gateway.masking import scrub, without_password
from gateway.routing import read_event_file, route_event
from gateway.store import DEFAULT_DATABASE_URL, DeliveryFilter, EventQuery, Store
from gateway.store import migrate as store_migrate
from gateway.store.base import EventRow
from gateway.units import Duration

DEFAULT_CONFIG = "routes.yaml"
EXIT_OK, EXIT_ERRORS, EXIT_CHANGES, EXIT_INTERNAL = 0, 1, 2, 70


def _console(stderr: bool = False) -> Console:
    # emoji=False: rich would turn the ':100:' of 'routes.yaml:100:1' into an emoji
    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


def config_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--config",
        "config_path",
        envvar="GATEWAY_CONFIG",
        default=DEFAULT_CONFIG,
        show_default=True,
        help="routes.yaml to use (env GATEWAY_CONFIG).",
    )(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="go-webhook-gateway")
def main() -> None:
    """Webhook routing gateway for Gestão Online (GO)."""


@main.command()
@config_option
@click.option("--samples", help="Folder of sample events to render templates with (default: settings.samples).")
@click.option("--json", "as_json", is_flag=True, help="Print problems as JSON.")
def check(config_path: str, samples: str | None, as_json: bool) -> int:
    """Validate routes.yaml and render every template with the sample events."""
    report = verify.check(config_path, samples)
    if as_json:
        click.echo(check_report.dumps_problems(report.problems))
        return EXIT_ERRORS if report.errors else EXIT_OK
    out = _console()
    for problem in report.problems:
        _print_problem(out, problem)
    colour = "red" if report.errors else "green"
    out.print(f"[{colour}]{escape(check_report.sample_summary(report))}[/]")
    return EXIT_ERRORS if report.errors else EXIT_OK


def _print_problem(out: Console, problem: Problem) -> None:
    colour = "yellow" if problem.severity == "warning" else "red"
    out.print(f"[{colour}]{escape(str(problem))}[/]")


@main.command("dry-run")
@config_option
@click.argument("event_file", metavar="EVENT.json", required=False)
@click.option("--route", "only_route", help="Show only this route.")
@click.option("--source", help="The source the event arrives on (default: the first in routes.yaml).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--send", is_flag=True, help="Deliver the matching requests for real, once.")
@click.option("--alerts", "show_alerts", is_flag=True, help="Show what each alert of routes.yaml would send (no EVENT.json).")
def dry_run(config_path: str, event_file: str | None, only_route: str | None, source: str | None, as_json: bool, send: bool, show_alerts: bool) -> int:
    """Show what EVENT.json (or - for standard input) would do: routes, reasons, requests.
    Exit 1 when a matched route's template fails or its address would be refused."""
    config = load_config(config_path)
    if show_alerts:
        dry_runs.print_alerts(_console(), config)
        return EXIT_OK
    if event_file is None:
        raise click.UsageError("give the event to try, like `gateway dry-run examples/events/order_created.json` (or --alerts)")
    if only_route and only_route not in {r.name for r in config.routes}:
        raise GatewayError(f"no route named '{only_route}'{did_you_mean(only_route, [r.name for r in config.routes])}")
    event = read_event_file(event_file)
    result = route_event(config, event, source=source, explain=True, only_route=only_route)
    sent = dry_runs.send_for_real(config, result) if send else None
    if as_json:
        click.echo(json.dumps(dry_runs.as_json(config, result, sent), ensure_ascii=False, indent=2))
    else:
        _warn_inactive(config)
        dry_runs.print_text(_console(), config, result, sent)
    return EXIT_ERRORS if dry_runs.fails(config, result) else EXIT_OK


def _warn_inactive(config: Config) -> None:
    err = _console(stderr=True)
    for problem in config.warnings:
        if "inactive" in problem.message:
            _print_problem(err, problem)


@main.command("test")
@config_option
@click.argument("paths", nargs=-1)
def test_rules(config_path: str, paths: tuple[str, ...]) -> int:
    """Run rule test cases (YAML files; default: settings.rule_tests)."""
    config = load_config(config_path)
    out = _console()
    files = rule_tests.find_case_files(config, list(paths))
    if not files:
        raise GatewayError(f"no rule test files found in {', '.join(paths) or config.settings.rule_tests}")
    passed = failed = 0
    for path in files:
        for result in rule_tests.run_case_file(config, path):
            if result.passed:
                passed += 1
                out.print(f"[green]PASS[/] {escape(result.name)}")
                continue
            failed += 1
            out.print(f"[red]FAIL[/] {escape(result.name)} [dim]({result.location})[/]")
            for failure in result.failures:
                out.print("  " + escape(failure).replace("\n", "\n  "))
    colour = "red" if failed else "green"
    out.print(f"[{colour}]{passed} passed, {failed} failed[/]")
    return EXIT_ERRORS if failed else EXIT_OK


def database_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--db",
        "database_url",
        envvar="GATEWAY_DATABASE_URL",
        default=None,
        help=f"Database URL (env GATEWAY_DATABASE_URL; else settings.database in routes.yaml; else {DEFAULT_DATABASE_URL}).",
    )(command)


def database_for(database_url: str | None, config_path: str) -> str:
    """The database `serve` would use with this routes.yaml: --db or GATEWAY_DATABASE_URL,
    then settings.database (a relative sqlite path is relative to routes.yaml's folder), then
    the default. Read even when routes.yaml has mistakes: events can be looked at meanwhile."""
    if database_url:
        return database_url
    configured = configured_database(config_path)
    return configured or DEFAULT_DATABASE_URL


@main.command()
@config_option
@database_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0 for every interface).")
@click.option("--port", envvar="GATEWAY_PORT", default=8000, show_default=True, type=int, help="Port (env GATEWAY_PORT).")
@click.option("--workers", default=32, show_default=True, type=click.IntRange(1, 512), help="Deliveries sent at the same time.")
@click.option("--deliver/--no-deliver", default=True, show_default=True, help="Deliver in this process, or leave it to `gateway worker`.")
def serve(config_path: str, database_url: str | None, host: str, port: int, workers: int, deliver: bool) -> int:
    """Receive GO's events and deliver them (ingest + delivery workers)."""
    from gateway.admin.tokens import AdminTokenError, read_admin_tokens
    from gateway.service.server import serve as run_server

    config = _loaded(config_path)
    try:  # from the environment only: a flag would show in `ps`
        admin_tokens = read_admin_tokens(os.environ, config.tenants)
    except AdminTokenError as exc:
        _console(stderr=True).print(escape(str(exc)))
        return EXIT_ERRORS
    run_server(config, database_for(database_url, config_path), host, port, workers, deliver, admin_tokens)
    return EXIT_OK


@main.command()
@config_option
@database_option
@click.option("--workers", default=32, show_default=True, type=click.IntRange(1, 512), help="Deliveries sent at the same time.")
def worker(config_path: str, database_url: str | None, workers: int) -> int:
    """Deliver stored events without receiving any (run beside `serve --no-deliver`)."""
    from gateway.service.server import work

    work(_loaded(config_path), database_for(database_url, config_path), workers)
    return EXIT_OK


def _loaded(config_path: str) -> Config:
    """The config serve and worker start with: refused on whatever `gateway check` refuses."""
    config = verify.load_verified(config_path)
    err = _console(stderr=True)
    for problem in config.warnings:
        _print_problem(err, problem)
    return config


STATUS_CHOICE = click.Choice(["pending", "sending", "delivered", "dead", "failed", "skipped", "shadow"])


@main.group(invoke_without_command=True)
@config_option
@database_option
@click.option("--limit", default=20, show_default=True, help="How many events to list.")
@click.option("--type", "event_type", help="Only this event_id (ORDER_CREATED, ...).")
@click.option("--status", type=STATUS_CHOICE, help="Only events with a delivery in this status (dead: what needs attention).")
@click.option("--destination", help="Only events with a delivery to this destination.")
@click.option("--since", help="Only events received in the last period, like 2h or 3d.")
@click.pass_context
def events(ctx: click.Context, config_path: str, database_url: str | None, limit: int, event_type: str | None, status: str | None, destination: str | None, since: str | None) -> int:
    """List stored events (newest first) with their deliveries' statuses; `events show ID` for one
    with its deliveries and every attempt."""
    ctx.obj = (config_path, database_url)
    if ctx.invoked_subcommand is None:
        after = _since(since)

        async def listed(store: Store) -> tuple[list[EventRow], dict[str, dict[str, int]]]:
            found = await store.list_events(EventQuery(limit=limit, since=after, event_type=event_type, status=status, destination=destination))
            return found, await store.delivery_statuses([e.id for e in found])

        found, statuses = admin.with_store(database_for(database_url, config_path), listed)
        admin.print_events(_console(), found, statuses)
    return EXIT_OK


def _since(since: str | None) -> float | None:
    try:
        return time.time() - Duration.parse(since).seconds if since else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


@main.command()
@config_option
@database_option
@click.option("--status", "statuses", multiple=True, type=STATUS_CHOICE, help="Which statuses (repeatable; default: dead).")
@click.option("--destination", help="Only deliveries to this destination.")
@click.option("--since", help="Only deliveries created in the last period, like 2h or 3d.")
@click.option("--limit", default=50, show_default=True, help="How many to list.")
def deliveries(config_path: str, database_url: str | None, statuses: tuple[str, ...], destination: str | None, since: str | None, limit: int) -> int:
    """List deliveries by status (dead by default: what needs attention), oldest first, with
    why; `gateway replay` sends them again."""
    selection = DeliveryFilter(statuses=statuses or ("dead",), destination=destination, since=_since(since))
    found = admin.with_store(database_for(database_url, config_path), lambda store: store.list_deliveries(selection, limit=limit))
    admin.print_deliveries(_console(), found)
    return EXIT_OK


def _events_database(given: tuple[str, str | None], config_path: str | None, database_url: str | None) -> str:
    """`events show ID --db X` and `events --db X show ID` mean the same."""
    group_config, group_database = given
    return database_for(database_url or group_database, config_path or group_config)


@events.command("show")
@click.argument("event_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--config", "config_path", default=None, help="routes.yaml, to find its database (as on `events`).")
@database_option
@click.pass_obj
def events_show(given: tuple[str, str | None], event_id: str, as_json: bool, config_path: str | None, database_url: str | None) -> int:
    """One event with its deliveries and every attempt."""
    found = admin.with_store(_events_database(given, config_path, database_url), lambda store: store.get_event(event_id))
    if found is None:
        raise GatewayError(f"no event with id {event_id}")
    if as_json:
        click.echo(admin.event_as_json(found))
    else:
        admin.print_event(_console(), found)
    return EXIT_OK


@events.command("erase")
@click.argument("event_id")
@click.option("--config", "config_path", default=None, help="routes.yaml, to find its database (as on `events`).")
@database_option
@click.pass_obj
def events_erase(given: tuple[str, str | None], event_id: str, config_path: str | None, database_url: str | None) -> int:
    """Erase one event's personal data (payload, bodies, responses) on request (LGPD)."""
    if not admin.with_store(_events_database(given, config_path, database_url), lambda store: store.erase_event(event_id)):
        raise GatewayError(f"no event with id {event_id}")
    _console().print(f"erased the payload of {event_id}; undelivered deliveries were cancelled")
    return EXIT_OK


@main.command()
@config_option
@database_option
@click.option("--status", "statuses", multiple=True, type=click.Choice(["dead", "failed", "delivered", "skipped", "shadow"]), help="Which deliveries (default: dead; with --rerender, dead and failed).")
@click.option("--destination", help="Only deliveries to this destination.")
@click.option("--since", "since", help="Only deliveries created in the last period, like 2h or 3d.")
@click.option("--id", "ids", multiple=True, help="Only this delivery or event id (repeatable).")
@click.option("--rerender", is_flag=True, help="Render again with today's routes.yaml and templates (after a template fix).")
def replay(config_path: str, database_url: str | None, statuses: tuple[str, ...], destination: str | None, since: str | None, ids: tuple[str, ...], rerender: bool) -> int:
    """Send dead (or selected) deliveries again: their stored bodies, or re-rendered ones."""
    after = _since(since)
    chosen = statuses or (("dead", "failed") if rerender else ("dead",))
    selection = DeliveryFilter(statuses=chosen, destination=destination, since=after, ids=ids)
    progress = _console(stderr=True)
    database_url = database_for(database_url, config_path)
    if not rerender:
        count = admin.with_store(database_url, lambda store: admin.replay(store, selection, progress))
        _console().print(f"{plural(count, 'delivery')} queued again")
        return EXIT_OK
    config = load_config(config_path)
    count, notes = admin.with_store(database_url, lambda store: admin.rerender(store, config, selection, progress))
    for note in notes:
        progress.print(f"[yellow]{escape(note)}[/]")
    _console().print(f"{plural(count, 'delivery')} re-rendered with routes version {config.version} and queued again")
    return EXIT_ERRORS if notes else EXIT_OK


@main.command()
@config_option
@database_option
@click.option("--older-than", "older_than", help="Age, like 30d (default: settings.retention).")
def purge(config_path: str, database_url: str | None, older_than: str | None) -> int:
    """Delete stored events older than the retention period (never ones still being delivered)."""
    try:
        age = Duration.parse(older_than) if older_than else load_config(config_path).settings.retention
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--older-than") from None
    count = admin.with_store(database_for(database_url, config_path), lambda store: store.purge(time.time() - age.seconds))
    _console().print(f"purged {plural(count, 'event')} older than {age}")
    return EXIT_OK


@main.command()
@config_option
@database_option
def migrate(config_path: str, database_url: str | None) -> int:
    """Create the database or bring its schema up to date (`serve` does it too, at start)."""
    url = database_for(database_url, config_path)
    asyncio.run(store_migrate(url))
    _console().print(f"database {escape(scrub(without_password(url)))}: schema up to date")
    return EXIT_OK


@main.command()
@config_option
@database_option
@click.argument("target", type=click.Path(dir_okay=False, path_type=Path))
def backup(config_path: str, database_url: str | None, target: Path) -> int:
    """Copy the SQLite database to TARGET, consistently, while the gateway runs."""
    from gateway.store import backup as backups

    taken = backups.backup(database_for(database_url, config_path), target)
    _console().print(f"backup {escape(str(taken.path))}: {plural(taken.events, 'event')}, {plural(taken.deliveries, 'delivery')}, schema {taken.schema_version}, {taken.bytes / 1024 / 1024:.1f} MiB")
    return EXIT_OK


@main.command()
@config_option
@database_option
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
def restore(config_path: str, database_url: str | None, source: Path) -> int:
    """Put a backup in place of the SQLite database (stop the gateway first); the database it
    replaces is moved aside, never deleted."""
    from gateway.store import backup as backups

    url = database_for(database_url, config_path)
    restored, kept = backups.restore(source, url)
    _console().print(f"restored {escape(str(source))} ({plural(restored.events, 'event')}, {plural(restored.deliveries, 'delivery')}) into {escape(str(backups.sqlite_path(url)))}")
    if kept is not None:
        _console().print(f"the database it replaced is kept as {escape(str(kept))}")
    _console().print("start the gateway: it brings an older backup's schema up to date and delivers what was pending")
    return EXIT_OK


@main.command("plan")
@config_option
@database_option
@click.argument("new_config", metavar="NEW.yaml")
@click.option("--last", default=100, show_default=True, help="How many stored events to replay through both configs.")
@click.option("--since", help="Stored events received in the last period instead, like 2h or 3d.")
@click.option("--event", "event_files", multiple=True, help="An event file to use instead of stored events (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plan_command(config_path: str, database_url: str | None, new_config: str, last: int, since: str | None, event_files: tuple[str, ...], as_json: bool) -> int:
    """Show what NEW.yaml would change for real events: routes that start or stop firing,
    and body diffs. Exit 2 when something changes, 0 when nothing does, 1 on an invalid config."""
    running = load_config(config_path)
    proposed = load_config(new_config)
    if event_files:
        events = [plan.PlannedEvent(name, next(iter(running.sources), "go"), read_event_file(name), time.time()) for name in event_files]
    else:
        after = _since(since)
        events = admin.with_store(database_for(database_url, config_path), lambda store: admin.stored_events(store, last, after))
    report = plan.plan(running, proposed, events)
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False, indent=2))
    else:
        plan.print_report(_console(), report)
    return EXIT_CHANGES if report.changed else EXIT_OK


@main.command()
@config_option
@database_option
@click.argument("event_file", metavar="EVENT.json")
@click.option("--url", help="The running gateway (default: http://127.0.0.1:$GATEWAY_PORT, else port 8000).")
@click.option("--source", help="The source to post to (default: the first in routes.yaml).")
@click.option("--wait", "wait_seconds", type=float, default=None, is_flag=False, flag_value=30.0, help="Wait (up to N s; 30 s if no number) for its deliveries and show them.")
def send(config_path: str, database_url: str | None, event_file: str, url: str | None, source: str | None, wait_seconds: float | None) -> int:
    """Post EVENT.json to the running gateway as GO would, with the source's token (like
    `stripe trigger`), and print the answer; with --wait, what became of its deliveries."""
    config = load_config(config_path)
    name = source or next(iter(config.sources), "go")
    found = config.sources.get(name)
    if found is None:
        raise GatewayError(f"no source named '{name}' in {config.file}{did_you_mean(name, config.sources)}")
    if found.inactive:
        raise GatewayError(f"source '{name}' has no token here ({found.inactive}): set it as the running gateway has it")
    base = (url or f"http://127.0.0.1:{os.environ.get('GATEWAY_PORT', '8000')}").rstrip("/")
    answer = admin.post_event(f"{base}/hooks/{name}", found.token, read_event_file(event_file))
    out = _console()
    out.print(f"{answer.status_code} {escape(answer.text)}")
    if answer.status_code not in (200, 202):
        return EXIT_ERRORS
    if wait_seconds is not None:
        event = admin.with_store(database_for(database_url, config_path), lambda store: admin.settled_event(store, answer.json()["id"], wait_seconds))
        admin.print_event(out, event)
        if any(d.status in ("pending", "sending") for d in event.deliveries):
            out.print(f"[yellow]still on their way after {wait_seconds:g} s[/]")
    return EXIT_OK


def run(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn errors into messages and exit codes."""
    try:
        code = main.main(args=argv, prog_name="gateway", standalone_mode=False)
    except click.exceptions.Abort:
        code = 130
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except ConfigError as exc:
        err = _console(stderr=True)
        for problem in exc.problems:
            _print_problem(err, problem)
        err.print(f"[red]{plural(len(exc.problems), 'error')}: {escape(exc.problems[0].location.file if exc.problems and exc.problems[0].location else 'routes.yaml')} was not loaded[/]")
        code = EXIT_ERRORS
    except GatewayError as exc:
        _console(stderr=True).print(f"[red]error:[/] {escape(scrub(str(exc)))}")
        code = EXIT_ERRORS
    except Exception as exc:  # the last line of defence: a message, not a stack trace
        if os.environ.get("GATEWAY_DEBUG"):
            raise
        _console(stderr=True).print(
            f"[red]internal error:[/] {escape(type(exc).__name__)}: {escape(scrub(str(exc)))}\n"
            "This is a bug in the gateway; run again with GATEWAY_DEBUG=1 for details and report it."
        )
        code = EXIT_INTERNAL
    sys.exit(code if isinstance(code, int) else EXIT_OK)
