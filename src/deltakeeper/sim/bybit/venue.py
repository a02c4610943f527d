"""Bybit's view of the simulated engine: markets by category and Bybit symbol, one account per API key,
orders placed and cancelled with Bybit's parameters and refusals, and the records Bybit keeps that the
engine does not (order attributes, executions with their ids, realised PnL, the transaction log,
funding-rate history, 24h statistics). Every timestamp the venue sends reads one clock, the wall clock
(`stamp_ms`): the simulated clock only paces the market, and an event of simulated time `t` is stamped
with the wall time at which the simulated clock read `t`, so that orders, executions, positions, tickers and
`/v5/market/time` agree, as they do on Bybit. The engine's liquidations appear as Bybit shows a takeover
liquidation: an order of the liquidation engine and its BustTrade execution; an expired future or option
is closed by a Delivery execution (Settle for an inverse future) of no order. Engine events become
private-topic pushes through `private_listeners`; quotes reach `quote_listeners`."""

from __future__ import annotations

from collections.abc import Mapping

from deltakeeper.domain.orders import Fill, FundingPayment, OrderState
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.bybit.account_books import AccountBooks, user_id
from deltakeeper.sim.bybit.faults import Faults
from deltakeeper.sim.bybit.order_desk import RECENT_CLOSED_ORDERS, OrderDesk
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.venue_common import to_ms

__all__ = ["RECENT_CLOSED_ORDERS", "BybitVenue", "to_ms", "user_id"]


class BybitVenue(OrderDesk, AccountBooks):
    """The venue whole: its state and markets (`venue_state`), its orders (`order_desk`) and its account
    records (`account_books`), fed by the engine's account events and quotes."""

    def __init__(
        self,
        engine: SimEngine,
        clock: SimClock,
        credentials: Mapping[str, str],
        faults: Faults,
        *,
        allow_withdraw: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(engine, clock, credentials, faults, allow_withdraw=allow_withdraw, seed=seed)
        engine.subscribe(self._on_event)
        engine.subscribe_quotes(self._on_quote)

    def _on_event(self, account: str, event: AccountEvent) -> None:
        if isinstance(event, Fill):
            self._on_fill(account, event)
        elif isinstance(event, FundingPayment):
            self._on_funding(account, event)
        elif isinstance(event, OrderState):
            self._on_order(account, event)
        elif isinstance(event, AccountSnapshot):
            self._on_snapshot(account, event)

