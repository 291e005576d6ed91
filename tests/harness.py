"""Real servers for integration tests: a recording HTTP sink and a `gateway serve` process."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import gateway_env


def rss_bytes(pid: int) -> int:
    """A process's resident memory, from /proc."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:"))) * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    method: str = "POST"

    def json(self) -> Any:
        return json.loads(self.body)


# A behaviour decides the answer to each request: (status, headers, body, delay seconds).
Behaviour = Callable[[Received, int], tuple[int, dict[str, str], bytes, float]]


def always(status: int = 200, body: bytes = b"ok", headers: dict[str, str] | None = None, delay: float = 0.0) -> Behaviour:
    return lambda request, count: (status, headers or {}, body, delay)


@dataclass
class Sink:
    """A threaded HTTP server on 127.0.0.1 that records every request it answers."""

    behaviour: Behaviour = field(default_factory=always)
    received: list[Received] = field(default_factory=list)
    port: int = 0
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                request = Received(self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length), time.time(), self.command)
                with sink._lock:
                    sink.received.append(request)
                    count = sum(1 for r in sink.received if r.path == request.path)
                status, headers, body, delay = sink.behaviour(request, count)
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_PATCH = do_GET = do_DELETE = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self._server = _QuietServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)  # close() waits at most this long
        self._thread.start()

    def url(self, path: str = "/in") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def bodies(self, path: str | None = None) -> list[Any]:
        with self._lock:
            return [r.json() for r in self.received if path is None or r.path == path]

    def wait_for(self, count: int, timeout: float = 30.0, path: str | None = None) -> list[Received]:
        """Wait (bounded) until `count` requests arrived; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                got = [r for r in self.received if path is None or r.path == path]
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"the sink got {len(got)} of {count} requests within {timeout} s")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A gateway killed mid-request leaves a broken pipe: expected here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class GatewayProcess:
    """`python -m gateway serve` in a project folder, on a free port."""

    def __init__(self, root: Path, env: dict[str, str] | None = None, workers: int = 32) -> None:
        self.root = root
        self.env = env or {}
        self.port = free_port()
        self.workers = workers
        self.database = f"sqlite:///{root / 'data' / 'gateway.db'}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = root / "gateway.log"
        self.start_args: list[str] = []  # extra `serve` options
        self.accepted: set[str] = set()  # what a test posted and the gateway acknowledged

    def start(self, timeout: float = 30.0) -> GatewayProcess:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 — closed when the process ends
        log = self._log_file
        command = [sys.executable, "-m", "gateway", "serve", "--port", str(self.port), "--db", self.database, "--workers", str(self.workers), *self.start_args]
        # A session of its own: kill() takes serve and its child processes down together, as a crash would
        self.process = subprocess.Popen(command, cwd=self.root, env=gateway_env(self.env), stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log_file.close()
                raise AssertionError(f"gateway exited with {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url("/healthz"), timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.05)
        raise AssertionError(f"gateway did not start within {timeout} s:\n{self.log()}")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def post(self, path: str, body: bytes | str, **kwargs: Any) -> httpx.Response:
        content = body.encode() if isinstance(body, str) else body
        return httpx.post(self.url(path), content=content, timeout=30, **kwargs)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """kill -9 of serve and its child processes (the writer, the deliverer): no chance to clean up."""
        if self.process and self.process.poll() is None:
            self.signal_all(signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close_log()

    def signal_all(self, signum: int) -> None:
        """Send a signal to serve and its child processes at once (its process group)."""
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def child(self, module: str, timeout: float = 30) -> int:
        """The pid of serve's child process running `python -m <module>`, once it is up."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in children_of(self.process.pid):
                with contextlib.suppress(OSError):
                    if alive(pid) and module in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0"):
                        return pid
            time.sleep(0.05)
        raise AssertionError(f"serve has no {module} process:\n{self.log()}")

    def _close_log(self) -> None:
        if getattr(self, "_log_file", None) is not None:
            self._log_file.close()
            self._log_file = None

    def terminate(self, timeout: float = 40.0) -> int:
        """SIGTERM and wait (bounded) for a graceful exit; returns the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=timeout)
        self._close_log()
        return self.process.returncode

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        from tests.conftest import run_gateway

        return run_gateway(*args, cwd=self.root, env={**self.env, "GATEWAY_DATABASE_URL": self.database})


def children_of(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
