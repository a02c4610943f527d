"""`deltakeeper margin`: what a portfolio needs under portfolio margin and under standard cross margin, the
capital portfolio margin frees, and how far each derivative leg is from liquidation (REFERENCE 3).

`margin_report(doc)` is the pure computation, on the portfolio file of `deltakeeper delta` (a ccxt-shaped
snapshot) with these optional keys besides: `timestamp` (ms; needed only by dated futures and options),
`leverage_tiers` (`{symbol: [{floor, cap, mmr}]}`, or ccxt `fetch_leverage_tiers` entries `{minNotional,
maxNotional, maintenanceMarginRate}`) and `portfolio_margin` (`{"include_spot": true, "params": {ASSET:
{field: value}}}`, fields of `domain.margin.PortfolioMarginParams`). Add-ons the file cannot know (open
orders, market-maker protection) count as zero.

Without `--portfolio`, the command reports on the live account the DK_ settings configure, as `deltakeeper
run` reaches it (DK_EXCHANGE, DK_EXCHANGE_URL, the keys): the adapter reads it into the same document
(`CcxtExchange.portfolio_document`: ccxt's positions with the exchange's margin figures, their markets and
leverage tiers, the wallet balances, each held asset's mark price, the time).

Portfolio margin (`domain.margin.portfolio_margin`), one grid per underlying and settlement currency:
- in the coin: inverse contracts and coin-settled options (Deribit);
- in USD, reported under the stablecoin they settle in: linear contracts, and with `include_spot`
  (default true: unified and portfolio-margin accounts count spot) the asset's wallet balance as spot.
  Spot alone needs no margin: it joins the grid of its asset's stablecoin-settled derivatives, once.
  USD-settled options have no place in the estimator yet: they are listed in `notes` and left out.
Grids of one settlement currency add up (no offsets across underlyings).

Standard cross margin, per derivative leg, in its settlement currency:
- linear: MM from the tier table on the USD notional; inverse: on the coin notional with the file's tiers
  (ccxt's inverse tiers count coins), or on the USD face with the default table, then / price;
- IM = the notional at the mark / the position's leverage (ccxt `leverage`, else 10x);
- options, Deribit's standard formulas per coin of underlying (in USD x the price when USD-settled):
  short call IM `max(0.15 - OTM/F, 0.10) + mark`, MM `0.075 + mark`; short put IM the larger of that and
  its MM `max(0.075, 0.075 mark) + mark`; long options are paid for and need none.
Without tiers for a symbol, the default table is REFERENCE 3.1's (Binance BTCUSDT of 2021-03-18, in USD),
and above a table's last cap its last rate goes on.

Liquidation, per derivative leg: the relative move of the leg's price (the underlying's for an option)
nearest to zero, within -100%..+1000%, after which the leg's equity falls below its maintenance margin;
null where none does. The leg's equity: for an isolated leg (`marginMode`) the exchange's `collateral`
where the position has it, else the margin posted at entry at its leverage plus its PnL; for a cross leg
(the default) the settlement currency's margin balance (wallet + futures PnL, as Deribit counts it: an
option's value is left to its margin, which includes its mark) less the other legs' maintenance margin.
A cross leg's `collateral` is shown, not used: ccxt's figure is the position's own margin (Bybit: its
`positionBalance` plus its PnL), while the whole settlement currency backs it. Other coins' value does
not count: the spot gain sits in another wallet. Each leg also shows the exchange's own
`liquidationPrice`, `initialMargin`, `maintenanceMargin`, `collateral`, `leverage` and `marginMode` where
the file has them (`adapters.ccxt_parse.position_from_ccxt`), beside the estimate, and names the figures
that disagree by more than 5%. The leg's `liquidation_price`/`liquidation_move` are the exchange's where it
gives them, else the estimate's.

For each portfolio-margin grid, `move_to_margin_call` is the index move up and down after which the
settlement currency's equity (margin balance + options' value + spot in the grid, less the other grids'
maintenance margin) falls below the grid's maintenance margin (`domain.margin.move_to_margin_call`).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deltakeeper.cli_args import read_json_file
from deltakeeper.domain.errors import ConfigError, ExchangeUnavailable
from deltakeeper.domain.exposure import Position, unrealized_pnl, years_to_expiry
from deltakeeper.domain.greeks import black76_price_usd
from deltakeeper.domain.instruments import ZERO, Instrument, Kind, is_stable
from deltakeeper.domain.margin import (
    DEFAULT_LEVERAGE,
    DEFAULT_TIERS_USD,
    MarginRules,
    MarginTier,
    PortfolioMarginParams,
    PositionKind,
    RiskPosition,
    cumulative_amounts_usd,
    leg_requirements,
    margin_headroom,
    move_to_margin_call,
    portfolio_margin,
)

if TYPE_CHECKING:
    from deltakeeper.adapters.ccxt_parse import Portfolio
    from deltakeeper.config import Settings

MOVE_UP_LIMIT = 10.0
MOVE_DOWN_LIMIT = 0.9999
SCAN_STEP = 0.01
DISAGREE_REL = Decimal("0.05")
ROUNDING = Decimal("1e-12")


class MarginFormat(str, Enum):
    table = "table"
    json = "json"


def _d(x: float) -> Decimal:
    return Decimal(repr(x))


def _price(x: float) -> Decimal:
    """A computed price, to 10 significant digits."""
    return Decimal(f"{x:.10g}")


@dataclass(frozen=True, slots=True)
class TierTable:
    """Maintenance margin tiers, `MM = notional x mmr_k - cum_k`, with the last rate going on above
    the last cap. `usd`: the notional is in USD (else in the contract's settlement coin)."""

    tiers: tuple[MarginTier, ...]
    usd: bool
    cums: tuple[Decimal, ...]

    @classmethod
    def of(cls, tiers: Sequence[MarginTier], usd: bool) -> TierTable:
        return cls(tuple(tiers), usd, tuple(cumulative_amounts_usd(tiers)))

    def mm(self, notional: Decimal) -> Decimal:
        for tier, cum in zip(self.tiers, self.cums, strict=True):
            if notional < tier.cap_usd:
                return notional * tier.mmr - cum
        return notional * self.tiers[-1].mmr - self.cums[-1]

    def mm_float(self, notional: float) -> float:
        for tier, cum in zip(self.tiers, self.cums, strict=True):
            if notional < tier.cap_usd:
                return notional * float(tier.mmr) - float(cum)
        return notional * float(self.tiers[-1].mmr) - float(self.cums[-1])


DEFAULT_TABLE = TierTable.of(DEFAULT_TIERS_USD, usd=True)
OPTION_RULES = MarginRules()
"""Options take Deribit's standard margin (`domain.margin.leg_requirements`), whatever the tables."""


@dataclass(frozen=True, slots=True)
class Leg:
    """A derivative position with what the margin maths needs of it."""

    index: int
    instrument: Instrument
    position: Position
    price_usd: Decimal
    """The underlying asset's USD price (the portfolio-margin grid's centre)."""
    years: float | None
    vol: float | None

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def settle(self) -> str:
        return self.instrument.settle

    @property
    def is_option(self) -> bool:
        return self.instrument.is_option

    @property
    def size_coin(self) -> Decimal:
        """Signed coins: contracts x size (inverse: face / the position's mark)."""
        if self.is_option:
            return self.position.contracts * self.instrument.contract_size
        return self.instrument.delta_coin(self.position.contracts, self.position.mark_price)

    @property
    def entry(self) -> Decimal:
        return self.position.entry_price or self.position.mark_price

    @property
    def move_base(self) -> Decimal:
        """The price whose relative move liquidates the leg: its mark, an option's underlying price."""
        return self.price_usd if self.is_option else self.position.mark_price


def _config(where: str, expected: str, got: object = None) -> ConfigError:
    return ConfigError(where, expected, got)


def _tier_tables(doc: dict[str, Any], instruments: dict[str, Instrument]) -> dict[str, TierTable]:
    from deltakeeper.adapters.ccxt_parse import MalformedPayload, tier_from_ccxt

    section = doc.get("leverage_tiers", {})
    if not isinstance(section, dict):
        raise _config("leverage_tiers", "a JSON object {symbol: [{floor, cap, mmr}]}", section)
    tables: dict[str, TierTable] = {}
    for symbol, entries in section.items():
        where = f"leverage_tiers.{symbol}"
        if symbol not in instruments:
            raise _config(where, "a symbol listed in markets", symbol)
        if not isinstance(entries, list) or not entries:
            raise _config(where, "a list of tiers {floor, cap, mmr}", entries)
        tiers = []
        for i, entry in enumerate(entries):
            at = f"{where}[{i}]"
            if not isinstance(entry, dict):
                raise _config(at, "a tier {floor, cap, mmr}", entry)
            ccxt_entry = {ccxt_key: _given(entry, key, ccxt_key) for key, ccxt_key in (
                ("floor", "minNotional"), ("cap", "maxNotional"), ("mmr", "maintenanceMarginRate"))}
            try:
                tiers.append(tier_from_ccxt(ccxt_entry))
            except MalformedPayload:
                raise _config(at, "floor (or minNotional) and mmr (or maintenanceMarginRate) in [0, 1)",
                              entry) from None
        try:
            tables[symbol] = TierTable.of(tiers, usd=is_stable(instruments[symbol].settle))
        except ValueError as exc:
            raise _config(where, f"contiguous ascending tiers ({exc})") from None
    return tables


def _given(entry: dict[str, Any], key: str, other_key: str) -> Any:
    """The entry's `key`, else its `other_key` (a tier's short name, else ccxt's)."""
    value = entry.get(key)
    return entry.get(other_key) if value is None or value == "" else value


def _pm_settings(doc: dict[str, Any]) -> tuple[bool, dict[str, PortfolioMarginParams]]:
    section = doc.get("portfolio_margin", {})
    if not isinstance(section, dict):
        raise _config("portfolio_margin", "a JSON object {include_spot, params}", section)
    include_spot = section.get("include_spot", True)
    if not isinstance(include_spot, bool):
        raise _config("portfolio_margin.include_spot", "true or false", include_spot)
    raw_params = section.get("params", {})
    if not isinstance(raw_params, dict):
        raise _config("portfolio_margin.params", "a JSON object {ASSET: {field: value}}", raw_params)
    fields = {f.name: f for f in dataclasses.fields(PortfolioMarginParams)}
    params: dict[str, PortfolioMarginParams] = {}
    for asset, overrides in raw_params.items():
        where = f"portfolio_margin.params.{asset}"
        if not isinstance(overrides, dict):
            raise _config(where, "a JSON object of PortfolioMarginParams fields", overrides)
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in fields or name == "include_spot":
                names = ", ".join(n for n in fields if n != "include_spot")
                raise _config(f"{where}.{name}", f"one of {names}")
            try:
                if name == "extended_moves":
                    values[name] = tuple(float(v) for v in value)
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    raise TypeError
                else:
                    values[name] = float(value)
            except (TypeError, ValueError):
                expected = "a number (extended_moves: a list of numbers)"
                raise _config(f"{where}.{name}", expected, value) from None
        params[str(asset).upper()] = PortfolioMarginParams(**values)
    return include_spot, params


def implied_vol(
    price_usd: float, forward_usd: float, strike_usd: float, years: float, is_call: bool
) -> float | None:
    """The Black-76 volatility that prices the option at `price_usd`, by bisection; None when no
    volatility in (0, 10] does (a price at or below intrinsic value, or above the forward)."""
    if years <= 0 or price_usd <= 0:
        return None
    low, high = 1e-6, 10.0
    if not black76_price_usd(forward_usd, strike_usd, years, low, is_call) < price_usd \
            <= black76_price_usd(forward_usd, strike_usd, years, high, is_call):
        return None
    for _ in range(100):
        mid = (low + high) / 2
        if black76_price_usd(forward_usd, strike_usd, years, mid, is_call) < price_usd:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def _legs(portfolio: Portfolio, as_of: datetime | None) -> list[Leg]:
    legs = []
    for i, position in enumerate(portfolio.positions):
        instrument = portfolio.instruments[position.symbol]
        if position.contracts == 0:
            continue
        price = portfolio.prices[instrument.base]
        years = None
        if instrument.kind in (Kind.FUTURE, Kind.OPTION) and instrument.expiry is not None:
            if as_of is None:
                expected = f"the portfolio's time in ms, for the expiry of {instrument.symbol}"
                raise _config("timestamp", expected)
            years = years_to_expiry(instrument.expiry, as_of)
        vol = None
        if instrument.is_option:
            vol = position.mark_iv
            if vol is None and years is not None and instrument.strike is not None:
                mark_usd = position.mark_price * (price if instrument.coin_settled else 1)
                vol = implied_vol(float(mark_usd), float(price), float(instrument.strike), years,
                                  instrument.is_call)
            if vol is None:
                raise _config(f"positions[{i}].greeks.markImpliedVolatility",
                              "a mark IV, or a mark price above intrinsic value, to revalue the option")
        legs.append(Leg(i, instrument, position, price, years, vol))
    return legs


# Standard cross margin


def _table(leg: Leg, tables: dict[str, TierTable]) -> TierTable:
    return tables.get(leg.symbol, DEFAULT_TABLE)


def _option_value(leg: Leg, price: float) -> float:
    """The option's price per coin of underlying in its settle currency at underlying `price`."""
    assert leg.instrument.strike is not None and leg.vol is not None and leg.years is not None
    usd = black76_price_usd(price, float(leg.instrument.strike), leg.years, leg.vol, leg.instrument.is_call)
    return usd / price if leg.instrument.coin_settled else usd


def _option_margin(leg: Leg, price: Decimal, mark: Decimal) -> tuple[Decimal, Decimal]:
    """Deribit's standard IM and MM of a short option position (zero for a long one), in its settle
    currency, at underlying `price`; `mark` per coin of underlying in that currency."""
    return leg_requirements(leg.instrument, leg.position.contracts, mark, price, OPTION_RULES)


def _standard_margin(leg: Leg, tables: dict[str, TierTable]) -> tuple[Decimal, Decimal, Decimal, str]:
    """(IM, MM, leverage, leverage source) of a leg, in its settle currency."""
    leverage, source = leg.position.leverage, "exchange"
    if leverage is None:
        leverage, source = DEFAULT_LEVERAGE, "default"
    if leg.is_option:
        im, mm = _option_margin(leg, leg.price_usd, leg.position.mark_price)
        return im, mm, leverage, source
    mark = leg.position.mark_price
    table = _table(leg, tables)
    if leg.instrument.inverse:
        face_usd = abs(leg.position.contracts) * leg.instrument.contract_size
        notional_coin = face_usd / mark
        mm = table.mm(face_usd) / mark if table.usd else table.mm(notional_coin)
        return notional_coin / leverage, mm, leverage, source
    notional_usd = abs(leg.size_coin) * mark
    return notional_usd / leverage, table.mm(notional_usd), leverage, source


def _leg_mm_at(leg: Leg, tables: dict[str, TierTable], price: float) -> float:
    """The leg's maintenance margin (settle currency) if its price (an option's underlying) were `price`."""
    if leg.is_option:
        value = _option_value(leg, price)
        return float(_option_margin(leg, _d(price), _d(value))[1])
    table = _table(leg, tables)
    if leg.instrument.inverse:
        face_usd = float(abs(leg.position.contracts) * leg.instrument.contract_size)
        return table.mm_float(face_usd) / price if table.usd else table.mm_float(face_usd / price)
    return table.mm_float(abs(float(leg.size_coin)) * price)


def _leg_pnl_at(leg: Leg, price: float) -> float:
    """The leg's PnL from entry, in its settle currency, at `price`; an option's value change is left
    to its maintenance margin (which holds its mark), so it has none."""
    if leg.is_option:
        return 0.0
    entry = float(leg.entry)
    if leg.instrument.inverse:
        face = float(leg.position.contracts * leg.instrument.contract_size)
        return face * (1 / entry - 1 / price)
    return float(leg.size_coin) * (price - entry)


def liquidation_move(excess: Callable[[float], float]) -> float | None:
    """The move nearest to zero, within -100% (exclusive) and +1000%, at which `excess(move)` (the
    leg's equity less its maintenance margin) turns negative: 0 if it already is, None if it never
    does. Scans in steps of 1% either way, then bisects the first breach."""
    if excess(0.0) < 0:
        return 0.0
    found: list[float] = []
    for sign, limit in ((1.0, MOVE_UP_LIMIT), (-1.0, MOVE_DOWN_LIMIT)):
        safe = 0.0
        while safe < limit:
            trial = min(safe + SCAN_STEP, limit)
            if excess(sign * trial) < 0:
                for _ in range(60):
                    mid = (safe + trial) / 2
                    safe, trial = (safe, mid) if excess(sign * mid) < 0 else (mid, trial)
                found.append(sign * trial)
                break
            safe = trial
    return min(found, key=abs) if found else None


# Portfolio margin


def _risk_position(leg: Leg) -> RiskPosition | None:
    """The leg in the portfolio-margin estimator, or None where it has no place there."""
    instrument = leg.instrument
    if leg.is_option:
        if not instrument.coin_settled:
            return None
        assert leg.vol is not None
        return RiskPosition(PositionKind.OPTION, leg.size_coin, leg.years, instrument.strike,
                            instrument.is_call, leg.vol)
    if instrument.inverse:
        if not instrument.coin_settled:
            return None
        return RiskPosition(PositionKind.INVERSE, leg.size_coin, leg.years)
    if is_stable(instrument.settle):
        return RiskPosition(PositionKind.LINEAR, leg.size_coin, leg.years)
    return None


def margin_report(doc: object) -> dict[str, Any]:
    """The margin report of a portfolio file (module notes). Raises ConfigError on bad input."""
    from deltakeeper.adapters.ccxt_parse import portfolio_from_json, portfolio_time

    portfolio = portfolio_from_json(doc)
    assert isinstance(doc, dict)
    as_of = portfolio_time(doc)
    tables = _tier_tables(doc, portfolio.instruments)
    include_spot, params_by_asset = _pm_settings(doc)
    legs = _legs(portfolio, as_of)
    notes: list[str] = []

    def price_of(coin: str) -> Decimal:
        return Decimal(1) if is_stable(coin) else portfolio.prices[coin]

    # Standard cross margin, and each settlement currency's margin balance (wallet + futures PnL).
    standard: dict[str, dict[str, Decimal]] = {}
    margin_balance: dict[str, Decimal] = {}
    option_value: dict[str, Decimal] = {}
    leg_margin: dict[int, tuple[Decimal, Decimal, Decimal, str]] = {}
    for leg in legs:
        im, mm, _, source = leg_margin[leg.index] = _standard_margin(leg, tables)
        total = standard.setdefault(leg.settle, {"initial": ZERO, "maintenance": ZERO})
        total["initial"] += im
        total["maintenance"] += mm
        margin_balance.setdefault(leg.settle, portfolio.balances.get(leg.settle, ZERO))
        if leg.is_option:
            value = leg.size_coin * leg.position.mark_price
            option_value[leg.settle] = option_value.get(leg.settle, ZERO) + value
        else:
            margin_balance[leg.settle] += unrealized_pnl(leg.instrument, leg.position)
        if not leg.is_option and leg.symbol not in tables:
            notes.append(f"{leg.symbol}: maintenance margin from the default tier table (REFERENCE 3.1, "
                         "Binance BTCUSDT 2021-03-18); give leverage_tiers for the exchange's own")
        if source == "default" and not leg.is_option:
            notes.append(f"{leg.symbol}: no leverage in the file, initial margin at {DEFAULT_LEVERAGE}x")

    # Portfolio margin, one grid per (underlying, settlement currency).
    groups: dict[tuple[str, str], list[RiskPosition]] = {}
    for leg in legs:
        risk = _risk_position(leg)
        if risk is None:
            notes.append(f"{leg.symbol}: the portfolio-margin estimator revalues coin-settled inverse "
                         "contracts and options and stablecoin-settled linear ones, not this leg (settled in "
                         f"{leg.settle}): left out of it, so the capital freed is overstated")
            continue
        groups.setdefault((leg.instrument.base, leg.settle), []).append(risk)
    spot_value: dict[str, Decimal] = {}
    spot_coin: dict[tuple[str, str], Decimal] = {}
    if include_spot:
        for asset in sorted({base for base, _ in groups}):
            settles = sorted(settle for base, settle in groups if base == asset and is_stable(settle))
            amount = portfolio.balances.get(asset, ZERO)
            if settles and amount:
                groups[(asset, settles[0])].append(RiskPosition(PositionKind.SPOT, amount))
                spot_coin[(asset, settles[0])] = amount
                spot_value[settles[0]] = spot_value.get(settles[0], ZERO) + amount * portfolio.prices[asset]
    results = {}
    for (asset, settle), risk_positions in sorted(groups.items()):
        params = dataclasses.replace(params_by_asset.get(asset, PortfolioMarginParams()),
                                     include_spot=include_spot)
        results[(asset, settle)] = (params, risk_positions,
                                    portfolio_margin(risk_positions, portfolio.prices[asset], params))
    pm_totals: dict[str, dict[str, Decimal]] = {}
    for (_, settle), (_, _, pm) in results.items():
        total = pm_totals.setdefault(settle, {"initial": ZERO, "maintenance": ZERO})
        total["initial"] += pm.initial_margin
        total["maintenance"] += pm.maintenance_margin
    pm_equity = {
        settle: margin_balance.get(settle, portfolio.balances.get(settle, ZERO))
        + option_value.get(settle, ZERO) + spot_value.get(settle, ZERO)
        for settle in pm_totals
    }
    pm_groups = []
    for (asset, settle), (params, risk_positions, pm) in results.items():
        others = pm_totals[settle]["maintenance"] - pm.maintenance_margin
        equity = pm_equity[settle] - others
        to_call = {
            "up": move_to_margin_call(risk_positions, portfolio.prices[asset], equity, params, upward=True,
                                      max_move=MOVE_UP_LIMIT),
            "down": move_to_margin_call(risk_positions, portfolio.prices[asset], equity, params, upward=False,
                                        max_move=MOVE_DOWN_LIMIT),
        }
        worst = min(pm.scenarios, key=lambda cell: cell.pnl)
        if worst.extended and pm.worst_loss > 0:
            notes.append(f"{asset}/{settle} grid: the worst loss is the options' at the extended move "
                         f"{worst.move:+.0%} with the full loss (extended_table_factor "
                         f"{params.extended_table_factor:g}; Deribit's fraction and dampener are not "
                         "published), so the portfolio margin may overstate")
        pm_groups.append({
            "asset": asset, "settle": settle, "index_price": portfolio.prices[asset],
            "spot_coin": spot_coin.get((asset, settle), ZERO),
            "worst_scenario": {"move": worst.move, "vol_shock": worst.vol_shock, "extended": worst.extended},
            "worst_loss": pm.worst_loss, "roll_shock": pm.roll_shock,
            "risk_matrix_margin": pm.risk_matrix_margin, "initial": pm.initial_margin,
            "maintenance": pm.maintenance_margin, "equity": equity, "move_to_margin_call": to_call,
        })

    positions = [
        _position_row(leg, legs, leg_margin, margin_balance, tables) for leg in legs
    ]

    settles = sorted(set(standard) | set(pm_totals))
    freed = {
        s: standard.get(s, {}).get("initial", ZERO) - pm_totals.get(s, {}).get("initial", ZERO)
        for s in settles
    }
    return _rounded({
        "as_of": as_of,
        "portfolio_margin": {s: pm_totals[s] for s in sorted(pm_totals)},
        "standard_margin": {s: standard[s] for s in sorted(standard)},
        "capital_freed": freed,
        "capital_freed_usd": sum((amount * price_of(s) for s, amount in freed.items()), ZERO),
        "equity": {
            "portfolio_margin": {s: pm_equity[s] for s in sorted(pm_equity)},
            "standard_margin": {s: margin_balance[s] for s in sorted(margin_balance)},
        },
        "headroom": {
            "portfolio_margin": {s: _ratio(margin_headroom(pm_equity[s], pm_totals[s]["maintenance"]))
                                 for s in sorted(pm_totals)},
            "standard_margin": {s: _ratio(margin_headroom(margin_balance[s], standard[s]["maintenance"]))
                                for s in sorted(standard)},
        },
        "portfolio_margin_groups": pm_groups,
        "positions": positions,
        "notes": list(dict.fromkeys(notes)),
    })


def _rounded(value: Any) -> Any:
    """Decimals to at most 12 decimal places (a division leaves 28 digits), through dicts and lists."""
    if isinstance(value, Decimal) and value.is_finite():
        rounded = value.quantize(ROUNDING, context=Context(prec=80))
        return value if rounded == value else rounded
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value


def _ratio(x: Decimal) -> float | None:
    return None if not x.is_finite() else float(x)


def _position_row(
    leg: Leg, legs: list[Leg], leg_margin: dict[int, tuple[Decimal, Decimal, Decimal, str]],
    margin_balance: dict[str, Decimal], tables: dict[str, TierTable],
) -> dict[str, Any]:
    im, mm, leverage, leverage_source = leg_margin[leg.index]
    position = leg.position
    mode = position.margin_mode or "cross"
    pnl_now = _leg_pnl_at(leg, float(leg.move_base))
    if mode == "isolated" and position.collateral is not None:
        equity, basis = position.collateral, "exchange"
    elif mode == "isolated":
        if leg.is_option:
            posted = im
        elif leg.instrument.inverse:
            posted = abs(leg.position.contracts) * leg.instrument.contract_size / leg.entry / leverage
        else:
            posted = abs(leg.size_coin) * leg.entry / leverage
        equity, basis = posted + _d(pnl_now), f"isolated at {leverage}x"
    else:
        others = sum((leg_margin[o.index][1] for o in legs if o.settle == leg.settle and o is not leg), ZERO)
        equity = margin_balance[leg.settle] - others
        basis = f"cross: the {leg.settle} margin balance less the other legs' maintenance margin"

    base = float(leg.move_base)
    long_option = leg.is_option and leg.size_coin > 0

    def excess(move: float) -> float:
        price = base * (1 + move)
        return float(equity) + _leg_pnl_at(leg, price) - pnl_now - _leg_mm_at(leg, tables, price)

    move = None if long_option else liquidation_move(excess)
    estimate = {
        "initial_margin": im, "maintenance_margin": mm, "leverage": leverage,
        "leverage_source": leverage_source, "margin_mode": mode, "collateral": equity,
        "collateral_basis": basis, "margin_headroom": _ratio(margin_headroom(equity, mm)),
        "liquidation_price": None if move is None else _price(base * (1 + move)),
        "liquidation_move": move,
    }
    exchange: dict[str, Any] = {}
    if position.liquidation_price is not None:
        exchange["liquidation_price"] = position.liquidation_price
        exchange["liquidation_move"] = float(position.liquidation_price / leg.move_base - 1)
    for name, value in (("initial_margin", position.initial_margin),
                        ("maintenance_margin", position.maintenance_margin),
                        ("collateral", position.collateral), ("leverage", position.leverage),
                        ("margin_mode", position.margin_mode)):
        if value is not None:
            exchange[name] = value
    disagreements = [
        name for name in ("liquidation_price", "initial_margin", "maintenance_margin")
        if _disagree(exchange.get(name), estimate[name])
    ]
    primary = exchange if "liquidation_price" in exchange else estimate
    return {
        "symbol": leg.symbol,
        "kind": "option" if leg.is_option else ("inverse" if leg.instrument.inverse else "linear"),
        "settle": leg.settle,
        "contracts": leg.position.contracts,
        "size_coin": leg.size_coin,
        "mark_price": leg.position.mark_price,
        "liquidation_price": primary["liquidation_price"],
        "liquidation_move": primary["liquidation_move"],
        "liquidation_source": ("exchange" if primary is exchange
                               else "estimate" if estimate["liquidation_price"] is not None else None),
        "estimate": estimate,
        "exchange": exchange,
        "disagreements": disagreements,
    }


def _disagree(theirs: object, ours: object) -> bool:
    if not isinstance(theirs, Decimal) or not isinstance(ours, Decimal):
        return False
    scale = max(abs(theirs), abs(ours))
    return scale > 0 and abs(theirs - ours) > DISAGREE_REL * scale


# The command

SETTLE_COLUMNS = ["settle", "pm_initial", "pm_maintenance", "standard_initial", "standard_maintenance",
                  "capital_freed", "pm_headroom", "standard_headroom"]
POSITION_COLUMNS = ["symbol", "size_coin", "liquidation_price", "liquidation_move",
                    "source", "estimate_liquidation_price", "exchange_liquidation_price", "estimate_im",
                    "exchange_im", "estimate_mm", "exchange_mm", "disagree"]
GROUP_COLUMNS = ["asset", "settle", "worst_loss", "roll_shock", "initial", "maintenance", "equity",
                 "to_margin_call_up", "to_margin_call_down"]


def margin(
    portfolio: Annotated[Path | None, typer.Option("--portfolio", help="JSON file of a portfolio")] = None,
    fmt: Annotated[MarginFormat, typer.Option("--format")] = MarginFormat.table,
) -> None:
    """Margin under portfolio and standard cross margin, the capital portfolio margin frees, and each
    leg's distance to liquidation: of a portfolio file, else of the live account the DK_ settings
    configure (DK_EXCHANGE, DK_EXCHANGE_URL, the keys)."""
    from deltakeeper.output import plain, print_table, to_json

    doc = live_portfolio() if portfolio is None else read_json_file(portfolio, "--portfolio")
    report = margin_report(doc)
    if fmt is MarginFormat.json:
        print(to_json(report))
        return
    data = plain(report)
    rows = []
    for settle in sorted(set(data["portfolio_margin"]) | set(data["standard_margin"])):
        pm = data["portfolio_margin"].get(settle, {})
        sm = data["standard_margin"].get(settle, {})
        rows.append({
            "settle": settle, "pm_initial": pm.get("initial"), "pm_maintenance": pm.get("maintenance"),
            "standard_initial": sm.get("initial"), "standard_maintenance": sm.get("maintenance"),
            "capital_freed": data["capital_freed"].get(settle),
            "pm_headroom": _pct(data["headroom"]["portfolio_margin"].get(settle)),
            "standard_headroom": _pct(data["headroom"]["standard_margin"].get(settle)),
        })
    print(f"as of: {data['as_of'] or 'not given'}; capital freed by portfolio margin: "
          f"{data['capital_freed_usd']} USD")
    print_table(rows, SETTLE_COLUMNS, title="margin by settlement currency")
    print_table([{
        **g, "to_margin_call_up": _pct(g["move_to_margin_call"]["up"]),
        "to_margin_call_down": _pct(g["move_to_margin_call"]["down"]),
    } for g in data["portfolio_margin_groups"]], GROUP_COLUMNS, title="portfolio margin grids")
    print_table([{
        **p, "liquidation_move": _pct(p["liquidation_move"]), "source": p["liquidation_source"],
        "estimate_liquidation_price": p["estimate"]["liquidation_price"],
        "exchange_liquidation_price": p["exchange"].get("liquidation_price"),
        "estimate_im": p["estimate"]["initial_margin"], "exchange_im": p["exchange"].get("initial_margin"),
        "estimate_mm": p["estimate"]["maintenance_margin"],
        "exchange_mm": p["exchange"].get("maintenance_margin"),
        "disagree": ", ".join(p["disagreements"]),
    } for p in data["positions"]], POSITION_COLUMNS, title="positions (liquidation: the leg alone)")
    for note in data["notes"]:
        print(f"note: {note}")


def live_portfolio() -> dict[str, Any]:
    """The live account as a portfolio file, read through the exchange adapter `deltakeeper run` builds
    from the settings. ConfigError for the simulated exchange (its account lives inside `deltakeeper run`);
    ExchangeUnavailable naming the exchange when it cannot be reached."""
    from deltakeeper.config import Mode, load_settings, secret_values
    from deltakeeper.logging import configure_logging

    settings = load_settings()
    if settings.mode is Mode.PAPER:
        raise ConfigError("DK_MODE", "live or shadow, or --portfolio: the paper account lives inside "
                          "`deltakeeper run`", "paper")
    if settings.exchange == "sim":
        raise ConfigError("DK_EXCHANGE", "a ccxt exchange id, or --portfolio: the simulated exchange's "
                          "account lives inside `deltakeeper run`", "sim")
    configure_logging(settings.log_level, settings.log_format, secret_values(settings))
    return asyncio.run(_read_account(settings))


async def _read_account(settings: Settings) -> dict[str, Any]:
    from deltakeeper.adapters.ccxt_exchange import CcxtExchange
    from deltakeeper.bootstrap import build_exchange, price_symbol

    exchange, _ = build_exchange(settings)
    assert isinstance(exchange, CcxtExchange)
    try:
        return await exchange.portfolio_document(price_symbol)
    except ExchangeUnavailable as exc:
        where = f" at {settings.exchange_url}" if settings.exchange_url else ""
        raise ExchangeUnavailable(f"cannot reach {settings.exchange}{where}: {exc}") from exc
    finally:
        await exchange.close()


def _pct(x: float | None) -> str:
    """A relative move or ratio for a table; `none` where there is none (no move within the range)."""
    return "none" if x is None else f"{x:+.2%}"


__all__ = ["DEFAULT_TIERS_USD", "MarginFormat", "implied_vol", "liquidation_move", "live_portfolio", "margin",
           "margin_report"]
