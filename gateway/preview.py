"""What a planned delivery would send, masked for a person to read: the dry-run's requests.

`gateway dry-run` prints them and the admin API's dry-run (the console's playground) returns
them; both show the same requests, with secrets masked, and the same refused addresses.
"""

from __future__ import annotations

from gateway.config import Config
from gateway.delivery.egress import literal_address_refused, url_problem
from gateway.destinations import DRY_RUN_KEY, OutgoingRequest, find_request
from gateway.masking import mask_request, mask_text
from gateway.routing import PlannedDelivery, RoutingResult, build_delivery_request


def masked_request(config: Config, delivery: PlannedDelivery) -> OutgoingRequest | None:
    request = build_delivery_request(config, delivery)
    return mask_request(request, config.secrets) if request else None


def masked_search(config: Config, delivery: PlannedDelivery) -> OutgoingRequest | None:
    """For an update: the search that finds the record first."""
    if delivery.body is None:
        return None
    search = find_request(config.destinations[delivery.destination].spec, delivery.body)
    return mask_request(search, config.secrets) if search else None


def refused_address(config: Config, delivery: PlannedDelivery) -> str | None:
    """Why a delivery's address would be refused when it is sent (known without a name
    server: the URL itself, an IP literal, localhost), or None."""
    spec = config.destinations[delivery.destination].spec
    if delivery.body is None:
        return None
    for request in spec.planned_requests(delivery.body, DRY_RUN_KEY):
        problem = url_problem(request.url) or literal_address_refused(request.url, config.egress_allow)
        if problem:
            return mask_text(problem, config.secrets)
    return None


def fails(config: Config, result: RoutingResult) -> bool:
    """A matched route whose template fails, or whose address would be refused: exit 1."""
    return any(d.error or refused_address(config, d) for d in result.deliveries)


def masked_steps(config: Config, delivery: PlannedDelivery) -> list[OutgoingRequest]:
    """Every request the delivery makes, in order (a search, a record and a link, ...), with
    placeholders for what earlier answers give."""
    if delivery.body is None:
        return []
    spec = config.destinations[delivery.destination].spec
    return [mask_request(request, config.secrets) for request in spec.planned_requests(delivery.body, DRY_RUN_KEY)]
