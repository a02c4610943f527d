"""Per-asset delta from balances, positions and declared external holdings (DESIGN.md 4, REFERENCE 1)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from deltakeeper.domain.greeks import greeks
from deltakeeper.domain.instruments import ZERO, Instrument, is_stable

SECS_PER_YEAR = 365 * 86_400
"""Option maths counts years of 365 days (domain/greeks.py)."""


@dataclass(frozen=True, slots=True)
class Position:
    """A derivative position. `contracts` is signed (+ long). `unrealized_pnl` is in the settle coin,
    as the exchange reports it, or None when it did not say.

    Options: `entry_price` and `mark_price` are the option's price per coin of underlying in the settle
    currency (coin for a coin-settled option: Deribit's BTC prices). `delta` is the exchange's plain
    (Black-Scholes) delta of one option on one coin of underlying, as Deribit's ticker `greeks.delta`
    shows it, or None when it published none; `mark_iv` the annualised mark implied volatility
    (0.60 = 60%); `underlying_price` the forward the exchange prices the option on (Deribit's
    `underlying_price`), None to price on the asset's USD price.

    Margin, where the exchange reports it (None where it does not: `domain.margin` estimates it):
    `liquidation_price` (USD per coin; an option's is of its underlying), `initial_margin` and
    `maintenance_margin` (in the settle coin), `leverage`, `collateral` (the margin the exchange counts
    as the position's own plus its unrealised PnL, in the settle coin: what backs an isolated position;
    a cross-margined one is backed by the whole settlement currency) and `margin_mode` (`cross` or
    `isolated`).
    """

    symbol: str
    contracts: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal | None = None
    delta: Decimal | None = None
    mark_iv: float | None = None
    underlying_price: Decimal | None = None
    liquidation_price: Decimal | None = None
    initial_margin: Decimal | None = None
    maintenance_margin: Decimal | None = None
    leverage: Decimal | None = None
    collateral: Decimal | None = None
    margin_mode: str | None = None


class OptionInputMissing(KeyError):
    """An option position lacks what its delta needs: a published delta, or a mark IV with the time and
    a price for Black-76. A KeyError, like a missing price, so callers that turn missing inputs into a
    bad-input error (the `delta` command) treat it alike."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True, slots=True)
class OptionDelta:
    """One option's delta, per coin of underlying (times contracts x contract size for a position).

    `delta` is the plain Black-Scholes delta; `delta_adj` what adds to the underlying's delta besides
    the option's value: `delta - value` for a coin-settled option (the price-adjusted delta, REFERENCE
    1.3), `delta` otherwise. `value` is the option's price per coin of underlying in the settle
    currency (the mark, else Black-76's). `source` is `exchange` or `black76`.

    `gamma_per_usd` is the slope, in the underlying's price, of what the option adds to its
    underlying's delta: `delta_adj`, plus for a coin-settled option its value in that same coin. The
    two slopes, `gamma_adj` and `delta_adj / F` (`greeks.greeks`), sum to the plain Black-76 gamma,
    the slope of the plain delta. It is Black-76's at the mark IV, also beside a published delta;
    0.0 when Black-76 lacks an input (a published delta without a mark IV or without the time).
    """

    delta: Decimal
    delta_adj: Decimal
    value: Decimal
    source: str
    gamma_per_usd: float = 0.0


def years_to_expiry(expiry: datetime, as_of: datetime) -> float:
    """Years of 365 days from `as_of` to `expiry` (negative once expired). Both tz-aware."""
    return (expiry - as_of).total_seconds() / SECS_PER_YEAR


def _dec(x: float) -> Decimal:
    return Decimal(repr(x))


def option_delta(
    instrument: Instrument, position: Position, price_usd: Decimal | None, as_of: datetime | None
) -> OptionDelta:
    """The delta of one option of `position` (REFERENCE 1.3).

    The exchange's delta when it published one; else Black-76 on the position's `underlying_price`
    (else `price_usd`, the asset's price) at its `mark_iv`, with the time to expiry counted from
    `as_of`. A coin-settled option's adjusted delta subtracts its value in coin, the mark (Black-76's
    premium when the mark is zero), so that `delta_adj + value` is always the plain delta. The gamma
    is Black-76's whenever its inputs are there, beside a published delta too.
    Raises OptionInputMissing when neither way is open.
    """
    mark = position.mark_price
    forward = position.underlying_price or price_usd
    vol, strike, expiry = position.mark_iv, instrument.strike, instrument.expiry
    model = None
    if (vol is not None and as_of is not None and strike is not None and expiry is not None
            and forward is not None):
        model = greeks(
            float(forward), float(strike), years_to_expiry(expiry, as_of), vol, instrument.is_call
        )
    if position.delta is not None:
        value = mark
        delta = position.delta
        source = "exchange"
    elif model is None:
        needs = {"a mark IV": vol, "the time (as_of)": as_of, "a strike": strike, "an expiry": expiry,
                 f"a USD price for {instrument.base}": forward}
        missing = ", ".join(name for name, given in needs.items() if given is None)
        raise OptionInputMissing(
            f"option {position.symbol} has no published delta, and Black-76 needs {missing}"
        )
    else:
        delta = _dec(model.delta)
        model_value = model.premium_coin if instrument.coin_settled else model.price_usd
        value = mark if mark > 0 else _dec(model_value)
        source = "black76"
    delta_adj = delta - value if instrument.coin_settled else delta
    gamma = model.gamma_per_usd if model is not None else 0.0
    return OptionDelta(delta=delta, delta_adj=delta_adj, value=value, source=source, gamma_per_usd=gamma)


@dataclass(frozen=True, slots=True)
class AssetDelta:
    asset: str
    delta_coin: Decimal
    delta_usd: Decimal
    gross_coin: Decimal
    """Sum of the absolute exposures of every leg, for percentage bands."""
    gamma_coin_per_usd: float = 0.0
    """How `delta_coin` moves with the asset's USD price: its options' gamma (`OptionDelta.gamma_per_usd`
    x contracts x contract size), zero without options. The cost-aware band's drift (REFERENCE 4)."""
    option_delta_coin: Decimal = ZERO
    """The part of `delta_coin` that options carry: their adjusted delta, and their value in this coin."""


def unrealized_pnl(instrument: Instrument, position: Position) -> Decimal:
    """PnL in the settle coin: the exchange's figure when given, else from entry and mark."""
    if position.unrealized_pnl is not None:
        return position.unrealized_pnl
    if position.entry_price == 0 or position.mark_price == 0:
        return ZERO
    if instrument.inverse:
        face_usd = position.contracts * instrument.contract_size
        return face_usd * (1 / position.entry_price - 1 / position.mark_price)
    return position.contracts * instrument.contract_size * (position.mark_price - position.entry_price)


def asset_deltas(
    instruments: Mapping[str, Instrument],
    balances: Mapping[str, Decimal],
    positions: Iterable[Position],
    prices_usd: Mapping[str, Decimal],
    external: Mapping[str, Decimal] | None = None,
    as_of: datetime | None = None,
    skip_unpriced: bool = False,
) -> dict[str, AssetDelta]:
    """Delta per underlying asset, in coins and in USD at `prices_usd`.

    Wallet balances count as exposure (coin collateral is a delta). A position settled in a coin adds
    its unrealised PnL to that coin's exposure, because wallet balances exclude it. Inverse contracts
    count at face / their own mark. Stablecoins and USD are the numeraire and never appear.

    Options (`option_delta`) add `contracts x contract_size x delta_adj` to their underlying, and their
    value `contracts x contract_size x mark` to their settle coin (nothing for a USD-settled one). Not
    their unrealised PnL: an option's premium changes hands in full at the trade, so the wallet balance
    already lacks what a long paid (holds what a short received); adding PnL = value - cost would
    count the cost a second time (and Deribit's `floating_profit_loss` for an option is only the
    session's). What the wallet lacks is the option's current value, coin the account owns as Deribit's
    equity counts it (equity = balance + options value + futures session PnL). On top of it the
    price-adjusted delta `delta - value` (Deribit's DeltaTotal: treat the account's delta as equity +
    DeltaTotal), and the two sum to the plain delta, the slope of `F x wallet + n x C(F)`. Deribit's
    FAQ: a 0.50-delta call bought for 0.10 BTC moves 0.10 out of the wallet, adds 0.10 of option value
    and 0.40 of adjusted delta: the account's delta rises by 0.40. `as_of` (tz-aware) is needed only
    for an option valued with Black-76, and for an option's gamma (`AssetDelta.gamma_coin_per_usd`);
    OptionInputMissing (a KeyError) says what is missing.

    An asset without a price raises KeyError, unless `skip_unpriced`: then it is not priced and is left
    out of the result (no delta, so no decision on it), with the settle coin of an option on it (whose
    delta would lack the option's value); the priced assets are computed as ever.
    """
    coin: dict[str, Decimal] = {}
    not_priced: set[str] = set()
    gross: dict[str, Decimal] = {}
    gamma: dict[str, float] = {}
    options: dict[str, Decimal] = {}

    def add(asset: str, amount: Decimal, option: bool = False) -> None:
        if is_stable(asset) or amount == 0:
            return
        coin[asset] = coin.get(asset, ZERO) + amount
        gross[asset] = gross.get(asset, ZERO) + abs(amount)
        if option:
            options[asset] = options.get(asset, ZERO) + amount

    for asset, amount in balances.items():
        add(asset.upper(), amount)
    for asset, amount in (external or {}).items():
        add(asset.upper(), amount)
    for position in positions:
        instrument = instruments.get(position.symbol)
        if instrument is None:
            raise KeyError(f"position in unknown market {position.symbol!r}")
        if instrument.is_option:
            if skip_unpriced and instrument.base not in prices_usd:
                not_priced.update((instrument.base, instrument.settle))
                continue
            size_coin = position.contracts * instrument.contract_size
            one = option_delta(instrument, position, prices_usd.get(instrument.base), as_of)
            add(instrument.base, size_coin * one.delta_adj, option=True)
            add(instrument.settle, size_coin * one.value, option=True)
            if one.gamma_per_usd:
                base = instrument.base
                gamma[base] = gamma.get(base, 0.0) + float(size_coin) * one.gamma_per_usd
            continue
        add(instrument.base, instrument.delta_coin(position.contracts, position.mark_price))
        add(instrument.settle, unrealized_pnl(instrument, position))

    result: dict[str, AssetDelta] = {}
    for asset in sorted(coin):
        price = prices_usd.get(asset)
        if price is None or asset in not_priced:
            if skip_unpriced:
                continue
            raise KeyError(f"no USD price for {asset}")
        amount = coin[asset]
        result[asset] = AssetDelta(
            asset, amount, amount * price, gross[asset], gamma.get(asset, 0.0), options.get(asset, ZERO)
        )
    return result
