"""Replays started from the admin API run in the background, one job each, so a bulk replay of
thousands answers at once and its progress can be followed (`GET /admin/api/replays/{id}`)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from gateway.admin.schemas import ReplayJob

log = logging.getLogger("gateway.admin")
KEPT_JOBS = 50  # finished jobs remembered for their progress pages


class ReplayJobs:
    def __init__(self) -> None:
        self._jobs: dict[str, ReplayJob] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, rerender: bool, work: Callable[[ReplayJob], Awaitable[tuple[int, list[str]]]], tenant: str | None = None) -> ReplayJob:
        """Run `work(job)` in the background; it updates job.total/done and returns (queued, notes).
        `tenant`: the shop whose token started it (only that shop's token, or the gateway's, sees it)."""
        job = ReplayJob(secrets.token_hex(8), "running", rerender, 0, 0, 0, [], time.time(), None, tenant)
        self._jobs[job.id] = job
        while len(self._jobs) > KEPT_JOBS:
            self._jobs.pop(next(iter(self._jobs)))
        task = asyncio.create_task(self._run(job, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    def get(self, job_id: str, tenant: str | None = None) -> ReplayJob | None:
        """The job, unless a shop's token (`tenant`) asks for one it did not start."""
        job = self._jobs.get(job_id)
        return job if job is not None and (tenant is None or job.shop == tenant) else None

    async def _run(self, job: ReplayJob, work: Callable[[ReplayJob], Awaitable[tuple[int, list[str]]]]) -> None:
        try:
            job.queued, job.notes = await work(job)
            job.state = "done"
        except Exception as exc:  # the job's page says so; the gateway goes on
            log.exception("replay %s failed", job.id)
            job.state, job.notes = "failed", [*job.notes, f"the replay stopped: {exc}"]
        finally:
            job.finished_at = time.time()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
