"""Binance USD-M futures wire conventions: error codes and their answer, symbols, ids and number format
(https://developers.binance.com/docs/derivatives/usds-margined-futures/error-code)."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from deltakeeper.domain.instruments import Instrument

UNKNOWN = -1000
TOO_MANY_REQUESTS = -1003
INVALID_TIMESTAMP = -1021
INVALID_SIGNATURE = -1022
ILLEGAL_CHARS = -1100
MANDATORY_PARAM = -1102
BAD_PRECISION = -1111
INVALID_SYMBOL = -1121
CANCEL_REJECTED = -2011
NO_SUCH_ORDER = -2013
BAD_API_KEY_FORMAT = -2014
REJECTED_MBX_KEY = -2015
MARGIN_INSUFFICIENT = -2019
REDUCE_ONLY_REJECT = -2022
INVALID_LISTEN_KEY = -1125
INVALID_ORDER_TYPE = -1116
INVALID_SIDE = -1117
INVALID_TIME_IN_FORCE = -1115
QTY_LESS_THAN_MIN = -4003
INVALID_CLIENT_ORDER_ID = -4015
DUPLICATE_CLIENT_ORDER_ID = -4116
MIN_NOTIONAL = -4164
POST_ONLY_REJECT = -5022

NOT_FOUND_STATUS = 404


class BinanceError(Exception):
    """A refusal answered as Binance answers it: HTTP `status` and {"code": code, "msg": msg}."""

    def __init__(self, code: int, msg: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, object]:
        return {"code": self.code, "msg": self.msg}


def binance_symbol(instrument: Instrument) -> str:
    """A USD-M perpetual's Binance symbol: base and quote run together (SOLUSDT)."""
    return f"{instrument.base}{instrument.quote}"


def is_usdm(instrument: Instrument) -> bool:
    """Whether Binance USD-M lists the market: stablecoin-margined linear perpetuals."""
    return instrument.is_derivative and not instrument.inverse and not instrument.is_option and (
        instrument.funding_interval_secs is not None and instrument.usd_margined)


def numeric_id(engine_id: str) -> int:
    """Binance's numeric id (order, trade, funding income) of one of the engine's uuid ids: 48 bits of it,
    so that it survives any JSON reader's floating point, ten times over (a trade's other income)."""
    return int(engine_id.replace("-", "")[:12], 16)


def fmt(value: Decimal | int | None) -> str:
    """Plain decimal notation; "0" for a missing value."""
    if value is None:
        return "0"
    text = format(Decimal(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# (engine reason fragment, Binance code, message)
_REFUSALS: tuple[tuple[str, int, str], ...] = (
    ("insufficient", MARGIN_INSUFFICIENT, "Margin is insufficient."),
    ("reduce-only", -2022, "ReduceOnly Order is rejected."),
    ("post-only", -5022, "Due to the order could not be executed as maker, the Post Only order will be "
                         "rejected. The order will not be recorded in the order history"),
    ("notional", -4164, "Order's notional must be no smaller than 5 (unless you choose reduce only)."),
    ("below the minimum", -4003, "Quantity less than or equal to zero."),
    ("lot step", -1111, "Precision is over the maximum defined for this asset."),
)


def decimal_param(params: Mapping[str, Any], name: str, *, required: bool) -> Decimal | None:
    """A positive decimal parameter; None when absent and not `required`."""
    raw = params.get(name)
    if raw in (None, ""):
        if required:
            raise BinanceError(MANDATORY_PARAM, f"Mandatory parameter '{name}' was not sent, was empty/null, "
                               "or malformed.")
        return None
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        raise BinanceError(-1102, f"Param '{name}' is not a number.") from None
    if not value.is_finite() or value <= 0:
        raise BinanceError(-4003 if name == "quantity" else -4001, f"{name} less than or equal to zero.")
    return value


def refusal(reason: str) -> BinanceError:
    """The refusal Binance answers for the engine's reason to refuse an order."""
    for fragment, code, message in _REFUSALS:
        if fragment in reason:
            return BinanceError(code, message)
    return BinanceError(UNKNOWN, reason)
