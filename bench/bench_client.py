"""The CPU one delivery request costs the sender: the gateway's DeliveryClient (aiohttp, with the
egress guard) against httpx's API on the same aiohttp pool (what deliveries used before session
7), each on asyncio's loop and on uvloop. 4,000 requests, 4 at a time, to bench/sink_app.py in
its own process; CPU time of this process only (getrusage), so the receiver's CPU is not in it.

Run:  .venv/bin/python bench/bench_client.py
(the httpx rows need `.venv/bin/pip install httpx-aiohttp`, no longer a dependency; without it
they say "skipped")
"""

from __future__ import annotations

import asyncio
import ipaddress
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import uvloop

from gateway.delivery.client import delivery_client
from gateway.destinations.base import OutgoingRequest

REQUESTS, AT_ONCE = 4000, 4
BODY = '{"text": "Pedido 0000593098"}'
HEADERS = {"Content-Type": "application/json", "Idempotency-Key": "bench"}
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def per_request(send: Callable[[], Awaitable[None]], count: int) -> float:
    """µs of CPU per request, after a warm-up that opens the connections."""
    for _ in range(50):
        await asyncio.gather(*(send() for _ in range(AT_ONCE)))
    started = cpu_seconds()
    for _ in range(count // AT_ONCE):
        await asyncio.gather(*(send() for _ in range(AT_ONCE)))
    return (cpu_seconds() - started) / count * 1e6


async def gateway_client(url: str) -> float:
    async with delivery_client(lambda: LOOPBACK) as client:
        request = OutgoingRequest("POST", url, HEADERS, BODY)

        async def send() -> None:
            status, _, _ = await client.send(request, 10)
            assert status == 200

        return await per_request(send, REQUESTS)


async def httpx_on_aiohttp(url: str) -> float:
    from httpx_aiohttp import AiohttpTransport  # the layer deliveries used before; not a dependency any more

    async with httpx.AsyncClient(transport=AiohttpTransport(), trust_env=False) as client:

        async def send() -> None:
            async with client.stream("POST", url, headers=HEADERS, content=BODY.encode(), timeout=10) as response:
                async for _ in response.aiter_raw():
                    pass
            assert response.status_code == 200

        return await per_request(send, REQUESTS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = free_port()
    sink = subprocess.Popen([sys.executable, str(Path(__file__).with_name("sink_app.py")), str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/count", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/in"
        print(f"{'client':32} {'loop':8} {'µs CPU/request':>15}")
        for name, measure in (("DeliveryClient (aiohttp)", gateway_client), ("httpx API on aiohttp's pool", httpx_on_aiohttp)):
            for loop, run in (("asyncio", asyncio.run), ("uvloop", uvloop.run)):
                try:
                    print(f"{name:32} {loop:8} {run(measure(url)):15.0f}")
                except ImportError as exc:
                    print(f"{name:32} {loop:8} {'skipped: ' + str(exc):>15}")
    finally:
        sink.terminate()
        sink.wait(10)


if __name__ == "__main__":
    main()
