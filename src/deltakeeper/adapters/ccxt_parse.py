"""ccxt's unified dicts and exceptions, translated into domain values and errors (DESIGN.md 2, 4).

Pure: no I/O, no clock. Every number is parsed here, once, with `Decimal(str(x))`.

Contract units. The domain counts an order's and a position's size in "contracts" of
`Instrument.contract_size` (coins for linear contracts, USD face for inverse ones), and that count is
always ccxt's own `amount` / `contracts` for the market, so orders and positions need no conversion.
Where ccxt's `contractSize` does not describe what its amounts count, the instrument's contract size is
set per exchange (`_UNIT_AMOUNT_EXCHANGES`):
- Deribit: ccxt amounts and `contracts` are USD for inverse futures and coins for linear futures and
  options, while `contractSize` is the exchange's contract (10 USD for BTC-PERPETUAL): contract size 1.
- Bybit inverse: amounts and `contracts` are USD (1 USD contracts), while ccxt reports the minimum order
  quantity as `contractSize`: contract size 1.

Wallet balances exclude unrealised PnL (the domain adds each position's PnL itself), per exchange:
- Bybit (unified, contract, spot accounts): each coin's `walletBalance` (REST `info.result.list[].coin[]`,
  websocket `info[].coin[]`), not `equity` = walletBalance + unrealisedPnl, which ccxt.pro reports as
  the websocket balance's `total`.
- OKX: `info.data[0].details[].cashBal`; ccxt's `total` is `eq`, which includes `upl`.
- Deribit: `info` summaries' `balance`; ccxt's `total` is `equity`, which includes the session's
  floating PnL (the positions' `floating_profit_loss`, their unrealised PnL).
- Binance USD-M and COIN-M futures (`fapi` / `dapi` account, `info.assets[]`): each asset's `walletBalance`;
  ccxt's `total` is `marginBalance` = walletBalance + unrealizedProfit. Assets with `updateTime` 0 are
  skipped, as ccxt skips them (never initialised). Binance spot (`info.balances`): ccxt's `total`.
- Bitget futures (`info` the list of `/api/v2/mix/account/accounts` entries, with `accountEquity`): each
  margin coin's `accountEquity - unrealizedPL`; ccxt's `total` is `accountEquity`. Bitget spot: ccxt's
  `total`.
- Hyperliquid perps (`clearinghouseState`): USDC `marginSummary.accountValue` less the positions'
  `unrealizedPnl`; ccxt's `total` is `accountValue`. Hyperliquid spot (`info.balances`): ccxt's `total`.
- Every other exchange: ccxt's `total`.

Options (ccxt `type: option`, `strike`, `optionType`, `expiry` in ms) are never inverse in the domain: their
contracts count coins of the underlying (Deribit: amounts in BTC, contract size 1), even where ccxt marks a
coin-settled option `inverse`. Their greeks, per exchange (`position_from_ccxt`):
- Deribit `private/get_positions`: `delta` is the position's plain Black-Scholes delta in coins (size x
  the option's delta; the net transaction delta subtracts the mark from it, Deribit support "Delta decay
  during settlement"), so one option's delta is `delta / size`. Its ticker (ccxt `fetch_greeks`) gives the
  option's `delta`, `mark_iv` in percent (ccxt passes it on as `markImpliedVolatility`: 61.27 = 61.27%)
  and the forward as `underlying_price`.
- Elsewhere ccxt's greeks structure, with `markImpliedVolatility` a fraction (Bybit `markIv` 0.5577).

Liquidation and auto-deleveraging (ADL) fills: the exchange closed (part of) a position itself. A fill is
marked `liquidation` where the exchange's trade says so (`is_liquidation_trade`), and then carries no client
order id:
- Bybit: `info.execType` BustTrade (takeover liquidation) or AdlTrade (Bybit v5 docs, Enums: execType).
- Deribit: the account's own side was under liquidation: its role `info.liquidity` ("M" maker, "T" taker)
  is in `info.liquidation` ("M", "T" or "MT": which side of the trade was under liquidation; the trade of
  a counterparty's liquidation carries the field too), or the account's order is `info.order_type`
  "liquidation" (docs.deribit.com, private/get_user_trades_by_currency).
- Binance futures: the order's client id starts with `autoclose-` (liquidation) or `adl_autoclose` (ADL)
  (Binance USDⓈ-M user data stream, ORDER_TRADE_UPDATE: "special client order id"). Binance's REST trade
  list (`userTrades`) carries no client id: there only the websocket's trades are recognised.
- OKX: the fill's `info.subType` is a liquidation (100-107) or ADL (125-128) transaction type (OKX v5
  docs, `GET /api/v5/trade/fills` subType, the bill subtype codes).

A fill's USD notional (`fill_from_trade`): `contracts x contract size x price` is USD face for an inverse
contract, the premium in the settle coin for an option (Deribit's BTC options are priced in BTC, Bybit's in
USDC), and an amount of the quote for spot and linear contracts (a BNB/BTC fill is worth BTC). In a
stablecoin (or USD) it is the USD notional as is; in a coin it is converted at that coin's USD price: the
trade's own index where the exchange gives one for that coin (Deribit `index_price`, the underlying's USD
index at the trade), else the price the caller passes (the adapter reads the coin's pricing market).
Without one the fill's USD value is unknown (`FillValueUnknown`): it is never journaled with a notional in
another currency.

Funding amounts are signed from the account's view, positive = received:
- Bybit's execution list reports `execFee` positive when the account paid: the amount is `-execFee`.
- Other exchanges' ccxt funding history already uses positive = received.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, NamedTuple, ParamSpec, TypeVar

import ccxt
from ccxt.base.decimal_to_precision import DECIMAL_PLACES, TICK_SIZE

from deltakeeper.domain.errors import (
    ConfigError,
    DeltakeeperError,
    ExchangeUnavailable,
    OrderOutcomeUnknown,
    OrderRejected,
    RateLimited,
)
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import ZERO, Instrument, Kind, is_stable
from deltakeeper.domain.margin import MarginTier, cumulative_amounts_usd
from deltakeeper.domain.orders import (
    Fill,
    FundingPayment,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Quote,
    Side,
)

DEFAULT_FUNDING_INTERVAL_SECS = 8 * 3600
QUOTE_TS_EARLIEST = datetime(2009, 1, 3, tzinfo=UTC)
"""No market quoted a crypto asset before Bitcoin's first block: an earlier quote time is corrupt."""
QUOTE_MAX_LEAD_SECS = 60.0
"""How far a quote's time may lie ahead of the bot's clock at its arrival, in wall seconds (times the clock's
speed): clock skew and transit are well under it. A quote stamped further ahead is corrupt (a timestamp of
1e20 ms, a year ahead): taken, it would hold the risk model's bars and the wait for a newer quote until its
time. The exchange's clock must agree with the bot's within it (against the emulator: the same clock)."""
RETRY_AFTER_MAX_SECS = 60.0
"""The longest wait an exchange's rate-limit refusal is honoured for."""
_UNSIGNED_CONTRACTS_EXCHANGES = frozenset({"bybit"})
"""Exchanges whose ccxt positions carry the size without sign (`contracts`) and the side apart: a position
without its side is unreadable, not long."""
_BYBIT_ACCOUNT_LISTS = ("/v5/account/wallet-balance", "/v5/position/list")
"""Bybit's account answers, each a `result.list` of objects."""

