"""What the admin API shows, from store rows and config: masking, grouping, per-minute series."""

from __future__ import annotations

import json

from gateway.admin import views
from gateway.masking import MASK
from gateway.store.base import Activity, DeliveryRow, DestinationHold, Incident

ORDER = {
    "event_id": "ORDER_CREATED",
    "data": {"code": "0000593098", "user": {"name": "Maria", "document": "123.456.789-09", "email": "maria@example.com", "cellphone": "11987654321", "phone": None}},
    "items": [{"name": "Caneca", "note": "ligar para (11) 98765-4321"}],
}


def test_personal_data_is_masked_by_field_name_and_by_what_it_looks_like() -> None:
    masked = views.mask_payload(ORDER)
    user = masked["data"]["user"]
    assert user["document"] == user["email"] == user["cellphone"] == MASK and user["phone"] is None
    assert user["name"] == "Maria" and masked["data"]["code"] == "0000593098"
    assert masked["items"][0] == {"name": "Caneca", "note": f"ligar para {MASK}"}
    assert ORDER["data"]["user"]["email"] == "maria@example.com"  # the original is left alone


def test_a_rendered_body_loses_the_payloads_personal_values_even_inside_sentences(tmp_path) -> None:
    personal = frozenset(views.personal_values(ORDER))
    assert {"123.456.789-09", "maria@example.com", "11987654321"} <= personal
    config = _config(tmp_path)
    body = json.dumps({"text": "Pedido de Maria, celular 11987654321, CPF 123.456.789-09", "secret": "sk-live-123456"})
    shown = views.mask_body(body, config, reveal=False, personal=personal)
    assert "11987654321" not in shown and "123.456.789-09" not in shown and "Maria" in shown
    assert views.mask_body(body, config, reveal=True, personal=personal) == body.replace("sk-live-123456", MASK)


def test_dead_deliveries_are_grouped_by_destination_and_the_errors_first_words() -> None:
    rows = [_dead("a", "crm", "HTTP 400: the receiver refused the request"), _dead("b", "crm", "HTTP 400: other words"), _dead("c", "slack", "timeout: no answer in 10 s")]
    groups = views.dead_groups(rows)
    assert [(g.destination, g.reason, g.count, g.delivery_ids) for g in groups] == [("crm", "HTTP 400", 2, ["a", "b"]), ("slack", "timeout", 1, ["c"])]


def test_minutes_cover_the_last_hour_oldest_first_with_empty_minutes_as_zero() -> None:
    now = 1_700_000_000.0
    this_minute = now // 60 * 60
    series = views.minutes(Activity({this_minute: 3}, {this_minute - 60: {"delivered": 2, "retry": 1, "dead": 1}}), now)
    assert len(series) == 60 and series[-1].start == this_minute and series[0].start == this_minute - 59 * 60
    assert (series[-1].events, series[-2].delivered, series[-2].retried, series[-2].dead) == (3, 2, 1, 1)
    assert sum(m.events for m in series[:-1]) == 0


def test_destination_health_reads_the_engines_metrics_and_the_clusters_holds(tmp_path) -> None:
    from gateway.delivery.metrics import DeliveryMetrics

    metrics = DeliveryMetrics()
    metrics.deliveries.labels("crm", "delivered", "").inc(5)
    metrics.deliveries.labels("crm", "retry", "").inc(2)
    metrics.circuit_open.labels("crm", "").set(1)
    health = views.destination_health(_config(tmp_path), metrics.render(), [DestinationHold("espelho", gone="HTTP 410")])
    by_name = {h.destination: h for h in health}
    assert (by_name["crm"].state, by_name["crm"].delivered, by_name["crm"].failed) == ("circuit_open", 5, 2)
    assert by_name["espelho"].state == "stopped"


def test_a_destination_missing_its_variable_is_shown_inactive_with_why(tmp_path) -> None:
    from gateway.config import load_config

    (tmp_path / "routes.yaml").write_text(
        'version: 1\nsources: {go: {}}\ndestinations:\n  slack: {type: slack, url: "${SLACK_URL}"}\n'
        "routes:\n  - {name: r, when: {event_id: X}, send: {to: slack, body: '{\"text\": \"oi\"}'}}\n"
    )
    [health] = views.destination_health(load_config(str(tmp_path / "routes.yaml"), {}), b"", [])
    assert health.state == "inactive" and "SLACK_URL" in (health.inactive or "")


def _dead(delivery_id: str, destination: str, error: str) -> DeliveryRow:
    return DeliveryRow(delivery_id, "e", "r", destination, "dead", 1, None, error, "{}", 1.0, 2.0)


def _config(tmp_path):
    from gateway.config import load_config

    (tmp_path / "routes.yaml").write_text(
        """
version: 1
sources: {go: {}}
destinations:
  crm: {type: http, url: "https://crm.example.com/in", headers: {Authorization: "Bearer ${CRM_TOKEN}"}}
  espelho: {type: http, url: "https://espelho.example.com/in"}
routes:
  - name: r
    when: {event_id: ORDER_CREATED}
    send: {to: crm, body: '{"secret": "sk-live-123456"}'}
"""
    )
    return load_config(str(tmp_path / "routes.yaml"), {"CRM_TOKEN": "sk-live-123456"})


def test_alerts_open_first_each_with_its_words_and_its_notices_fate() -> None:
    """Open incidents first (newest first), then resolved ones; a notice that failed shows why;
    a shop sees those about its own destinations, never the gateway's as a whole."""
    incidents = [
        Incident("i1", "failing:loja-a/crm", "failing", "loja-a/crm", "nenhuma entrega deu certo desde 07/12 14:05", 100.0, 900.0, 150.0, 950.0),
        Incident("i2", "dead_over", "dead_over", "", "25 entregas falharam de vez (o limite é 20)", 200.0, notice_attempts=2, notice_error="avisos: HTTP 503"),
        Incident("i3", "gone:padaria/crm", "gone", "padaria/crm", "respondeu 410", 300.0, open_notified_at=310.0),
    ]
    shown = views.alerts(incidents, None)
    assert [a.id for a in shown] == ["i3", "i2", "i1"]
    assert shown[1].notice_error == "avisos: HTTP 503" and shown[1].notified_at is None and shown[1].subject is None
    assert shown[2].text == "✅ O destino *loja-a/crm* voltou a funcionar (ficou 13 min com problema)." and shown[2].notified_at == 950.0
    assert [a.id for a in views.alerts(incidents, "loja-a")] == ["i1"] and views.alerts(incidents, "loja") == []
    assert [a.id for a in views.alerts(incidents, None, limit=1)] == ["i3"]
