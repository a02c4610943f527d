"""Margin (REFERENCE 3): tiered maintenance margin and liquidation of linear perps, Deribit-style
scenario-based portfolio margin with the headroom it leaves, the standard cross margin of a live account
per settlement currency (`account_margin`: what the loop watches), and the coin equity that makes a
coin-margined account USD- or coin-neutral.

Tier maths is exact `Decimal`. The risk matrix revalues positions in floats (options with Black-76)
and returns `Decimal`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from itertools import pairwise

from deltakeeper.domain.exposure import AssetDelta, Position, option_delta, unrealized_pnl
from deltakeeper.domain.greeks import black76_price_usd
from deltakeeper.domain.instruments import Instrument

ZERO = Decimal(0)
DAYS_PER_YEAR = 365.0
VEGA_REFERENCE_DAYS = 30.0
"""Vol shocks scale with (30 / days to expiry)^p, and p switches from short to long term at 30 days."""


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))


# Standard tiers (linear perps), REFERENCE 3.1


@dataclass(frozen=True, slots=True)
class MarginTier:
    """One notional bracket `[floor_usd, cap_usd)` of an exchange's maintenance margin table."""

    floor_usd: Decimal
    cap_usd: Decimal
    mmr: Decimal


def cumulative_amounts_usd(tiers: Sequence[MarginTier]) -> list[Decimal]:
    """`cum_k = cum_{k-1} + floor_k (mmr_k - mmr_{k-1})`, `cum_0 = 0`: the amounts that make
    `notional x mmr - cum` continuous across brackets. Tiers must be ascending and contiguous."""
    cums = [ZERO]
    for prev, tier in pairwise(tiers):
        if tier.floor_usd != prev.cap_usd:
            raise ValueError(f"tier floor {tier.floor_usd} does not start at the previous cap {prev.cap_usd}")
        cums.append(cums[-1] + tier.floor_usd * (tier.mmr - prev.mmr))
    return cums


def maintenance_margin_usd(notional_usd: Decimal, tiers: Sequence[MarginTier]) -> Decimal:
    """`MM = notional x mmr_k - cum_k` in the bracket k that holds the (absolute) notional."""
    for tier, cum in zip(tiers, cumulative_amounts_usd(tiers), strict=True):
        if notional_usd < tier.cap_usd:
            return notional_usd * tier.mmr - cum
    raise ValueError(f"notional {notional_usd} USD is above the last tier's cap")


def liquidation_price_usd(
    size_coin: Decimal, entry_usd: Decimal, collateral_usd: Decimal, tiers: Sequence[MarginTier]
) -> Decimal | None:
    """The price S at which a linear position's equity falls to its maintenance margin.

    Equity is `collateral + q (S - entry)` and, in bracket k, `MM = |q| S mmr_k - cum_k`; both are
    linear in S, so solving `equity = MM` inside bracket k gives

        S_k = (q entry - collateral - cum_k) / (q - |q| mmr_k).

    `equity - MM` is strictly monotone in S (mmr < 1), so exactly one S_k has its notional `|q| S_k`
    inside its own bracket: that is the liquidation price. Isolated margin: `collateral_usd` is the
    margin posted to the position. Cross margin: the account equity available to it (wallet equity
    minus the other positions' maintenance margin). None for a flat position, a long whose collateral
    outlasts a price of zero, or a short whose notional runs past the table first.
    """
    if size_coin == 0:
        return None
    for tier, cum in zip(tiers, cumulative_amounts_usd(tiers), strict=True):
        price = (size_coin * entry_usd - collateral_usd - cum) / (size_coin - abs(size_coin) * tier.mmr)
        if price > 0 and tier.floor_usd <= abs(size_coin) * price < tier.cap_usd:
            return price
    return None


