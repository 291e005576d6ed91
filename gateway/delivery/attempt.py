"""One delivery attempt over the wire: the destination's exchange (its requests in order, each
answer handed back to it), through the egress guard. Used by the engine and by `gateway
dry-run --send`, so both behave the same. Which requests, and what their answers mean, come
from the destination's Spec (gateway/destinations/base.py): this module knows no vendor."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from gateway.config import Config
from gateway.delivery.client import MAX_RESPONSE_BYTES, TIMEOUT, DeliveryClient, SendFailed, UnusableURL
from gateway.delivery.egress import EgressDenied, UnusableAddress, check_url
from gateway.destinations.base import NOTHING_MADE, Answer, Created, DestinationSpec, Outcome
from gateway.masking import mask_text

__all__ = ["MAX_RESPONSE_BYTES", "Result", "attempt"]


Result = tuple[Outcome, int | None, str | None]  # what an attempt means, its last HTTP status, the answer kept


Remember = Callable[[str, str], Awaitable[None]]  # (step, record id): what a step created, stored at once


async def attempt(
    client: DeliveryClient,
    spec: DestinationSpec,
    body: str,
    key: str,
    config: Config,
    clock: Callable[[], float] = time.time,
    made: Mapping[str, str] = NOTHING_MADE,
    remember: Remember | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> Result:
    """Send one delivery once: every request of the destination's exchange (for an update the
    search first; for a CRM deal with its contact, each record and the link), all within the
    destination's timeout and through the egress guard. `made` is what earlier attempts
    created; `remember` stores what this one creates, before its next request is sent.
    `extra_headers` are added to each request (the trace's traceparent)."""
    timeout = spec.timeout.seconds
    status: int | None = None
    excerpt: str | None = None
    try:
        async with asyncio.timeout(timeout):
            steps = spec.exchange(body, key, clock(), made)
            step = next(steps)
            while True:
                reply: Answer | None = None
                if isinstance(step, Created):
                    if remember is not None:
                        await remember(step.step, step.record_id)
                else:
                    if extra_headers:
                        step = replace(step, headers={**step.headers, **extra_headers})
                    await check_url(step.url, config.egress_allow, resolve=False)
                    status, headers, excerpt = await client.send(step, timeout)
                    reply = Answer(status, headers, excerpt)
                try:
                    step = steps.send(reply)
                except StopIteration as finished:
                    return finished.value, status, excerpt
    except UnusableAddress as exc:
        return Outcome("dead", f"the address cannot be used: {exc}"), None, None
    except EgressDenied as exc:
        return Outcome("dead", f"address not allowed: {exc}"), None, None
    except TimeoutError:
        return Outcome("retry", f"timeout: no complete answer within {timeout:g} s", failure=TIMEOUT), None, None
    except UnusableURL as exc:
        return Outcome("dead", mask_text(f"the address cannot be used: {exc}", config.secrets)), None, None
    except SendFailed as exc:
        return Outcome("retry", mask_text(str(exc), config.secrets), failure=exc.failure), None, None