_UNIT_AMOUNT_EXCHANGES = {"deribit": ("linear", "inverse"), "bybit": ("inverse",)}
"""Exchanges (and market sides) where ccxt's amounts are plain units: USD for inverse, coins for linear."""

_UNREALIZED_PNL_INFO_KEYS = {"bybit": "unrealisedPnl", "deribit": "floating_profit_loss", "okx": "upl"}
"""The exchange's own unrealised-PnL field, read before ccxt's `unrealizedPnl`: ccxt drops Bybit's zero and
derives a figure from entry and mark in its place."""

_OPTION_POSITION_DELTA_INFO_KEYS = {"deribit": "delta"}
"""The exchange's position-level option delta (in coins, signed) in a position's `info`."""

_IV_PERCENT_EXCHANGES = frozenset({"deribit"})
"""Exchanges whose mark implied volatility ccxt passes on in percent."""

_TRADE_INDEX_PRICE_KEYS = {"deribit": "index_price"}
"""The USD index of the traded instrument's base coin at the trade, in the exchange's trade."""

_CLIENT_ID_INFO_KEYS = ("orderLinkId", "clOrdId", "clientOrderId", "label")
"""Where exchanges put the client order id in a trade (Bybit, OKX, Binance, Deribit)."""

_BYBIT_LIQUIDATION_EXEC_TYPES = frozenset({"BustTrade", "AdlTrade"})
_BINANCE_IDS = frozenset({"binance", "binanceusdm", "binancecoinm"})
_BINANCE_LIQUIDATION_CLIENT_IDS = ("autoclose-", "adl_autoclose")
_OKX_LIQUIDATION_SUB_TYPES = frozenset({*map(str, range(100, 108)), *map(str, range(125, 129))})

_DUPLICATE_CLIENT_ID = re.compile(r'"retCode"\s*:\s*(110072|170141)\b')
"""Bybit refuses a repeated orderLinkId with 110072 (spot: 170141), which ccxt raises as InvalidOrder."""

_SIGNED_STRING = re.compile(r"origin_string\[[^\]]*\]")
"""Bybit echoes the signed string, API key included, when it refuses a signature: never shown."""

_REFUSALS_AFTER_ACCEPT = frozenset({"EC_PostOnlyWillTakeLiquidity"})
"""Bybit's reasons for cancelling an order it has just accepted, before it could rest or fill."""

_UNREADABLE = (ArithmeticError, AttributeError, LookupError, TypeError, ValueError)
"""What reading a value of the wrong shape raises (a list where a text was, a text where an object was, a
number Decimal refuses): at the parsers' boundary, a malformed message."""

_P = ParamSpec("_P")
_R = TypeVar("_R")

_STATUSES = {"open": OrderStatus.OPEN, "canceled": OrderStatus.CANCELED, "expired": OrderStatus.CANCELED,
             "rejected": OrderStatus.REJECTED}


class MalformedPayload(ValueError):
    """A ccxt dict lacks a field the domain needs, or holds a value that is not a number."""

    def __init__(self, field: str, expected: str, got: object = None) -> None:
        self.field = field
        self.expected = expected
        self.got = got
        super().__init__(f"{field}: expected {expected} (got {got!r})")


