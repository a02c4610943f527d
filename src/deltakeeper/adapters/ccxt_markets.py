"""ccxt markets and leverage tiers, as Instruments and margin tables.

Contract units. The domain counts an order's and a position's size in "contracts" of
`Instrument.contract_size` (coins for linear contracts, USD face for inverse ones), and that count is
always ccxt's own `amount` / `contracts` for the market, so orders and positions need no conversion.
Where ccxt's `contractSize` does not describe what its amounts count, the instrument's contract size is
set per exchange (`_UNIT_AMOUNT_EXCHANGES`):
- Deribit: ccxt amounts and `contracts` are USD for inverse futures and coins for linear futures and
  options, while `contractSize` is the exchange's contract (10 USD for BTC-PERPETUAL): contract size 1.
- Bybit inverse: amounts and `contracts` are USD (1 USD contracts), while ccxt reports the minimum order
  quantity as `contractSize`: contract size 1.
- Bitget coin-margined (COIN-FUTURES): amounts count the base coin of an inverse contract, which no fixed
  USD face describes: refused (`_COIN_AMOUNT_INVERSE_EXCHANGES`).

Options (ccxt `type: option`, `strike`, `optionType`, `expiry` in ms) are never inverse in the domain: their
contracts count coins of the underlying (Deribit: amounts in BTC, contract size 1), even where ccxt marks a
coin-settled option `inverse`.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ccxt.base.decimal_to_precision import DECIMAL_PLACES, TICK_SIZE

from deltakeeper.adapters.ccxt_parse import (
    MalformedPayload,
    dec,
    info_of,
    opt_dec,
    opt_text,
    parser,
    text,
    ts_from_ms,
)
from deltakeeper.domain.instruments import ZERO, Instrument, Kind, is_stable
from deltakeeper.domain.margin_tiers import MarginTier, cumulative_amounts_usd

DEFAULT_FUNDING_INTERVAL_SECS = 8 * 3600
_COIN_AMOUNT_INVERSE_EXCHANGES = frozenset({"bitget"})
"""Exchanges whose inverse (coin-margined) contracts ccxt counts in coins (Bitget COIN-FUTURES: `size` in
the base coin, ccxt `contractSize` 1), where the domain counts an inverse contract in USD face: such a
market is refused (skipped when markets load), never sized as 1 USD per coin."""
_UNIT_AMOUNT_EXCHANGES = {"deribit": ("linear", "inverse"), "bybit": ("inverse",)}
"""Exchanges (and market sides) where ccxt's amounts are plain units: USD for inverse, coins for linear."""


def _lot_step(amount_precision: object, precision_mode: int) -> Decimal | None:
    """The amount step: ccxt gives it as the step itself (TICK_SIZE, nearly every exchange) or as decimal
    places; significant digits say nothing about a step."""
    precision = opt_dec(amount_precision, "precision.amount")
    if precision is None:
        return None
    if precision_mode == DECIMAL_PLACES:
        return Decimal(1).scaleb(-int(precision))
    return precision if precision_mode == TICK_SIZE and precision > 0 else None


def _limit(market: Mapping[str, Any], name: str) -> Decimal | None:
    limits = market.get("limits") or {}
    return opt_dec((limits.get(name) or {}).get("min"), f"limits.{name}.min")


@parser("market")
def instrument_from_market(market: Mapping[str, Any], exchange_id: str,
                           precision_mode: int = TICK_SIZE) -> Instrument:
    """One ccxt market as an Instrument; `precision_mode` is the ccxt exchange's `precisionMode`. Without
    a usable amount step the lot step is the minimum amount."""
    symbol = text(market, "symbol")
    kind_name = market.get("type")
    if kind_name not in {kind.value for kind in Kind}:
        raise MalformedPayload("type", "spot, swap, future or option", kind_name)
    kind = Kind(kind_name)
    base = text(market, "base").upper()
    quote = text(market, "quote").upper()
    settle = (opt_text(market, "settle") or quote).upper()
    inverse = kind not in (Kind.SPOT, Kind.OPTION) and bool(market.get("inverse"))
    if inverse and exchange_id in _COIN_AMOUNT_INVERSE_EXCHANGES:
        raise MalformedPayload("contractSize", f"USD face per contract ({exchange_id}'s coin-margined "
                               "amounts count coins of an inverse contract: not modelled)",
                               market.get("contractSize"))
    side = "inverse" if inverse else "linear"
    if kind is Kind.SPOT or side in _UNIT_AMOUNT_EXCHANGES.get(exchange_id, ()):
        contract_size = Decimal(1)
    else:
        contract_size = opt_dec(market.get("contractSize"), "contractSize") or Decimal(1)
    if contract_size <= 0:
        raise MalformedPayload("contractSize", "a positive number", market.get("contractSize"))

    defaults = Instrument(symbol, kind, base, quote, settle)
    min_contracts = _limit(market, "amount") or ZERO
    lot_step = _lot_step((market.get("precision") or {}).get("amount"), precision_mode)
    min_cost = _limit(market, "cost")
    taker = opt_dec(market.get("taker"), "taker")
    maker = opt_dec(market.get("maker"), "maker")
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
    """Bybit gives each perpetual's `fundingInterval` in minutes, Bitget its `fundInterval` in hours;
    Hyperliquid funds every hour; elsewhere the 8-hour default."""
    if exchange_id == "hyperliquid":
        return 3600
    key, unit_secs = {"bybit": ("fundingInterval", 60), "bitget": ("fundInterval", 3600)}.get(exchange_id,
                                                                                               ("", 0))
    interval = info_of(market).get(key)
    if interval is None or interval == "":
        return DEFAULT_FUNDING_INTERVAL_SECS
    return int(dec(interval, f"info.{key}")) * unit_secs


@parser("leverage tier")
def tier_from_ccxt(entry: Mapping[str, Any]) -> MarginTier:
    """One ccxt leverage tier (`minNotional`, `maxNotional`, `maintenanceMarginRate`, in ccxt's notional
    unit) as a bracket of a maintenance margin table; a tier without a cap has none."""
    floor = dec(entry.get("minNotional"), "minNotional")
    cap = opt_dec(entry.get("maxNotional"), "maxNotional")
    rate = dec(entry.get("maintenanceMarginRate"), "maintenanceMarginRate")
    if not ZERO <= rate < 1:
        raise MalformedPayload("maintenanceMarginRate", "a rate in [0, 1)", rate)
    return MarginTier(floor, Decimal("Infinity") if cap is None else cap, rate)


@parser("leverage tiers")
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

