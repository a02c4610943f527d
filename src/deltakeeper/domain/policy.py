"""The band policy: when delta leaves its no-trade band, size a hedge (DESIGN.md 5)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from enum import Enum

from deltakeeper.domain.instruments import ZERO, Instrument, Kind, is_stable
from deltakeeper.domain.orders import OrderIntent, Side


class BandUnit(str, Enum):
    COIN = "coin"
    USD = "usd"
    PCT = "pct"


class RebalanceTo(str, Enum):
    EDGE = "edge"
    TARGET = "target"


@dataclass(frozen=True, slots=True)
class Band:
    """Half-width of the no-trade band, in coins, USD, or percent of gross exposure."""

    unit: BandUnit
    half_width: Decimal

    def half_width_coin(self, price_usd: Decimal, gross_coin: Decimal) -> Decimal:
        if self.unit is BandUnit.COIN:
            return self.half_width
        if self.unit is BandUnit.USD:
            return self.half_width / price_usd
        return self.half_width / 100 * gross_coin


@dataclass(frozen=True, slots=True)
class AssetPolicy:
    asset: str
    hedge_symbol: str
    band: Band
    target_coin: Decimal = ZERO
    rebalance_to: RebalanceTo = RebalanceTo.TARGET


@dataclass(frozen=True, slots=True)
class AssetView:
    """What a decision sees of one asset: its delta and the hedge instrument's market."""

    asset: str
    delta_coin: Decimal
    gross_coin: Decimal
    price_usd: Decimal
    hedge: Instrument
    hedge_price: Decimal
    """The price the hedge would trade at (the touch on the order's side, or the mark)."""
    hedge_coin: Decimal = ZERO
    """The coins of the position held in the hedge market, as counted in `gross_coin`: a band in percent
    of the gross exposure narrows as a trade shrinks it."""


@dataclass(frozen=True, slots=True)
class Decision:
    asset: str
    delta_coin: Decimal
    target_coin: Decimal
    band_coin: Decimal
    price_usd: Decimal
    intent: OrderIntent | None
    reason: str

    @property
    def deviation_coin(self) -> Decimal:
        return self.delta_coin - self.target_coin


def decide(view: AssetView, policy: AssetPolicy, band_coin: Decimal | None = None,
           gross_share: Decimal | None = None) -> Decision:
    """Trade when |delta - target| exceeds the band: to the target, or just inside the band's edge.
    `band_coin`: the half-width in coins to use instead of the policy's own band (a computed band);
    `gross_share`: the share of the gross exposure it is, when it is one (the policy's own: its `PCT`)."""
    if band_coin is None:
        band_coin = policy.band.half_width_coin(view.price_usd, view.gross_coin)
        gross_share = gross_share_of(policy.band)
    deviation = view.delta_coin - policy.target_coin

    def no_trade(reason: str) -> Decision:
        return Decision(
            view.asset, view.delta_coin, policy.target_coin, band_coin, view.price_usd, None, reason
        )

    if abs(deviation) <= band_coin:
        return no_trade("inside_band")
    if policy.rebalance_to is RebalanceTo.TARGET:
        trade_coin = -deviation
    else:
        beyond_coin = abs(deviation) - band_coin
        if gross_share is not None:
            beyond_coin = _beyond_narrowing_band(beyond_coin, gross_share, view.hedge_coin, deviation)
        trade_coin = -beyond_coin if deviation > 0 else beyond_coin
    hedge = view.hedge
    raw = hedge.contracts_for_coin(trade_coin, view.hedge_price)
    if policy.rebalance_to is RebalanceTo.EDGE:
        # Round away from zero so that the trade lands inside the band, not on its outside.
        step = hedge.lot_step_contracts
        contracts = (raw / step).quantize(Decimal(1), rounding=ROUND_UP) * step
    else:
        contracts = hedge.round_contracts(raw)
    if contracts == 0:
        return no_trade("rounds_to_zero")
    after = deviation + hedge.delta_coin(contracts, view.hedge_price)
    if policy.rebalance_to is RebalanceTo.EDGE and abs(after) > band_coin and (after > 0) != (deviation > 0):
        # A lot step wider than the band: rounded up, the trade would land outside on the other side and the
        # next one swing back. Rounded toward zero it stays on this side, within one lot of the band.
        contracts = (raw / step).quantize(Decimal(1), rounding=ROUND_DOWN) * step
        if contracts == 0:
            return no_trade("band_below_lot_step")
    if abs(contracts) < hedge.min_contracts:
        return no_trade("below_min_size")
    if hedge.notional_usd(contracts, view.hedge_price) < hedge.min_notional_usd:
        return no_trade("below_min_notional")
    intent = OrderIntent(hedge.symbol, Side.for_signed(contracts), abs(contracts), view.hedge_price)
    return Decision(
        view.asset, view.delta_coin, policy.target_coin, band_coin, view.price_usd, intent, "rebalance"
    )


def gross_share_of(band: Band) -> Decimal | None:
    """The share of the gross exposure a band in percent of it is (None: a band in coins or USD)."""
    return band.half_width / 100 if band.unit is BandUnit.PCT else None


def _beyond_narrowing_band(beyond_coin: Decimal, fraction: Decimal, hedge_coin: Decimal, deviation: Decimal
                           ) -> Decimal:
    """The trade, in coins, that brings a deviation `beyond_coin` outside a band of `fraction` of the
    gross exposure to that band's edge as it stands after the trade: a trade that shrinks the hedge held
    (`hedge_coin`) shrinks the gross, and the band, by as much. Else the trade would land outside its own
    band and the next decision trade again at the same price."""
    held = abs(hedge_coin)
    if fraction >= 1 or held == 0 or (hedge_coin > 0) != (deviation > 0):
        return beyond_coin  # the trade grows the hedge, and the band with it
    shrinking = beyond_coin / (1 - fraction)
    if shrinking <= held:
        return shrinking
    return (beyond_coin + 2 * fraction * held) / (1 + fraction)  # through zero: the gross grows again


def auto_hedge_symbol(asset: str, instruments: Mapping[str, Instrument]) -> str | None:
    """The USD-margined perpetual on `asset` (USDT-settled first, then USDC), when the venue lists one."""
    candidates = [
        i
        for i in instruments.values()
        if i.kind is Kind.PERPETUAL and i.base == asset and not i.inverse and i.usd_margined
    ]
    candidates.sort(key=lambda i: (i.settle != "USDT", i.settle != "USDC", i.symbol))
    return candidates[0].symbol if candidates else None



def price_symbol(asset: str, instruments: Mapping[str, Instrument]) -> str | None:
    """The market whose mark prices `asset` in USD: its USD-margined perpetual, else a stable-quoted spot."""
    hedge = auto_hedge_symbol(asset, instruments)
    if hedge is not None:
        return hedge
    spots = sorted(
        i.symbol
        for i in instruments.values()
        if i.kind is Kind.SPOT and i.base == asset and is_stable(i.quote)
    )
    return spots[0] if spots else None


def min_band_coin(hedge: Instrument, price: Decimal) -> Decimal:
    """The narrowest band the hedge can hold: one lot step, in coins."""
    return abs(hedge.delta_coin(hedge.lot_step_contracts, price))
