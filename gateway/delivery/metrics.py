"""What the delivery engine counts, in a registry of its own: under `gateway serve` the engine
runs in the delivery child, and /metrics shows the HTTP process's metrics followed by these.

Labels are never personal data: destinations, outcomes, failure names and the shop (`tenant`, ""
for routes.yaml's own) only. A shop's admin token reads its own shop's samples (/admin/api/metrics).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import gateway.tenants as tenants


@dataclass
class DestinationStates:
    """What the engine's metrics say of each destination, read back from their text (the engine
    may run in another process): the console's overview and the alerts read them alike."""

    circuit_open: set[str] = field(default_factory=set)
    stopped: set[str] = field(default_factory=set)  # answered 410 Gone
    failing_since: dict[str, float] = field(default_factory=dict)
    last_delivered: dict[str, float] = field(default_factory=dict)
    delivered: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    failed: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))  # retried or dead


def read_states(text: bytes) -> DestinationStates:
    states = DestinationStates()
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            name, destination, value = sample.name, sample.labels.get("destination", ""), sample.value
            if name == "gateway_destination_circuit_open" and value:
                states.circuit_open.add(destination)
            elif name == "gateway_destination_stopped" and value:
                states.stopped.add(destination)
            elif name == "gateway_destination_failing_since_seconds" and value:
                states.failing_since[destination] = value
            elif name == "gateway_destination_last_delivered_seconds":
                states.last_delivered[destination] = value
            elif name == "gateway_deliveries_total":
                outcome = sample.labels.get("outcome")
                if outcome == "delivered":
                    states.delivered[destination] += int(value)
                elif outcome in ("retry", "dead"):
                    states.failed[destination] += int(value)
    return states


def shop(name: str) -> str:
    """The `tenant` label of a destination (or route): its shop, "" for routes.yaml's own."""
    return tenants.tenant_of(name) or ""


class DeliveryMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "gateway_deliveries_total", "Delivery attempts and records, by destination and outcome", ["destination", "outcome", "tenant"], registry=self.registry
        )
        self.failures = Counter(
            "gateway_delivery_failures_total",
            "Attempts that got no answer, by destination and why: connection_refused, dns_failure, tls_error, timeout, connection_closed, connection_error",
            ["destination", "failure", "tenant"],
            registry=self.registry,
        )
        self.attempt_seconds = Histogram(
            "gateway_attempt_duration_seconds",
            "Duration of delivery attempts",
            ["destination", "tenant"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.circuit_open = Gauge("gateway_destination_circuit_open", "1 while a destination is backed off as a whole", ["destination", "tenant"], registry=self.registry)
        self.destination_stopped = Gauge(
            "gateway_destination_stopped", "1 while a destination is stopped because it answered 410 Gone", ["destination", "tenant"], registry=self.registry
        )
        # What the alerts (gateway/alerts/) and a Prometheus rule read: how long a destination has failed
        self.failing_since = Gauge(
            "gateway_destination_failing_since_seconds",
            "When the destination's current run of failed attempts began (unix time); 0 since its last success",
            ["destination", "tenant"],
            registry=self.registry,
        )
        self.last_delivered = Gauge(
            "gateway_destination_last_delivered_seconds", "When an attempt last reached the destination and succeeded (unix time)", ["destination", "tenant"], registry=self.registry
        )
        self._failing: set[str] = set()

    def note_health(self, destination: str, delivered: bool, at: float) -> None:
        """An attempt's outcome: a success ends a run of failures, a failure starts one (or goes on)."""
        labels = (destination, shop(destination))
        if delivered:
            self.last_delivered.labels(*labels).set(at)
            if destination in self._failing:  # on every success otherwise: a lookup for nothing
                self.failing_since.labels(*labels).set(0)
                self._failing.discard(destination)
        elif destination not in self._failing:
            self._failing.add(destination)
            self.failing_since.labels(*labels).set(at)

    def count_not_sent(self, not_sent: list[tuple[str, str]]) -> None:
        """Deliveries ingest recorded as never to be sent (failed, skipped, shadow)."""
        for destination, status in not_sent:
            self.deliveries.labels(destination, status, shop(destination)).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
