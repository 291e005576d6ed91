"""Prometheus metrics, in registries of the app's own (tests run several apps in one process).

Two registries: what the HTTP process counts, and what the delivery engine counts. Under
`gateway serve` the engine runs in the deliverer process (gateway/deliverer.py), and /metrics
shows the HTTP process's own metrics followed by the deliverer's.

Labels are never personal data: sources, destinations, routes, outcomes and statuses only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.delivery_registry = CollectorRegistry()
        self.events = Counter("gateway_events_received_total", "Events received, by source and outcome", ["source", "outcome"], registry=self.registry)
        self.deliveries = Counter(
            "gateway_deliveries_total", "Delivery attempts and records, by destination and outcome", ["destination", "outcome"], registry=self.delivery_registry
        )
        self.attempt_seconds = Histogram(
            "gateway_attempt_duration_seconds",
            "Duration of delivery attempts",
            ["destination"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.delivery_registry,
        )
        self.queue = Gauge("gateway_queue_depth", "Deliveries by status", ["status"], registry=self.registry)
        self.circuit_open = Gauge("gateway_destination_circuit_open", "1 while a destination is backed off as a whole", ["destination"], registry=self.delivery_registry)
        self.destination_stopped = Gauge(
            "gateway_destination_stopped", "1 while a destination is stopped because it answered 410 Gone", ["destination"], registry=self.delivery_registry
        )
        self.config = Gauge("gateway_config_info", "The routes.yaml version in force", ["version"], registry=self.registry)
        self.reloads = Counter("gateway_config_reloads_total", "routes.yaml reloads, by outcome", ["outcome"], registry=self.registry)

    def render(self, queue_depth: dict[str, int], deliveries: bytes | None = None) -> bytes:
        """All metrics; `deliveries` is the deliverer process's part, when it runs the engine."""
        for status in ("pending", "sending", "delivered", "dead", "failed", "skipped", "shadow"):
            self.queue.labels(status).set(queue_depth.get(status, 0))
        return generate_latest(self.registry) + (deliveries if deliveries is not None else self.render_deliveries())

    def render_deliveries(self) -> bytes:
        return generate_latest(self.delivery_registry)
