"""Matching cost vs number of routes for *other* event ids (issue: routes indexed by event_id).

Builds three configs in one run — 10 routes, 1,000 routes, and 1,000 routes evaluated by a
linear scan (what matching would cost without the index) — and times `route_event` for one
ORDER_CREATED event that matches exactly one route. Reports per-event time and ratios to the
10-route baseline, so the numbers mean something on a shared, noisy machine.

Run:  .venv/bin/python bench/bench_matching.py
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import load_config  # noqa: E402
from gateway.routing import route_event  # noqa: E402

EVENT = json.loads((ROOT / "examples" / "events" / "order_created.json").read_text())
ROUNDS, EVENTS_PER_ROUND = 7, 5000


def write_config(folder: Path, other_routes: int) -> Path:
    lines = [
        "version: 1",
        "sources: {go: {token: benchmark-token}}",
        'destinations: {sink: {type: http, url: "http://127.0.0.1:9/x"}}',
        "routes:",
        "  - name: the-match",
        "    when: {event_id: ORDER_CREATED, data.status: {in: [1, 2]}}",
        '    send: {to: sink, body: \'{"id": "{{ data.id }}"}\'}',
    ]
    for index in range(other_routes):
        lines += [
            f"  - name: other-{index}",
            f"    when: {{event_id: OTHER_EVENT_{index}, data.status: 1}}",
            '    send: {to: sink, body: \'{"id": "{{ data.id }}"}\'}',
        ]
    path = folder / f"routes-{other_routes}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def per_event_seconds(run) -> float:
    """Median over rounds of the mean time per event."""
    samples = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(EVENTS_PER_ROUND):
            run()
        samples.append((time.perf_counter() - started) / EVENTS_PER_ROUND)
    return statistics.median(samples)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        small = load_config(write_config(Path(folder), 9), environ={})
        large = load_config(write_config(Path(folder), 999), environ={})
    assert len(small.routes) == 10 and len(large.routes) == 1000
    assert route_event(small, EVENT).matched_routes == route_event(large, EVENT).matched_routes == ["the-match"]

    def linear_scan() -> list[str]:  # the same work without the index: test every route
        return [r.name for r in large.routes if r.source == "go" and r.condition.test(EVENT)]

    results = {
        "10 routes (baseline)": per_event_seconds(lambda: route_event(small, EVENT)),
        "1,000 routes, indexed": per_event_seconds(lambda: route_event(large, EVENT)),
        "1,000 routes, linear scan (no index)": per_event_seconds(lambda: (linear_scan(), route_event(small, EVENT))),
    }
    baseline = results["10 routes (baseline)"]
    print(f"{'config':40} {'µs/event':>10} {'vs baseline':>12}")
    for name, seconds in results.items():
        print(f"{name:40} {seconds * 1e6:10.1f} {seconds / baseline:11.2f}x")


if __name__ == "__main__":
    main()
