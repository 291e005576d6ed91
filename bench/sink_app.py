"""A fast local receiver for bench_ingest: counts what it gets, answers 200."""

from litestar import Litestar, get, post

received = 0


@post("/in", status_code=200)
async def receive(body: bytes) -> str:
    global received
    received += 1
    return "ok"


@post("/reject", status_code=400)
async def reject(body: bytes) -> str:
    return "refused on purpose"


@get("/count")
async def count() -> dict:
    return {"received": received}


app = Litestar([receive, reject, count], logging_config=None)
