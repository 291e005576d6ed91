"""The alert monitor: every `check_every`, what the gateway sees becomes incidents in the store,
and each incident's notices go out, once, however many replicas run it.

Opening and resolving go through the store (one open incident per key, on every backend); each
notice is claimed by one sender and sent through the delivery code (`attempt`: the egress guard,
the vendor's rules, a stable Idempotency-Key per notice). A notice that cannot be sent is logged,
kept with its error (the console shows it) and tried again later, a bounded number of times;
it never becomes an alert of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from gateway.alerts import notices
from gateway.alerts.conditions import Finding, Health, cleared, findings
from gateway.alerts.settings import Alerts
from gateway.config import Config
from gateway.delivery.attempt import attempt
from gateway.delivery.client import DeliveryClient, delivery_client
from gateway.delivery.metrics import read_states
from gateway.masking import mask_text
from gateway.store.base import DEAD, DeliveryFilter, Incident, Store, StoreUnavailable, new_id

log = logging.getLogger("gateway.alerts")
MAX_NOTICE_ATTEMPTS = 10
NOTICE_LEASE_SECONDS = 60.0  # a sender that died while sending: another takes the notice after this
IDLE_SECONDS = 30.0  # how often a gateway without alerts looks whether a reload added them
RECENT_INCIDENTS = 500


class AlertMonitor:
    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        delivery_metrics: Callable[[], Awaitable[bytes]],
        refused: Callable[[], tuple[str, ...]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store, self.config, self.delivery_metrics, self.refused, self.clock = store, config, delivery_metrics, refused, clock

    async def run(self) -> None:
        """Look and tell, until cancelled; no error ends the loop."""
        async with delivery_client(lambda: self.config().egress_allow) as client:
            while True:
                alerts = self.config().alerts
                try:
                    if alerts is not None:
                        await self.check(client)
                except StoreUnavailable as exc:
                    log.warning("alerts not checked, the store is unavailable: %s", exc)
                except Exception:
                    log.exception("alerts check failed; trying again at the next one")
                await asyncio.sleep(alerts.check_every if alerts is not None else IDLE_SECONDS)

    async def check(self, client: DeliveryClient) -> None:
        """One look: open what is seen, resolve what cleared, send the notices due."""
        config = self.config()
        if config.alerts is None:
            return
        health = await self.health(config)
        recent = await self.store.incidents(RECENT_INCIDENTS)
        open_now = {i.key: i for i in recent if i.resolved_at is None}
        resolved_at: dict[str, float] = {}
        for incident in recent:
            if incident.resolved_at is not None:
                resolved_at[incident.key] = max(resolved_at.get(incident.key, 0.0), incident.resolved_at)
        seen = findings(config.alerts, config.destinations, health, resolved_at)
        for key, finding in seen.items():
            if key not in open_now:
                await self._open(finding, health.now)
        for key, incident in open_now.items():
            if key not in seen and cleared(incident, health, config.destinations) and await self.store.resolve_incident(key, health.now):
                log.info("alert resolved: %s", key)
        await self.send_due(client, config, config.alerts)

    async def _open(self, finding: Finding, now: float) -> None:
        incident = Incident(new_id(), finding.key, finding.kind, finding.subject, finding.detail, finding.since or now)
        if await self.store.open_incident(incident):  # False: another replica opened it first
            log.warning("alert: %s: %s", finding.key, finding.detail)

    async def health(self, config: Config) -> Health:
        """What the engine's metrics (this replica) and the store (the cluster) say now; a 410
        stop counts while routes.yaml is the version it was seen with, as the engine's does."""
        now = self.clock()
        states = read_states(await self.delivery_metrics())
        for hold in await self.store.destination_holds(now):
            if hold.gone and hold.config_version == config.version:
                states.stopped.add(hold.destination)
            elif hold.open_until > now:
                states.circuit_open.add(hold.destination)
        return Health(
            now=now,
            failing_since=states.failing_since,
            last_delivered=states.last_delivered,
            circuit_open=states.circuit_open,
            stopped=states.stopped,
            dead=await self.store.count_deliveries(DeliveryFilter(statuses=(DEAD,))),
            oldest_pending_at=await self.store.oldest_pending_at(),
            refused=self.refused(),
        )

    async def send_due(self, client: DeliveryClient, config: Config, alerts: Alerts) -> None:
        now = self.clock()
        for incident in await self.store.claim_notices(now, NOTICE_LEASE_SECONDS, MAX_NOTICE_ATTEMPTS):
            notice = incident.notice_due
            assert notice is not None, "claim_notices returns incidents with a notice due"
            errors = [error for name in alerts.to if (error := await self._send(client, config, alerts, name, incident, notice))]
            if not errors:
                await self.store.notice_sent(incident.id, notice, self.clock())
                continue
            error = mask_text("; ".join(errors), config.secrets)
            retry_at = self.clock() + min(60.0 * 2**incident.notice_attempts, 3600.0)
            log.error("alert notice (%s, %s) not sent, tried again later: %s", incident.key, notice, error)
            await self.store.notice_sent(incident.id, notice, self.clock(), error=error, retry_at=retry_at)

    async def _send(self, client: DeliveryClient, config: Config, alerts: Alerts, name: str, incident: Incident, notice: str) -> str | None:
        """One notice to one destination; why it was not delivered, or None."""
        destination = config.destinations.get(name)
        if destination is None or destination.inactive:
            return f"{name}: {destination.inactive if destination else 'no longer in routes.yaml'}"
        body = notices.body(destination.type, incident, notice, alerts)
        outcome, _, _ = await attempt(client, destination.spec, body, f"alert-{incident.id}-{notice}", config, self.clock)
        return None if outcome.kind == "delivered" else f"{name}: {outcome.reason}"
