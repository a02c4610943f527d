"""Standard cross margin of a live account per settlement currency (REFERENCE 3.1; `account_margin`: what
the loop watches), and the coin equity that makes a coin-margined account USD- or coin-neutral.

The tier table is `domain.margin_tiers`, the headroom `domain.margin_headroom`; portfolio margin is
`domain.portfolio_margin`. `liquidation_price` is the bot's one estimate of a future's liquidation price
and `move_to_liquidation` the one move to it, used here and by `deltakeeper margin` (`domain.margin_legs`,
which scans a short option's, a different solve: see its notes).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from deltakeeper.domain.exposure import AssetDelta, Position, option_delta, unrealized_pnl
from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.margin_headroom import margin_headroom
from deltakeeper.domain.margin_tiers import (
    DEFAULT_TIERS_USD,
    MarginTier,
    liquidation_price_usd,
    maintenance_margin_usd,
)

ZERO = Decimal(0)
DEFAULT_LEVERAGE = Decimal(10)
OPTION_IM_RATE = Decimal("0.15")
OPTION_IM_MIN_RATE = Decimal("0.10")
OPTION_MM_RATE = Decimal("0.075")
"""Deribit's standard margin of a short option, per coin of underlying (in coin)."""


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
        return face_usd / mark / lev, maintenance_margin_usd(face_usd, tiers) / mark
    notional = abs(contracts) * instrument.contract_size * mark
    return notional / lev, maintenance_margin_usd(notional, tiers)


@dataclass(frozen=True, slots=True)
class LegMargin:
    """One derivative position's margin, in its settle coin.

    `liquidation_price` and the figures are the exchange's where it reported them (`source`
    `exchange`), else the estimate's; the estimate is kept beside them. The liquidation price of a
    cross-margined leg holds the settlement currency's other legs as they are. `liquidation_move` is
    the signed relative move of the mark (an option's: of its underlying) that reaches it
    (`move_to_liquidation`: 0 for a future past it already); None where none does (a leg its collateral
    outlasts, an option).
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


def liquidation_price(
    instrument: Instrument,
    position: Position,
    collateral: Decimal,
    tiers: Sequence[MarginTier],
    tiers_on_coin: bool = False,
) -> Decimal | None:
    """The one estimate of a future's liquidation price: where its equity `collateral + PnL(S)` (settle
    coin, PnL from entry) meets its maintenance margin, the rest held still. Above the table's last cap its
    last rate goes on. None for an option (its margin follows its own value: `margin_legs`), a flat
    position, or one its collateral outlasts.

    Linear: `liquidation_price_usd` on the USD notional. Inverse, in the reciprocal price `x = 1/S`:
    equity `collateral + N / entry - N x` is linear in x, as is the coin maintenance margin, whether the
    table is on the USD face (`MM = tiers(|N|) x`: one bracket at rate `tiers(|N|) / |N|`) or, with
    `tiers_on_coin` (ccxt's inverse tables), on the coin notional `|N| x`; so `liquidation_price_usd` of
    `q = -N` at entry `1 / entry` solves it, and `S = 1 / x`.
    """
    if instrument.is_option or position.contracts == 0:
        return None
    entry = position.entry_price or position.mark_price
    capped = tuple(tiers) if tiers[-1].cap_usd.is_infinite() else (
        *tiers[:-1], MarginTier(tiers[-1].floor_usd, Decimal("Infinity"), tiers[-1].mmr)
    )
    if not instrument.inverse:
        return liquidation_price_usd(position.contracts * instrument.contract_size, entry, collateral, capped)
    face = position.contracts * instrument.contract_size
    if not tiers_on_coin:
        rate = maintenance_margin_usd(face, capped) / abs(face)
        capped = (MarginTier(ZERO, Decimal("Infinity"), rate),)
    reciprocal = liquidation_price_usd(-face, 1 / entry, collateral, capped)
    return None if reciprocal is None else 1 / reciprocal


def move_to_liquidation(price: Decimal | None, base: Decimal, contracts: Decimal | None) -> float | None:
    """The signed relative move of `base` (a future's mark, an option's underlying) that reaches the
    liquidation `price`: 0 where a future (`contracts` signed: a long's falls, a short's rises) is past it
    already; None without a price or a base. An option's direction is not its sign (a short call's rises,
    a short put's falls): `contracts` None takes the plain ratio."""
    if price is None or not base:
        return None
    if contracts is not None and (price - base) * contracts > 0:
        return 0.0
    return float(price / base - 1)


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
            estimate = liquidation_price(instrument, p, collateral, rules.tiers_for(p.symbol))
            price = p.liquidation_price if p.liquidation_price is not None else estimate
            base = p.mark_price
            if instrument.is_option:
                base = p.underlying_price or prices_usd.get(instrument.base) or ZERO
            move = move_to_liquidation(price, base, None if instrument.is_option else p.contracts)
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