class FillValueUnknown(Exception):
    """A fill whose value is in `currency`, a coin, with no USD price for it: a well-formed fill the caller
    values once it has the price (not a ValueError, which the parsers' boundary takes for a malformed
    message and skips)."""

    def __init__(self, currency: str) -> None:
        self.currency = currency
        super().__init__(f"a fill valued in {currency} needs {currency}'s USD price")


def _parser(subject: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
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


class Portfolio(NamedTuple):
    instruments: dict[str, Instrument]
    balances: dict[str, Decimal]
    positions: list[Position]
    prices: dict[str, Decimal]
    external: dict[str, Decimal]


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


def _opt_dec(value: object, field: str) -> Decimal | None:
    return None if value is None or value == "" else dec(value, field)


def _text(payload: Mapping[str, Any], key: str) -> str:
    value = payload.get(key)
    if value is None or value == "":
        raise MalformedPayload(key, "a value", value)
    return str(value)


def _opt_text(payload: Mapping[str, Any], key: str) -> str | None:
    value = payload.get(key)
    return None if value is None or value == "" else str(value)


def _info(payload: Mapping[str, Any]) -> dict[str, Any]:
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


def _side(payload: Mapping[str, Any]) -> Side:
    value = payload.get("side")
    if value not in ("buy", "sell"):
        raise MalformedPayload("side", "buy or sell", value)
    return Side(value)


def _lot_step(amount_precision: object, precision_mode: int) -> Decimal | None:
    """The amount step: ccxt gives it as the step itself (TICK_SIZE, nearly every exchange) or as decimal
    places; significant digits say nothing about a step."""
    precision = _opt_dec(amount_precision, "precision.amount")
    if precision is None:
        return None
    if precision_mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(precision))
    return precision if precision_mode == TICK_SIZE and precision > 0 else None


def _limit(market: Mapping[str, Any], name: str) -> Decimal | None:
    limits = market.get("limits") or {}
    return _opt_dec((limits.get(name) or {}).get("min"), f"limits.{name}.min")


@_parser("market")
def instrument_from_market(market: Mapping[str, Any], exchange_id: str,
                           precision_mode: int = TICK_SIZE) -> Instrument:
    """One ccxt market as an Instrument; `precision_mode` is the ccxt exchange's `precisionMode`. Without
    a usable amount step the lot step is the minimum amount."""
    symbol = _text(market, "symbol")
    kind_name = market.get("type")
    if kind_name not in {kind.value for kind in Kind}:
        raise MalformedPayload("type", "spot, swap, future or option", kind_name)
    kind = Kind(kind_name)
    base = _text(market, "base").upper()
    quote = _text(market, "quote").upper()
    settle = (_opt_text(market, "settle") or quote).upper()
    inverse = kind not in (Kind.SPOT, Kind.OPTION) and bool(market.get("inverse"))
    side = "inverse" if inverse else "linear"
    if kind is Kind.SPOT or side in _UNIT_AMOUNT_EXCHANGES.get(exchange_id, ()):
        contract_size = Decimal(1)
    else:
        contract_size = _opt_dec(market.get("contractSize"), "contractSize") or Decimal(1)
    if contract_size <= 0:
        raise MalformedPayload("contractSize", "a positive number", market.get("contractSize"))

    defaults = Instrument(symbol, kind, base, quote, settle)
    min_contracts = _limit(market, "amount") or ZERO
    lot_step = _lot_step((market.get("precision") or {}).get("amount"), precision_mode)
    min_cost = _limit(market, "cost")
    taker = _opt_dec(market.get("taker"), "taker")
    maker = _opt_dec(market.get("maker"), "maker")
    expiry = market.get("expiry") if kind in (Kind.FUTURE, Kind.OPTION) else None
    strike, option_type = _option_terms(market) if kind is Kind.OPTION else (None, None)
    return Instrument(
        symbol=symbol, kind=kind, base=base, quote=quote, settle=settle, inverse=inverse,
        contract_size=contract_size,
        lot_step_contracts=lot_step or (min_contracts if min_contracts > 0 else defaults.lot_step_contracts),
        min_contracts=min_contracts,
        min_notional_usd=min_cost if min_cost is not None and is_stable(quote) else ZERO,
        taker_fee_rate=defaults.taker_fee_rate if taker is None else taker,
        maker_fee_rate=defaults.maker_fee_rate if maker is None else maker,
        funding_interval_secs=_funding_interval_secs(market, exchange_id) if kind is Kind.PERPETUAL else None,
        expiry=None if expiry is None else ts_from_ms(expiry, "expiry"),
        strike=strike,
        option_type=option_type,
    )


def _option_terms(market: Mapping[str, Any]) -> tuple[Decimal, str]:
    """An option market's strike and right; it must also have an expiry."""
    strike = dec(market.get("strike"), "strike")
    if strike <= 0:
        raise MalformedPayload("strike", "a positive number", market.get("strike"))
    option_type = market.get("optionType")
    if option_type not in ("call", "put"):
        raise MalformedPayload("optionType", "call or put", option_type)
    if market.get("expiry") is None:
        raise MalformedPayload("expiry", "an option's expiry in ms", None)
    return strike, option_type


