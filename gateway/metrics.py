"""Prometheus metrics, in a registry of the app's own (tests run several apps in one process).

Labels are never personal data: sources, destinations, routes, outcomes and statuses only.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter("gateway_events_received_total", "Events received, by source and outcome", ["source", "outcome"], registry=self.registry)
        self.deliveries = Counter("gateway_deliveries_total", "Delivery attempts and records, by destination and outcome", ["destination", "outcome"], registry=self.registry)
        self.attempt_seconds = Histogram(
            "gateway_attempt_duration_seconds",
            "Duration of delivery attempts",
            ["destination"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.queue = Gauge("gateway_queue_depth", "Deliveries by status", ["status"], registry=self.registry)
        self.circuit_open = Gauge("gateway_destination_circuit_open", "1 while a destination is backed off as a whole", ["destination"], registry=self.registry)
        self.destination_stopped = Gauge(
            "gateway_destination_stopped", "1 while a destination is stopped because it answered 410 Gone", ["destination"], registry=self.registry
        )
        self.config = Gauge("gateway_config_info", "The routes.yaml version in force", ["version"], registry=self.registry)
        self.reloads = Counter("gateway_config_reloads_total", "routes.yaml reloads, by outcome", ["outcome"], registry=self.registry)

    def render(self, queue_depth: dict[str, int]) -> bytes:
        for status in ("pending", "sending", "delivered", "dead", "failed", "skipped", "shadow"):
            self.queue.labels(status).set(queue_depth.get(status, 0))
        return generate_latest(self.registry)
