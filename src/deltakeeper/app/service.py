"""One account's trading parts, wired the same way for the live service (bootstrap.py) and the backtest:
the ingest (the only writer of the market state), the trading state, the order check, the order runner
(the sole owner of the orders in flight) and the decision cycle."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field

from deltakeeper.app.cycle import CycleOptions, DecisionCycle, Decisions
from deltakeeper.app.ingest import DailyTraded, ForeignOrderHandler, Ingest, LiquidationHandler
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.order_check import OrderCheck
from deltakeeper.app.order_runner import OrderRunner
from deltakeeper.app.orders import OrderSender
from deltakeeper.app.trading_state import BackgroundAlerts, Counters, TradingStatus
from deltakeeper.domain import risk
from deltakeeper.domain.policy import AssetPolicy
from deltakeeper.ports import Alerts, Clock, Exchange, Journal


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    limits: risk.RiskLimits
    order_timeout_secs: float
    state_clear_secs: float
    cycle: CycleOptions = field(default_factory=CycleOptions)


@dataclass(frozen=True, slots=True)
class Service:
    exchange: Exchange
    journal: Journal
    clock: Clock
    alerts: Alerts
    state: MarketState
    """Read by every part, written only by `ingest`."""
    policies: Mapping[str, AssetPolicy]
    options: ServiceOptions
    trading: TradingStatus
    counters: Counters
    daily: DailyTraded
    decisions: Decisions
    ingest: Ingest
    orders: OrderRunner
    cycle: DecisionCycle

    def symbols(self) -> list[str]:
        return self.cycle.symbols()


@dataclass(frozen=True, slots=True)
class Core:
    """The parts that other collaborators (margin watch, operator control) are built on before the
    service itself."""

    trading: TradingStatus
    counters: Counters
    daily: DailyTraded
    decisions: Decisions
    background: BackgroundAlerts

    @classmethod
    def new(cls, alerts: Alerts, state_clear_secs: float, holds_lock: Callable[[], bool] = lambda: True
            ) -> Core:
        background = BackgroundAlerts(alerts)
        return cls(TradingStatus(state_clear_secs, background, holds_lock), Counters(), DailyTraded(),
                   Decisions(), background)


def build_service(
    exchange: Exchange,
    journal: Journal,
    clock: Clock,
    alerts: Alerts,
    state: MarketState,
    policies: MutableMapping[str, AssetPolicy],
    options: ServiceOptions,
    *,
    core: Core | None = None,
    margin: risk.MarginSource = risk.no_margin_context,
    on_liquidation: LiquidationHandler | None = None,
    on_foreign_order: ForeignOrderHandler | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Service:
    core = core or Core.new(alerts, options.state_clear_secs)
    ingest = Ingest(state, journal, clock, core.counters, core.daily, on_liquidation=on_liquidation,
                    on_foreign_order=on_foreign_order)
    limits = options.limits
    check = OrderCheck(state, clock, limits, core.trading, core.daily, margin)
    sender = OrderSender(
        exchange, journal, clock, state, ingest, core.trading, core.counters, core.background,
        order_timeout_secs=options.order_timeout_secs,
        post_only_timeout_secs=options.cycle.execution.post_only_timeout_secs,
        stale_secs=limits.stale_secs,
        price_collar_bps=limits.price_collar_bps,
        monotonic=monotonic,
    )
    orders = OrderRunner(sender, ingest, check)
    cycle = DecisionCycle(state, policies, options.cycle, journal=journal, clock=clock, trading=core.trading,
                          counters=core.counters, check=check, orders=orders, book=exchange,
                          decisions=core.decisions)
    return Service(exchange, journal, clock, alerts, state, policies, options, core.trading, core.counters,
                   core.daily, core.decisions, ingest, orders, cycle)
