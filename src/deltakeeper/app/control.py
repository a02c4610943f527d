"""The operator's word (DESIGN.md 6): halt, resume, cancel-all, across processes through the journal.

`halt`, `resume` and `request_cancel_all` write the request (the CLI in another process, or the HTTP API in
the bot's): halt and resume as the journal's control state, journaled with who and why; cancel-all as a
`cancel-all` control event. The running bot's `OperatorControl` reads them at start, before trading, and
on every scheduled recompute: halted -> the trading state HALTED (risk.check then denies every order),
every open order canceled, an alert; resumed -> ACTIVE, an alert; a new cancel-all request -> every open
order canceled. The halt is kept in the journal, so it survives a restart until resumed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import structlog

from deltakeeper.app.trading_state import Counters, TradingStatus
from deltakeeper.domain.journal_rows import ControlEventRow, JournalQuery
from deltakeeper.domain.records import ControlState
from deltakeeper.domain.risk import TradingState
from deltakeeper.ports import Alerts, Exchange

log = structlog.get_logger("deltakeeper.control")

ACTIONS = ("halt", "resume", "cancel-all")
CANCEL_ALL = "cancel-all"
EVENT_LOOKBACK = timedelta(hours=1)
"""How far before its start the bot reads cancel-all events: covers clocks of writers that are behind."""

RecordEvent = Callable[[str, str, str, datetime], Awaitable[None]]
"""(action, by, reason, ts) -> journal one control event (the journal's `control_events`)."""


class ControlJournal(Protocol):
    """What control needs of the journal (the SQL journal has it all)."""

    async def control_state(self) -> ControlState: ...

    async def set_control_state(self, state: ControlState) -> None: ...

    async def control_events(self, query: JournalQuery = ...) -> list[ControlEventRow]:
        """Halts, resumes and cancel-all requests, oldest first (ports.JournalReader's)."""
        ...


def _wall_now() -> datetime:
    return datetime.now(UTC)


# -- the requests (any process) ---------------------------------------------------------------------


async def halt(journal: ControlJournal, reason: str, by: str, now: datetime | None = None) -> ControlState:
    """Halt trading until resumed; journaled as a `halt` event with who and why."""
    current = await journal.control_state()
    state = ControlState(True, reason, by, now or _wall_now(), dict(current.extra))
    await journal.set_control_state(state)
    return state


async def resume(journal: ControlJournal, reason: str, by: str, now: datetime | None = None) -> ControlState:
    """Let the bot trade again; journaled as a `resume` event with who and why."""
    current = await journal.control_state()
    state = ControlState(False, reason, by, now or _wall_now(), dict(current.extra))
    await journal.set_control_state(state)
    return state


async def request_cancel_all(
    record_event: RecordEvent, reason: str, by: str, now: datetime | None = None
) -> datetime:
    """Ask the running bot to cancel every open order of the account (it does not halt it)."""
    ts = now or _wall_now()
    await record_event(CANCEL_ALL, by, reason, ts)
    return ts


# -- the bot's side ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Applied:
    halted: bool
    canceled_all: bool


class OperatorControl:
    """Applies the journal's control state and cancel-all requests to the trading state and the exchange.
    `start` before trading,
    `poll` on every scheduled recompute; `handle` serves the HTTP API's control endpoints (write the
    request, apply it at once)."""

    def __init__(self, trading: TradingStatus, exchange: Exchange, alerts: Alerts, counters: Counters,
                 journal: ControlJournal, record_event: RecordEvent) -> None:
        self.trading = trading
        self.exchange = exchange
        self.alerts = alerts
        self.counters = counters
        self.journal = journal
        self.record_event = record_event
        self.state = ControlState(halted=False)
        self.halted = False
        """True while the operator's halt is applied to the trading state."""
        self._seen_event_id = 0
        self._events_since: datetime | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> ControlState:
        """Read the control state before trading: a halt journaled before the start holds. Cancel-all
        requests made before the start are done with (the start's reconciliation cancels our orders)."""
        now = _wall_now()
        events = await self.journal.control_events()
        self._seen_event_id = max((e.id for e in events), default=0)
        self._events_since = now - EVENT_LOOKBACK
        await self.poll()
        return self.state

    async def poll(self) -> Applied:
        """Apply what changed since the last poll."""
        async with self._lock:
            state = await self.journal.control_state()
            self.state = state
            halted = False
            if state.halted and (not self.halted or self.trading.state is not TradingState.HALTED):
                await self._apply_halt(state)
                halted = True
            elif not state.halted and self.halted:
                await self._apply_resume(state)
            canceled = False
            if self._events_since is not None:
                events = await self.journal.control_events(JournalQuery(since=self._events_since))
                requests = [e for e in events if e.id > self._seen_event_id]
                if requests:
                    self._seen_event_id = max(e.id for e in requests)
                asks = [e for e in requests if e.action == CANCEL_ALL]
                if asks and not halted:  # a halt has just canceled everything
                    last = asks[-1]
                    await self._cancel_all("cancel_all", last.by, last.reason)
                    canceled = True
            return Applied(halted, canceled or halted)

    async def handle(self, action: str, reason: str, by: str) -> dict[str, Any]:
        """The HTTP API: the same requests as the CLI, applied at once."""
        if action == "halt":
            await halt(self.journal, reason, by)
        elif action == "resume":
            await resume(self.journal, reason, by)
        elif action == CANCEL_ALL:
            await request_cancel_all(self.record_event, reason, by)
        else:
            raise ValueError(f"unknown control action {action!r}: one of {', '.join(ACTIONS)}")
        canceled_before_start = False
        if action == CANCEL_ALL and self._events_since is None:  # not started: the polls will not see it
            await self._cancel_all("cancel_all", by, reason)
            canceled_before_start = True
        applied = await self.poll()
        return {
            "action": action,
            "halted": self.state.halted,
            "reason": self.state.reason,
            "by": self.state.by,
            "ts": self.state.ts,
            "trading_state": self.trading.state.value,
            "canceled_all": applied.canceled_all or canceled_before_start,
        }

    async def _apply_halt(self, state: ControlState) -> None:
        reason = state.reason or "halted by the operator"
        self.trading.halt(reason)
        self.halted = True
        since = state.ts.isoformat() if state.ts else None
        log.warning("halted", reason=state.reason, by=state.by, since=since)
        await self.alerts.send(
            "warning", "halted", f"trading halted by {state.by or 'the operator'}: {reason}"
        )
        await self._cancel_all("halt", state.by, reason)

    async def _apply_resume(self, state: ControlState) -> None:
        self.trading.resume()
        self.halted = False
        log.warning("resumed", reason=state.reason, by=state.by)
        suffix = f": {state.reason}" if state.reason else ""
        who = state.by or "the operator"
        await self.alerts.send("warning", "resumed", f"trading resumed by {who}{suffix}")

    async def _cancel_all(self, cause: str, by: str, reason: str) -> None:
        """Cancel every open order of the account. A failure is logged and alerted: the next poll of a
        halt does not retry it, but no new order goes out while halted."""
        try:
            await self.exchange.cancel_all_orders()
        except Exception as exc:
            self.counters.errors += 1
            log.error("cancel_all_failed", cause=cause, error=str(exc))
            await self.alerts.send("error", "cancel_all_failed", f"cancel-all ({cause}) failed: {exc}")
            return
        log.warning("canceled_all", cause=cause, by=by, reason=reason)
        if cause == "cancel_all":
            who = by or "the operator"
            await self.alerts.send(
                "warning", "canceled_all", f"every open order canceled at the request of {who}"
            )
