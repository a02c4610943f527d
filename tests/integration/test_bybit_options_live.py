"""The live loop on Bybit's USDC options in the emulator (issue 13): the bot, trading through stock ccxt,
hedges a short call book to the venue's published delta, not to its own Black-76 at another vol. The market
stands still (an hour between ticks), so the venue's delta is the one the bot hedged against."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

from tests.integration.service_harness import RecordingAlerts, journal_for, until
from tests.integration.test_bybit_options import (
    CALL,
    KEY,
    OTHER_IV,
    adapter,
    ccxt_client,
    engine_option,
    options_emulator,
)

from deltakeeper.bootstrap import build_runner
from deltakeeper.config import AssetSettings, Settings
from deltakeeper.domain.exposure import option_delta
from deltakeeper.sim.clock import WallClock

D = Decimal
HEDGE = "BTC/USDT:USDT"
CALLS = D(3)
BAND = D("0.01")


async def test_the_live_loop_hedges_a_short_call_book_to_the_venues_published_delta(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'journal.db'}", recompute_secs=0.3,
        assets={"BTC": AssetSettings(hedge=HEDGE, band_coin=BAND)}, policy="band", rebalance_to="target",
        stale_secs=2 * 3600, http_port=0,  # the standing market's quote is up to an hour old
    )
    async with options_emulator() as server:
        call = engine_option(server, CALL)
        async with ccxt_client(server) as client:
            symbol = call.symbol
            published = D((await client.fetch_greeks(symbol))["info"]["delta"])
            bid = (await client.fetch_ticker(symbol))["bid"]
            await client.create_order(symbol, "limit", "sell", float(CALLS), bid)
        exchange = adapter(server)
        async with journal_for(settings) as journal:
            runner = await build_runner(settings, exchange, journal, WallClock(), RecordingAlerts())
            stop = asyncio.Event()
            task = asyncio.create_task(runner.run(stop))
            try:
                await until(lambda: any(p.symbol == HEDGE for p in server.venue.engine.positions(KEY)), 30,
                            "the hedge")
                await asyncio.sleep(1.0)  # no second hedge: the first put the book inside its band
            finally:
                stop.set()
                await asyncio.wait_for(task, 20)
                await exchange.close()
        held = {p.symbol: p for p in server.venue.engine.positions(KEY)}
        quote = server.venue.engine.quote(call.symbol)

    hedge = held[HEDGE].contracts
    venue_delta = -CALLS * published
    assert hedge == (-venue_delta).quantize(D("0.001"))  # the perpetual's lot step
    assert quote is not None
    own = replace(held[call.symbol], delta=None, mark_iv=OTHER_IV)
    black76 = option_delta(call, own, quote.index, quote.ts)
    assert abs(hedge - CALLS * black76.delta) > BAND
