"""The legs of `deltakeeper margin`'s report (`domain.margin_report`): each derivative position with what the
margin maths needs of it, its standard cross margin, and its distance to liquidation beside the exchange's
own figures.

Standard cross margin, per derivative leg, in its settlement currency:
- linear: MM from the tier table on the USD notional; inverse: on the coin notional with the file's tiers
  (ccxt's inverse tiers count coins), or on the USD face with the default table, then / price;
- IM = the notional at the mark / the position's leverage (ccxt `leverage`, else 10x);
- options, Deribit's standard formulas (`domain.margin.leg_requirements`).

Liquidation: where the leg's equity (its collateral plus its PnL from the mark) falls to its maintenance
margin, and the relative move of its price (the underlying's for an option) that reaches it. A future's is
`domain.margin.liquidation_price`, the loop's one estimate (the tier bracket solved exactly; an inverse
contract's in the reciprocal price, its table on the USD face or on the coin notional). A short option's
is a different solve, not a second formula for the same quantity: its maintenance margin holds its own
Black-76 value at the moved underlying (`0.075 + value`), which no bracket makes linear in the price, so
`liquidation_move` scans for it, within -100%..+1000% (the loop estimates none for an option). A long
option is paid for and has none. The move is `domain.margin.move_to_liquidation`'s, as the loop's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.exposure import Position, unrealized_pnl, years_to_expiry
from deltakeeper.domain.greeks import black76_price_usd
from deltakeeper.domain.instruments import ZERO, Instrument, Kind, is_stable
from deltakeeper.domain.margin import (
    DEFAULT_LEVERAGE,
    MarginRules,
    leg_requirements,
    liquidation_price,
    move_to_liquidation,
)
from deltakeeper.domain.margin_headroom import first_breach, margin_headroom
from deltakeeper.domain.margin_tiers import (
    DEFAULT_TIERS_USD,
    MarginTier,
    maintenance_margin_usd,
)
from deltakeeper.domain.portfolio_margin import PositionKind, RiskPosition

MOVE_UP_LIMIT = 10.0
MOVE_DOWN_LIMIT = 0.9999
SCAN_STEP = 0.01
DISAGREE_REL = Decimal("0.05")
OPTION_RULES = MarginRules()
"""Options take Deribit's standard margin (`domain.margin.leg_requirements`), whatever the tables."""
TierTables = Mapping[str, tuple[MarginTier, ...]]
"""Per symbol, its maintenance margin table: on the USD notional for a stablecoin-settled contract, else
on the coin notional. Other symbols take the default table, on the USD notional."""


def _d(x: float) -> Decimal:
    return Decimal(repr(x))


def _price(x: float | Decimal) -> Decimal:
    """A computed price, to 10 significant digits."""
    return Decimal(f"{x:.10g}")


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


def legs_of(
    instruments: Mapping[str, Instrument],
    positions: Sequence[Position],
    prices: Mapping[str, Decimal],
    as_of: datetime | None,
) -> list[Leg]:
    """The derivative positions held, as legs (`index`: the position's place in `positions`). ConfigError
    where a dated one has no `as_of`, or an option neither a mark IV nor a price that implies one."""
    legs = []
    for i, position in enumerate(positions):
        instrument = instruments[position.symbol]
        if position.contracts == 0:
            continue
        price = prices[instrument.base]
        years = None
        if instrument.kind in (Kind.FUTURE, Kind.OPTION) and instrument.expiry is not None:
            if as_of is None:
                expected = f"the portfolio's time in ms, for the expiry of {instrument.symbol}"
                raise ConfigError("timestamp", expected)
            years = years_to_expiry(instrument.expiry, as_of)
        vol = None
        if instrument.is_option:
            vol = position.mark_iv
            if vol is None and years is not None and instrument.strike is not None:
                mark_usd = position.mark_price * (price if instrument.coin_settled else 1)
                vol = implied_vol(float(mark_usd), float(price), float(instrument.strike), years,
                                  instrument.is_call)
            if vol is None:
                raise ConfigError(f"positions[{i}].greeks.markImpliedVolatility",
                                  "a mark IV, or a mark price above intrinsic value, to revalue the option")
        legs.append(Leg(i, instrument, position, price, years, vol))
    return legs


def _table(leg: Leg, tables: TierTables) -> tuple[tuple[MarginTier, ...], bool]:
    """The leg's tier table, and whether it is on the USD notional (else on the coin notional)."""
    tiers = tables.get(leg.symbol)
    if tiers is None:
        return DEFAULT_TIERS_USD, True
    return tiers, is_stable(leg.settle)


def _option_value(leg: Leg, price: float) -> float:
    """The option's price per coin of underlying in its settle currency at underlying `price`."""
    assert leg.instrument.strike is not None and leg.vol is not None and leg.years is not None
    usd = black76_price_usd(price, float(leg.instrument.strike), leg.years, leg.vol, leg.instrument.is_call)
    return usd / price if leg.instrument.coin_settled else usd