def _funding_interval_secs(market: Mapping[str, Any], exchange_id: str) -> int:
    """Bybit gives each perpetual's `fundingInterval` in minutes; elsewhere the 8-hour default."""
    minutes = _info(market).get("fundingInterval") if exchange_id == "bybit" else None
    if minutes is None or minutes == "":
        return DEFAULT_FUNDING_INTERVAL_SECS
    return int(dec(minutes, "info.fundingInterval")) * 60


@_parser("position")
def position_from_ccxt(position: Mapping[str, Any], instrument: Instrument, exchange_id: str,
                       greeks: Mapping[str, Any] | None = None) -> Position:
    """Signed contracts (+ long) in the instrument's units, so that `instrument.delta_coin(contracts,
    mark)` is the position's delta: Deribit's USD size -100 at mark 103,554.56 is -9.65675e-4 BTC.

    It carries the exchange's margin figures where ccxt gives them (`liquidationPrice`, `initialMargin`,
    `maintenanceMargin`, `leverage`, `collateral`, `marginMode`). An option position also carries its
    greeks (module notes): from the position where the exchange puts them there, else from `greeks`, the
    option's ccxt greeks structure (`fetch_greeks`)."""
    size = abs(dec(position.get("contracts"), "contracts"))
    side = position.get("side")
    if side == "long":
        sign = 1
    elif side == "short":
        sign = -1
    elif (side is None or side == "") and not (size and exchange_id in _UNSIGNED_CONTRACTS_EXCHANGES):
        sign = -1 if dec(position.get("contracts"), "contracts") < 0 else 1
    else:
        raise MalformedPayload("side", "long or short", side)
    pnl = _info(position).get(_UNREALIZED_PNL_INFO_KEYS.get(exchange_id, ""))
    if pnl is None or pnl == "":
        pnl = position.get("unrealizedPnl")
    return Position(
        symbol=instrument.symbol,
        contracts=sign * size,
        entry_price=_opt_dec(position.get("entryPrice"), "entryPrice") or ZERO,
        mark_price=dec(position.get("markPrice"), "markPrice"),
        unrealized_pnl=_opt_dec(pnl, "unrealizedPnl"),
        **_position_margin(position),
        **(_option_greeks(position, greeks or {}, instrument, exchange_id, sign * size)
           if instrument.is_option else {}),
    )


@_parser("position")
def is_open_position(position: Mapping[str, Any]) -> bool:
    """Whether a ccxt position holds contracts. A size that is missing or not a number raises
    MalformedPayload: a malformed entry never reads as a flat position."""
    return dec(position.get("contracts"), "contracts") != 0


def check_bybit_account_answer(path: str, answer: object) -> None:
    """Bybit's account answers (wallet balance, positions) that succeed (retCode 0) carry `result.list`, a
    list of objects; anything else raises MalformedPayload (ccxt would read it as an empty account)."""
    if path not in _BYBIT_ACCOUNT_LISTS:
        return
    if isinstance(answer, Mapping) and str(answer.get("retCode")) != "0":
        return
    result = answer.get("result") if isinstance(answer, Mapping) else None
    _entries(result.get("list") if isinstance(result, Mapping) else None, f"{path} result.list",
             nonempty=False)


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


def _position_margin(position: Mapping[str, Any]) -> dict[str, Any]:
    """The exchange's margin figures of a position, None where it gives none (ccxt: None; the exchange:
    an empty string). A liquidation price or leverage of zero means none (Bybit's `liqPrice` of a flat
    position; a long its collateral outlasts); margins must not be negative."""
    liquidation = _opt_dec(position.get("liquidationPrice"), "liquidationPrice")
    leverage = _opt_dec(position.get("leverage"), "leverage")
    figures: dict[str, Any] = {
        "liquidation_price": liquidation if liquidation is not None and liquidation > 0 else None,
        "leverage": leverage if leverage is not None and leverage > 0 else None,
        "collateral": _opt_dec(position.get("collateral"), "collateral"),
    }
    for key, name in (("initialMargin", "initial_margin"), ("maintenanceMargin", "maintenance_margin")):
        value = figures[name] = _opt_dec(position.get(key), key)
        if value is not None and value < 0:
            raise MalformedPayload(key, "a non-negative number", position.get(key))
    mode = _opt_text(position, "marginMode")
    if mode not in (None, "cross", "isolated"):
        raise MalformedPayload("marginMode", "cross or isolated", mode)
    figures["margin_mode"] = mode
    return figures


@_parser("leverage tier")
def tier_from_ccxt(entry: Mapping[str, Any]) -> MarginTier:
    """One ccxt leverage tier (`minNotional`, `maxNotional`, `maintenanceMarginRate`, in ccxt's notional
    unit) as a bracket of a maintenance margin table; a tier without a cap has none."""
    floor = dec(entry.get("minNotional"), "minNotional")
    cap = _opt_dec(entry.get("maxNotional"), "maxNotional")
    rate = dec(entry.get("maintenanceMarginRate"), "maintenanceMarginRate")
    if not ZERO <= rate < 1:
        raise MalformedPayload("maintenanceMarginRate", "a rate in [0, 1)", rate)
    return MarginTier(floor, Decimal("Infinity") if cap is None else cap, rate)


