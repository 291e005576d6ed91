"""Prometheus metrics, in registries of the app's own (tests run several apps in one process).

What the HTTP process counts lives here; what the delivery engine counts lives in
`DeliveryMetrics` (gateway/delivery/metrics.py). With the engine in this process, `delivery` is
its metrics; under `gateway serve` the delivery child keeps them, and /metrics asks it for them.

Labels are never personal data: sources, destinations, routes, outcomes, statuses and shops only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from gateway.delivery.metrics import DeliveryMetrics
from gateway.store.base import STATUSES


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.delivery = DeliveryMetrics()
        self.events = Counter("gateway_events_received_total", "Events received, by source, its shop and outcome", ["source", "outcome", "tenant"], registry=self.registry)
        self.queue = Gauge("gateway_queue_depth", "Deliveries by status", ["status"], registry=self.registry)
        self.config = Gauge("gateway_config_info", "The routes.yaml version in force", ["version"], registry=self.registry)
        self.reloads = Counter("gateway_config_reloads_total", "routes.yaml reloads, by outcome", ["outcome"], registry=self.registry)

    def count_event(self, source: str, outcome: str, tenant: str | None) -> None:
        self.events.labels(source, outcome, tenant or "").inc()

    def render(self, queue_depth: dict[str, int], deliveries: bytes | None = None) -> bytes:
        """All metrics; `deliveries` is the delivery child's part, when it runs the engine."""
        for status in STATUSES:
            self.queue.labels(status).set(queue_depth.get(status, 0))
        return generate_latest(self.registry) + (deliveries if deliveries is not None else self.delivery.render())
