"""Trading costs from an order book, and the fee-aware skip rule (REFERENCE.md section 4).

Pure functions over frozen values: no clock, no I/O. Money and quantities are `Decimal`; the risk
statistics (volatility, risk aversion, horizon) are floats, converted to `Decimal` at the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from deltakeeper.domain.orders import Side

_ZERO = Decimal(0)
_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class BookLevel:
    price: Decimal
    size_coin: Decimal


@dataclass(frozen=True, slots=True)
class CostModel:
    """Fee rates are fractions of notional (0.0005 = 5 bp); a negative maker rate is a rebate."""

    taker_fee_rate: Decimal
    maker_fee_rate: Decimal
    fixed_cost_usd: Decimal = _ZERO


@dataclass(frozen=True, slots=True)
class TradeCost:
    """What a trade costs, split by cause; every USD amount is a cost (positive = paid).

    `unfilled_coin > 0` means the visible book could not fill the whole size: the costs then cover only
    `filled_coin`, and the caller decides whether to trade less or to wait.
    `proportional_rate` is (total - fixed) / (filled notional at the mid).
    """

    filled_coin: Decimal
    unfilled_coin: Decimal
    avg_price: Decimal
    fee_usd: Decimal
    spread_usd: Decimal
    slippage_usd: Decimal
    fixed_usd: Decimal
    total_usd: Decimal
    proportional_rate: Decimal

    @property
    def book_too_thin(self) -> bool:
        return self.unfilled_coin > 0


@dataclass(frozen=True, slots=True)
class TradeWorth:
    risk_removed_usd: Decimal
    cost_usd: Decimal
    worth: bool


def walk_book(levels: Sequence[BookLevel], size_coin: Decimal) -> tuple[Decimal, Decimal]:
    """Fill `size_coin` against `levels` (best first); return (average price, filled coins).

    The filled amount is less than `size_coin` when the book is too thin.
    """
    if size_coin <= 0:
        raise ValueError(f"size_coin must be positive, got {size_coin}")
    if not levels:
        raise ValueError("cannot walk an empty book side")
    remaining = size_coin
    cost = _ZERO
    for level in levels:
        take = min(remaining, level.size_coin)
        cost += take * level.price
        remaining -= take
        if remaining == 0:
            break
    filled = size_coin - remaining
    if filled == 0:
        raise ValueError("book side has no size")
    return cost / filled, filled


def estimate_trade_cost(
    side: Side,
    size_coin: Decimal,
    bids: Sequence[BookLevel],
    asks: Sequence[BookLevel],
    model: CostModel,
    maker: bool = False,
) -> TradeCost:
    """Cost of trading `size_coin` now: fee, half spread against the mid, and slippage beyond the touch.

    A taker order walks the opposite side of the book. A maker order rests at the mid or better, so it is
    charged only the maker fee on the mid notional (no spread, no depth; a conservative bound, since it may
    earn the half spread) and is assumed to fill completely.
    """
    if not bids or not asks:
        raise ValueError("need both sides of the book to find the mid")
    best_bid, best_ask = bids[0].price, asks[0].price
    if best_bid >= best_ask:
        raise ValueError(f"crossed or locked book: bid {best_bid} >= ask {best_ask}")
    mid = (best_bid + best_ask) / 2

    if maker:
        if size_coin <= 0:
            raise ValueError(f"size_coin must be positive, got {size_coin}")
        avg, filled, touch, fee_rate = mid, size_coin, mid, model.maker_fee_rate
    else:
        walked, touch = (asks, best_ask) if side is Side.BUY else (bids, best_bid)
        avg, filled = walk_book(walked, size_coin)
        fee_rate = model.taker_fee_rate

    fee = fee_rate * avg * filled
    spread = abs(touch - mid) * filled
    slippage = abs(avg - touch) * filled
    proportional = fee + spread + slippage
    return TradeCost(
        filled_coin=filled,
        unfilled_coin=size_coin - filled,
        avg_price=avg,
        fee_usd=fee,
        spread_usd=spread,
        slippage_usd=slippage,
        fixed_usd=model.fixed_cost_usd,
        total_usd=proportional + model.fixed_cost_usd,
        proportional_rate=proportional / (mid * filled),
    )


def proportional_cost_rate(fee_rate: Decimal, spread_bps: Decimal, slippage_bps: Decimal) -> Decimal:
    """Cost as a fraction of notional when there is no book (bars): fee + half the quoted spread + slippage.

    `spread_bps` is the full quoted bid-ask spread; a market order pays half of it against the mid.
    """
    return fee_rate + (spread_bps / 2 + slippage_bps) / _BPS


def risk_reduction_usd(
    x_before_coin: Decimal,
    x_after_coin: Decimal,
    price_usd: Decimal,
    vol_per_sqrt_year: float,
    horizon_years: float,
    risk_aversion_per_usd: float,
) -> Decimal:
    """Risk removed by moving the deviation from x_before to x_after: (ra/2)(xb^2 - xa^2) S^2 vol^2 T_h."""
    removed_coin2 = float(x_before_coin**2 - x_after_coin**2)
    value = risk_aversion_per_usd / 2 * removed_coin2 * float(price_usd) ** 2 * vol_per_sqrt_year**2
    return Decimal(repr(value * horizon_years))


def worth_trading(
    x_before_coin: Decimal,
    x_after_coin: Decimal,
    price_usd: Decimal,
    vol_per_sqrt_year: float,
    horizon_years: float,
    risk_aversion_per_usd: float,
    cost_usd: Decimal,
) -> TradeWorth:
    """A trade is worth it when the risk it removes is strictly worth more than it costs.

    `cost_usd` is a `TradeCost.total_usd`, or `c |x_before - x_after| S + fixed` without a book.
    """
    removed = risk_reduction_usd(
        x_before_coin, x_after_coin, price_usd, vol_per_sqrt_year, horizon_years, risk_aversion_per_usd
    )
    return TradeWorth(risk_removed_usd=removed, cost_usd=cost_usd, worth=removed > cost_usd)
