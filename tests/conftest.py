"""Shared fixtures: a scratch project folder and a way to run the real `gateway` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.harness import Sink

REPO = Path(__file__).resolve().parents[1]
EVENTS = REPO / "examples" / "events"
# Variables the shipped configs read; removed so every test starts from the same environment.
CONFIG_VARIABLES = ("GO_WEBHOOK_TOKEN", "SLACK_WEBHOOK_URL", "MIRROR_URL", "MIRROR_SIGNING_SECRET", "GATEWAY_CONFIG")


def gateway_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    env.update({"COLUMNS": "200", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"})
    env.update(extra or {})
    return env


def run_gateway(*args: str, cwd: Path, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `python -m gateway ARGS` as a user would, in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        cwd=cwd,
        env=gateway_env(env),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


class Project:
    """A scratch folder with the shipped templates and sample events, and a routes.yaml to write."""

    def __init__(self, root: Path) -> None:
        self.root = root
        shutil.copytree(REPO / "templates", root / "templates")
        shutil.copytree(EVENTS, root / "examples" / "events")

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def routes(self, text: str) -> Path:
        return self.write("routes.yaml", text)

    def without_samples(self) -> None:
        """No sample events: `check` (and so `serve`) cannot render the templates, and a template
        bug reaches ingest, as it does for a route no sample event covers."""
        shutil.rmtree(self.root / "examples" / "events")

    def gateway(self, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return run_gateway(*args, cwd=self.root, env=env, stdin=stdin)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


@pytest.fixture
def order_created() -> dict:
    import json

    return json.loads((EVENTS / "order_created.json").read_text())


@pytest.fixture
def sink() -> Iterator[Sink]:
    """A recording HTTP receiver on 127.0.0.1 that answers 200."""
    from tests.harness import Sink  # harness imports this module

    server = Sink()
    yield server
    server.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose connections see an empty schema of their own (dropped afterwards)."""
    from tests.postgres import fresh_schema

    with fresh_schema() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A `gateway serve` database on each store: a SQLite file, then a PostgreSQL schema of its own."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'data' / 'gateway.db'}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.postgres import stop_throwaway_servers

    stop_throwaway_servers()