def liquidation_distance(
    size_coin: Decimal,
    entry_usd: Decimal,
    collateral_usd: Decimal,
    tiers: Sequence[MarginTier],
    mark_usd: Decimal,
) -> Decimal | None:
    """Relative move of the mark that reaches the liquidation price (+0.17: a 17% rally)."""
    price = liquidation_price_usd(size_coin, entry_usd, collateral_usd, tiers)
    return None if price is None else price / mark_usd - 1


# Scenario-based portfolio margin (Deribit-style), REFERENCE 3.2


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


def margin_headroom(equity: Decimal, maintenance_margin: Decimal) -> Decimal:
    """`(equity - MM) / equity`: 1 with nothing at risk, 0 at the margin call, negative past it
    (-Infinity with no equity at all)."""
    if equity <= 0:
        return Decimal("-Infinity")
    return (equity - maintenance_margin) / equity


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

    sign = 1.0 if upward else -1.0
    if breached(0.0):
        return 0.0
    safe = 0.0
    while safe < max_move:
        trial = min(safe + step, max_move)
        if breached(sign * trial):
            while trial - safe > 1e-6:
                mid = (safe + trial) / 2
                safe, trial = (safe, mid) if breached(sign * mid) else (mid, trial)
            return sign * trial
        safe = trial
    return None


# Standard cross margin of a live account, per settlement currency (the loop's view, REFERENCE 3.1)

DEFAULT_TIERS_USD = tuple(
    MarginTier(Decimal(floor), Decimal(cap), Decimal(mmr))
    for floor, cap, mmr in [
        (0, 50_000, "0.004"),
        (50_000, 250_000, "0.005"),
        (250_000, 1_000_000, "0.01"),
        (1_000_000, 10_000_000, "0.025"),
        (10_000_000, 20_000_000, "0.05"),
        (20_000_000, 50_000_000, "0.10"),
    ]
)
"""REFERENCE 3.1: Binance BTCUSDT maintenance margin tiers of 2021-03-18, on the USD notional."""
DEFAULT_LEVERAGE = Decimal(10)
OPTION_IM_RATE = Decimal("0.15")
OPTION_IM_MIN_RATE = Decimal("0.10")
OPTION_MM_RATE = Decimal("0.075")
"""Deribit's standard margin of a short option, per coin of underlying (in coin)."""


def tiered_maintenance_usd(notional_usd: Decimal, tiers: Sequence[MarginTier]) -> Decimal:
    """`maintenance_margin_usd`, with the last tier's rate going on above its cap (the cumulative amounts
    built on the way: this runs on every simulated quote)."""
    notional = abs(notional_usd)
    cum = ZERO
    previous: MarginTier | None = None
    for tier in tiers:
        if previous is not None:
            cum += tier.floor_usd * (tier.mmr - previous.mmr)
        if notional < tier.cap_usd:
            break
        previous = tier
    return notional * tier.mmr - cum


@dataclass(frozen=True, slots=True)
class MarginRules:
    """How standard cross margin is estimated where the exchange does not report it.

    `tiers`: per symbol, the exchange's maintenance margin table (ccxt `fetch_leverage_tiers`) on the
    USD notional (an inverse contract's USD face); other symbols take `default_tiers`. Initial margin is
    the notional at the mark / the position's leverage (the exchange's, else `leverage`).
    """

    tiers: Mapping[str, tuple[MarginTier, ...]] = field(default_factory=dict)
    default_tiers: tuple[MarginTier, ...] = DEFAULT_TIERS_USD
    leverage: Decimal = DEFAULT_LEVERAGE

    def tiers_for(self, symbol: str) -> tuple[MarginTier, ...]:
        return self.tiers.get(symbol, self.default_tiers)