def standard_margin(leg: Leg, tables: TierTables) -> tuple[Decimal, Decimal, Decimal, str]:
    """(IM, MM, leverage, leverage source) of a leg, in its settle currency: `leg_requirements` on the
    leg's table, but an inverse contract's table given on the coin notional (ccxt's inverse tiers count
    coins) takes that notional."""
    leverage, source = leg.position.leverage, "exchange"
    if leverage is None:
        leverage, source = DEFAULT_LEVERAGE, "default"
    position, instrument = leg.position, leg.instrument
    tiers, usd = _table(leg, tables)
    rules = MarginRules(default_tiers=tiers, leverage=leverage)
    im, mm = leg_requirements(instrument, position.contracts, position.mark_price, leg.price_usd, rules)
    if instrument.inverse and not usd:
        notional_coin = abs(position.contracts) * instrument.contract_size / position.mark_price
        mm = maintenance_margin_usd(notional_coin, tiers)
    return im, mm, leverage, source


def _option_mm_at(leg: Leg, price: float) -> float:
    """A short option's maintenance margin (settle currency) if its underlying were at `price`."""
    value = _option_value(leg, price)
    _, mm = leg_requirements(leg.instrument, leg.position.contracts, _d(value), _d(price), OPTION_RULES)
    return float(mm)


def liquidation_move(excess: Callable[[float], float]) -> float | None:
    """The move nearest to zero, within -100% (exclusive) and +1000%, at which `excess(move)` (a short
    option's equity less its maintenance margin) turns negative: 0 if it already is, None if it never
    does. Scans in steps of 1% either way, then bisects the first breach (`first_breach`)."""
    if excess(0.0) < 0:
        return 0.0
    found = [
        move for sign, limit in ((1.0, MOVE_UP_LIMIT), (-1.0, MOVE_DOWN_LIMIT))
        if (move := first_breach(lambda m: excess(m) < 0, sign, limit, SCAN_STEP, 0.0))
        is not None
    ]
    return min(found, key=abs) if found else None


def risk_position(leg: Leg) -> RiskPosition | None:
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


def ratio(x: Decimal) -> float | None:
    return None if not x.is_finite() else float(x)


def position_row(
    leg: Leg, legs: list[Leg], leg_margin: dict[int, tuple[Decimal, Decimal, Decimal, str]],
    margin_balance: dict[str, Decimal], tables: TierTables,
) -> dict[str, Any]:
    """The report's row of a leg: its estimate (margin, collateral, liquidation) beside the exchange's
    figures, and the figures that disagree by more than `DISAGREE_REL`."""
    im, mm, leverage, leverage_source = leg_margin[leg.index]
    position, instrument = leg.position, leg.instrument
    mode = position.margin_mode or "cross"
    pnl_now = ZERO if leg.is_option else unrealized_pnl(instrument, position)
    if mode == "isolated" and position.collateral is not None:
        equity, basis = position.collateral, "exchange"
    elif mode == "isolated":
        if leg.is_option:
            posted = im
        elif instrument.inverse:
            posted = abs(position.contracts) * instrument.contract_size / leg.entry / leverage
        else:
            posted = abs(leg.size_coin) * leg.entry / leverage
        equity, basis = posted + pnl_now, f"isolated at {leverage}x"
    else:
        others = sum((leg_margin[o.index][1] for o in legs if o.settle == leg.settle and o is not leg), ZERO)
        equity = margin_balance[leg.settle] - others
        basis = f"cross: the {leg.settle} margin balance less the other legs' maintenance margin"

    base = leg.move_base
    if leg.is_option:
        move = None if leg.size_coin > 0 else liquidation_move(
            lambda m: float(equity) - _option_mm_at(leg, float(base) * (1 + m)))
        price = None if move is None else _price(float(base) * (1 + move))
    else:
        tiers, usd = _table(leg, tables)
        exact = liquidation_price(instrument, position, equity - pnl_now, tiers, tiers_on_coin=not usd)
        move = move_to_liquidation(exact, base, position.contracts)
        price = None if exact is None else _price(exact)
    estimate = {
        "initial_margin": im, "maintenance_margin": mm, "leverage": leverage,
        "leverage_source": leverage_source, "margin_mode": mode, "collateral": equity,
        "collateral_basis": basis, "margin_headroom": ratio(margin_headroom(equity, mm)),
        "liquidation_price": price,
        "liquidation_move": move,
    }
    exchange: dict[str, Any] = {}
    if position.liquidation_price is not None:
        exchange["liquidation_price"] = position.liquidation_price
        exchange["liquidation_move"] = move_to_liquidation(
            position.liquidation_price, base, None if leg.is_option else position.contracts)
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
