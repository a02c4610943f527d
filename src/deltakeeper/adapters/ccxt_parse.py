"""ccxt's unified dicts and exceptions, translated into domain values and errors (DESIGN.md 2, 4): the
shared reading of values and the error tree here; the markets in `ccxt_markets`, the account (positions,
balances) in `ccxt_account`, orders, fills and funding in `ccxt_trades`, the portfolio file of `deltakeeper
delta` and `margin` in `portfolio_file`.

Pure: no I/O, no clock. Every number is parsed here, once, with `Decimal(str(x))`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ParamSpec, TypeVar

import ccxt

from deltakeeper.domain.errors import (
    ConfigError,
    DeltakeeperError,
    ExchangeUnavailable,
    OrderOutcomeUnknown,
    OrderRejected,
    RateLimited,
)
from deltakeeper.domain.orders import Quote, Side

QUOTE_TS_EARLIEST = datetime(2009, 1, 3, tzinfo=UTC)
"""No market quoted a crypto asset before Bitcoin's first block: an earlier quote time is corrupt."""
QUOTE_MAX_LEAD_SECS = 60.0
"""How far a quote's time may lie ahead of the bot's clock at its arrival, in wall seconds (times the clock's
speed): clock skew and transit are well under it. A quote stamped further ahead is corrupt (a timestamp of
1e20 ms, a year ahead): taken, it would hold the risk model's bars and the wait for a newer quote until its
time. The exchange's clock must agree with the bot's within it (against the emulator: the same clock)."""
RETRY_AFTER_MAX_SECS = 60.0
"""The longest wait an exchange's rate-limit refusal is honoured for."""

_DUPLICATE_CLIENT_ID = re.compile(r'"retCode"\s*:\s*(110072|170141)\b')
"""Bybit refuses a repeated orderLinkId with 110072 (spot: 170141), which ccxt raises as InvalidOrder."""

_SIGNED_STRING = re.compile(r"origin_string\[[^\]]*\]")
"""Bybit echoes the signed string, API key included, when it refuses a signature: never shown."""

_UNREADABLE = (ArithmeticError, AttributeError, LookupError, TypeError, ValueError)
"""What reading a value of the wrong shape raises (a list where a text was, a text where an object was, a
number Decimal refuses): at the parsers' boundary, a malformed message."""

BINANCE_IDS = frozenset({"binance", "binanceusdm", "binancecoinm"})
"""ccxt's ids of Binance's spot and futures exchanges."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


class MalformedPayload(ValueError):
    """A ccxt dict lacks a field the domain needs, or holds a value that is not a number."""

    def __init__(self, field: str, expected: str, got: object = None) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"{field}: expected {expected} (got {got!r})")


def parser(subject: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """A parser of a ccxt `subject` (an order, a balance...): any error of reading a value of the wrong
    shape (`_UNREADABLE`) is MalformedPayload, so that the message is logged and skipped, never mistaken
    for a failure of the code reading it (which ends a stream)."""

    def wrap(parse: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(parse)
        def parsing(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            try:
                return parse(*args, **kwargs)
            except MalformedPayload:
                raise
            except _UNREADABLE as exc:
                raise MalformedPayload(subject, f"a well-formed ccxt {subject}",
                                       f"{type(exc).__name__}: {str(exc)[:200]}") from exc

        return parsing

    return wrap


def dec(value: object, field: str) -> Decimal:
    """A finite Decimal from a ccxt number or numeric string."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise MalformedPayload(field, "a number", value)
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise MalformedPayload(field, "a number", value) from None
    if not number.is_finite():
        raise MalformedPayload(field, "a finite number", value)
    return number


def opt_dec(value: object, field: str) -> Decimal | None:
    return None if value is None or value == "" else dec(value, field)


def text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if value is None or value == "":
        raise MalformedPayload(key, "a value", value)
    return str(value)


def opt_text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return None if value is None or value == "" else str(value)


def info_of(payload: Mapping[str, Any]) -> dict[str, Any]:
    info = payload.get("info")
    return info if isinstance(info, dict) else {}