def leg_requirements(
    instrument: Instrument,
    contracts: Decimal,
    mark: Decimal,
    underlying_usd: Decimal | None,
    rules: MarginRules,
    leverage: Decimal | None = None,
) -> tuple[Decimal, Decimal]:
    """(initial, maintenance) margin of a position of signed `contracts` at `mark`, in its settle coin.

    - linear: IM = |contracts| x size x mark / leverage, MM = the tier table on that USD notional;
    - inverse: IM = |face| / mark / leverage, MM = the tier table on the USD face / mark (coin);
    - option (Deribit's standard margin, per coin of underlying, in coin; times the underlying price when
      settled in USD): a short call IM `max(0.15 - OTM / F, 0.10) + mark`, MM `0.075 + mark`; a short put
      MM `max(0.075, 0.075 mark) + mark` and IM the larger of that and the call's form. A long option is
      paid for and needs none. `underlying_usd` (F) is needed for options only.
    """
    if contracts == 0:
        return ZERO, ZERO
    if instrument.is_option:
        if contracts > 0:
            return ZERO, ZERO
        if underlying_usd is None or underlying_usd <= 0 or instrument.strike is None:
            raise ValueError(f"option {instrument.symbol} needs its strike and an underlying price")
        size = abs(contracts) * instrument.contract_size
        strike = instrument.strike
        otm = max(ZERO, strike - underlying_usd) if instrument.is_call else max(ZERO, underlying_usd - strike)
        unit = Decimal(1) if instrument.coin_settled else underlying_usd
        mark_coin = mark / unit
        im = max(OPTION_IM_RATE - otm / underlying_usd, OPTION_IM_MIN_RATE) + mark_coin
        if instrument.is_call:
            mm = OPTION_MM_RATE + mark_coin
        else:
            mm = max(OPTION_MM_RATE, OPTION_MM_RATE * mark_coin) + mark_coin
            im = max(im, mm)
        return size * im * unit, size * mm * unit
    lev = leverage if leverage is not None and leverage > 0 else rules.leverage
    tiers = rules.tiers_for(instrument.symbol)
    if instrument.inverse:
        face_usd = abs(contracts) * instrument.contract_size
        return face_usd / mark / lev, tiered_maintenance_usd(face_usd, tiers) / mark
    notional = abs(contracts) * instrument.contract_size * mark
    return notional / lev, tiered_maintenance_usd(notional, tiers)


@dataclass(frozen=True, slots=True)
class LegMargin:
    """One derivative position's margin, in its settle coin.

    `liquidation_price` and the figures are the exchange's where it reported them (`source`
    `exchange`), else the estimate's; the estimate is kept beside them. The liquidation price of a
    cross-margined leg holds the settlement currency's other legs as they are. `liquidation_move` is
    the signed relative move of the mark (an option's: of its underlying) that reaches it; None where
    none does (a leg its collateral outlasts, an option).
    """

    symbol: str
    settle: str
    contracts: Decimal
    mark_price: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    leverage: Decimal | None
    liquidation_price: Decimal | None
    liquidation_move: float | None
    source: str
    estimated_maintenance_margin: Decimal
    estimated_liquidation_price: Decimal | None


@dataclass(frozen=True, slots=True)
class SettleMargin:
    """The margin of one settlement currency: `equity` is its margin balance (wallet + the unrealised
    PnL of the futures settled in it; options' value is left to their margin, which holds their mark),
    `headroom` `(equity - MM) / equity` (1 with nothing at risk, 0 at liquidation)."""

    settle: str
    equity: Decimal
    initial_margin: Decimal
    maintenance_margin: Decimal
    headroom: Decimal
    legs: tuple[LegMargin, ...]

    @property
    def liquidation_move(self) -> float | None:
        """The move of a leg's price, nearest to zero, that liquidates it."""
        moves = [leg.liquidation_move for leg in self.legs if leg.liquidation_move is not None]
        return min(moves, key=abs) if moves else None


