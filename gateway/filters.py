"""Template filters for Brazilian data: money, CPF/CNPJ, phone numbers and GO's dates.

Each filter accepts what GO actually sends (numbers as text, nulls, PHP DateTime objects) and
raises ValueError with a sentence a user can act on when it cannot.
"""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec

DEFAULT_TZ = "America/Sao_Paulo"

# PHP's timezone_type 2 gives an abbreviation; these are the ones a Brazilian system sends.
_ABBREVIATIONS = {
    "UTC": 0, "GMT": 0, "Z": 0,
    "BRT": -3, "BRST": -2, "AMT": -4, "AMST": -3, "ACT": -5, "FNT": -2,
    "EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "PST": -8, "PDT": -7,
}


class JsonText(str):
    """Text that is already JSON: JSON templates insert it as it is, without escaping."""


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")


_ENCODER = msgspec.json.Encoder(enc_hook=_json_default, decimal_format="number")


def tojson(value: Any, indent: int | None = None) -> JsonText:
    """The value as JSON (accents kept, dates as ISO 8601, NaN and infinities as null like
    JavaScript's JSON.stringify): msgspec, because `event | tojson` is a common body and this
    is ten times faster than the json module."""
    encoded = _ENCODER.encode(value)
    if indent is not None:
        encoded = msgspec.json.format(encoded, indent=indent)
    return JsonText(encoded.decode("utf-8"))


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise ValueError(f"brl needs an amount, got {value!r}")
    text = str(value).strip()
    if isinstance(value, str) and "," in text:  # "1.234,56" as Brazilians write it
        text = text.replace(".", "").replace(",", ".")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"brl needs an amount, got {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"brl needs a finite amount, got {value!r}")
    return amount


def brl(value: Any, symbol: bool = True) -> str:
    """An amount in reais: 1234.5 -> 'R$ 1.234,50'."""
    amount = _decimal(value).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    whole, cents = f"{abs(amount):,.2f}".split(".")
    text = f"{whole.replace(',', '.')},{cents}"
    if symbol:
        text = f"R$ {text}"
    return f"-{text}" if amount < 0 else text


def digits(value: Any) -> str:
    """Only the digits of a value ('123.456.789-09' -> '12345678909'); '' for null."""
    return "" if value is None else re.sub(r"\D", "", str(value))


def cpf_cnpj(value: Any, hide: bool = False) -> str:
    """Format a CPF (11 digits) or CNPJ (14 digits); other lengths come back unchanged.

    `hide=true` masks a CPF as the Brazilian government does ('***.456.789-**'), for messages
    that people read (Slack); CNPJs identify companies and are not hidden.
    """
    number = digits(value)
    if len(number) == 11:
        if hide:
            return f"***.{number[3:6]}.{number[6:9]}-**"
        return f"{number[:3]}.{number[3:6]}.{number[6:9]}-{number[9:]}"
    if len(number) == 14:
        return f"{number[:2]}.{number[2:5]}.{number[5:8]}/{number[8:12]}-{number[12:]}"
    if value is None:
        return ""
    return "***" if hide else str(value)


def phone_br(value: Any, e164: bool = False) -> str:
    """A Brazilian phone number: '11987654321' -> '+55 (11) 98765-4321'.

    `e164=true` gives '+5511987654321', the form CRMs store. Numbers without an area code (8
    or 9 digits) cannot be made international and come back as their digits; null gives ''.
    """
    number = digits(value)
    if len(number) in (12, 13) and number.startswith("55"):
        number = number[2:]
    if len(number) not in (10, 11):
        return number
    if e164:
        return f"+55{number}"
    area, local = number[:2], number[2:]
    return f"+55 ({area}) {local[:-4]}-{local[-4:]}"


@functools.lru_cache(maxsize=256)  # names come from events: a bound, and no regex per render
def _zone(name: str) -> timezone | ZoneInfo:
    offset = re.fullmatch(r"([+-])(\d{2}):?(\d{2})", name)
    if offset:
        sign = -1 if offset.group(1) == "-" else 1
        return timezone(sign * timedelta(hours=int(offset.group(2)), minutes=int(offset.group(3))))
    if name.upper() in _ABBREVIATIONS:
        return timezone(timedelta(hours=_ABBREVIATIONS[name.upper()]))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}; use a name like 'America/Sao_Paulo'") from None


def go_date(value: Any, tz: str = DEFAULT_TZ, format: str | None = None) -> datetime | str:
    """GO's date object ({date, timezone_type, timezone}) as an aware datetime in `tz`.

    Also takes an ISO 8601 or 'YYYY-MM-DD HH:MM:SS' string (read as UTC unless it has an
    offset). With `format`, returns text: go_date(format='%d/%m/%Y %H:%M').
    """
    if isinstance(value, dict):
        if "date" not in value:
            raise ValueError("go_date needs GO's date object, with a 'date' field")
        moment = datetime.fromisoformat(str(value["date"]))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=_zone(str(value.get("timezone") or "UTC")))
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"go_date cannot read {value!r} as a date") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    elif isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
    else:
        raise ValueError(f"go_date needs GO's date object or a date string, got {value!r}")
    local = moment.astimezone(_zone(tz))
    return local.strftime(format) if format else local


def slack_text(value: Any) -> str:
    """Text safe inside a Slack message: '&', '<' and '>' escaped as Slack requires.

    Without it a customer named '<!channel>' would notify a whole channel.
    """
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def first_name(value: Any) -> str:
    """The first word of a full name: 'Maria da Silva' -> 'Maria' (CRMs keep first and last apart)."""
    words = ("" if value is None else str(value)).split()
    return words[0] if words else ""


def last_name(value: Any) -> str:
    """Everything after the first word: 'Maria da Silva' -> 'da Silva'; '' for a single word."""
    words = ("" if value is None else str(value)).split(maxsplit=1)
    return words[1] if len(words) > 1 else ""


FILTERS = {
    "brl": brl,
    "cpf_cnpj": cpf_cnpj,
    "phone_br": phone_br,
    "go_date": go_date,
    "digits": digits,
    "tojson": tojson,
    "slack_text": slack_text,
    "first_name": first_name,
    "last_name": last_name,
}
