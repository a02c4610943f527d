"""Scenario-based portfolio margin, Deribit-style (REFERENCE 3.2): the risk matrix of a settlement
currency's portfolio, the margin it derives, and how far the index can move before a margin call.

Positions are revalued in floats (options with Black-76); the figures come back as `Decimal`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum

from deltakeeper.domain.greeks import black76_price_usd
from deltakeeper.domain.margin_headroom import first_breach

ZERO = Decimal(0)
DAYS_PER_YEAR = 365.0
VEGA_REFERENCE_DAYS = 30.0
"""Vol shocks scale with (30 / days to expiry)^p, and p switches from short to long term at 30 days."""
MARGIN_CALL_TOLERANCE = 1e-6


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))


class PositionKind(StrEnum):
    SPOT = "spot"
    LINEAR = "linear"
    INVERSE = "inverse"
    OPTION = "option"


@dataclass(frozen=True, slots=True)
class RiskPosition:
    """A position of a portfolio-margined account, on one underlying.

    `size_coin` is signed coins (+ long): a spot amount, linear contracts x contract size, an inverse
    contract's USD face / its mark, option contracts x coins per contract. `years_to_expiry` is None
    for spot and perpetuals. Options are coin-settled (Deribit) and priced with Black-76 on the index
    at `vol` (r = 0; the basis between index and forward is ignored).
    """

    kind: PositionKind
    size_coin: Decimal
    years_to_expiry: float | None = None
    strike_usd: Decimal | None = None
    is_call: bool = True
    vol: float = 0.0

    def __post_init__(self) -> None:
        if self.kind is PositionKind.OPTION:
            self.strike_and_years()

    def strike_and_years(self) -> tuple[float, float]:
        """An option's strike in USD and years to expiry, as floats."""
        if self.strike_usd is None or self.years_to_expiry is None:
            raise ValueError("an option position needs a strike and an expiry")
        return float(self.strike_usd), self.years_to_expiry

    @property
    def settles_in_coin(self) -> bool:
        return self.kind in (PositionKind.INVERSE, PositionKind.OPTION)


@dataclass(frozen=True, slots=True)
class PortfolioMarginParams:
    """Per-asset scenario parameters; the defaults are Deribit's published BTC values.

    `extended_moves` are large moves applied to options only, at the volatility-up shock, with their
    PnL multiplied by `extended_table_factor`. Deribit also applies a fraction and a dampener whose
    exact form it does not publish: the default factor 1.0 takes the full loss, which can only
    overstate the margin.
    """

    price_range: float = 0.16
    min_annualised_move: float = 0.01
    annualised_move_risk: float = 0.075
    volatility_range_up: float = 0.50
    volatility_range_down: float = 0.25
    min_volatility_for_shock_up: float = 0.50
    vega_power_short: float = 0.30
    vega_power_long: float = 0.13
    extended_moves: tuple[float, ...] = (-0.66, -0.33, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)
    extended_table_factor: float = 1.0
    mm_factor: float = 0.8
    include_spot: bool = False


class VolShock(StrEnum):
    SAME = "same"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Scenario:
    """One cell of the risk matrix: the portfolio's PnL in its settlement currency if the index moves
    by `move` and option vols take `vol_shock`. Extended cells hold the options' PnL only."""

    move: float
    vol_shock: VolShock
    pnl: Decimal
    extended: bool = False


@dataclass(frozen=True, slots=True)
class PortfolioMargin:
    """Margin of one settlement currency's portfolio, in that currency: coin for inverse futures and
    coin-settled options, USD for linear contracts and spot."""

    scenarios: tuple[Scenario, ...]
    worst_loss: Decimal
    roll_shock: Decimal
    risk_matrix_margin: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal


def price_moves(price_range: float) -> list[float]:
    """The 9 moves `m_k = -R + k R / 4`, k = 0..8."""
    return [-price_range + k * price_range / 4 for k in range(9)]


def shocked_vols(vol: float, years_to_expiry: float, params: PortfolioMarginParams) -> dict[VolShock, float]:
    """Up: `max(vol (1 + up (30/DTE)^p), min_up)`; down: `max(vol (1 - down (30/DTE)^p), 0)`, with p the
    short-term vega power below 30 days to expiry and the long-term one from 30 days."""
    days = years_to_expiry * DAYS_PER_YEAR
    if days <= 0:
        return dict.fromkeys(VolShock, vol)
    power = params.vega_power_short if days < VEGA_REFERENCE_DAYS else params.vega_power_long
    scale = (VEGA_REFERENCE_DAYS / days) ** power
    return {
        VolShock.SAME: vol,
        VolShock.UP: max(vol * (1 + params.volatility_range_up * scale), params.min_volatility_for_shock_up),
        VolShock.DOWN: max(vol * (1 - params.volatility_range_down * scale), 0.0),
    }


