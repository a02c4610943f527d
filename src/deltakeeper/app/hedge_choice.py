"""`DK_ASSETS__<ASSET>__HEDGE=carry`: the perpetual or the nearest quarterly, chosen by carry
(`domain.roll.choose_hedge`) whenever the asset holds no hedge position, i.e. when its hedge is opened or
after a roll closed it; a held hedge is never switched. The choice is made from fresh quotes only: the
perpetual's funding rate, the quarterly's mid and the spot (index) price; while any is missing or older than
`stale_secs` it waits (`hedge_choice_waiting`, no order), it never defaults silently."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import structlog

from deltakeeper.app.market_state import MarketState
from deltakeeper.domain.carry import funding_per_8h
from deltakeeper.domain.instruments import Kind
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.roll import HedgeChoice, choose_hedge, nearest_quarterly
from deltakeeper.ports import Clock

log = structlog.get_logger("deltakeeper.hedge_choice")

@dataclass(frozen=True, slots=True)
class Chosen:
    """The hedge to use now; `note` says why when it was just chosen by carry (empty: the held one)."""

    symbol: str
    note: str = ""


class HedgeChooser:
    """Chooses the hedge of the carry assets (`perps`: asset -> its perpetual)."""

    def __init__(self, state: MarketState, perps: dict[str, str], now: Callable[[], datetime],
                 age_secs: Callable[[Quote], float], stale_secs: float, roll_window_secs: float) -> None:
        self.state = state
        self.perps = perps
        self.now = now
        self.age_secs = age_secs
        self.stale_secs = stale_secs
        self.roll_window_secs = roll_window_secs

    @classmethod
    def for_cycle(cls, state: MarketState, clock: Clock, perps: Mapping[str, str], stale_secs: float,
                  roll_window_secs: float) -> HedgeChooser:
        """Quotes aged as the risk check ages them."""
        def age_secs(quote: Quote) -> float:
            return state.quote_age_secs(quote.symbol, clock.speed, clock.now().timestamp())
        return cls(state, dict(perps), clock.now, age_secs, stale_secs, roll_window_secs)

    def symbols(self, assets: Iterable[str]) -> set[str]:
        """The markets the choice needs quotes of: the perpetuals and the quarterlies of the carry assets."""
        quarterlies = {self.quarterly(asset) for asset in assets}
        return {*self.perps.values(), *(s for s in quarterlies if s is not None)}

    def quarterly(self, asset: str) -> str | None:
        """The quarterly a carry asset may be hedged on now (None: none listed, or not a carry asset)."""
        if asset not in self.perps:
            return None
        future = nearest_quarterly(self.state.instruments.values(), asset, self.now(),
                                   roll_window_secs=self.roll_window_secs)
        return future.symbol if future is not None else None

    def choose(self, asset: str, current: str) -> Chosen | None:
        """The hedge of `asset` (hedged on `current`) from now on; None while the choice waits for quotes."""
        perp = self.perps.get(asset)
        if perp is None or self._holds(asset, perp, current):
            return Chosen(current)
        now = self.now()
        future = nearest_quarterly(self.state.instruments.values(), asset, now,
                                   roll_window_secs=self.roll_window_secs)
        if future is None:
            log.info("hedge_chosen", asset=asset, hedge=perp, reason="no_quarterly")
            return Chosen(perp, f"carry: {perp}, no quarterly listed outside the roll window")
        perp_quote, future_quote = self._fresh(perp), self._fresh(future.symbol)
        spot = self._spot(asset, perp_quote)
        if perp_quote is None or perp_quote.funding_rate is None or future_quote is None or spot is None:
            log.warning("hedge_choice_waiting", asset=asset, perp=perp, future=future.symbol,
                        reason="stale_or_missing_quote")
            return None
        perp_instrument = self.state.instruments.get(perp)
        interval_secs = perp_instrument.funding_interval_secs if perp_instrument is not None else None
        funding = funding_per_8h(perp_quote.funding_rate, interval_secs)
        choice = choose_hedge(perp, funding, future, future_quote.mid, spot, now,
                              roll_window_secs=self.roll_window_secs)
        say = log.info if choice.symbol != current else log.debug  # unchanged: each flat decision says it
        say("hedge_chosen", asset=asset, hedge=choice.symbol,
            carry_annualised=_f(choice.carry_annualised),
            break_even_funding_per_8h=_f(choice.break_even_funding_per_8h),
            perp_funding_per_8h=f"{funding:f}")
        return Chosen(choice.symbol, _note(choice, funding))

    def _holds(self, asset: str, perp: str, current: str) -> bool:
        """Whether the asset holds a position on its perpetual, its hedge or any of its dated futures."""
        state = self.state
        futures = [s for s, i in state.instruments.items()
                   if i.kind is Kind.FUTURE and i.expiry is not None and i.base == asset]
        return any(state.position_contracts(s) != 0 for s in {perp, current, *futures})

    def _fresh(self, symbol: str) -> Quote | None:
        quote = self.state.quotes.get(symbol)
        return quote if quote is not None and self.age_secs(quote) <= self.stale_secs else None

    def _spot(self, asset: str, perp_quote: Quote | None) -> Decimal | None:
        """The spot price: the perpetual's index where it gives one, else the asset's own spot market."""
        if perp_quote is not None and perp_quote.index is not None:
            return perp_quote.index
        symbol = self.state.price_symbols.get(asset)
        instrument = self.state.instruments.get(symbol) if symbol else None
        if symbol is None or instrument is None or instrument.is_derivative:
            return None
        quote = self._fresh(symbol)
        return quote.mid if quote is not None else None


def _f(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:f}"


def _note(choice: HedgeChoice, funding_per_8h: Decimal) -> str:
    return (f"carry: {choice.symbol}; quarterly carry {_f(choice.carry_annualised)}/yr, break-even funding "
            f"{_f(choice.break_even_funding_per_8h)}/8h, perp funding {funding_per_8h:f}/8h")
