"""The trading state (DESIGN.md 6: ACTIVE, REDUCE_ONLY, HALTED), its one holder, and the service's counters
and background alerts. Every change of the state goes through `TradingStatus`, which logs it; a change the
risk limits or the margin cause is also alerted (`trading_state_changed`), the operator's halt and resume
carry their own alerts (app/control.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import structlog

from deltakeeper.domain import risk
from deltakeeper.domain.orders import OrderStatus
from deltakeeper.ports import Alerts

log = structlog.get_logger("deltakeeper.rebalance")


@dataclass
class Counters:
    """What the service did since it started, for the metrics."""

    orders: dict[str, int] = field(default_factory=dict)
    """Orders by final status."""
    fills: int = 0
    fees_usd: Decimal = Decimal(0)
    """Fees paid: a stable fee currency as it is, a coin fee at that asset's price (an unpriced one left
    out)."""
    funding_usd: Decimal = Decimal(0)
    """Net funding, received positive (an unpriced one left out)."""
    errors: int = 0

    def order_done(self, status: OrderStatus) -> None:
        self.orders[status.value] = self.orders.get(status.value, 0) + 1


class BackgroundAlerts:
    """Alerts sent without waiting for them (from code that must not block on a notifier): each send is a
    task, kept until it ends, so that a stop can let them finish (`flush`)."""

    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts
        self.tasks: set[asyncio.Task[None]] = set()

    def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        task = asyncio.create_task(self.alerts.send(level, event, message, subject))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def flush(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


class TradingStatus:
    """The one trading state of the account, and whether this process may trade at all (`holds_lock`:
    once the trader lock is lost nothing is decided or sent, whatever the state)."""

    def __init__(self, clear_after_secs: float, alerts: BackgroundAlerts,
                 holds_lock: Callable[[], bool] = lambda: True) -> None:
        self.clear_after_secs = clear_after_secs
        """`DK_STATE_CLEAR_SECS`: how long a cause must stay clear before the state returns to ACTIVE."""
        self.alerts = alerts
        self.holds_lock = holds_lock
        self._machine = risk.StateMachine()

    @property
    def state(self) -> risk.TradingState:
        return self._machine.state

    @property
    def cause(self) -> str:
        return self._machine.cause

    def halted(self) -> bool:
        return self._machine.state is risk.TradingState.HALTED or not self.holds_lock()

    def observe(self, breaches: frozenset[str], now: datetime) -> None:
        """The risk limits' or the margin's findings: REDUCE_ONLY on a breach, back to ACTIVE once clear
        for long enough (alerted on a change)."""
        self._set(self._machine.observe(breaches, now, self.clear_after_secs), alert=True)

    def clear(self, cause: str, now: datetime) -> None:
        """`cause` no longer holds: the hysteresis towards ACTIVE starts (or goes on) if it is what holds
        the state at REDUCE_ONLY."""
        machine = self._machine
        if machine.state is risk.TradingState.REDUCE_ONLY and cause in machine.cause.split(","):
            self.observe(frozenset(), now)

    def halt(self, reason: str) -> None:
        self._set(self._machine.halt(reason), alert=False)

    def resume(self) -> None:
        self._set(self._machine.resume(), alert=False)

    def _set(self, machine: risk.StateMachine, alert: bool) -> None:
        before = self._machine
        self._machine = machine
        if machine.state is before.state:
            return
        log.warning("trading_state_changed", before=before.state.value, after=machine.state.value,
                    cause=machine.cause)
        if alert:
            self.alerts.send(
                "warning",
                "trading_state_changed",
                f"trading state {before.state.value} -> {machine.state.value} ({machine.cause or 'cleared'})",
            )
