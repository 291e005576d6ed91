"""The delivery engine: claim due deliveries, send them, record what happened.

It wakes when ingest stores new work or when the next retry falls due (no busy polling). Each
destination has a concurrency limit, an optional rate limit and a circuit breaker: after
repeated transient failures the whole destination is backed off instead of hammered, and the
other destinations keep their pace. Every attempt is recorded, whatever its outcome.

Shops (tenants, gateway/tenants.py) do not share slots: each has `concurrency` of its own, so one
shop's backlog of 100,000 deliveries or a CRM that times out on every request holds that shop's
slots only, and another shop's delivery starts at its next claim (bench/bench_fairness.py).

Claims run ahead of the slots: while a destination's requests are in flight, a few more rounds
of its deliveries (AHEAD_ROUNDS × its `concurrency`) wait claimed in memory, and a slot that
frees starts the next one at once instead of waiting for a query (which on SQLite waits for
ingest's write lock). Only destinations with no rate limit and a closed circuit claim ahead, in
shops whose slots fit all their destinations' concurrency (elsewhere freed slots take turns);
what waits is given back when the circuit opens, when the engine stops, and when it could not
start soon enough to end within its lease (a slow destination).

Crash safety lives in the store: a claim is a lease, and a delivery whose process died while
sending it is claimed again once the lease expires (at-least-once; receivers dedupe by the
Idempotency-Key, which is the delivery id and never changes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiolimiter import AsyncLimiter

import gateway.tenants as tenants
import gateway.tracing as tracing
from gateway.config import Config, Destination
from gateway.delivery.attempt import MAX_RESPONSE_BYTES, attempt
from gateway.delivery.breaker import CircuitBreaker
from gateway.delivery.client import DeliveryClient
from gateway.delivery.metrics import DeliveryMetrics, shop
from gateway.delivery.retry import MAX_RETRY_AFTER_SECONDS, RetryPolicy
from gateway.destinations.base import Outcome
from gateway.masking import mask_personal_data, mask_text
from gateway.store.base import AttemptResult, ClaimedDelivery, DestinationHold, Store, StoreUnavailable

log = logging.getLogger("gateway.delivery")

LEASE_MARGIN_SECONDS = 15.0
UNROUTED_EVERY_SECONDS = 5.0
HOLDS_EVERY_SECONDS = 1.0  # how soon a circuit another replica opened is seen here
# The longest the engine sleeps with nothing due: work queued by another process (a replay,
# a second gateway on the same database) is noticed within this time. One cheap indexed query.
IDLE_SECONDS = 0.5
# How many rounds of a destination's `concurrency` may wait claimed in memory. Deep enough that
# a refill claim waiting for ingest's write lock (SQLite) or a round trip (PostgreSQL) does not
# leave a slot idle: 1 round forwarded 1,800/s under the peer benchmark's load, 4 rounds 2,800/s.
AHEAD_ROUNDS = 4
# What waits claimed must start within this time of its claim, so that its attempt still ends
# within the lease (timeout + LEASE_MARGIN_SECONDS); what waits longer is given back.
START_WITHIN_SECONDS = LEASE_MARGIN_SECONDS / 2


@dataclass
class _DestinationState:
    spec: object  # the destination's settings when this state was made
    limiter: AsyncLimiter | None
    circuit: CircuitBreaker = field(default_factory=CircuitBreaker)
    in_flight: int = 0
    gone: str | None = None  # why it is stopped: it answered 410 Gone
    # Claimed ahead, oldest first, each with the time it must start by (START_WITHIN_SECONDS
    # after its claim): started as slots free, given back if it waits longer.
    ready: deque[tuple[float, ClaimedDelivery]] = field(default_factory=deque)


class DeliveryEngine:
    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        client: DeliveryClient,
        metrics: DeliveryMetrics,
        *,
        concurrency: int = 32,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.client = client
        self.metrics = metrics
        self.concurrency = concurrency
        self.clock = clock
        self._wake = asyncio.Event()
        self._stopping = False
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._tenant_in_flight: Counter[str | None] = Counter()  # by shop: its slots taken
        self._destinations: dict[str, _DestinationState] = {}
        self._turn = 0
        self._grouped: tuple[Config | None, dict[str | None, list[str]]] = (None, {})
        self._contended: set[str | None] = set()  # shops whose destinations can want more than its slots
        self._give_back: list[str] = []  # claimed ahead, waited too long or behind an opened circuit
        self._look_for_unrouted_at = 0.0
        self._holds_checked_at = -HOLDS_EVERY_SECONDS

    def notify(self) -> None:
        """New work was stored: look now instead of at the next scheduled time."""
        self._wake.set()

    # ----------------------------------------------------------------- main loop

    async def run(self) -> None:
        """Deliver until `stop` is called. No error ends the loop: a dead engine loses nothing
        but delivers nothing either, which nobody would notice until customers complain."""
        while not self._stopping:
            try:
                claimed = await self._claim(ahead=True)
                if claimed is None:  # every slot busy: a freed slot or new work wakes the loop
                    await self._sleep(IDLE_SECONDS)
                elif not claimed:
                    await self._sleep(await self._idle_seconds())
            except StoreUnavailable as exc:
                log.error("store unavailable, trying again in 1 s: %s", exc)
                await self._sleep(1.0)
            except Exception:
                log.exception("delivery engine error, trying again in 1 s")
                await self._sleep(1.0)

    async def deliver_due(self) -> int:
        """Claim what is due now, send it and wait until every attempt is recorded; the number
        of deliveries attempted. One pass of `run` without the waiting: for a controlled clock."""
        started = await self._claim(ahead=False) or 0
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()))
        return started

    async def _claim(self, *, ahead: bool) -> int | None:
        """Start what waits claimed, then claim what can start now (per destination no more than
        its free slots: concurrency, rate limit, breaker; per shop no more than its own) and, with
        `ahead`, AHEAD_ROUNDS more to wait in memory. The number claimed, or None when no slot had
        room and nothing was asked of the store."""
        self._wake.clear()  # whatever woke the loop is looked at now
        config = self.config()
        now = self.clock()
        await self._follow_others(config, now)
        await self._start_ready(config, now)
        quotas = self._quotas(config, now, ahead)
        # Deliveries to destinations routes.yaml no longer has are looked for now and then, not
        # on every claim (the query scans every due delivery). They are dead at once, with no
        # request, so they may briefly take the engine past its own concurrency.
        others = max(0, self.concurrency - len(self._in_flight)) if now >= self._look_for_unrouted_at else 0
        if not others and not any(quotas.values()):
            return None
        if others:
            self._look_for_unrouted_at = now + UNROUTED_EVERY_SECONDS
        lease = max(d.spec.timeout.seconds for d in config.destinations.values()) + LEASE_MARGIN_SECONDS if config.destinations else 60.0
        rates = {name: (d.spec.rate.count, d.spec.rate.per_seconds) for name, d in config.destinations.items() if d.spec.rate and quotas.get(name)}
        claimed = await self.store.claim_due(now, quotas, lease, others, rates)
        if self._stopping:  # stop() came while the store answered: give these back too
            with contextlib.suppress(StoreUnavailable):
                await self.store.release([delivery.id for delivery in claimed], self.clock())
            return len(claimed)
        start_by = now + START_WITHIN_SECONDS
        for delivery in claimed:
            destination = config.destinations.get(delivery.destination)
            if destination is None:  # recorded dead at once, with no request
                self._start(delivery, config)
            else:
                self._state(destination).ready.append((start_by, delivery))
        await self._start_ready(config, self.clock())
        return len(claimed)

    def _quotas(self, config: Config, now: float, ahead: bool) -> dict[str, int]:
        """How many deliveries each destination should claim: what it can start now, within its
        shop's free slots, and with `ahead` AHEAD_ROUNDS rounds more (less what already waits); every
        configured destination is named (0 when it has no room)."""
        self._turn += 1
        quotas = {}
        for tenant, names in self._tenants_of(config).items():
            starts = self._share_slots(config, tenant, names, now)
            for name, now_room in starts.items():
                destination = config.destinations[name]
                wanted = now_room + (self._ahead(destination, self._state(destination), now) if ahead else 0)
                # Refill what is claimed ahead in one query once half of it has started, not one
                # query per freed slot.
                quotas[name] = wanted if now_room or wanted * 2 >= AHEAD_ROUNDS * destination.spec.concurrency else 0
        return quotas

    def _share_slots(self, config: Config, tenant: str | None, names: list[str], now: float) -> dict[str, int]:
        """The shop's free slots dealt one at a time to its destinations with room, the first in
        line turning at each claim: slots freed in a burst by a busy destination are shared with
        the shop's others, not taken back by it alone."""
        free = max(0, self.concurrency - self._tenant_in_flight[tenant])
        turn = self._turn % len(names)
        order = names[turn:] + names[:turn]
        room = {name: self._room(config.destinations[name], now, waiting=True) for name in order}
        starts = dict.fromkeys(order, 0)
        while free > 0 and any(starts[name] < room[name] for name in order):
            for name in order:
                if free > 0 and starts[name] < room[name]:
                    starts[name] += 1
                    free -= 1
        return starts

    def _ahead(self, destination: Destination, state: _DestinationState, now: float) -> int:
        """How many more of the destination's deliveries may wait claimed in memory: AHEAD_ROUNDS
        rounds of its concurrency, less what waits, for a destination that is sending freely."""
        if state.limiter is not None or state.gone or state.circuit.is_open(now) or not self._free_flowing(destination):
            return 0
        return max(0, AHEAD_ROUNDS * destination.spec.concurrency - len(state.ready))

    async def _start_ready(self, config: Config, now: float) -> None:
        """Start what waits claimed, as far as each destination and shop has room; give back what
        waited too long (its lease could run out before its request ends) or can no longer start
        soon (its circuit opened)."""
        for name, state in self._destinations.items():
            destination = config.destinations.get(name)
            if state.ready and destination is not None:
                self._start_waiting(destination, state, config, now)
            elif state.ready:  # routes.yaml no longer has it: recorded dead when started
                while state.ready:
                    self._start(state.ready.popleft()[1], config)
        if self._give_back:
            expired, self._give_back = self._give_back, []
            with contextlib.suppress(StoreUnavailable):
                await self.store.release(expired, now)

    def _start_waiting(self, destination: Destination, state: _DestinationState, config: Config, now: float) -> None:
        """Start the destination's waiting deliveries its slots and its shop's have room for; what
        cannot start in time goes to `_give_back` (released by the loop, which is woken for it)."""
        if state.circuit.is_open(now):
            self._give_back.extend(delivery.id for _, delivery in state.ready)
            state.ready.clear()
        tenant = destination.tenant
        while state.ready and state.in_flight < destination.spec.concurrency and self._tenant_in_flight[tenant] < self.concurrency:
            start_by, delivery = state.ready.popleft()
            if now > start_by:
                self._give_back.append(delivery.id)
            else:
                self._start(delivery, config)

    def _tenants_of(self, config: Config) -> dict[str | None, list[str]]:
        if self._grouped[0] is not config:  # grouped once per config, not on every claim
            self._grouped = (config, _by_tenant(config))
            self._contended = {
                tenant for tenant, names in self._grouped[1].items() if sum(config.destinations[name].spec.concurrency for name in names) > self.concurrency
            }
        return self._grouped[1]

    def _free_flowing(self, destination: Destination) -> bool:
        """Whether a slot the destination frees may go straight to its next delivery: only when
        its shop's slots can hold every one of the shop's destinations at full concurrency.
        Where they cannot, freed slots go round the shop's destinations in turn (`_quotas`), or
        one that hangs would take every slot it frees back and starve the others."""
        self._tenants_of(self.config())
        return destination.tenant not in self._contended

    def _room(self, destination: Destination, now: float, waiting: bool = False) -> int:
        """How many more requests the destination can have in flight now; with `waiting`, less
        what already waits claimed for those slots."""
        state = self._state(destination)
        if state.circuit.is_open(now):
            return 0
        room = max(0, destination.spec.concurrency - state.in_flight - (len(state.ready) if waiting else 0))
        if state.limiter is not None:  # no more than the rate limit lets start now
            room = next((n for n in range(room, 0, -1) if state.limiter.has_capacity(n)), 0)
        return room

    def _start(self, delivery: ClaimedDelivery, config: Config) -> None:
        destination = config.destinations.get(delivery.destination)
        if destination is not None:
            self._state(destination).in_flight += 1
        task = asyncio.create_task(self._deliver(delivery, destination, config))
        self._in_flight[delivery.id] = task
        self._tenant_in_flight[tenants.tenant_of(delivery.destination)] += 1
        task.add_done_callback(lambda done: self._finished(done, delivery))

    def _finished(self, task: asyncio.Task[None], delivery: ClaimedDelivery) -> None:
        if not task.cancelled() and (error := task.exception()) is not None:  # _deliver records every outcome; this is a bug
            log.error(
                "delivery %s to %s: the engine failed to finish it (its claim will expire and it is sent again)", delivery.id, delivery.destination,
                exc_info=error, extra=tenants.log_extra(tenants.tenant_of(delivery.destination)),
            )
        self._in_flight.pop(delivery.id, None)
        self._wake.set()

    def _slot_freed(self, delivery: ClaimedDelivery, destination: Destination | None) -> None:
        """The destination's request is over (recording it is not): its slot and its shop's are
        free, and the next delivery waiting claimed starts at once. Order still holds: the
        delivery stays `sending` in the store until it is recorded."""
        tenant = tenants.tenant_of(delivery.destination)
        self._tenant_in_flight[tenant] -= 1
        if destination is not None:
            state = self._state(destination)
            state.in_flight -= 1
            if state.ready and self._free_flowing(destination):  # the loop refills and gives back
                self._start_waiting(destination, state, self.config(), self.clock())
        self._wake.set()

    async def _idle_seconds(self) -> float:
        next_due = await self.store.next_due_at()
        if next_due is None:
            return IDLE_SECONDS
        return min(IDLE_SECONDS, max(0.01, next_due - self.clock()))

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    def _state(self, destination: Destination) -> _DestinationState:
        state = self._destinations.get(destination.name)
        if state is None or state.spec != destination.spec:  # new, or changed by a reload
            rate = destination.spec.rate
            limiter = AsyncLimiter(rate.count, rate.per_seconds) if rate else None
            fresh = _DestinationState(destination.spec, limiter)
            if state is not None:
                fresh.circuit, fresh.in_flight, fresh.ready = state.circuit, state.in_flight, state.ready
            self.metrics.destination_stopped.labels(destination.name, shop(destination.name)).set(0)
            state = self._destinations[destination.name] = fresh
        return state

    def _gone_reason(self, destination: Destination) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.clock()))
        return (
            f"destination '{destination.name}' answered 410 Gone at {when} and is stopped; fix its address in routes.yaml"
            f" (or restart once it is back), then `gateway replay --destination {destination.name}`"
        )

    def _stop_gone(self, destination: Destination, state: _DestinationState, reason: str) -> None:
        """410 Gone means the address will not come back: stop sending there instead of
        burning every pending delivery's attempts on it. A changed destination (hot reload)
        or a restart starts again; `gateway replay` sends the stopped deliveries."""
        state.gone = reason
        self.metrics.destination_stopped.labels(destination.name, shop(destination.name)).set(1)
        log.error(
            "destination %s answered 410 Gone: no more deliveries go there until routes.yaml changes it or the gateway restarts", destination.name,
            extra=tenants.log_extra(destination.tenant),
        )

    # ----------------------------------------------------------------- one delivery

    async def _deliver(self, delivery: ClaimedDelivery, destination: Destination | None, config: Config) -> None:
        started = self.clock()
        began = time.monotonic()
        try:
            if tracing.enabled():
                outcome, status, excerpt = await self._send_traced(delivery, destination, config)
            else:
                outcome, status, excerpt = await self._send(delivery, destination, config)
        finally:
            self._slot_freed(delivery, destination)
        duration = time.monotonic() - began
        await self._record(delivery, destination, config, outcome, status, excerpt, started, duration)

    async def _send_traced(self, delivery: ClaimedDelivery, destination: Destination | None, config: Config) -> tuple[Outcome, int | None, str | None]:
        """`_send` in a span, a child of its event's ingest: one trace per event, retries included."""
        attributes = {"gateway.delivery_id": delivery.id, "gateway.destination": delivery.destination, "gateway.attempt": delivery.attempts + 1}
        with tracing.span("deliver", delivery.trace, attributes) as current:
            outcome, status, excerpt = await self._send(delivery, destination, config)
            tracing.note(current, **{"gateway.outcome": outcome.kind, "http.response.status_code": status, "gateway.failure": outcome.failure})
        return outcome, status, excerpt

    async def _send(self, delivery: ClaimedDelivery, destination: Destination | None, config: Config) -> tuple[Outcome, int | None, str | None]:
        if destination is None or destination.inactive:
            why = "no longer in routes.yaml" if destination is None else f"inactive: {destination.inactive}"
            return Outcome("dead", f"destination '{delivery.destination}' {why}"), None, None
        state = self._state(destination)
        if state.gone:
            return Outcome("dead", f"not sent: {state.gone}"), None, None
        if state.limiter is not None:
            await state.limiter.acquire()
        try:
            made = await self.store.records_created(delivery.id) if destination.spec.remembers_steps and delivery.attempts else {}
            trace = {"traceparent": parent} if destination.spec.sends_traceparent and (parent := tracing.traceparent()) else None
            outcome, status, excerpt = await attempt(self.client, destination.spec, delivery.body, delivery.id, config, self.clock, made, self._remember(delivery), trace)
        except StoreUnavailable as exc:  # what a step created could not be read or kept: stop before the next step
            outcome, status, excerpt = Outcome("retry", f"the store could not keep what a step created: {exc}"), None, None
        except ValueError as exc:  # a stored body this destination cannot send (it changed since)
            outcome, status, excerpt = Outcome("dead", f"cannot build the request: {exc}"), None, None
        except Exception as exc:  # recorded and retried on schedule, never lost in a dead task
            log.exception("delivery %s to %s failed unexpectedly", delivery.id, destination.name, extra=tenants.log_extra(destination.tenant))
            outcome, status, excerpt = Outcome("retry", f"internal error: {type(exc).__name__}"), None, None
        if status == 410 and not state.gone:
            self._stop_gone(destination, state, self._gone_reason(destination))
            await self._tell_others(DestinationHold(destination.name, gone=state.gone, config_version=config.version))
        if state.circuit.record(outcome, self.clock()):
            log.warning(
                "destination %s backed off after repeated failures (until %.0f)", destination.name, state.circuit.open_until, extra=tenants.log_extra(destination.tenant)
            )
            await self._tell_others(DestinationHold(destination.name, open_until=state.circuit.open_until))
        self.metrics.circuit_open.labels(destination.name, shop(destination.name)).set(1 if state.circuit.is_open(self.clock()) else 0)
        return outcome, status, excerpt

    def _remember(self, delivery: ClaimedDelivery) -> Callable[[str, str], Awaitable[None]]:
        async def remember(step: str, record_id: str) -> None:
            await self.store.record_created(delivery.id, step, record_id, self.clock())

        return remember

    async def _tell_others(self, hold: DestinationHold) -> None:
        """Other senders on the same database hold the destination off too (PostgreSQL)."""
        try:
            await self.store.hold_destination(hold)
        except StoreUnavailable as exc:
            log.warning("could not tell the other replicas about %s: %s", hold.destination, exc)

    async def _follow_others(self, config: Config, now: float) -> None:
        """What other senders learnt: a circuit they opened, a destination that answered them
        410 (while routes.yaml is unchanged). Looked at once a second at most."""
        if now < self._holds_checked_at + HOLDS_EVERY_SECONDS:
            return
        self._holds_checked_at = now
        for hold in await self.store.destination_holds(now):
            destination = config.destinations.get(hold.destination)
            if destination is None:
                continue
            state = self._state(destination)
            state.circuit.open_until = max(state.circuit.open_until, hold.open_until)
            if hold.gone and hold.config_version == config.version and not state.gone:
                self._stop_gone(destination, state, hold.gone)

    async def _record(
        self,
        delivery: ClaimedDelivery,
        destination: Destination | None,
        config: Config,
        outcome: Outcome,
        status: int | None,
        excerpt: str | None,
        started: float,
        duration: float,
    ) -> None:
        now = self.clock()
        next_attempt = None
        kind = outcome.kind
        if kind == "retry":
            if outcome.retry_after is not None and outcome.retry_after > MAX_RETRY_AFTER_SECONDS and not outcome.known_reset:
                log.warning(
                    "delivery %s: %s asked to wait %.0f s; waiting %.0f s, the most the gateway allows",
                    delivery.id, delivery.destination, outcome.retry_after, MAX_RETRY_AFTER_SECONDS, extra=tenants.log_extra(tenants.tenant_of(delivery.destination)),
                )
            policy = RetryPolicy.from_spec(destination.spec.retry) if destination else RetryPolicy()
            next_attempt = policy.next_attempt_at(now, delivery.attempts + 1, outcome.retry_after, capped=not outcome.known_reset)
            if next_attempt is None:
                kind = "dead"
                outcome = Outcome("dead", f"{outcome.reason}; gave up after {delivery.attempts + 1} attempts", failure=outcome.failure)
        result = AttemptResult(
            delivery_id=delivery.id,
            started_at=started,
            duration_ms=round(duration * 1000, 2),
            outcome=kind,
            status_code=status,
            response=mask_text(excerpt, config.secrets)[:MAX_RESPONSE_BYTES] if excerpt else None,
            error=mask_personal_data(mask_text(outcome.reason, config.secrets)) or None,
            next_attempt_at=next_attempt,
        )
        tenant = shop(delivery.destination)
        self.metrics.deliveries.labels(delivery.destination, kind, tenant).inc()
        if outcome.failure:
            self.metrics.failures.labels(delivery.destination, outcome.failure, tenant).inc()
        self.metrics.attempt_seconds.labels(delivery.destination, tenant).observe(duration)
        self.metrics.note_health(delivery.destination, kind == "delivered", started)
        # Successes are counted in metrics; a line for each would bury the failures worth reading.
        log.log(
            logging.DEBUG if kind == "delivered" else logging.INFO, "delivery %s to %s: %s %s", delivery.id, delivery.destination, kind, result.error or "",
            extra=tenants.log_extra(tenant or None),
        )
        try:
            await self.store.record_attempt(result, now)
        except StoreUnavailable as exc:
            log.error("could not record the attempt of %s (it will be retried when its claim expires): %s", delivery.id, exc)

    # ----------------------------------------------------------------- shutdown

    async def stop(self, grace_seconds: float = 25.0) -> None:
        """Stop claiming, let in-flight deliveries finish for a while, give the rest back."""
        self._stopping = True
        self._wake.set()
        waiting = self._give_back + [delivery.id for state in self._destinations.values() for _, delivery in state.ready]
        self._give_back = []
        for state in self._destinations.values():
            state.ready.clear()
        with contextlib.suppress(StoreUnavailable):
            await self.store.release(waiting, self.clock())
        if self._in_flight:
            await asyncio.wait(list(self._in_flight.values()), timeout=grace_seconds)
        unfinished = list(self._in_flight)
        for task in self._in_flight.values():
            task.cancel()
        with contextlib.suppress(StoreUnavailable):
            await self.store.release(unfinished, self.clock())



def _by_tenant(config: Config) -> dict[str | None, list[str]]:
    """The configured destinations' names, by the shop that declares them (None: routes.yaml)."""
    grouped: dict[str | None, list[str]] = {}
    for name, destination in config.destinations.items():
        grouped.setdefault(destination.tenant, []).append(name)
    return grouped
