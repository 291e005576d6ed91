"""Hot reload: routes.yaml, the tenants' files of routes.d/ and the templates folder are
watched, and SIGHUP asks for a reload.

The new config is verified exactly as `gateway check` verifies it (loaded, and every template
rendered for the sample events it matches; in a thread, so ingest goes on) and swapped in whole,
between two events: an event is routed entirely by one version. An invalid config never
replaces a valid one; the log says why in the same file:line words as `check`. A broken
routes.yaml keeps every route in force; a broken shop's file (routes.d/<tenant>.yaml) keeps
that shop's version in force while the other shops' edits apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from gateway.config import Config
from gateway.errors import ConfigError
from gateway.service import gc_freeze
from gateway.tenants import tenant_paths
from gateway.verify import load_verified

log = logging.getLogger("gateway.reload")
Fingerprint = tuple[tuple[str, int, int], ...]
Refused = Callable[[list[str], list[str]], None]  # (problems, the shops whose edits were refused; [] = all of it)


def _nobody_hears(problems: list[str], tenants: list[str]) -> None:
    pass


class ConfigReloader:
    """`refused(problems, tenants)` hears of each refused edit (`tenants`: the shops whose
    files were refused while the others applied, [] when the whole edit was), and
    `refused([], [])` once nothing refused is pending."""

    def __init__(
        self,
        config_path: str,
        current: Callable[[], Config],
        swap: Callable[[Config], None],
        interval: float = 1.0,
        refused: Refused = _nobody_hears,
    ) -> None:
        self.config_path = config_path
        self.current = current
        self.swap = swap
        self.refused = refused
        self.interval = interval
        self._requested = asyncio.Event()
        self._seen = self.fingerprint()

    def request(self) -> None:
        """Reload at once (SIGHUP)."""
        self._requested.set()

    def fingerprint(self) -> Fingerprint:
        """What changes when routes.yaml, a shop's file or any template changes (path, mtime, size)."""
        paths = [Path(self.config_path), *tenant_paths(self.config_path).values()]
        templates = self.current().path(self.current().settings.templates)
        if templates.is_dir():
            paths.extend(sorted(p for p in templates.rglob("*") if p.is_file()))
        found = []
        for path in paths:
            with contextlib.suppress(OSError):
                stat = path.stat()
                found.append((str(path), stat.st_mtime_ns, stat.st_size))
        return tuple(found)

    async def watch(self) -> None:
        """Poll for changes (a few stat() calls a second) until cancelled."""
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._requested.wait(), timeout=self.interval)
            forced = self._requested.is_set()
            self._requested.clear()
            fingerprint = await asyncio.to_thread(self.fingerprint)
            if forced or fingerprint != self._seen:
                self._seen = fingerprint
                await self.reload()

    async def reload(self) -> bool:
        """Load and swap in the config; False (and the old one kept) when nothing changed or it
        is invalid. Shops whose files are broken keep their version in force meanwhile."""
        running = self.current()
        try:
            new = await asyncio.to_thread(load_verified, self.config_path, os.environ, running)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused, routes version %s stays in force: %s", running.version, problem)
            self.refused([str(problem) for problem in exc.problems], [])
            return False
        for tenant, problems in new.refused.items():
            kept = f"its version {running.tenants[tenant].version} stays in force" if tenant in running.tenants else "it is not loaded until fixed"
            for problem in problems:
                log.error("reload of shop %s refused, %s (the other shops go on): %s", tenant, kept, problem)
        refused = [str(problem) for problems in new.refused.values() for problem in problems]
        if new.version == running.version:
            self.refused(refused, sorted(new.refused))  # [] when back to the version in force: nothing pending
            return False
        for warning in new.warnings:
            log.warning("%s", warning)
        self.swap(new)
        self.refused(refused, sorted(new.refused))
        log.info("routes reloaded: version %s -> %s (%d routes)", running.version, new.version, len(new.routes))
        return True


class RoutesInForce:
    """The routes a process runs now, swapped whole between two events. Each swap settles the
    garbage collector: the replaced routes are freed, the new ones frozen (gc_freeze.py)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def __call__(self) -> Config:
        return self.config

    def swap(self, new: Config) -> None:
        self.config = new
        gc_freeze.settle()


def watch_routes(config_path: str, current: Callable[[], Config], swap: Callable[[Config], None], refused: Refused = _nobody_hears) -> asyncio.Task[None]:
    """Follow edits of routes.yaml and its templates, and SIGHUP, until the task is cancelled."""
    reloader = ConfigReloader(config_path, current, swap, refused=refused)
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals outside the main thread
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, reloader.request)
    return asyncio.create_task(reloader.watch())