@dataclass(frozen=True, slots=True)
class AccountMargin:
    """Standard cross margin of an account: one `SettleMargin` per settlement currency that holds a
    derivative position."""

    by_settle: dict[str, SettleMargin]

    @property
    def headroom(self) -> Decimal | None:
        """The lowest settlement currency's headroom; None without derivative positions."""
        return min((s.headroom for s in self.by_settle.values()), default=None)

    @property
    def liquidation_move(self) -> float | None:
        moves = [m for s in self.by_settle.values() if (m := s.liquidation_move) is not None]
        return min(moves, key=abs) if moves else None

    def leg(self, symbol: str) -> LegMargin | None:
        for settle in self.by_settle.values():
            for leg in settle.legs:
                if leg.symbol == symbol:
                    return leg
        return None


def margin_balance(
    settle: str,
    instruments: Mapping[str, Instrument],
    balances: Mapping[str, Decimal],
    positions: Iterable[Position],
) -> Decimal:
    """Wallet + the unrealised PnL of the futures (not options) settled in `settle`."""
    equity = balances.get(settle, ZERO)
    for position in positions:
        instrument = instruments.get(position.symbol)
        if instrument is not None and instrument.settle == settle and not instrument.is_option:
            equity += unrealized_pnl(instrument, position)
    return equity


def _estimated_liquidation_price(
    instrument: Instrument, position: Position, collateral: Decimal, tiers: Sequence[MarginTier]
) -> Decimal | None:
    """Where the leg's equity `collateral + PnL(S)` meets its maintenance margin, other legs held.
    Linear: `liquidation_price_usd` (the tier bracket solved exactly); inverse (coin, MM = tiers(face) /
    S, constant bracket): `S = (N + M) / (collateral + N / entry)` with N the signed USD face."""
    if instrument.is_option or position.contracts == 0:
        return None
    entry = position.entry_price or position.mark_price
    if instrument.inverse:
        face = position.contracts * instrument.contract_size
        mm_usd = tiered_maintenance_usd(face, tiers)
        denominator = collateral + face / entry
        if denominator == 0:
            return None
        price = (face + mm_usd) / denominator
        # `equity - MM = denominator - (N + M) / S` is monotone in S: a positive root is the crossing
        # (a long's below, a short's above); none is a short its coin collateral outlasts.
        return price if price > 0 else None
    size = position.contracts * instrument.contract_size
    capped = tiers if tiers[-1].cap_usd.is_infinite() else (
        *tiers[:-1], MarginTier(tiers[-1].floor_usd, Decimal("Infinity"), tiers[-1].mmr)
    )
    return liquidation_price_usd(size, entry, collateral, capped)


