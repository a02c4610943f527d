"""Bybit v5 wire conventions: the response envelope, error codes, categories, ids, cursors, numbers."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from deltakeeper.domain.instruments import Instrument, Kind

# https://bybit-exchange.github.io/docs/v5/error
PARAM_ERROR = 10001
TIMESTAMP_OUTSIDE_RECV_WINDOW = 10002
INVALID_API_KEY = 10003
SIGNATURE_ERROR = 10004
RATE_LIMITED = 10006
SERVER_ERROR = 10016
ROUTE_NOT_FOUND = 10017
ORDER_NOT_EXISTS = 110001
INSUFFICIENT_BALANCE = 110007
DUPLICATE_ORDER_LINK_ID = 110072
SPOT_INSUFFICIENT_BALANCE = 170131
SPOT_DUPLICATE_ORDER_LINK_ID = 170141
SPOT_ORDER_NOT_EXISTS = 170213

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

SPOT, LINEAR, INVERSE, OPTION = "spot", "linear", "inverse", "option"
CATEGORIES = (SPOT, LINEAR, INVERSE, OPTION)


class BybitError(Exception):
    """A refusal as Bybit answers it: a retCode and retMsg in the envelope (HTTP 200 unless said)."""

    def __init__(self, ret_code: int, ret_msg: str, http_status: int = 200,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{ret_code} {ret_msg}")
        self.ret_code = ret_code
        self.ret_msg = ret_msg
        self.http_status = http_status
        self.headers = dict(headers or {})


def envelope(result: Any, now_ms: int, ret_code: int = 0, ret_msg: str = "OK") -> dict[str, Any]:
    return {"retCode": ret_code, "retMsg": ret_msg, "result": result, "retExtInfo": {}, "time": now_ms}


def category_of(instrument: Instrument) -> str | None:
    """Bybit's category of a market, or None for markets the emulator does not list (options settled in a
    coin)."""
    if instrument.kind is Kind.SPOT:
        return SPOT
    if instrument.kind in (Kind.PERPETUAL, Kind.FUTURE):
        return INVERSE if instrument.inverse else LINEAR
    if instrument.is_option and instrument.usd_margined:
        return OPTION
    return None


_MONTH_CODES = "FGHJKMNQUVXZ"
"""Futures month codes, January to December: Bybit's inverse quarterlies are named with them."""


def bybit_symbol(instrument: Instrument) -> str:
    """`SOLUSDT` for spot and linear (told apart by category), `SOLUSD` for inverse, `BTC-26DEC25-60000-C`
    for an option; dated futures as Bybit names them: linear `BTCUSDT-25DEC26`, inverse `BTCUSDZ26` (month
    code and year of expiry)."""
    expiry = instrument.expiry
    if instrument.is_option:
        if expiry is None or instrument.strike is None:
            raise ValueError(f"{instrument.symbol} is not an option")
        right = "C" if instrument.is_call else "P"
        strike = f"{instrument.strike.normalize():f}"
        return f"{instrument.base}-{expiry.day}{_MONTHS[expiry.month - 1]}{expiry:%y}-{strike}-{right}"
    symbol = f"{instrument.base}{instrument.quote}"
    if instrument.kind is not Kind.FUTURE or expiry is None:
        return symbol
    if instrument.inverse:
        return f"{symbol}{_MONTH_CODES[expiry.month - 1]}{expiry:%y}"
    return f"{symbol}-{expiry.day:02d}{_MONTHS[expiry.month - 1]}{expiry:%y}"


def fmt(value: Decimal | int | None) -> str:
    """Plain decimal notation, as Bybit's strings are; "" for a missing value."""
    if value is None:
        return ""
    text = format(Decimal(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def page(items: list[Any], limit: int, cursor: str) -> tuple[list[Any], str]:
    """One page of `items` and the cursor of the next one ("" when none), as Bybit paginates."""
    try:
        start = int(parse_qs(unquote(cursor)).get("offset", ["0"])[0]) if cursor else 0
    except ValueError:
        raise BybitError(PARAM_ERROR, "params error: cursor invalid") from None
    end = start + limit
    return items[start:end], (quote(f"offset={end}") if end < len(items) else "")


def page_limit(raw: str | None, default: int, maximum: int) -> int:
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise BybitError(PARAM_ERROR, f"limit must be in [1, {maximum}]")
    return int(raw)