@_parser("leverage tiers")
def tiers_from_ccxt(entries: object) -> tuple[MarginTier, ...]:
    """A market's ccxt leverage tiers (`fetch_leverage_tiers`) as a maintenance margin table, ascending
    and contiguous."""
    if not isinstance(entries, list) or not entries or not all(isinstance(e, Mapping) for e in entries):
        raise MalformedPayload("leverage tiers", "a list of tier objects", entries)
    tiers = tuple(tier_from_ccxt(entry) for entry in entries)
    try:
        cumulative_amounts_usd(tiers)
    except ValueError as exc:
        raise MalformedPayload("leverage tiers", f"contiguous ascending tiers ({exc})", entries) from None
    return tiers


def _option_greeks(position: Mapping[str, Any], greeks: Mapping[str, Any], instrument: Instrument,
                   exchange_id: str, contracts: Decimal) -> dict[str, Any]:
    """`delta` (one option's, plain), `mark_iv` (a fraction) and `underlying_price` of an option position."""
    delta = None
    position_delta = _info(position).get(_OPTION_POSITION_DELTA_INFO_KEYS.get(exchange_id, ""))
    size_coin = contracts * instrument.contract_size
    if position_delta is not None and position_delta != "" and size_coin != 0:
        delta = dec(position_delta, "info.delta") / size_coin
    if delta is None:
        delta = _opt_dec(greeks.get("delta"), "greeks.delta")
    mark_iv = _opt_dec(greeks.get("markImpliedVolatility"), "greeks.markImpliedVolatility")
    if mark_iv is not None and exchange_id in _IV_PERCENT_EXCHANGES:
        mark_iv /= 100
    if mark_iv is not None and mark_iv <= 0:
        raise MalformedPayload("greeks.markImpliedVolatility", "a positive volatility", mark_iv)
    return {
        "delta": delta,
        "mark_iv": None if mark_iv is None else float(mark_iv),
        "underlying_price": _opt_dec(greeks.get("underlyingPrice"), "greeks.underlyingPrice") or None,
    }


@_parser("balance")
def balances_from_ccxt(balance: Mapping[str, Any], exchange_id: str) -> dict[str, Decimal]:
    """Wallet balances per coin, excluding unrealised PnL (see the module's notes), zeros left out.

    Read whole or not at all: an answer not shaped as the exchange sends it (Bybit without its list of
    accounts, an entry without its coin or amount, an amount that is not a finite number) raises
    MalformedPayload, never reads as an empty or partial wallet."""
    raw = balance.get("info")
    info = raw if isinstance(raw, dict) else {}
    wallet: dict[str, Decimal] = {}

    def add(coin: object, amount: object, field: str) -> None:
        if not isinstance(coin, str) or not coin:
            raise MalformedPayload(f"{field} coin", "a coin name", coin)
        value = dec(amount, field)
        if value:
            wallet[coin.upper()] = wallet.get(coin.upper(), ZERO) + value

    if exchange_id == "bybit":
        accounts = raw if isinstance(raw, list) else (info.get("result") or {}).get("list")
        for account in _entries(accounts, "info.result.list", nonempty=True):
            for coin in _entries(account.get("coin"), "coin", nonempty=False):
                add(coin.get("coin"), coin.get("walletBalance"), "walletBalance")
    elif exchange_id == "okx":
        data = _entries(info.get("data"), "info.data", nonempty=True)
        for detail in _entries(data[0].get("details"), "info.data[0].details", nonempty=False):
            add(detail.get("ccy"), detail.get("cashBal"), "cashBal")
    elif exchange_id == "deribit":
        summaries = info.get("summaries") if "summaries" in info else [info]
        for summary in _entries(summaries, "info.summaries", nonempty=True):
            add(summary.get("currency"), summary.get("balance"), "balance")
    elif exchange_id in _BINANCE_IDS and "assets" in info:
        for asset in _entries(info.get("assets"), "info.assets", nonempty=False):
            if str(asset.get("updateTime")) != "0":
                add(asset.get("asset"), asset.get("walletBalance"), "walletBalance")
    elif exchange_id == "bitget" and isinstance(raw, list) and raw and isinstance(raw[0], Mapping) and (
            "accountEquity" in raw[0]):
        for account in _entries(raw, "info", nonempty=False):
            add(account.get("marginCoin"), dec(account.get("accountEquity"), "accountEquity")
                - dec(account.get("unrealizedPL"), "unrealizedPL"), "accountEquity")
    elif exchange_id == "hyperliquid" and "marginSummary" in info:
        margin_summary = info.get("marginSummary")
        if not isinstance(margin_summary, Mapping):
            raise MalformedPayload("info.marginSummary", "an object", margin_summary)
        equity = dec(margin_summary.get("accountValue"), "marginSummary.accountValue")
        for entry in _entries(info.get("assetPositions"), "info.assetPositions", nonempty=False):
            position = entry.get("position")
            if not isinstance(position, Mapping):
                raise MalformedPayload("assetPositions[].position", "an object", position)
            equity -= dec(position.get("unrealizedPnl"), "position.unrealizedPnl")
        add("USDC", equity, "marginSummary.accountValue")
    else:
        totals = balance.get("total")
        if not isinstance(totals, Mapping):
            raise MalformedPayload("total", "ccxt's totals per coin", totals)
        for coin, amount in totals.items():
            if amount is not None:  # ccxt lists a coin the exchange gave no amount of with None
                add(coin, amount, f"total.{coin}")
    return wallet


