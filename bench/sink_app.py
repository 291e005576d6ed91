"""A fast local receiver for bench_ingest: counts what it gets, answers 200 (or 400 on /reject).

aiohttp's server (its HTTP parser is in C) rather than Litestar on uvicorn: the receiver shares
the machine's two cores with the gateway, so the less CPU it takes per request, the more the
benchmark measures the gateway instead of the receiver.

Run:  python bench/sink_app.py PORT
"""

from __future__ import annotations

import sys
import time

from aiohttp import web

state = {"received": 0, "first_at": 0.0, "last_at": 0.0}


async def receive(request: web.Request) -> web.Response:
    await request.read()
    state["received"] += 1
    state["last_at"] = time.time()
    state["first_at"] = state["first_at"] or state["last_at"]
    return web.Response(text="ok")


async def reject(request: web.Request) -> web.Response:
    await request.read()
    return web.Response(status=400, text="refused on purpose")


async def reset(request: web.Request) -> web.Response:
    state["first_at"] = state["last_at"] = 0.0
    return web.Response(text="ok")


async def count(request: web.Request) -> web.Response:
    return web.json_response(state)


def make_app() -> web.Application:
    app = web.Application()
    app.add_routes([web.post("/in", receive), web.post("/reject", reject), web.post("/reset", reset), web.get("/count", count)])
    return app


if __name__ == "__main__":
    web.run_app(make_app(), host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