def _pnl(
    position: RiskPosition, index_usd: float, move: float, shock: VolShock, params: PortfolioMarginParams
) -> float:
    """PnL of one position in its settlement currency if the index moves by `move`."""
    size = float(position.size_coin)
    if position.kind is PositionKind.INVERSE:
        return size * move / (1 + move)
    if position.kind is PositionKind.OPTION:
        strike, years = position.strike_and_years()
        moved = index_usd * (1 + move)
        vol = shocked_vols(position.vol, years, params)[shock]
        after = black76_price_usd(moved, strike, years, vol, position.is_call) / moved
        before = black76_price_usd(index_usd, strike, years, position.vol, position.is_call) / index_usd
        return size * (after - before)
    return size * index_usd * move


def _in_grid(positions: Sequence[RiskPosition], params: PortfolioMarginParams) -> list[RiskPosition]:
    held = [p for p in positions if params.include_spot or p.kind is not PositionKind.SPOT]
    if len({p.settles_in_coin for p in held}) > 1:
        raise ValueError("positions settle in both coin and USD: margin each settlement currency apart")
    return held


def portfolio_margin(
    positions: Sequence[RiskPosition],
    index_usd: Decimal,
    params: PortfolioMarginParams,
    mmp_addon: Decimal = ZERO,
    open_orders_addon: Decimal = ZERO,
) -> PortfolioMargin:
    """Revalue the portfolio on the grid and derive its margin, in its settlement currency.

    Cells: 9 moves x 3 vol shocks (futures ignore the shock), plus the extended moves for options.
    Inverse futures earn `q m / (1+m)` coin, linear ones and spot (if `include_spot`) `q S m` USD,
    options are revalued with Black-76 in coin. `worst = max(0, -min(cell PnL))`. The roll shock sums
    futures and perpetuals only: `|q| max(min_annualised_move, exp(amr tau) - 1)` (a perpetual takes
    the minimum), in coins, times the index for USD-settled ones. `risk_matrix_margin = worst + roll`,
    `IM = risk_matrix_margin + mmp + open orders`, `MM = mm_factor x risk_matrix_margin`.
    """
    held = _in_grid(positions, params)
    index = float(index_usd)

    def total(group: list[RiskPosition], move: float, shock: VolShock) -> float:
        return math.fsum(_pnl(p, index, move, shock, params) for p in group)

    cells = [
        Scenario(move, shock, _dec(total(held, move, shock)))
        for move in price_moves(params.price_range)
        for shock in VolShock
    ]
    options = [p for p in held if p.kind is PositionKind.OPTION]
    if options:
        factor = params.extended_table_factor
        cells += [
            Scenario(move, VolShock.UP, _dec(factor * total(options, move, VolShock.UP)), extended=True)
            for move in params.extended_moves
        ]
    roll = 0.0
    for p in held:
        if p.kind in (PositionKind.LINEAR, PositionKind.INVERSE):
            tau = p.years_to_expiry
            roll_move = params.min_annualised_move
            if tau is not None:
                roll_move = max(roll_move, math.expm1(params.annualised_move_risk * tau))
            roll += abs(float(p.size_coin)) * roll_move * (1.0 if p.settles_in_coin else index)
    worst = max(ZERO, -min(cell.pnl for cell in cells))
    rmm = worst + _dec(roll)
    return PortfolioMargin(
        scenarios=tuple(cells),
        worst_loss=worst,
        roll_shock=_dec(roll),
        risk_matrix_margin=rmm,
        initial_margin=rmm + mmp_addon + open_orders_addon,
        maintenance_margin=rmm * _dec(params.mm_factor),
    )


def move_to_margin_call(
    positions: Sequence[RiskPosition],
    index_usd: Decimal,
    equity: Decimal,
    params: PortfolioMarginParams,
    *,
    upward: bool,
    max_move: float = 0.95,
    step: float = 0.01,
) -> float | None:
    """How far the index can move one way before equity falls below maintenance margin.

    After a move m the equity (in the settlement currency) is `equity + PnL(m)` at unchanged vols,
    and the maintenance margin is recomputed on the portfolio re-centred on the moved index (an
    inverse position's coin size is face / price, so it becomes `q / (1+m)`). Scans in steps of
    `step` up to `max_move`, then bisects the first breach to 1e-6. Returns the signed move (0 if
    already below), or None if equity stays above the margin up to `max_move`.
    """
    held = _in_grid(positions, params)
    index = float(index_usd)

    def breached(move: float) -> bool:
        after = [
            replace(p, size_coin=p.size_coin / _dec(1 + move)) if p.kind is PositionKind.INVERSE else p
            for p in held
        ]
        pnl = math.fsum(_pnl(p, index, move, VolShock.SAME, params) for p in held)
        margin = portfolio_margin(after, index_usd * _dec(1 + move), params).maintenance_margin
        return equity + _dec(pnl) < margin

    if breached(0.0):
        return 0.0
    return first_breach(breached, 1.0 if upward else -1.0, max_move, step, MARGIN_CALL_TOLERANCE)
