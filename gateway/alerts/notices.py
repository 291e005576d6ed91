"""A notice's words (Brazilian Portuguese, as the shop reads them) and its body for the
destination it goes to: a Slack message, or JSON for any HTTP endpoint (an e-mail relay, a
pager, the integrator's own system)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from gateway.alerts.settings import Alerts
from gateway.store.base import Incident

OPENED = {
    "failing": "🔴 O destino *{subject}* está falhando: {detail}.",
    "circuit_open": "⏸️ Entregas para *{subject}* pausadas: {detail}.",
    "gone": "⛔ O destino *{subject}* {detail}.",
    "dead_over": "⚠️ {detail}. Veja e reenvie pelo console.",
    "pending_old": "⏳ A fila de entregas está parada: {detail}.",
    "edit_refused": "📝 Uma edição das rotas foi recusada e as rotas anteriores continuam valendo: {detail}",
}
RESOLVED = {
    "failing": "✅ O destino *{subject}* voltou a funcionar (ficou {duration} com problema).",
    "circuit_open": "✅ As entregas para *{subject}* foram retomadas ({duration} depois).",
    "gone": "✅ O destino *{subject}* voltou a receber entregas.",
    "dead_over": "✅ As entregas com falha voltaram ao limite ({duration} depois).",
    "pending_old": "✅ A fila de entregas voltou a andar ({duration} depois).",
    "edit_refused": "✅ As rotas corrigidas estão valendo.",
}
PAGES = {"failing": "/console/deliveries?status=dead", "circuit_open": "/console", "gone": "/console", "dead_over": "/console/deliveries?status=dead", "pending_old": "/console/deliveries?status=pending", "edit_refused": "/console/routes"}


def text(incident: Incident, notice: str) -> str:
    """The notice as a sentence: what happened (or that it cleared, and after how long)."""
    if notice == "resolved":
        return RESOLVED[incident.kind].format(subject=incident.subject, duration=_duration((incident.resolved_at or incident.opened_at) - incident.opened_at))
    return OPENED[incident.kind].format(subject=incident.subject, detail=incident.detail)


def body(destination_type: str, incident: Incident, notice: str, alerts: Alerts) -> str:
    """What is sent: for Slack a message with the console's link; for HTTP the facts as JSON."""
    words, link = text(incident, notice), alerts.link(PAGES[incident.kind])
    if destination_type == "slack":
        return json.dumps({"text": words + (f"\n<{link}|Abrir no console>" if link else "")}, ensure_ascii=False)
    return json.dumps(
        {
            "alert": incident.kind,
            "state": notice,
            "subject": incident.subject or None,
            "detail": incident.detail,
            "text": words,
            "link": link,
            "opened_at": _iso(incident.opened_at),
            "resolved_at": _iso(incident.resolved_at) if incident.resolved_at is not None else None,
            "incident": incident.id,
        },
        ensure_ascii=False,
    )


SAMPLE_SUBJECT = "crm"
SAMPLE_DETAILS = {
    "failing": "nenhuma entrega deu certo desde 07/12 14:05",
    "circuit_open": "muitas falhas seguidas; o gateway pausou as entregas e tenta de novo sozinho",
    "gone": "respondeu 410 (não existe mais): nenhuma entrega vai para lá até o routes.yaml mudar",
    "dead_over": "25 entregas falharam de vez (o limite é 20)",
    "pending_old": "a entrega mais antiga espera desde 07/12 13:30 (o limite é 30m)",
    "edit_refused": "routes.yaml:14:7: route 'pedido-criado' sends to unknown destination 'slak-vendas' (did you mean 'slack-vendas'?)",
}


def samples(alerts: Alerts, subject: str = SAMPLE_SUBJECT) -> list[Incident]:
    """An incident of each kind the section turns on, opened 25 minutes ago and resolved now: what
    `gateway dry-run --alerts` shows."""
    on = {
        "failing": alerts.failing_for is not None, "circuit_open": alerts.circuit_open, "gone": alerts.gone,
        "dead_over": alerts.dead_over is not None, "pending_old": alerts.pending_older_than is not None, "edit_refused": alerts.edit_refused,
    }
    opened = 1_765_123_200.0  # a fixed moment: the same output every run
    return [
        Incident(f"exemplo-{kind}", kind, kind, subject if kind in ("failing", "circuit_open", "gone") else "", SAMPLE_DETAILS[kind], opened, opened + 25 * 60)
        for kind, enabled in on.items()
        if enabled
    ]


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "menos de um minuto"
    if minutes < 60:
        return f"{minutes} min"
    hours, rest = divmod(minutes, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
