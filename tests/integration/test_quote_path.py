"""The quote path in the live loop, on the simulated exchange with feeds the tests control: absurd ticks
are never traded on while a genuine move is followed (the price gate), and an asset that has no price yet
does not stop the others (a restart with hedges open in two assets)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs
from tests.integration.service_harness import journal_for, make_settings
from tests.integration.test_live_policies import ETH, SOL, quote, running, settled, until

from deltakeeper.adapters.journal.store import SqlJournal
from deltakeeper.app.status import build_status
from deltakeeper.config import AssetSettings
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.orders import OrderRequest, Quote, Side
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments

D = Decimal
TICK = timedelta(seconds=30)
SPIKES = (D(3), D(1000), D("0.001"))


def scripted_sol(start: datetime, script: dict[str, Any]) -> Iterator[tuple[datetime, list[Quote]]]:
    """SOL's perpetual at `script["price"]`."""
    ts = start
    while True:
        yield ts, [quote(SOL, float(script["price"]), ts, 2)]
        ts += TICK


def scaled(q: Quote, factor: Decimal) -> Quote:
    index = q.index * factor if q.index is not None else None
    return replace(q, bid=q.bid * factor, ask=q.ask * factor, mark=q.mark * factor, index=index)


class Corrupting(SimGateway):
    """The simulated exchange seen through a faulty link: when the test puts factors in
    `script["spikes"]`, the bot's quote stream carries one quote scaled by each (everything in it: book,
    mark and index), with a true quote between them; then `script["spiked"]` is the last one's time. While
    `script["scale"]` is set, every quote is scaled by it. The exchange itself never sees them: its REST
    ticker (`fetch_quote`) has the true price, unless `script["reads_fail"]`."""

    script: dict[str, Any]

    def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        async def corrupted() -> AsyncIterator[Quote]:
            async for item in super(Corrupting, self).quotes(symbols):
                if self.script.get("scale"):  # every quote, for as long as the test says
                    yield scaled(item, self.script["scale"])
                    continue
                spikes = self.script.get("spikes")
                if spikes:
                    yield scaled(item, spikes.pop(0))
                    if not spikes:
                        self.script["spiked"] = item.ts
                yield item

        return corrupted()

    async def fetch_quote(self, symbol: str) -> Quote:
        if self.script.get("reads_fail"):
            raise ExchangeUnavailable("503 Service Unavailable")
        return await super().fetch_quote(symbol)


@dataclass
class HedgedSol:
    """A bot hedging 1,000 SOL on a USD band of 100, traded to its edge (a tick at 3x or 1000x shrinks the
    band in coins below the ~0.7 SOL left at the edge and would trade; so does a +15 % gap), after its
    opening hedge has settled."""

    journal: SqlJournal
    script: dict[str, Any]
    logs: list[dict[str, Any]]
    first: dict[str, Any]

    async def decisions(self) -> list[dict[str, Any]]:
        return await self.journal.list_decisions()

    def logged(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.logs if e["event"] == event]

    async def hedged_at(self, price: Decimal) -> bool:
        return any(d["price_usd"] == price and d["reason"] == "rebalance" for d in await self.decisions())


@asynccontextmanager
async def hedged_sol(tmp_path: Path, confirm_secs: float) -> AsyncIterator[HedgedSol]:
    settings = make_settings(
        tmp_path, assets={"SOL": AssetSettings(hedge=SOL, band_usd=D(100))}, rebalance_to="edge",
        price_confirm_secs=confirm_secs,
    )
    script: dict[str, Any] = {"price": D(136)}
    clock = SimClock(settings.sim_speed)
    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account("sim", {"USDT": D(1_000_000), "SOL": D(1000)})
    gateway = Corrupting(engine, scripted_sol(clock.now(), script), clock, None, "sim")
    gateway.script = script
    with capture_logs() as logs:
        async with journal_for(settings) as journal, running(settings, journal, gateway, clock) as bot:

            async def traded() -> bool:
                return any(d["reason"] == "rebalance" for d in await journal.list_decisions())

            await until(traded, 20, "the opening hedge")
            first = next(d for d in await journal.list_decisions() if d["reason"] == "rebalance")
            await until(settled(journal, bot[0], first), 10, "the opening hedge to settle")
            yield HedgedSol(journal, script, logs, first)


async def test_absurd_ticks_are_never_traded_on_and_a_genuine_15_pct_gap_is_followed(tmp_path: Path) -> None:
    async with hedged_sol(tmp_path, confirm_secs=0.2) as bot:
        bot.script["spikes"] = list(SPIKES)

        async def past_the_spikes() -> bool:
            end = bot.script.get("spiked")
            return end is not None and any(d["ts"] > end for d in await bot.decisions())

        await until(past_the_spikes, 20, "a scheduled decision after the spikes")
        assert {d["price_usd"] for d in await bot.decisions()} == {D(136)}, "decided on an absurd price"
        bot.script["price"] = D("156.4")  # +15 %, for good
        # the band is 0.64 SOL at the new price: the 0.7 left trades
        await until(lambda: bot.hedged_at(D("156.4")), 20, "a hedge at the new price")
        decisions = await bot.decisions()
        orders = await bot.journal.list_orders()
    assert {d["price_usd"] for d in decisions} <= {D(136), D("156.4")}, "decided on an absurd price"
    assert orders and all(o["reference_price"] < 160 for o in orders), orders
    held = bot.logged("quote_held")
    assert len(held) >= len(SPIKES)
    assert {e["last_good"] for e in held} >= {"136.00"}
    assert bot.logged("quote_confirmed")