def ts_from_ms(value: object, field: str = "timestamp") -> datetime:
    ms = dec(value, field)
    whole = int(ms)
    try:
        return datetime.fromtimestamp(whole // 1000, UTC) + timedelta(milliseconds=whole % 1000)
    except (OverflowError, OSError, ValueError):
        raise MalformedPayload(field, "a time in ms since the epoch", value) from None


def _ts(payload: Mapping[str, Any], received_at: datetime) -> datetime:
    value = payload.get("timestamp")
    return received_at if value is None else ts_from_ms(value)


def side_of(payload: Mapping[str, Any]) -> Side:
    value = payload.get("side")
    if value not in ("buy", "sell"):
        raise MalformedPayload("side", "buy or sell", value)
    return Side(value)


def object_list(value: object, field: str, nonempty: bool) -> list[Mapping[str, Any]]:
    """A list of objects, as an exchange's answer lists accounts or coins."""
    if not isinstance(value, list) or not all(isinstance(entry, Mapping) for entry in value) or (
            nonempty and not value):
        raise MalformedPayload(field, "a non-empty list of objects" if nonempty else "a list of objects",
                               value)
    return value


@parser("ticker")
def quote_from_ticker(ticker: Mapping[str, Any], received_at: datetime, speed: float = 1.0) -> Quote:
    """Top of book and mark; the mark falls back to the last price, then the mid (spot has no mark).
    Prices must be finite and positive, the bid at most the ask, and the time plausible: from
    `QUOTE_TS_EARLIEST` to `QUOTE_MAX_LEAD_SECS` (times the clock's `speed`) past `received_at`."""
    bid = dec(ticker.get("bid"), "bid")
    ask = dec(ticker.get("ask"), "ask")
    if bid <= 0 or ask <= 0 or bid > ask:
        raise MalformedPayload("bid/ask", "0 < bid <= ask", (ticker.get("bid"), ticker.get("ask")))
    mark = opt_dec(ticker.get("markPrice"), "markPrice") or opt_dec(ticker.get("last"), "last")
    if mark is not None and mark <= 0:
        raise MalformedPayload("markPrice", "a positive price", mark)
    ts = _ts(ticker, received_at)
    if not QUOTE_TS_EARLIEST <= ts <= received_at + timedelta(seconds=QUOTE_MAX_LEAD_SECS * speed):
        raise MalformedPayload("timestamp", "a plausible time", ticker.get("timestamp"))
    return Quote(
        symbol=text(ticker, "symbol"), bid=bid, ask=ask, mark=mark or (bid + ask) / 2,
        ts=ts,
        index=opt_dec(ticker.get("indexPrice"), "indexPrice"),
        funding_rate=opt_dec(info_of(ticker).get("fundingRate"), "info.fundingRate"),
        next_funding_ts=_next_funding_ts(ticker),
    )


def _next_funding_ts(ticker: Mapping[str, Any]) -> datetime | None:
    """Bybit's `nextFundingTime` (ms; absent, empty or 0 where the market has no funding)."""
    value = info_of(ticker).get("nextFundingTime")
    return None if value in (None, "", "0", 0) else ts_from_ms(value, "info.nextFundingTime")


def retry_after_secs(headers: Mapping[str, Any], now: datetime) -> float | None:
    """How long a rate-limit refusal asks the client to wait, at most RETRY_AFTER_MAX_SECS: its
    `Retry-After` header (seconds), else Bybit's `X-Bapi-Limit-Reset-Timestamp` (ms since the epoch). None
    without either, or where it is not a finite, non-negative number (an HTTP date included)."""
    named = {str(name).lower(): value for name, value in headers.items()}
    for name in ("retry-after", "x-bapi-limit-reset-timestamp"):
        try:
            value = float(dec(named.get(name), name))
        except MalformedPayload:
            continue
        secs = value if name == "retry-after" else value / 1000 - now.timestamp()
        if name == "retry-after" and secs < 0:
            continue
        return min(max(secs, 0.0), RETRY_AFTER_MAX_SECS)
    return None


@parser("API key answer")
def bybit_key_can_withdraw(response: Mapping[str, Any]) -> bool:
    """From Bybit's `GET /v5/user/query-api` answer: `permissions.Wallet` lists `Withdraw`."""
    permissions = (response.get("result") or {}).get("permissions")
    if not isinstance(permissions, dict):
        raise MalformedPayload("result.permissions", "an object", permissions)
    return "Withdraw" in (permissions.get("Wallet") or [])


def error_from_ccxt(exc: BaseException, placing: bool = False) -> DeltakeeperError:
    """A ccxt (or transport) exception in the domain's error tree.

    When `placing` an order, only definite refusals are OrderRejected or RateLimited; anything after
    which the order may exist (timeouts, resets, 5xx, unclassified exchange errors, a repeated client
    order id) is OrderOutcomeUnknown, settled by looking the client order id up.
    """
    message = f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, DeltakeeperError):
        return exc
    if isinstance(exc, ccxt.AuthenticationError):
        return ConfigError("DK_API_KEY", "a key and secret the exchange accepts, with trading permission",
                           _SIGNED_STRING.sub("origin_string[...]", message))
    if isinstance(exc, ccxt.RateLimitExceeded | ccxt.DDoSProtection):
        return RateLimited(message)
    duplicate = isinstance(exc, ccxt.DuplicateOrderId) or bool(_DUPLICATE_CLIENT_ID.search(str(exc)))
    if placing and duplicate:
        return OrderOutcomeUnknown(f"client order id already used: {message}")
    refusals = (ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.BadRequest, ccxt.OperationRejected,
                ccxt.ArgumentsRequired, ccxt.NotSupported)
    if isinstance(exc, refusals):
        return OrderRejected(message)
    if placing:
        return OrderOutcomeUnknown(message)
    return ExchangeUnavailable(message)


def precision_mode_of(exchange_id: str) -> int:
    """The ccxt class's `precisionMode` (constructing a ccxt exchange does no I/O)."""
    exchange_class = getattr(ccxt, exchange_id, None)
    if exchange_id not in ccxt.exchanges or exchange_class is None:
        raise ConfigError("exchange", "a ccxt exchange id", exchange_id)
    return int(exchange_class().precisionMode)

