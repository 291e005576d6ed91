"""Backing up and restoring the embedded SQLite database: `gateway backup` and `gateway restore`.

A backup is taken with SQLite's online backup API from a connection of its own: in WAL mode it
reads one consistent snapshot while the gateway goes on storing events (its writer is not
blocked), and it is written beside the target and renamed into place, so a backup file is never
half-written. A restore checks the backup first (an SQLite file of this gateway's schema, intact),
refuses while any process has the database open (stop the gateway first), and moves the current
database aside (`gateway.db.before-restore-<time>`) rather than overwrite it: nothing is lost.

PostgreSQL has its own tools (pg_dump / pg_restore); for it these functions say which command to
run instead.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.errors import GatewayError
from gateway.store.sqlfiles import migrations

_SIDE_FILES = ("-wal", "-shm")


class BackupError(GatewayError):
    """A backup or restore that cannot be done; the message says what to do instead."""


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    events: int
    deliveries: int
    schema_version: int
    bytes: int


def sqlite_path(database_url: str) -> Path:
    """The file of a sqlite:/// URL; BackupError naming PostgreSQL's tools for any other."""
    if database_url.startswith("sqlite:///"):
        return Path(database_url[len("sqlite:///"):])
    if database_url.startswith(("postgres://", "postgresql://")):
        raise BackupError(
            "the database is PostgreSQL: back it up with its own tools, which are consistent while the gateway runs: "
            "`pg_dump --format=custom --file=gateway.dump <URL>`; restore with `pg_restore --clean --if-exists --dbname=<URL> gateway.dump` "
            "(README: Backups)"
        )
    raise BackupError(f"'{database_url}' is not a database URL the gateway uses (sqlite:///path/to/gateway.db)")


def backup(database_url: str, target: Path) -> BackupSummary:
    """A consistent copy of the live database at `target`, taken while the gateway runs."""
    source_path = sqlite_path(database_url)
    if not source_path.is_file():
        raise BackupError(f"there is no database at {source_path}: give the one `gateway serve` uses with --db or GATEWAY_DATABASE_URL")
    if target.resolve() == source_path.resolve():
        raise BackupError(f"{target} is the database itself: write the backup to another file")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    source = sqlite3.connect(source_path, timeout=30)
    try:
        with sqlite3.connect(partial) as copy:
            source.backup(copy)  # one step: a single read snapshot, however busy the writer is
        copy.close()
    finally:
        source.close()
    summary = inspect(partial)
    os.replace(partial, target)
    return BackupSummary(target, summary.events, summary.deliveries, summary.schema_version, target.stat().st_size)


def inspect(path: Path) -> BackupSummary:
    """What a backup holds; BackupError when it is not an intact database of this gateway."""
    if not path.is_file():
        raise BackupError(f"there is no file at {path}")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise BackupError(f"{path} is damaged ({'; '.join(problems[:3])}): take another backup")
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not {"events", "deliveries", "schema_migrations"} <= tables:
                raise BackupError(f"{path} is an SQLite file but not a database of this gateway (no events, deliveries and schema_migrations tables)")
            version = db.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0
            events = db.execute("SELECT count(*) FROM events").fetchone()[0]
            deliveries = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
        db.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not an SQLite database ({exc}): give a file `gateway backup` wrote") from None
    newest = max(v for v, _ in migrations("sqlite"))
    if version > newest:
        raise BackupError(f"{path} was written by a newer gateway (schema {version}, this one knows up to {newest}): restore it with that version")
    return BackupSummary(path, events, deliveries, version, path.stat().st_size)


def restore(backup_file: Path, database_url: str, now: float | None = None) -> tuple[BackupSummary, Path | None]:
    """The backup in place of the database; the database it replaced, moved aside (or None)."""
    summary = inspect(backup_file)
    target = sqlite_path(database_url)
    users = processes_using(target)
    if users:
        raise BackupError(f"{target} is open in process {', '.join(map(str, users))} (a running gateway?): stop it, restore, then start it again")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.restoring")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(f"file:{backup_file}?mode=ro", uri=True) as source, sqlite3.connect(partial) as copy:
        source.backup(copy)
    source.close()
    copy.close()
    kept = _move_aside(target, now if now is not None else time.time())
    os.replace(partial, target)
    return summary, kept


def _move_aside(database: Path, now: float) -> Path | None:
    """The current database (and its WAL files) renamed, never deleted."""
    if not database.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    kept = database.with_name(f"{database.name}.before-restore-{stamp}")
    os.replace(database, kept)
    for suffix in _SIDE_FILES:
        side = database.with_name(database.name + suffix)
        if side.exists():
            os.replace(side, kept.with_name(kept.name + suffix))
    return kept


def processes_using(database: Path) -> list[int]:
    """The processes that have the database (or its WAL) open, from /proc (Linux); [] elsewhere."""
    names = {str(database.resolve()), *(str(database.resolve()) + s for s in _SIDE_FILES)}
    found = []
    for fd_dir in Path("/proc").glob("[0-9]*/fd"):
        try:
            if any(os.readlink(fd) in names for fd in fd_dir.iterdir()):
                found.append(int(fd_dir.parent.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return sorted(pid for pid in found if pid != os.getpid())
