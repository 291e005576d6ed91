"""Which incidents the gateway sees now, and which open ones it can tell have cleared: pure
functions of a `Health` snapshot (gateway/alerts/monitor.py gathers it).

What a replica sees of a destination (its failing run, its last success) is its own engine's;
what the cluster shares (circuits and 410 stops on PostgreSQL, the dead count, the oldest pending
delivery) comes from the store. An incident about a destination is resolved only on evidence:
a success after it opened (or, for a 410 stop, the stop lifted), so a replica that never sent
there does not resolve what another replica sees failing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.alerts.settings import Alerts
from gateway.errors import plural
from gateway.store.base import Incident

SAO_PAULO = ZoneInfo("America/Sao_Paulo")


@dataclass(frozen=True)
class Health:
    """What the gateway sees now."""

    now: float
    failing_since: Mapping[str, float] = field(default_factory=dict)  # destination -> when its failed attempts began
    last_delivered: Mapping[str, float] = field(default_factory=dict)  # destination -> its last success
    circuit_open: Collection[str] = frozenset()
    stopped: Collection[str] = frozenset()  # answered 410 Gone
    dead: int = 0
    oldest_pending_at: float | None = None
    refused: tuple[str, ...] = ()  # the problems of a refused edit of routes.yaml (or a shop's file)


@dataclass(frozen=True)
class Finding:
    key: str
    kind: str
    subject: str  # a destination, or "" for the gateway as a whole
    detail: str  # what was seen, in the console's language
    since: float | None = None  # when the trouble began, when known (a failing run): the incident's start


def findings(alerts: Alerts, destinations: Collection[str], health: Health, resolved_at: Mapping[str, float]) -> dict[str, Finding]:
    """Every incident the snapshot shows, by key. The alerts' own destinations are never
    alerted about (a failing notice is logged and shown in the console, never notified in a
    loop). `resolved_at`: when each key was last resolved; a failing run must outlast that too."""
    watched = sorted(d for d in destinations if d not in alerts.to)
    found = [
        *_failing(alerts, watched, health, resolved_at),
        *(Finding(f"circuit_open:{d}", "circuit_open", d, "muitas falhas seguidas; o gateway pausou as entregas e tenta de novo sozinho") for d in watched if alerts.circuit_open and d in health.circuit_open),
        *(Finding(f"gone:{d}", "gone", d, "respondeu 410 (não existe mais): nenhuma entrega vai para lá até o routes.yaml mudar") for d in watched if alerts.gone and d in health.stopped),
    ]
    if alerts.dead_over is not None and health.dead > alerts.dead_over:
        found.append(Finding("dead_over", "dead_over", "", f"{plural(health.dead, 'entrega')} {'falhou' if health.dead == 1 else 'falharam'} de vez (o limite é {alerts.dead_over})"))
    pending_limit = alerts.pending_older_than
    if pending_limit is not None and health.oldest_pending_at is not None and health.now - health.oldest_pending_at >= pending_limit.seconds:
        found.append(Finding("pending_old", "pending_old", "", f"a entrega mais antiga espera desde {_clock(health.oldest_pending_at)} (o limite é {pending_limit})"))
    if alerts.edit_refused and health.refused:
        found.append(Finding("edit_refused", "edit_refused", "", "; ".join(health.refused[:3]) + (f" (e mais {len(health.refused) - 3})" if len(health.refused) > 3 else "")))
    return {f.key: f for f in found}


def _failing(alerts: Alerts, watched: list[str], health: Health, resolved_at: Mapping[str, float]) -> list[Finding]:
    if alerts.failing_for is None:
        return []
    found = []
    for destination in watched:
        since = health.failing_since.get(destination)
        if not since:
            continue
        since = max(since, resolved_at.get(f"failing:{destination}", 0.0))
        if health.now - since >= alerts.failing_for.seconds:
            found.append(Finding(f"failing:{destination}", "failing", destination, f"nenhuma entrega deu certo desde {_clock(since)}", since))
    return found


def cleared(incident: Incident, health: Health, destinations: Collection[str]) -> bool:
    """Whether an open incident that no finding supports has cleared, as far as this replica can
    tell: a destination's by a success since it opened (a 410 stop by the stop lifted); one whose
    destination left routes.yaml, at once; the gateway's own as soon as they are not seen."""
    subject = incident.subject
    if subject and subject not in destinations:
        return True
    if incident.kind in ("failing", "circuit_open"):
        return health.last_delivered.get(subject, 0.0) > incident.opened_at
    if incident.kind == "gone":
        return subject not in health.stopped
    return True


def _clock(timestamp: float) -> str:
    """A time as the shop reads it, in São Paulo: 07/12 14:05."""
    return datetime.fromtimestamp(timestamp, SAO_PAULO).strftime("%d/%m %H:%M")
