"""Brazilian filters: money, CPF/CNPJ, phones, GO's dates, JSON."""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest

from gateway.filters import brl, cpf_cnpj, digits, first_name, go_date, last_name, phone_br, slack_text, tojson

GO_DATE = {"date": "2021-03-02 21:02:53.000000", "timezone_type": 3, "timezone": "UTC"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1234.5, "R$ 1.234,50"),
        (0, "R$ 0,00"),
        ("1234567.891", "R$ 1.234.567,89"),
        ("1.234,56", "R$ 1.234,56"),
        (Decimal("0.005"), "R$ 0,01"),
        (-10, "-R$ 10,00"),
        (999, "R$ 999,00"),
    ],
)
def test_brl(value: object, expected: str) -> None:
    assert brl(value) == expected


@pytest.mark.parametrize("value", [None, True, "abc", "nan", float("inf")])
def test_brl_refuses_non_amounts(value: object) -> None:
    with pytest.raises(ValueError, match="brl needs"):
        brl(value)


@pytest.mark.parametrize(
    ("value", "hide", "expected"),
    [
        ("12345678909", False, "123.456.789-09"),
        ("123.456.789-09", False, "123.456.789-09"),
        ("12345678909", True, "***.456.789-**"),
        ("12345678000190", False, "12.345.678/0001-90"),
        ("12345678000190", True, "12.345.678/0001-90"),
        ("123", False, "123"),
        ("123", True, "***"),
        (None, False, ""),
        (12345678909, False, "123.456.789-09"),
    ],
)
def test_cpf_cnpj(value: object, hide: bool, expected: str) -> None:
    assert cpf_cnpj(value, hide=hide) == expected


@pytest.mark.parametrize(
    ("value", "e164", "expected"),
    [
        ("11987654321", False, "+55 (11) 98765-4321"),
        ("(11) 3456-7890", False, "+55 (11) 3456-7890"),
        ("+55 11 98765-4321", False, "+55 (11) 98765-4321"),
        ("11987654321", True, "+5511987654321"),
        ("123423434", False, "123423434"),
        (None, False, ""),
    ],
)
def test_phone_br(value: object, e164: bool, expected: str) -> None:
    assert phone_br(value, e164=e164) == expected


def test_go_date_converts_to_sao_paulo() -> None:
    """GO's UTC date object becomes an aware datetime in America/Sao_Paulo (UTC-3 in 2021)."""
    moment = go_date(GO_DATE)
    assert isinstance(moment, datetime)
    assert moment.isoformat() == "2021-03-02T18:02:53-03:00"


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (GO_DATE, {"format": "%d/%m/%Y %H:%M"}, "02/03/2021 18:02"),
        (GO_DATE, {"tz": "UTC", "format": "%H:%M"}, "21:02"),
        ({"date": "2021-03-02 21:02:53.000000", "timezone_type": 1, "timezone": "+00:00"}, {"format": "%H:%M"}, "18:02"),
        ({"date": "2021-03-02 18:02:53.000000", "timezone_type": 2, "timezone": "BRT"}, {"tz": "UTC", "format": "%H:%M"}, "21:02"),
        ({"date": "2021-03-02 18:02:53.000000", "timezone_type": 3, "timezone": "America/Sao_Paulo"}, {"tz": "UTC", "format": "%H"}, "21"),
        ("2021-03-02T21:02:53Z", {"format": "%H:%M"}, "18:02"),
        ("2021-03-02 21:02:53", {"format": "%H:%M"}, "18:02"),
    ],
)
def test_go_date_forms(value: object, kwargs: dict, expected: str) -> None:
    assert go_date(value, **kwargs) == expected


@pytest.mark.parametrize("value", [None, 5, {"x": 1}, "ontem", {"date": "2021-03-02", "timezone": "Marte/Olympus"}])
def test_go_date_refuses_what_it_cannot_read(value: object) -> None:
    with pytest.raises(ValueError):
        go_date(value)


def test_tojson_keeps_accents_and_dates() -> None:
    text = tojson({"nome": "João", "quando": go_date(GO_DATE)})
    assert json.loads(text) == {"nome": "João", "quando": "2021-03-02T18:02:53-03:00"}
    assert "João" in text


def test_tojson_writes_strict_json_from_any_python_value() -> None:
    """NaN and infinities become null (as JavaScript writes them), decimals stay exact numbers,
    keys become text, and a value JSON cannot hold is an error that names its type."""
    text = tojson({"total": Decimal("1.50"), "nan": float("nan"), "inf": float("inf"), 7: "sete"})
    assert text == '{"total":1.50,"nan":null,"inf":null,"7":"sete"}'
    assert tojson([1, 2], indent=2) == "[\n  1,\n  2\n]"
    with pytest.raises(TypeError, match="object cannot be written as JSON"):
        tojson(object())


def test_digits_and_slack_text() -> None:
    assert digits("123.456.789-09") == "12345678909"
    assert slack_text("<!channel> & <@U1>") == "&lt;!channel&gt; &amp; &lt;@U1&gt;"


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [("Maria da Silva Santos", "Maria", "da Silva Santos"), ("  Ana  ", "Ana", ""), ("", "", ""), (None, "", "")],
)
def test_first_and_last_name(name: str | None, first: str, last: str) -> None:
    assert (first_name(name), last_name(name)) == (first, last)
