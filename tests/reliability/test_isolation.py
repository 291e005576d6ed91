"""One failing and one hanging destination do not slow the others: a healthy destination keeps
its latency, and the failing one is backed off as a whole instead of hammered."""

from __future__ import annotations

import json
import statistics
import time

import httpx
import pytest

from tests.conftest import EVENTS, Project
from tests.harness import GatewayProcess, Sink, always

pytestmark = pytest.mark.slow
TOKEN = "token-de-teste-123"
PER_PHASE = 20


def healthy_latencies(gateway: GatewayProcess, healthy: Sink, first: int) -> list[float]:
    """Post PER_PHASE events one by one; seconds from each post until the healthy receiver has it."""
    template = json.loads((EVENTS / "order_created.json").read_text())
    latencies = []
    with httpx.Client(timeout=30) as client:
        for number in range(first, first + PER_PHASE):
            body = {**template, "data": {**template["data"], "id": f"pedido-{number}"}}
            sent = time.time()
            assert client.post(gateway.url(f"/hooks/go?token={TOKEN}"), json=body).status_code == 202
            arrived = healthy.wait_for(number + 1, timeout=30)[number]
            latencies.append(arrived.at - sent)
    return latencies


def test_failing_and_hanging_destinations_do_not_slow_a_healthy_one(project: Project) -> None:
    healthy, failing, hanging = Sink(always(200)), Sink(always(200)), Sink(always(200))
    project.routes(
        f"""
        version: 1
        settings: {{egress_allow: [127.0.0.0/8]}}
        sources: {{go: {{token: "${{GO_WEBHOOK_TOKEN}}", dedupe: false}}}}
        destinations:
          saudavel: {{type: http, url: "{healthy.url('/in')}"}}
          falha: {{type: http, url: "{failing.url('/in')}", retry: {{attempts: 10, first: 100ms, max: 1s}}}}
          trava: {{type: http, url: "{hanging.url('/in')}", timeout: 1s, retry: {{attempts: 10, first: 100ms, max: 1s}}}}
        routes:
          - name: tudo
            when: {{event_id: ORDER_CREATED}}
            send:
              - {{to: saudavel, body: '{{"id": "{{{{ data.id }}}}"}}'}}
              - {{to: falha, body: '{{"id": "{{{{ data.id }}}}"}}'}}
              - {{to: trava, body: '{{"id": "{{{{ data.id }}}}"}}'}}
        """
    )
    gateway = GatewayProcess(project.root, {"GO_WEBHOOK_TOKEN": TOKEN}).start()
    try:
        before = healthy_latencies(gateway, healthy, 0)  # everyone answers at once
        failing.wait_for(PER_PHASE)
        hanging.wait_for(PER_PHASE)
        failing.behaviour = always(503, body=b"fora do ar")
        hanging.behaviour = lambda request, count: (200, {}, b"", 5.0)  # past the 1 s timeout
        failing_seen = len(failing.received)
        phase_started = time.time()
        during = healthy_latencies(gateway, healthy, PER_PHASE)
        time.sleep(max(0.0, phase_started + 5 - time.time()))  # let the failing one be tried for 5 s
        failures = [r for r in failing.received[failing_seen:] if r.at <= phase_started + 5]
        metrics = httpx.get(gateway.url("/metrics")).text

        assert statistics.median(during) < statistics.median(before) + 0.25, (statistics.median(before), statistics.median(during))
        assert max(during) < 5.0, during  # generous: the median above is the measure; this catches a stall
        # backed off as a whole: 20 deliveries retried every 0.1-1 s would be well over 60
        # requests in 5 s; the circuit breaker lets a handful through, then waits
        assert 5 <= len(failures) < PER_PHASE, len(failures)
        assert 'gateway_destination_circuit_open{destination="falha",tenant=""} 1.0' in metrics
        assert 'gateway_destination_circuit_open{destination="saudavel",tenant=""} 0.0' in metrics
        print(
            f"healthy latency median {statistics.median(before) * 1000:.1f} ms before, {statistics.median(during) * 1000:.1f} ms during;"
            f" failing destination got {len(failures)} requests in 5 s"
        )
    finally:
        gateway.kill()
        for sink in (healthy, failing, hanging):
            sink.close()
