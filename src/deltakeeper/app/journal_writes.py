"""`WatchedJournal`: the Journal port passed through, remembering how the last write ended. A bot whose
journal cannot be written (a full disk, a database gone read-only) cannot record what it sends: it is not
ready (`/readyz`) until a write succeeds again, and blind past DK_BLIND_ALERT_SECS (`Watch.check_blind`).
Every write's duration goes to `observe_write_secs` (the metrics' journal-write histogram)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

import structlog

from deltakeeper.domain.errors import ForeignOrder
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.orders import Fill, FundingPayment, OrderState
from deltakeeper.domain.records import ControlState, DecisionRecord, OrderRecord
from deltakeeper.ports import Journal

log = structlog.get_logger("deltakeeper.journal")
T = TypeVar("T")


class WatchedJournal:
    """Every call goes to `journal`; a write that raises (or is cancelled, as a timeout does) marks the
    journal failing from then on, and the next write that succeeds clears it."""

    def __init__(self, journal: Journal, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.journal = journal
        self.monotonic = monotonic
        self.failing_since: float | None = None
        """Monotonic time of the first failed write since the last one that succeeded; None: writing."""
        self.last_error = ""
        self.write_failures = 0
        """Writes that failed since the start."""
        self.observe_write_secs: Callable[[float], None] = lambda _secs: None
        """Called with each write's duration, a failed one's too (bootstrap sets the metrics' observer)."""

    def failing_secs(self) -> float | None:
        """How long writes have been failing; None while they succeed."""
        return None if self.failing_since is None else self.monotonic() - self.failing_since

    async def _write(self, write: Awaitable[T]) -> T:
        started = self.monotonic()
        try:
            result = await write
        except ForeignOrder:  # refused, not failed: the journal works
            raise
        except BaseException as exc:
            if self.failing_since is None:
                self.failing_since = self.monotonic()
            self.write_failures += 1
            self.last_error = str(exc) or type(exc).__name__
            log.error("journal_write_failed", error=self.last_error)
            raise
        finally:
            self.observe_write_secs(self.monotonic() - started)
        if self.failing_since is not None:
            failed_for_secs = round(self.monotonic() - self.failing_since, 1)
            log.info("journal_write_recovered", failed_for_secs=failed_for_secs)
            self.failing_since, self.last_error = None, ""
        return result

    # -- writes -----------------------------------------------------------------------------------

    async def record_decision(
        self, decision: DecisionRecord, pending_order: OrderRecord | None = None
    ) -> None:
        await self._write(self.journal.record_decision(decision, pending_order))

    async def record_order(self, order: OrderRecord) -> None:
        await self._write(self.journal.record_order(order))

    async def update_order(self, state: OrderState) -> None:
        await self._write(self.journal.update_order(state))

    async def record_fills(self, fills: Sequence[Fill]) -> int:
        return await self._write(self.journal.record_fills(fills))

    async def record_funding(self, payments: Sequence[FundingPayment]) -> int:
        return await self._write(self.journal.record_funding(payments))

    async def record_snapshot(
        self, ts: datetime, deltas: Mapping[str, AssetDelta], trading_state: str
    ) -> None:
        await self._write(self.journal.record_snapshot(ts, deltas, trading_state))

    async def set_control_state(self, state: ControlState) -> None:
        await self._write(self.journal.set_control_state(state))

    # -- reads ------------------------------------------------------------------------------------

    async def open_orders(self) -> list[OrderRecord]:
        return await self.journal.open_orders()

    async def unknown_client_ids(self, client_order_ids: Collection[str]) -> set[str]:
        return await self.journal.unknown_client_ids(client_order_ids)

    async def last_fill_ts(self) -> datetime | None:
        return await self.journal.last_fill_ts()

    async def last_funding_ts(self) -> datetime | None:
        return await self.journal.last_funding_ts()

    async def traded_usd_since(self, since: datetime) -> Decimal:
        return await self.journal.traded_usd_since(since)

    async def control_state(self) -> ControlState:
        return await self.journal.control_state()

    async def close(self) -> None:
        await self.journal.close()
