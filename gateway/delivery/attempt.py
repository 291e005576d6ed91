"""One delivery attempt over the wire: the search an update needs, the request, the answer's
meaning. Used by the engine and by `gateway dry-run --send`, so both behave the same. What a
destination sends and what its answers mean come from its Spec (gateway/destinations/base.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import httpx

from gateway.config import Config
from gateway.delivery.egress import EgressDenied, UnusableAddress, check_url
from gateway.destinations.base import FOUND_ID, DestinationSpec, Outcome, OutgoingRequest
from gateway.masking import mask_text

MAX_RESPONSE_BYTES = 64 * 1024


Answer = tuple[Outcome, int | None, str | None]  # what an attempt means, its HTTP status, the answer kept


async def attempt(client: httpx.AsyncClient, spec: DestinationSpec, body: str, key: str, config: Config, clock: Callable[[], float] = time.time) -> Answer:
    """Send one delivery once: for an update, the search that finds the record first, then the
    request itself; both within the destination's timeout and through the egress guard. Used by
    the engine and by `gateway dry-run --send`, so both behave the same."""
    timeout = spec.timeout.seconds
    try:
        async with asyncio.timeout(timeout):
            record_id = None
            search = spec.find_request(body)
            if search is not None:
                found = await _search(client, spec, search, body, config, clock)
                if not isinstance(found, str):
                    return found
                record_id = found
            request = spec.signed(spec.build_request(body, key, record_id or FOUND_ID), key, int(clock()))
            await check_url(request.url, config.egress_allow, resolve=False)
            status, headers, excerpt = await _send(client, request, timeout)
    except UnusableAddress as exc:
        return Outcome("dead", f"the address cannot be used: {exc}"), None, None
    except EgressDenied as exc:
        return Outcome("dead", f"address not allowed: {exc}"), None, None
    except TimeoutError:
        return Outcome("retry", f"no complete answer within {timeout:g} s"), None, None
    except httpx.UnsupportedProtocol as exc:
        return Outcome("dead", mask_text(f"the address cannot be used: {exc}", config.secrets)), None, None
    except httpx.HTTPError as exc:
        return Outcome("retry", mask_text(f"{type(exc).__name__}: {exc}", config.secrets)), None, None
    return spec.classify(status, headers, excerpt, clock()), status, excerpt


async def _search(
    client: httpx.AsyncClient, spec: DestinationSpec, search: OutgoingRequest, body: str, config: Config, clock: Callable[[], float]
) -> str | Answer:
    """The record id an update changes, or the attempt's result when the search failed."""
    await check_url(search.url, config.egress_allow, resolve=False)
    status, headers, answer = await _send(client, search, spec.timeout.seconds)
    if not 200 <= status < 300:
        outcome = spec.classify(status, headers, answer, clock())
        return replace(outcome, reason=f"searching for the record: {outcome.reason}"), status, answer
    found = spec.found_record(body, answer)
    return found if isinstance(found, str) else (found, status, answer)


async def _send(client: httpx.AsyncClient, request: OutgoingRequest, timeout: float) -> tuple[int, dict[str, str], str]:
    """Send and keep at most MAX_RESPONSE_BYTES of the answer (a huge answer is cut off)."""
    async with client.stream(request.method, request.url, headers=request.headers, content=request.body.encode(), timeout=timeout) as response:
        kept = bytearray()
        async for chunk in response.aiter_raw():
            kept.extend(chunk[: MAX_RESPONSE_BYTES - len(kept)])
            if len(kept) >= MAX_RESPONSE_BYTES:
                break
        headers = {k.lower(): v for k, v in response.headers.items()}
        return response.status_code, headers, kept.decode("utf-8", "replace")