def account_margin(
    instruments: Mapping[str, Instrument],
    balances: Mapping[str, Decimal],
    positions: Iterable[Position],
    prices_usd: Mapping[str, Decimal],
    rules: MarginRules,
) -> AccountMargin:
    """Standard cross margin per settlement currency of the account's derivative positions.

    Each leg's IM and MM are the exchange's (`Position.initial_margin`, `maintenance_margin`) where it
    reported them, else `leg_requirements` at the position's mark (an option's underlying is its
    `underlying_price`, else `prices_usd` of its base). The settlement currency's equity is
    `margin_balance`, its headroom `margin_headroom(equity, sum of MM)`. A leg's estimated liquidation
    price takes the collateral `equity - its own PnL - the other legs' MM`, the rest held still.
    """
    held = [p for p in positions if p.contracts != 0 and p.symbol in instruments]
    by_settle: dict[str, SettleMargin] = {}
    for settle in sorted({instruments[p.symbol].settle for p in held}):
        legs = [p for p in held if instruments[p.symbol].settle == settle]
        equity = margin_balance(settle, instruments, balances, legs)
        figures: list[tuple[Position, Decimal, Decimal, Decimal]] = []
        for p in legs:
            instrument = instruments[p.symbol]
            underlying = p.underlying_price or prices_usd.get(instrument.base)
            im, mm = leg_requirements(instrument, p.contracts, p.mark_price, underlying, rules, p.leverage)
            figures.append((p, im, mm, p.maintenance_margin if p.maintenance_margin is not None else mm))
        total_mm = sum((used for _, _, _, used in figures), ZERO)
        rows = []
        total_im = ZERO
        for p, im, mm, used in figures:
            instrument = instruments[p.symbol]
            collateral = equity - (ZERO if instrument.is_option else unrealized_pnl(instrument, p))
            collateral -= total_mm - used
            estimate = _estimated_liquidation_price(instrument, p, collateral, rules.tiers_for(p.symbol))
            price = p.liquidation_price if p.liquidation_price is not None else estimate
            base = p.mark_price
            if instrument.is_option:
                base = p.underlying_price or prices_usd.get(instrument.base) or ZERO
            move = float(price / base - 1) if price is not None and base else None
            initial = p.initial_margin if p.initial_margin is not None else im
            total_im += initial
            exchange = p.liquidation_price is not None or p.maintenance_margin is not None
            rows.append(LegMargin(
                symbol=p.symbol, settle=settle, contracts=p.contracts, mark_price=p.mark_price,
                initial_margin=initial, maintenance_margin=used,
                leverage=None if instrument.is_option else (p.leverage or rules.leverage),
                liquidation_price=price, liquidation_move=move,
                source="exchange" if exchange else "estimate",
                estimated_maintenance_margin=mm, estimated_liquidation_price=estimate,
            ))
        by_settle[settle] = SettleMargin(
            settle, equity, total_im, total_mm, margin_headroom(equity, total_mm), tuple(rows)
        )
    return AccountMargin(by_settle)


# Coin-margined accounts: USD-neutral or coin-neutral (REFERENCE 1.2, DESIGN.md 4)


def coin_equity(
    asset: str,
    instruments: Mapping[str, Instrument],
    balances: Mapping[str, Decimal],
    positions: Iterable[Position],
    prices_usd: Mapping[str, Decimal],
    as_of: datetime | None = None,
) -> Decimal:
    """The account's equity in `asset`: its wallet balance, the unrealised PnL of the futures settled in
    it and the value of the options settled in it. It is what `exposure.asset_deltas` counts of the coin
    besides the positions' deltas (the collateral that backs coin-margined positions)."""
    asset = asset.upper()
    equity = sum((amount for coin, amount in balances.items() if coin.upper() == asset), ZERO)
    for position in positions:
        instrument = instruments.get(position.symbol)
        if instrument is None or instrument.settle.upper() != asset:
            continue
        if instrument.is_option:
            one = option_delta(instrument, position, prices_usd.get(instrument.base), as_of)
            equity += position.contracts * instrument.contract_size * one.value
        else:
            equity += unrealized_pnl(instrument, position)
    return equity


def coin_neutral_delta(delta: AssetDelta, equity_coin: Decimal, price_usd: Decimal) -> AssetDelta:
    """The delta that a coin-neutral target applies to (`DK_ASSETS__<ASSET>__NEUTRAL=coin`).

    USD-neutral (the default, REFERENCE 1.2) keeps the account's USD value flat as the price moves: every
    coin the account holds is exposure, collateral included, so a short inverse perp sized against its
    own coin collateral is neutral at every price and needs no trading. Coin-neutral keeps the account's
    value in the coin flat instead: the coin is the numeraire, so the coin equity the account holds in
    it (`coin_equity`: wallet, futures PnL and options' value settled in the coin) is not exposure, and
    `delta_coin_neutral = delta_usd_neutral - coin_equity`. A wallet of coin and nothing else is then
    neutral; a short inverse perp against that wallet is short by its size. External holdings
    (`DK_EXTERNAL__<ASSET>`) stay in the delta: the owner declared them to be hedged.
    """
    coin = delta.delta_coin - equity_coin
    return AssetDelta(delta.asset, coin, coin * price_usd, delta.gross_coin)