def _entries(value: object, field: str, nonempty: bool) -> list[Mapping[str, Any]]:
    """A list of objects, as an exchange's answer lists accounts or coins."""
    if not isinstance(value, list) or not all(isinstance(entry, Mapping) for entry in value) or (
            nonempty and not value):
        raise MalformedPayload(field, "a non-empty list of objects" if nonempty else "a list of objects",
                               value)
    return value


@_parser("ticker")
def quote_from_ticker(ticker: Mapping[str, Any], received_at: datetime, speed: float = 1.0) -> Quote:
    """Top of book and mark; the mark falls back to the last price, then the mid (spot has no mark).
    Prices must be finite and positive, the bid at most the ask, and the time plausible: from
    `QUOTE_TS_EARLIEST` to `QUOTE_MAX_LEAD_SECS` (times the clock's `speed`) past `received_at`."""
    bid = dec(ticker.get("bid"), "bid")
    ask = dec(ticker.get("ask"), "ask")
    if bid <= 0 or ask <= 0 or bid > ask:
        raise MalformedPayload("bid/ask", "0 < bid <= ask", (ticker.get("bid"), ticker.get("ask")))
    mark = _opt_dec(ticker.get("markPrice"), "markPrice") or _opt_dec(ticker.get("last"), "last")
    if mark is not None and mark <= 0:
        raise MalformedPayload("markPrice", "a positive price", mark)
    ts = _ts(ticker, received_at)
    if not QUOTE_TS_EARLIEST <= ts <= received_at + timedelta(seconds=QUOTE_MAX_LEAD_SECS * speed):
        raise MalformedPayload("timestamp", "a plausible time", ticker.get("timestamp"))
    return Quote(
        symbol=_text(ticker, "symbol"), bid=bid, ask=ask, mark=mark or (bid + ask) / 2,
        ts=ts,
        index=_opt_dec(ticker.get("indexPrice"), "indexPrice"),
        funding_rate=_opt_dec(_info(ticker).get("fundingRate"), "info.fundingRate"),
        next_funding_ts=_next_funding_ts(ticker),
    )


def _next_funding_ts(ticker: Mapping[str, Any]) -> datetime | None:
    """Bybit's `nextFundingTime` (ms; absent, empty or 0 where the market has no funding)."""
    value = _info(ticker).get("nextFundingTime")
    return None if value in (None, "", "0", 0) else ts_from_ms(value, "info.nextFundingTime")


@_parser("order")
def order_from_ccxt(order: Mapping[str, Any], received_at: datetime,
                    request: OrderRequest | None = None) -> OrderState:
    """A ccxt order. `request` fills what an acknowledgement leaves out (Bybit's answer to create_order
    carries only the ids): an acknowledged order without a status is open."""
    amount = _opt_dec(order.get("amount"), "amount")
    if amount is None:
        if request is None:
            raise MalformedPayload("amount", "a number", None)
        amount = request.amount_contracts
    filled = _opt_dec(order.get("filled"), "filled") or ZERO
    status_name = order.get("status")
    if status_name is None:
        status = OrderStatus.OPEN
    elif status_name == "closed":
        status = OrderStatus.FILLED if filled >= amount else OrderStatus.CANCELED
    elif status_name in _STATUSES:
        status = _STATUSES[status_name]
    else:
        raise MalformedPayload("status", "open, closed, canceled, expired or rejected", status_name)
    if status is OrderStatus.OPEN and filled > 0:
        status = OrderStatus.PARTIALLY_FILLED
    reject_reason = _opt_text(_info(order), "rejectReason")
    if status is OrderStatus.CANCELED and filled == 0 and reject_reason in _REFUSALS_AFTER_ACCEPT:
        status = OrderStatus.REJECTED  # accepted, then refused by the exchange itself: never resting
    order_type = order.get("type") or (request.order_type.value if request else None)
    if order_type not in ("market", "limit"):
        raise MalformedPayload("type", "market or limit", order_type)
    updated = order.get("lastUpdateTimestamp") or order.get("timestamp")
    if order.get("side") in ("buy", "sell") or request is None:
        side = _side(order)
    else:
        side = request.side
    return OrderState(
        client_order_id=_opt_text(order, "clientOrderId") or (request.client_order_id if request else None),
        exchange_order_id=_text(order, "id"),
        symbol=_opt_text(order, "symbol") or (request.symbol if request else _text(order, "symbol")),
        side=side,
        amount_contracts=amount,
        filled_contracts=filled,
        status=status,
        ts=received_at if updated is None else ts_from_ms(updated),
        average_price=_opt_dec(order.get("average"), "average"),
        order_type=OrderType(order_type),
        price=_opt_dec(order.get("price"), "price"),
        reject_reason=reject_reason if status is OrderStatus.REJECTED else None,
    )


@_parser("trade")
def is_funding_trade(trade: Mapping[str, Any], exchange_id: str) -> bool:
    """Bybit pushes funding settlements on its execution channel (`execType` Funding)."""
    return exchange_id == "bybit" and _info(trade).get("execType") == "Funding"


