"""The risk limits on each order before it is journaled (domain/risk.py `check`), for the DecisionCycle's
first order and the order runner's further slices alike; the trading state observes each outcome."""

from __future__ import annotations

from datetime import datetime

from deltakeeper.app.ingest import DailyTraded
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.trading_state import TradingStatus
from deltakeeper.domain import risk
from deltakeeper.domain.orders import OrderIntent
from deltakeeper.ports import Clock


class OrderCheck:
    def __init__(
        self,
        state: MarketState,
        clock: Clock,
        limits: risk.RiskLimits,
        trading: TradingStatus,
        daily: DailyTraded,
        margin: risk.MarginSource = risk.no_margin_context,
    ) -> None:
        self.state = state
        self.clock = clock
        self.limits = limits
        self.trading = trading
        self.daily = daily
        self.margin = margin
        """Symbol -> the margin an order on it draws on (app/margin_watch.py `MarginWatch.context`)."""

    def __call__(self, intent: OrderIntent, now: datetime) -> risk.RiskOutcome:
        """The risk limits on an order at its instrument's quote, position and the trading state now; the
        trading state observes the outcome's notes."""
        symbol = intent.symbol
        ctx = risk.RiskContext(
            quote_age_secs=self.state.quote_age_secs(symbol, self.clock.speed, now.timestamp()),
            mark_price=self.state.references[symbol],  # not the same tick's mark: its touch moves with it
            position_contracts=self.state.position_contracts(symbol),
            traded_today_usd=self.daily.today_usd(now),
            state=self.trading.state,
            margin=self.margin(symbol),
        )
        outcome = risk.check(intent, self.state.instruments[symbol], ctx, self.limits)
        self.trading.observe(frozenset(outcome.notes), now)
        return outcome
