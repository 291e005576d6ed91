"""The SQL files: named queries and numbered migrations, read from the package."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.store.sqlfiles import migrations, queries, statements

STORE = Path(__file__).resolve().parents[2] / "gateway" / "store"


def test_every_query_the_sqlite_backend_names_is_in_its_file() -> None:
    used = set(re.findall(r'_SQL\["(\w+)"\]', (STORE / "sqlite.py").read_text())) | set(re.findall(r'"(insert_\w+|move_\w+)"', (STORE / "sqlite.py").read_text()))
    assert used and used <= set(queries("sqlite"))


def test_a_named_block_keeps_its_sql_and_drops_comments_and_the_semicolon() -> None:
    claim = queries("sqlite")["claim_due"]
    assert claim.startswith("UPDATE deliveries SET status = 'sending'") and claim.endswith("created_at, trace")
    assert "--" not in claim and "{arms}" in claim


def test_migrations_are_numbered_files_in_order_and_queries_sql_is_not_one() -> None:
    versions = [version for version, _ in migrations("sqlite")]
    assert versions == sorted(versions) and versions[:4] == [1, 2, 3, 4]
    assert all(script for _, script in migrations("sqlite"))


def test_statements_split_on_semicolons_outside_comments() -> None:
    assert statements("CREATE TABLE a (x INT); -- a comment; with a semicolon\nCREATE INDEX i ON a (x);") == ["CREATE TABLE a (x INT)", "CREATE INDEX i ON a (x)"]


def test_every_query_the_postgresql_backend_names_is_in_its_file() -> None:
    source = (STORE / "postgres.py").read_text()
    used = set(re.findall(r'_SQL\["(\w+)"\]', source)) | set(re.findall(r'"(erase_event_\w+)"', source))
    assert used and used <= set(queries("postgresql"))
    assert [version for version, _ in migrations("postgresql")][:3] == [1, 2, 3]
