"""Durations (`10m`, `1h30m`) and rates (`1/s`, `100/10s`) as routes.yaml writes them."""

from __future__ import annotations

import re
from typing import Any

_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)(ms|s|m|h|d))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_RATE = re.compile(r"(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|sec|m|min|h|hour|d|day)")
_RATE_UNITS = {"sec": "s", "min": "m", "hour": "h", "day": "d"}


class _Value:
    """An immutable value read from text (not a dataclass: msgspec must call our parser)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.text!r})"  # type: ignore[attr-defined]

    def _key(self) -> tuple[Any, ...]:
        raise NotImplementedError


class Duration(_Value):
    """A length of time; `seconds` is what code uses, `text` is what the user wrote."""

    __slots__ = ("seconds", "text")

    def __init__(self, seconds: float, text: str) -> None:
        self.seconds = float(seconds)
        self.text = text

    def _key(self) -> tuple[Any, ...]:
        return (self.seconds,)

    @classmethod
    def parse(cls, value: Any) -> Duration:
        """'10s', '5m', '1h30m', '2d', '500ms'; ValueError with the fix otherwise."""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"expected a duration like '10s', '5m' or '2h', got {value!r}")
        text = str(value).strip()
        if isinstance(value, (int, float)):
            raise ValueError(f"write the unit: '{text}s' for seconds, '{text}m' for minutes")
        compact = text.replace(" ", "")
        if not _DURATION.fullmatch(compact):
            raise ValueError(f"'{text}' is not a duration; write a number and a unit (ms, s, m, h, d), like '10s' or '1h30m'")
        if compact != text:
            raise ValueError(f"'{text}' has spaces; write '{compact}'")
        seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(compact))
        if seconds <= 0:
            raise ValueError(f"'{text}' must be longer than zero")
        return cls(seconds, text)

    def __str__(self) -> str:
        return self.text


class Rate(_Value):
    """At most `count` requests every `per_seconds`."""

    __slots__ = ("count", "per_seconds", "text")

    def __init__(self, count: int, per_seconds: float, text: str) -> None:
        self.count = count
        self.per_seconds = float(per_seconds)
        self.text = text

    def _key(self) -> tuple[Any, ...]:
        return (self.count, self.per_seconds)

    @classmethod
    def parse(cls, value: Any) -> Rate:
        """'1/s', '100/10s', '30/min'; ValueError with the fix otherwise."""
        text = str(value).strip() if isinstance(value, str) else repr(value)
        match = _RATE.fullmatch(text) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"'{text}' is not a rate; write requests/period, like '1/s', '100/10s' or '30/min'")
        count, amount, unit = int(match.group(1)), match.group(2) or "1", match.group(3)
        seconds = float(amount) * _UNIT_SECONDS[_RATE_UNITS.get(unit, unit)]
        if count <= 0 or seconds <= 0:
            raise ValueError(f"'{text}' must allow at least one request in a period longer than zero")
        return cls(count, seconds, text)

    def __str__(self) -> str:
        return self.text
