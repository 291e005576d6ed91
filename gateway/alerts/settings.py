"""The `alerts:` section of routes.yaml: where notices go and what deserves one.

```yaml
alerts:
  to: avisos                      # a slack or http destination of routes.yaml (or a list)
  console_url: https://gateway.minhaloja.com.br   # optional: notices link to the console there
  failing_for: 10m                # a destination failing with no success for this long
  circuit_open: true              # a destination backed off after repeated failures
  gone: true                      # a destination that answered 410 Gone
  dead_over: 20                   # more dead deliveries than this
  pending_older_than: 30m         # a delivery waiting longer than this
  edit_refused: true              # an edit of routes.yaml (or a shop's file) refused
```

Each kind is on with the value shown unless set to `false`; `check_every` (30s) is how often the
gateway looks. Only routes.yaml has this section: alerts are about the whole gateway.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Union

from gateway.errors import Location, did_you_mean, one_of
from gateway.schema import Schema
from gateway.units import Duration

ALERT_TYPES = ("slack", "http")  # what a notice can go to: a message, or JSON to any system (an e-mail relay)
KINDS = ("failing", "circuit_open", "gone", "dead_over", "pending_old", "edit_refused")


class AlertsSpec(Schema, kw_only=True):
    to: Union[str, list[str]]  # noqa: UP007
    console_url: str | None = None
    check_every: Duration = Duration(30, "30s")
    failing_for: Union[str, int, float, bool] = "10m"  # noqa: UP007 (false: off; numbers only to say "write the unit")
    circuit_open: bool = True
    gone: bool = True
    dead_over: Union[int, bool] = 20  # noqa: UP007
    pending_older_than: Union[str, int, float, bool] = "30m"  # noqa: UP007
    edit_refused: bool = True


@dataclass(frozen=True)
class Alerts:
    """The compiled section: None for a kind that is off."""

    to: tuple[str, ...]
    console_url: str | None
    check_every: float
    failing_for: Duration | None
    circuit_open: bool
    gone: bool
    dead_over: int | None
    pending_older_than: Duration | None
    edit_refused: bool
    location: Location

    def link(self, path: str) -> str | None:
        """A page of the console, when its address is known."""
        return f"{self.console_url.rstrip('/')}{path}" if self.console_url else None


Report = Callable[[str, Location], None]  # an error at a place of routes.yaml


def compile_alerts(spec: AlertsSpec, destinations: Mapping[str, str], where: Callable[[tuple[str | int, ...]], Location], error: Report) -> Alerts:
    """The section checked against routes.yaml's destinations (name -> type); each mistake
    reported at its line, with the fix."""
    targets = (spec.to,) if isinstance(spec.to, str) else tuple(spec.to)
    if not targets:
        error("alerts.to is empty: name the destination notices go to, a slack or http destination of routes.yaml", where(("alerts", "to")))
    for index, name in enumerate(targets):
        at = ("alerts", "to") if isinstance(spec.to, str) else ("alerts", "to", index)
        kind = destinations.get(name)
        if kind is None:
            known = [n for n, t in destinations.items() if t in ALERT_TYPES]
            error(f"alerts.to: '{name}' is not a destination of routes.yaml{did_you_mean(name, known)}; notices go to one of its slack or http destinations", where(at))
        elif kind not in ALERT_TYPES:
            error(f"alerts.to: '{name}' is a {kind} destination; notices go to {one_of(ALERT_TYPES)} destinations (an e-mail relay is an http one)", where(at))
    if spec.console_url is not None and not spec.console_url.startswith(("https://", "http://")):
        error(f"alerts.console_url must be the console's address, like https://gateway.minhaloja.com.br, not '{spec.console_url}'", where(("alerts", "console_url")))
    return Alerts(
        to=targets,
        console_url=spec.console_url,
        check_every=spec.check_every.seconds,
        failing_for=_duration(spec.failing_for, "failing_for", where, error),
        circuit_open=spec.circuit_open,
        gone=spec.gone,
        dead_over=_count(spec.dead_over, where, error),
        pending_older_than=_duration(spec.pending_older_than, "pending_older_than", where, error),
        edit_refused=spec.edit_refused,
        location=where(("alerts",)),
    )


def _duration(value: str | float | bool, key: str, where: Callable[[tuple[str | int, ...]], Location], error: Report) -> Duration | None:
    if value is False:
        return None
    if value is True:
        error(f"alerts.{key}: say how long, like 10m (or false to turn it off)", where(("alerts", key)))
        return None
    try:
        return Duration.parse(value)
    except ValueError as exc:
        error(f"alerts.{key}: {exc}", where(("alerts", key)))
        return None


def _count(value: int | bool, where: Callable[[tuple[str | int, ...]], Location], error: Report) -> int | None:
    if value is False:
        return None
    if value is True or value < 0:
        error("alerts.dead_over: say how many dead deliveries are too many, like 20 (or false to turn it off)", where(("alerts", "dead_over")))
        return None
    return value