@_parser("trade")
def is_liquidation_trade(trade: Mapping[str, Any], exchange_id: str) -> bool:
    """The exchange closed the position itself: a liquidation or ADL execution (module notes)."""
    info = _info(trade)
    if exchange_id == "bybit":
        return info.get("execType") in _BYBIT_LIQUIDATION_EXEC_TYPES
    if exchange_id == "deribit":
        role = str(info.get("liquidity") or "")
        liquidated_sides = str(info.get("liquidation") or "")
        return info.get("order_type") == "liquidation" or (role != "" and role in liquidated_sides)
    if exchange_id in _BINANCE_IDS:
        client_id = str(trade.get("clientOrderId") or info.get("c") or info.get("clientOrderId") or "")
        return client_id.startswith(_BINANCE_LIQUIDATION_CLIENT_IDS)
    if exchange_id == "okx":
        return str(info.get("subType")) in _OKX_LIQUIDATION_SUB_TYPES
    return False


def fill_value_currency(instrument: Instrument) -> str:
    """The currency of a fill's `contracts x contract size x price` (module notes)."""
    if instrument.inverse:
        return "USD"
    return instrument.settle if instrument.is_option else instrument.quote


@_parser("trade")
def fill_from_trade(trade: Mapping[str, Any], instrument: Instrument, exchange_id: str,
                    value_coin_usd: Decimal | None = None) -> Fill:
    """One of the account's trades; the fee is what the account paid (negative for a rebate). A liquidation
    or ADL fill is marked so, without a client order id. `value_coin_usd` is the USD price of the coin the
    fill is valued in (module notes), used where the trade carries none; without either a fill valued in a
    coin raises FillValueUnknown."""
    info = _info(trade)
    amount = dec(trade.get("amount"), "amount")
    price = dec(trade.get("price"), "price")
    if amount <= 0 or price <= 0:
        raise MalformedPayload("amount/price", "positive numbers", (trade.get("amount"), trade.get("price")))
    value = instrument.notional_usd(amount, price)
    currency = fill_value_currency(instrument)
    if not is_stable(currency):
        index = _opt_dec(info.get(_TRADE_INDEX_PRICE_KEYS.get(exchange_id, "")), "info.index_price")
        coin_usd = index if index is not None and currency == instrument.base else value_coin_usd
        if coin_usd is None:
            raise FillValueUnknown(currency)
        if coin_usd <= 0:
            raise MalformedPayload("index_price", "a positive price", coin_usd)
        value *= coin_usd
    fee = trade.get("fee") or {}
    liquidation = is_liquidation_trade(trade, exchange_id)
    client_id = next((str(info[key]) for key in _CLIENT_ID_INFO_KEYS if info.get(key)), None)
    return Fill(
        trade_id=_text(trade, "id"),
        exchange_order_id=_text(trade, "order"),
        client_order_id=None if liquidation else _opt_text(trade, "clientOrderId") or client_id,
        symbol=instrument.symbol,
        side=_side(trade),
        amount_contracts=amount,
        price=price,
        fee=_opt_dec(fee.get("cost"), "fee.cost") or ZERO,
        fee_currency=str(fee.get("currency") or instrument.settle).upper(),
        ts=ts_from_ms(trade.get("timestamp")),
        notional_usd=value,
        is_maker=trade.get("takerOrMaker") == "maker",
        liquidation=liquidation,
    )


@_parser("funding payment")
def funding_from_ccxt(item: Mapping[str, Any], instrument: Instrument, exchange_id: str) -> FundingPayment:
    """A funding payment, positive = received, in the instrument's settle coin.

    Bybit: from the raw execution (a `fetch_funding_history` entry or a Funding trade from the execution
    channel alike). `execFee` is positive when paid; the position's sign follows from who paid at which
    rate (positive rates: longs pay), `execQty` is its size. Others: ccxt's funding history entry.
    """
    if exchange_id == "bybit":
        info = _info(item)
        paid = dec(info.get("execFee"), "info.execFee")
        rate = dec(info.get("feeRate"), "info.feeRate")
        size = abs(dec(info.get("execQty"), "info.execQty"))
        if paid and rate:
            long = (paid > 0) == (rate > 0)
        else:
            long = info.get("side") == "Buy"
        return FundingPayment(
            payment_id=_text(info, "execId"), symbol=instrument.symbol, amount=-paid,
            currency=instrument.settle, rate=rate, position_contracts=size if long else -size,
            ts=ts_from_ms(info.get("execTime"), "info.execTime"),
        )
    return FundingPayment(
        payment_id=_text(item, "id"), symbol=instrument.symbol, amount=dec(item.get("amount"), "amount"),
        currency=str(item.get("code") or instrument.settle).upper(),
        rate=_opt_dec(item.get("rate"), "rate") or ZERO, position_contracts=ZERO,
        ts=ts_from_ms(item.get("timestamp")),
    )