async def test_a_stream_corrupted_for_longer_than_the_confirmation_is_contradicted_by_the_rest_ticker(
    tmp_path: Path,
) -> None:
    async with hedged_sol(tmp_path, confirm_secs=0.2) as bot:
        bot.script["scale"] = D(3)

        async def contradicted() -> bool:
            return len(bot.logged("quote_contradicted")) >= 2  # two reads, a second apart

        await until(contradicted, 20, "the REST ticker to contradict the stream twice")
        bot.script["scale"] = None
        decisions = await bot.decisions()
    # held far longer than DK_PRICE_CONFIRM_SECS at 3x, never confirmed: the reads vetoed the level
    assert {d["price_usd"] for d in decisions} == {D(136)}
    assert not bot.logged("quote_confirmed")
    assert {e["reason"] for e in bot.logged("quote_held")} >= {"jump unconfirmed", "jump vetoed"}


async def test_a_failed_read_confirms_nothing_and_a_read_that_agrees_confirms_a_gap(tmp_path: Path) -> None:
    # the confirmation by persistence takes 300 s: within the test only a read confirms
    async with hedged_sol(tmp_path, confirm_secs=300) as bot:
        bot.script["reads_fail"] = True
        bot.script["price"] = D("156.4")

        async def reads_failed() -> bool:
            return len(bot.logged("quote_read_failed")) >= 2

        await until(reads_failed, 20, "two failed reads")
        assert not await bot.hedged_at(D("156.4")) and not bot.logged("quote_confirmed")
        assert {d["price_usd"] for d in await bot.decisions()} == {D(136)}
        bot.script["reads_fail"] = False
        await until(lambda: bot.hedged_at(D("156.4")), 20, "a hedge at the new price")
    assert [e["reason"] for e in bot.logged("quote_confirmed")] == ["read"]


def two_assets(start: datetime) -> Iterator[tuple[datetime, list[Quote]]]:
    ts = start
    while True:
        yield ts, [quote(SOL, 136.0, ts, 2), quote(ETH, 3000.0, ts, 2)]
        ts += TICK


class EthLate(SimGateway):
    """The simulated exchange, whose quote stream carries no ETH quote until `eth_priced` is set."""

    eth_priced: asyncio.Event

    def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        async def late() -> AsyncIterator[Quote]:
            async for item in super(EthLate, self).quotes(symbols):
                if item.symbol != ETH or self.eth_priced.is_set():
                    yield item

        return late()


async def test_a_restart_with_two_hedged_assets_decides_on_sol_while_eth_has_no_price_yet(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, assets={
        "SOL": AssetSettings(hedge=SOL, band_coin=D(1)), "ETH": AssetSettings(hedge=ETH, band_coin=D(1)),
    })
    clock = SimClock(settings.sim_speed)
    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account("sim", {"USDT": D(1_000_000), "SOL": D(100), "ETH": D(10)})
    # the hedges the bot left open before its restart
    for symbol, price, amount in ((SOL, 136.0, D(100)), (ETH, 3000.0, D(10))):
        engine.on_quote(quote(symbol, price, clock.now(), 2))
        engine.place_order("sim", OrderRequest(f"before-{symbol}", symbol, Side.SELL, amount), clock.now())
    gateway = EthLate(engine, two_assets(clock.now()), clock, None, "sim")
    gateway.eth_priced = asyncio.Event()
    with capture_logs() as logs:
        async with journal_for(settings) as journal, running(settings, journal, gateway, clock) as bot:
            runner = bot[0]

            async def decided(asset: str) -> bool:
                return bool(await journal.list_decisions(asset=asset))

            await until(lambda: decided("SOL"), 20, "a decision on SOL while ETH has no price")
            status = build_status(runner)
            gateway.eth_priced.set()
            await until(lambda: decided("ETH"), 20, "a decision on ETH once it is priced")
            decisions = await journal.list_decisions()
            orders = await journal.list_orders()
    assert status["assets"]["ETH"]["delta_coin"] is None and status["assets"]["ETH"]["price_usd"] is None
    assert status["assets"]["SOL"]["delta_coin"] == 0
    assert {d["reason"] for d in decisions} == {"inside_band"}  # both hedged: nothing to do
    assert orders == []
    failures = [e for e in logs if e["event"] in ("stream_failed", "recompute_failed", "quote_failed")]
    assert failures == []


async def test_a_first_quote_is_vouched_by_the_rest_ticker_and_an_absurd_one_is_never_traded_on(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, assets={"SOL": AssetSettings(hedge=SOL, band_usd=D(100))})
    script: dict[str, Any] = {"price": D(136), "scale": D(1000)}  # the stream at 1000x from its first quote
    clock = SimClock(settings.sim_speed)
    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account("sim", {"USDT": D(1_000_000), "SOL": D(1000)})
    gateway = Corrupting(engine, scripted_sol(clock.now(), script), clock, None, "sim")
    gateway.script = script
    with capture_logs() as logs:
        async with journal_for(settings) as journal, running(settings, journal, gateway, clock):
            async def held() -> bool:
                return len([e for e in logs if e["event"] == "quote_held"]) >= 5

            await until(held, 20, "the absurd quotes held against the REST ticker")
            absurd = await journal.list_decisions()
            del script["scale"]  # the stream heals: the true price is accepted and hedged on

            async def traded() -> bool:
                return any(d["reason"] == "rebalance" for d in await journal.list_decisions())

            await until(traded, 20, "the hedge on the true price")
            decisions = await journal.list_decisions()
    assert absurd == []  # nothing decided while only absurd quotes came
    assert {d["price_usd"] for d in decisions if d["reason"] == "rebalance"} == {D(136)}
