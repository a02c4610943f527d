"""ccxt positions and balances, as the domain's Positions and wallet balances (DESIGN.md 4).

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

Option greeks, per exchange (`position_from_ccxt`):
- Deribit `private/get_positions`: `delta` is the position's plain Black-Scholes delta in coins (size x
  the option's delta; the net transaction delta subtracts the mark from it, Deribit support "Delta decay
  during settlement"), so one option's delta is `delta / size`. Its ticker (ccxt `fetch_greeks`) gives the
  option's `delta`, `mark_iv` in percent (ccxt passes it on as `markImpliedVolatility`: 61.27 = 61.27%)
  and the forward as `underlying_price`.
- Bybit: its ticker (ccxt `fetch_greeks`) gives one option's `delta`, `markIv` (a fraction: 0.5577 =
  55.77%) and `underlyingPrice`; the option's delta is the ticker's. The position row's `delta`
  (`/v5/position/list?category=option`, beside `gamma`, `vega`, `theta`) is documented without saying
  whether it is one option's or the position's: it is a cross-check only (a row that matches the ticker
  while `row / size` does not is one option's: logged once per symbol, `option_row_delta_per_option`),
  never the delta alone. Without the ticker's delta, Black-76 at its mark IV.
- Elsewhere ccxt's greeks structure, with `markImpliedVolatility` a fraction.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import structlog

from deltakeeper.adapters.ccxt_parse import (
    BINANCE_IDS,
    MalformedPayload,
    dec,
    info_of,
    object_list,
    opt_dec,
    opt_text,
    parser,
)
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import ZERO, Instrument

log = structlog.get_logger(__name__)

_UNSIGNED_CONTRACTS_EXCHANGES = frozenset({"bybit"})
"""Exchanges whose ccxt positions carry the size without sign (`contracts`) and the side apart: a position
without its side is unreadable, not long."""
_SIGNED_SIZE_INFO_KEYS = dict.fromkeys(BINANCE_IDS, "positionAmt")
"""The exchange's signed size in a position's `info`, read where ccxt gives no side: ccxt takes a Binance
position's side from the sign of its `notional` / `notionalValue`, which COIN-M's `positionRisk` may leave
out (Binance's documented example has none), while its `contracts` are unsigned."""
_BYBIT_ACCOUNT_LISTS = ("/v5/account/wallet-balance", "/v5/position/list")
"""Bybit's account answers, each a `result.list` of objects."""

_UNREALIZED_PNL_INFO_KEYS = {"bybit": "unrealisedPnl", "deribit": "floating_profit_loss", "okx": "upl"}
"""The exchange's own unrealised-PnL field, read before ccxt's `unrealizedPnl`: ccxt drops Bybit's zero and
derives a figure from entry and mark in its place."""

_OPTION_POSITION_DELTA_INFO_KEYS = {"deribit": "delta"}
"""The exchange's position-level option delta (in coins, signed) in a position's `info`."""
_OPTION_ROW_DELTA_CHECKED = frozenset({"bybit"})
"""Exchanges whose position row's `delta` is cross-checked against the ticker's, never taken alone."""
ROW_DELTA_TOLERANCE = Decimal("0.01")
"""How far one option's delta from the row may be from the ticker's and still agree."""

_IV_PERCENT_EXCHANGES = frozenset({"deribit"})
"""Exchanges whose mark implied volatility ccxt passes on in percent."""


@parser("position")
def position_from_ccxt(position: Mapping[str, Any], instrument: Instrument, exchange_id: str,
                       greeks: Mapping[str, Any] | None = None, warned: set[str] | None = None) -> Position:
    """Signed contracts (+ long) in the instrument's units, so that `instrument.delta_coin(contracts,
    mark)` is the position's delta: Deribit's USD size -100 at mark 103,554.56 is -9.65675e-4 BTC.

    It carries the exchange's margin figures where ccxt gives them (`liquidationPrice`, `initialMargin`,
    `maintenanceMargin`, `leverage`, `collateral`, `marginMode`). An option position also carries its
    greeks (module notes): from the position where the exchange puts them there, else from `greeks`, the
    option's ccxt greeks structure (`fetch_greeks`). `warned`: the symbols whose row delta was found to be
    one option's already (logged once each)."""
    size = abs(dec(position.get("contracts"), "contracts"))
    side = position.get("side")
    signed = info_of(position).get(_SIGNED_SIZE_INFO_KEYS.get(exchange_id, ""))
    if side == "long":
        sign = 1
    elif side == "short":
        sign = -1
    elif side not in (None, ""):
        raise MalformedPayload("side", "long or short", side)
    elif signed is not None and signed != "":
        sign = -1 if dec(signed, "info.positionAmt") < 0 else 1
    elif size and exchange_id in _UNSIGNED_CONTRACTS_EXCHANGES:
        raise MalformedPayload("side", "long or short", side)
    else:
        sign = -1 if dec(position.get("contracts"), "contracts") < 0 else 1
    pnl = info_of(position).get(_UNREALIZED_PNL_INFO_KEYS.get(exchange_id, ""))
    if pnl is None or pnl == "":
        pnl = position.get("unrealizedPnl")
    return Position(
        symbol=instrument.symbol,
        contracts=sign * size,
        entry_price=opt_dec(position.get("entryPrice"), "entryPrice") or ZERO,
        mark_price=dec(position.get("markPrice"), "markPrice"),
        unrealized_pnl=opt_dec(pnl, "unrealizedPnl"),
        **_position_margin(position),
        **(_option_greeks(position, greeks or {}, instrument, exchange_id, sign * size,
                          set() if warned is None else warned)
           if instrument.is_option else {}),
    )


@parser("position")
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
    object_list(result.get("list") if isinstance(result, Mapping) else None, f"{path} result.list",
             nonempty=False)


def _position_margin(position: Mapping[str, Any]) -> dict[str, Any]:
    """The exchange's margin figures of a position, None where it gives none (ccxt: None; the exchange:
    an empty string). A liquidation price or leverage of zero means none (Bybit's `liqPrice` of a flat
    position; a long its collateral outlasts); margins must not be negative."""
    liquidation = opt_dec(position.get("liquidationPrice"), "liquidationPrice")
    leverage = opt_dec(position.get("leverage"), "leverage")
    figures: dict[str, Any] = {
        "liquidation_price": liquidation if liquidation is not None and liquidation > 0 else None,
        "leverage": leverage if leverage is not None and leverage > 0 else None,
        "collateral": opt_dec(position.get("collateral"), "collateral"),
    }
    for key, name in (("initialMargin", "initial_margin"), ("maintenanceMargin", "maintenance_margin")):
        value = figures[name] = opt_dec(position.get(key), key)
        if value is not None and value < 0:
            raise MalformedPayload(key, "a non-negative number", position.get(key))
    mode = opt_text(position, "marginMode")
    if mode not in (None, "cross", "isolated"):
        raise MalformedPayload("marginMode", "cross or isolated", mode)
    figures["margin_mode"] = mode
    return figures


def _option_greeks(position: Mapping[str, Any], greeks: Mapping[str, Any], instrument: Instrument,
                   exchange_id: str, contracts: Decimal, warned: set[str]) -> dict[str, Any]:
    """`delta` (one option's, plain), `mark_iv` (a fraction) and `underlying_price` of an option position."""
    delta = None
    position_delta = info_of(position).get(_OPTION_POSITION_DELTA_INFO_KEYS.get(exchange_id, ""))
    size_coin = contracts * instrument.contract_size
    if position_delta is not None and position_delta != "" and size_coin != 0:
        delta = dec(position_delta, "info.delta") / size_coin
    if delta is None:
        delta = opt_dec(greeks.get("delta"), "greeks.delta")
    row = info_of(position).get("delta") if exchange_id in _OPTION_ROW_DELTA_CHECKED else None
    if delta is not None and row not in (None, "") and size_coin != 0 and instrument.symbol not in warned:
        row_delta = dec(row, "info.delta")
        if (abs(row_delta / size_coin - delta) > ROW_DELTA_TOLERANCE
                and abs(abs(row_delta) - abs(delta)) <= ROW_DELTA_TOLERANCE):
            warned.add(instrument.symbol)
            log.warning("option_row_delta_per_option", symbol=instrument.symbol, row_delta=str(row_delta),
                        ticker_delta=str(delta), contracts=str(contracts))
    mark_iv = opt_dec(greeks.get("markImpliedVolatility"), "greeks.markImpliedVolatility")
    if mark_iv is not None and exchange_id in _IV_PERCENT_EXCHANGES:
        mark_iv /= 100
    if mark_iv is not None and mark_iv <= 0:
        raise MalformedPayload("greeks.markImpliedVolatility", "a positive volatility", mark_iv)
    return {
        "delta": delta,
        "mark_iv": None if mark_iv is None else float(mark_iv),
        "underlying_price": opt_dec(greeks.get("underlyingPrice"), "greeks.underlyingPrice") or None,
    }


@parser("balance")
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
        for account in object_list(accounts, "info.result.list", nonempty=True):
            for coin in object_list(account.get("coin"), "coin", nonempty=False):
                add(coin.get("coin"), coin.get("walletBalance"), "walletBalance")
    elif exchange_id == "okx":
        data = object_list(info.get("data"), "info.data", nonempty=True)
        for detail in object_list(data[0].get("details"), "info.data[0].details", nonempty=False):
            add(detail.get("ccy"), detail.get("cashBal"), "cashBal")
    elif exchange_id == "deribit":
        summaries = info.get("summaries") if "summaries" in info else [info]
        for summary in object_list(summaries, "info.summaries", nonempty=True):
            add(summary.get("currency"), summary.get("balance"), "balance")
    elif exchange_id in BINANCE_IDS and "assets" in info:
        for asset in object_list(info.get("assets"), "info.assets", nonempty=False):
            if str(asset.get("updateTime")) != "0":
                add(asset.get("asset"), asset.get("walletBalance"), "walletBalance")
    elif exchange_id == "bitget" and isinstance(raw, list) and raw and isinstance(raw[0], Mapping) and (
            "accountEquity" in raw[0]):
        for account in object_list(raw, "info", nonempty=False):
            add(account.get("marginCoin"), dec(account.get("accountEquity"), "accountEquity")
                - dec(account.get("unrealizedPL"), "unrealizedPL"), "accountEquity")
    elif exchange_id == "hyperliquid" and "marginSummary" in info:
        margin_summary = info.get("marginSummary")
        if not isinstance(margin_summary, Mapping):
            raise MalformedPayload("info.marginSummary", "an object", margin_summary)
        equity = dec(margin_summary.get("accountValue"), "marginSummary.accountValue")
        for entry in object_list(info.get("assetPositions"), "info.assetPositions", nonempty=False):
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
