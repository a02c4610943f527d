"""An `OrderSender` (app/orders.py) wired to given ports, for the tests of one order's life cycle."""

from __future__ import annotations

from decimal import Decimal

from deltakeeper.app.ingest import DailyTraded, Ingest
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.orders import OrderSender
from deltakeeper.app.trading_state import BackgroundAlerts, Counters, TradingStatus
from deltakeeper.ports import Clock


class EventAlerts:
    """The Alerts port: the events sent, in order."""

    def __init__(self) -> None:
        self.events: list[str] = []

    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        self.events.append(event)


def order_sender(exchange: object, journal: object, clock: Clock, state: MarketState, *,
                 order_timeout_secs: float, post_only_timeout_secs: float, stale_secs: float = 60.0,
                 price_collar_bps: Decimal = Decimal(10_000), alerts: EventAlerts | None = None
                 ) -> OrderSender:
    background = BackgroundAlerts(alerts or EventAlerts())
    counters = Counters()
    return OrderSender(
        exchange,  # type: ignore[arg-type]
        journal,  # type: ignore[arg-type]
        clock, state,
        Ingest(state, journal, clock, counters, DailyTraded()),  # type: ignore[arg-type]
        TradingStatus(300.0, background), counters, background,
        order_timeout_secs=order_timeout_secs, post_only_timeout_secs=post_only_timeout_secs,
        stale_secs=stale_secs, price_collar_bps=price_collar_bps,
    )