@_parser("transaction log entry")
def deribit_funding_from_log(entry: Mapping[str, Any], instrument: Instrument) -> FundingPayment | None:
    """A perpetual's funding from an entry of Deribit's `private/get_transaction_log`: a `settlement` of
    a perpetual whose `interest_pl` (the session's funding, in the settlement currency, positive =
    received) is not zero; None for any other entry. The entry's `id` is the payment id."""
    if entry.get("type") != "settlement" or instrument.kind is not Kind.PERPETUAL:
        return None
    amount = dec(entry.get("interest_pl"), "interest_pl")
    if not amount:
        return None
    return FundingPayment(
        payment_id=f"log{_text(entry, 'id')}", symbol=instrument.symbol, amount=amount,
        currency=str(entry.get("currency") or instrument.settle).upper(), rate=ZERO,
        position_contracts=ZERO, ts=ts_from_ms(entry.get("timestamp")),
    )


@_parser("API key answer")
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


def portfolio_from_json(doc: object) -> Portfolio:
    """The `deltakeeper delta --portfolio FILE` document (markets, positions, balances, prices, and
    optionally exchange and external) as domain values. An option position may carry `greeks`, its ccxt
    greeks structure (`fetch_greeks`). Raises ConfigError naming the bad entry."""
    if not isinstance(doc, dict):
        raise ConfigError("portfolio", "a JSON object with markets, positions, balances and prices")
    exchange_id = doc.get("exchange", "")
    if not isinstance(exchange_id, str):
        raise ConfigError("exchange", "a ccxt exchange id", exchange_id)
    precision_mode = precision_mode_of(exchange_id) if exchange_id else TICK_SIZE

    instruments: dict[str, Instrument] = {}
    for symbol, market in _section(doc, "markets", dict, required=True).items():
        if not isinstance(market, dict):
            raise ConfigError(f"markets.{symbol}", "a ccxt market object", market)
        with _naming(f"markets.{symbol}"):
            instrument = instrument_from_market({"symbol": symbol, **market}, exchange_id, precision_mode)
        instruments[instrument.symbol] = instrument

    positions: list[Position] = []
    for i, entry in enumerate(_section(doc, "positions", list, required=True)):
        where = f"positions[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, "a ccxt position object", entry)
        if entry.get("symbol") not in instruments:
            raise ConfigError(f"{where}.symbol", "a symbol listed in markets", entry.get("symbol"))
        option_greeks = entry.get("greeks")
        if option_greeks is not None and not isinstance(option_greeks, dict):
            raise ConfigError(f"{where}.greeks", "a ccxt greeks object", option_greeks)
        with _naming(where):
            positions.append(position_from_ccxt(entry, instruments[entry["symbol"]], exchange_id,
                                                option_greeks))

    balances = _amounts(doc, "balances", required=True)
    prices = _amounts(doc, "prices", required=True)
    external = _amounts(doc, "external", required=False)
    held = set(balances) | set(external)
    for position in positions:
        held |= {instruments[position.symbol].base, instruments[position.symbol].settle}
    for asset in sorted(held):
        if not is_stable(asset) and asset not in prices:
            raise ConfigError(f"prices.{asset}", "a USD price for every asset held")
    return Portfolio(instruments, balances, positions, prices, external)


@contextmanager
def _naming(where: str) -> Iterator[None]:
    """Turn a MalformedPayload into a ConfigError naming the entry and its field."""
    try:
        yield
    except MalformedPayload as exc:
        raise ConfigError(f"{where}.{exc.field}", exc.expected, exc.got) from None


def _section(doc: Mapping[str, Any], key: str, kind: type, required: bool) -> Any:
    if key not in doc and not required:
        return kind()
    value = doc.get(key)
    if not isinstance(value, kind):
        raise ConfigError(key, f"a JSON {'object' if kind is dict else 'array'}", value)
    return value


def _amounts(doc: Mapping[str, Any], key: str, required: bool) -> dict[str, Decimal]:
    amounts: dict[str, Decimal] = {}
    for asset, value in _section(doc, key, dict, required).items():
        try:
            amounts[str(asset).upper()] = dec(value, asset)
        except MalformedPayload as exc:
            raise ConfigError(f"{key}.{asset}", exc.expected, exc.got) from None
    return amounts


__all__ = [
    "DEFAULT_FUNDING_INTERVAL_SECS", "QUOTE_MAX_LEAD_SECS", "QUOTE_TS_EARLIEST", "RETRY_AFTER_MAX_SECS",
    "FillValueUnknown", "MalformedPayload", "Portfolio", "balances_from_ccxt", "bybit_key_can_withdraw",
    "check_bybit_account_answer", "dec", "deribit_funding_from_log", "error_from_ccxt", "fill_from_trade",
    "fill_value_currency",
    "funding_from_ccxt", "instrument_from_market", "is_funding_trade", "is_liquidation_trade",
    "is_open_position", "order_from_ccxt", "portfolio_from_json", "position_from_ccxt", "precision_mode_of",
    "quote_from_ticker", "retry_after_secs", "tier_from_ccxt", "tiers_from_ccxt", "ts_from_ms",
]


def portfolio_time(doc: object) -> datetime | None:
    """The portfolio file's optional `timestamp` (ms since the epoch), for expiry-dependent terms."""
    if not isinstance(doc, Mapping) or doc.get("timestamp") is None:
        return None
    try:
        return ts_from_ms(doc["timestamp"])
    except (MalformedPayload, ValueError, OverflowError):
        expected = "the portfolio's time in ms since the epoch"
        raise ConfigError("timestamp", expected, doc["timestamp"]) from None
