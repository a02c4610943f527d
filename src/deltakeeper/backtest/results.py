"""What a replay keeps per hedged asset, and the result it reports (figures in the module notes of
backtest/run.py)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from deltakeeper.domain.exposure_models import ExposureModel, OptionBook
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import Fill
from deltakeeper.domain.policy import AssetPolicy

WALLET = Decimal("1E-8")
_CENT = Decimal("0.01")
SERIES = ("t_secs", "deviation_usd", "band_usd", "cost_usd")


@dataclass
class Figures:
    trades: int = 0
    traded_notional_usd: Decimal = ZERO
    fees_usd: Decimal = ZERO
    slippage_usd: Decimal = ZERO

    def add(self, fill: Fill, slippage: Decimal) -> None:
        self.traded_notional_usd += fill.notional_usd
        self.fees_usd += fill.fee
        self.slippage_usd += slippage

    def as_dict(self) -> dict[str, Any]:
        return {"trades": self.trades, "traded_notional_usd": self.traded_notional_usd,
                "fees_usd": self.fees_usd, "slippage_usd": self.slippage_usd}


@dataclass
class AssetRun:
    """One hedged asset of a replay."""

    asset: str
    hedge: Instrument
    """Its own linear perpetual, or (a proxy hedge) another asset's."""
    policy: AssetPolicy
    model: ExposureModel
    book: OptionBook | None = None
    book_value_usd: Decimal | None = None
    """The options book's value at the last price event (its payoff once settled)."""
    book_settled: bool = False
    holdings: Decimal = ZERO
    hedge_contracts: Decimal = ZERO
    mid: Decimal | None = None
    started: bool = False
    opened_at: float | None = None
    figures: Figures = field(default_factory=Figures)
    initial: Figures = field(default_factory=Figures)
    funding_usd: Decimal = ZERO
    hedge_pnl_usd: Decimal = ZERO
    exposure_pnl_usd: Decimal = ZERO
    sq_sum: float = 0.0
    weight: float = 0.0
    max_abs: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    risk_notes: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    last_skip: str = ""
    band_coin: Decimal = ZERO
    """The last decision's band half-width."""
    carry: bool = False
    """`DK_ASSETS__<ASSET>__HEDGE=carry`: `hedge` is its perpetual, the cycle may choose a quarterly."""
    markets: dict[str, int] = field(default_factory=dict)
    """A carry hedge's orders (the opening hedge's included) by market."""
    series: dict[str, list[float]] | None = None
    """With `series`: at each of the asset's price events, the time, the deviation from target before the
    decision, the band and the cumulative cost (USD)."""

    @property
    def proxy(self) -> bool:
        return self.hedge.base != self.asset

    def count(self, tally: dict[str, int], key: str) -> None:
        tally[key] = tally.get(key, 0) + 1

    def sample(self, deviation_usd: float, weight: float) -> None:
        self.sq_sum += weight * deviation_usd * deviation_usd
        self.weight += weight
        self.max_abs = max(self.max_abs, abs(deviation_usd))

    def result(self, hedge_mid: Decimal | None) -> dict[str, Any]:
        cost = self.figures.fees_usd + self.figures.slippage_usd
        result: dict[str, Any] = {
            "hedge": self.hedge.symbol,
            **self.figures.as_dict(),
            "cost_usd": cost,
            "funding_usd": self.funding_usd,
            "hedge_pnl_usd": self.hedge_pnl_usd.quantize(WALLET),
            "exposure_pnl_usd": self.exposure_pnl_usd.quantize(WALLET),
            "net_pnl_usd": (self.exposure_pnl_usd + self.hedge_pnl_usd + self.funding_usd - cost
                            ).quantize(WALLET),
            "tracking_error_usd": rms(self.sq_sum, self.weight),
            "max_abs_delta_usd": usd(self.max_abs),
            "rejected_orders": self.rejected,
            "initial_hedge": self.initial.as_dict(),
            "final_holdings_coin": self.holdings,
            "final_hedge_coin": self.hedge.delta_coin(self.hedge_contracts, hedge_mid or Decimal(1)),
            "decisions": dict(sorted(self.reasons.items())),
        }
        if self.carry:
            result["hedge"] = "carry"
            result["orders_by_market"] = dict(sorted(self.markets.items()))
        if self.book is not None:
            option = self.book.instrument
            result["options"] = {
                "symbol": option.symbol,
                "contracts": self.book.contracts,
                "strike_usd": option.strike,
                "expiry": option.expiry,
                "vol": self.book.vol,
                "settled": self.book_settled,
                "final_value_usd": (self.book_value_usd or ZERO).quantize(WALLET),
            }
        if self.risk_notes:
            result["risk_notes"] = dict(sorted(self.risk_notes.items()))
        if self.last_skip:
            result["last_skip"] = self.last_skip
        if self.series is not None:
            result["series"] = self.series
        return result


def total(values: Iterable[Any]) -> Any:
    """The sum of counts (ints) or of USD amounts (Decimals)."""
    items = list(values)
    return sum(items[1:], start=items[0]) if items else 0


def rms(sq_sum: float, weight: float) -> float:
    return round(math.sqrt(sq_sum / weight), 4) if weight else 0.0


def usd(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_CENT)
