"""A slice waiting for the next quote (app/ingest.py `next_quote`) is released by a stop, and waits no more
after it: a stop or a backtest's end never waits out the order timeout."""

from __future__ import annotations

import asyncio

from tests.unit.test_unpriced_amounts import SOL, T0, ingest

ORDER_TIMEOUT_SECS = 3600.0  # far longer than any test may take: only the stop can end the wait


async def test_a_stop_releases_a_slice_waiting_for_the_next_quote_and_every_later_wait() -> None:
    h = ingest()
    waiting = asyncio.create_task(h.next_quote(SOL.symbol, T0, ORDER_TIMEOUT_SECS))
    await asyncio.sleep(0)
    assert h.awaits_quote(SOL.symbol) and not waiting.done()

    h.wake_all()
    await asyncio.wait_for(waiting, 5)  # released by the stop, not by a quote or the timeout
    await asyncio.wait_for(h.next_quote(SOL.symbol, T0, ORDER_TIMEOUT_SECS), 5)  # a wait begun after it
