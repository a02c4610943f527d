"""Account reads go one at a time: a read that started before a fill (its positions still those from before
the fill) cannot answer after, and be stamped later than, a read that started after it; neither the market
state nor the adapter's own account (which the pushes are merged into) takes it over the later read. Else
the bot would decide on the position from before its fill and hedge again."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from tests.integration.frozen_emulator import LINEAR, frozen_emulator, opened_adapter, sell

from deltakeeper.app.market_state import MarketState


async def test_a_read_that_started_before_a_fill_and_answers_late_is_not_taken_over_a_later_one() -> None:
    async with frozen_emulator() as server, opened_adapter(server) as exchange:
        read_positions = exchange._rest.fetch_positions
        answered_stale = asyncio.Event()
        release_stale = asyncio.Event()
        calls = 0

        async def lagging_first_read(*args: Any, **kwargs: Any) -> Any:
            """The first read's positions are read at once (before the fill) but answered only when
            released; later reads as they come."""
            nonlocal calls
            calls += 1
            first = calls == 1
            positions = await read_positions(*args, **kwargs)
            if first:
                answered_stale.set()
                await release_stale.wait()
            return positions

        exchange._rest.fetch_positions = lagging_first_read
        stale_read = asyncio.create_task(exchange.fetch_account())
        await asyncio.wait_for(answered_stale.wait(), 10)
        sell(server, "linear", "SOLUSDT", "600")  # the fill the stale read does not show
        later_read = asyncio.create_task(exchange.fetch_account())
        await asyncio.wait({later_read}, timeout=1)  # it goes after the stale read: it waits for it
        release_stale.set()
        stale, later = await stale_read, await later_read

    def held(snapshot: Any) -> Decimal:
        return next((p.contracts for p in snapshot.positions if p.symbol == LINEAR), Decimal(0))

    assert held(stale) != held(later) == Decimal(-600)
    assert stale.ts < later.ts
    state = MarketState(exchange._instruments)
    assert state.on_account(later) and not state.on_account(stale)
    assert state.position_contracts(LINEAR) == Decimal(-600)
    assert exchange._positions[LINEAR].contracts == Decimal(-600)  # what pushes are merged into
