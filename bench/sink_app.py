"""A fast local receiver for bench_ingest: counts what it gets, answers 200."""

import time

from litestar import Litestar, get, post

received = 0
first_at = last_at = 0.0


@post("/in", status_code=200)
async def receive(body: bytes) -> str:
    global received, first_at, last_at
    received += 1
    last_at = time.time()
    first_at = first_at or last_at
    return "ok"


@post("/reject", status_code=400)
async def reject(body: bytes) -> str:
    return "refused on purpose"


@post("/reset", status_code=200)
async def reset() -> str:
    global first_at, last_at
    first_at = last_at = 0.0
    return "ok"


@get("/count")
async def count() -> dict:
    return {"received": received, "first_at": first_at, "last_at": last_at}


app = Litestar([receive, reject, reset, count], logging_config=None)
