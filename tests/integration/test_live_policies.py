"""`DK_POLICY`, `DK_EXECUTION`, slicing and proxy hedges in the live loop, on the real simulated exchange
(bootstrap.build_sim_exchange at high speed, or a SimGateway over a feed written here where a test needs
prices it controls: a flat market, two correlated assets) and a real SQLite journal.

`Tap` sits between the bot and the gateway and notes, at every order the bot places, the bot's orders
already open on that market: there must never be one (one order in flight per instrument).
"""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.integration.service_harness import journal_for, make_settings

from deltakeeper.adapters.journal.store import SqlJournal
from deltakeeper.app.runner import Runner
from deltakeeper.bootstrap import build_runner, build_sim_exchange
from deltakeeper.config import AssetSettings, Settings, load_settings
from deltakeeper.domain.decide_policies import proxy_view, residual_vol
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import OrderRequest, OrderState, Quote, is_ours
from deltakeeper.domain.policy import AssetPolicy, AssetView, Band, BandUnit
from deltakeeper.domain.volatility import EwmaBeta
from deltakeeper.policy_settings import resolve_betas
from deltakeeper.sim.clock import SimClock
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.gateway import SimGateway
from deltakeeper.sim.markets import default_instruments

SOL = "SOL/USDT:USDT"
BTC = "BTC/USDT:USDT"
ETH = "ETH/USDT:USDT"
D = Decimal


@dataclass
class RecordingAlerts:
    sent: list[tuple[str, str, str]] = field(default_factory=list)

    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        self.sent.append((level, event, message))


class Tap:
    """The real gateway, noting the bot's open orders on a market each time the bot places one there."""

    def __init__(self, gateway: SimGateway) -> None:
        self.gateway = gateway
        self.name = gateway.name
        self.open_at_placement: list[tuple[str, list[str]]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.gateway, name)

    async def place_order(self, request: OrderRequest) -> OrderState:
        open_ids = [o.client_order_id or "" for o in await self.gateway.fetch_open_orders()
                    if o.symbol == request.symbol and is_ours(o.client_order_id)]
        self.open_at_placement.append((request.client_order_id, open_ids))
        return await self.gateway.place_order(request)


@asynccontextmanager
async def running(
    settings: Settings, journal: SqlJournal, gateway: SimGateway | None = None, clock: SimClock | None = None
) -> AsyncIterator[tuple[Runner, Tap]]:
    """A Runner wired as `deltakeeper run` wires it: on the default simulated exchange, or on `gateway`."""
    if gateway is None:
        built, built_clock = build_sim_exchange(settings)
        assert isinstance(built, SimGateway) and isinstance(built_clock, SimClock)
        gateway, clock = built, built_clock
    assert clock is not None
    tap = Tap(gateway)
    runner = await build_runner(settings, tap, journal, clock, RecordingAlerts())  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner, tap
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await scheduled_jobs_done()
        await gateway.close()


async def scheduled_jobs_done() -> None:
    """Let a scheduled job still running (a recompute mid-query) end before the journal closes under it:
    the runner shuts its scheduler down without waiting for running jobs."""
    jobs = [t for t in asyncio.all_tasks()
            if getattr(t.get_coro(), "__qualname__", "") == "run_coroutine_job" and not t.done()]
    if jobs:
        await asyncio.wait(jobs, timeout=10)


async def until(condition: Callable[[], Awaitable[bool]], timeout_secs: float, what: str) -> None:
    deadline = time.monotonic() + timeout_secs
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_secs}s waiting for {what}")
        await asyncio.sleep(0.1)


def settled(journal: SqlJournal, runner: Runner, decision: dict[str, Any]) -> Callable[[], Awaitable[bool]]:
    """The decision is carried out: its orders are all final and the bot has moved on from it."""
    async def check() -> bool:
        mine = [o for o in await journal.list_orders() if o["decision_id"] == decision["decision_id"]]
        current = runner.service.orders.in_flight.get(decision["symbol"], "")
        return (bool(mine) and all(o["status"] in ("filled", "canceled", "rejected") for o in mine)
                and current not in {o["client_order_id"] for o in mine})

    return check


def idle(runner: Runner) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not runner.service.orders.in_flight

    return check


def no_order_overlaps(tap: Tap) -> None:
    assert tap.open_at_placement, "the bot placed no order"
    overlapping = [(cid, open_ids) for cid, open_ids in tap.open_at_placement if open_ids]
    assert not overlapping, overlapping


# -- feeds the tests control ------------------------------------------------------------------------------


def quote(symbol: str, price: float, ts: datetime, decimals: int, spread_bps: float = 2.0) -> Quote:
    scale = 10**decimals
    bid = D(math.floor(price * (1 - spread_bps / 20_000) * scale)).scaleb(-decimals)
    ask = max(D(math.ceil(price * (1 + spread_bps / 20_000) * scale)).scaleb(-decimals),
              bid + D(1).scaleb(-decimals))
    return Quote(symbol, bid, ask, (bid + ask) / 2, ts, index=D(round(price * scale)).scaleb(-decimals))


def flat_feed(start: datetime, price: float, tick_secs: int = 30) -> Iterator[tuple[datetime, list[Quote]]]:
    """SOL's perpetual at one price for ever: a resting order at the touch never fills."""
    ts = start
    while True:
        yield ts, [quote(SOL, price, ts, 2)]
        ts += timedelta(seconds=tick_secs)


def pair_feed(start: datetime, *, btc: float = 60_000.0, eth: float = 3_000.0, beta: float = 1.0,
              vol_btc: float = 0.3, vol_noise: float = 0.05, tick_secs: int = 30, seed: int = 7
              ) -> Iterator[tuple[datetime, list[Quote]]]:
    """BTC and ETH perpetuals: BTC a random walk, ETH moving `beta` times BTC's log return plus noise."""
    rng = random.Random(seed)
    per_tick = math.sqrt(tick_secs / (365 * 86_400))
    ts = start
    while True:
        yield ts, [quote(BTC, btc, ts, 1), quote(ETH, eth, ts, 2)]
        r_btc = rng.gauss(0.0, vol_btc * per_tick)
        btc *= math.exp(r_btc)
        eth *= math.exp(beta * r_btc + rng.gauss(0.0, vol_noise * per_tick))
        ts += timedelta(seconds=tick_secs)


def gateway_over(settings: Settings, feed: Callable[[datetime], Iterator[tuple[datetime, list[Quote]]]],
                 balances: dict[str, Decimal]) -> tuple[SimGateway, SimClock]:
    clock = SimClock(settings.sim_speed)
    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account("sim", balances)
    return SimGateway(engine, feed(clock.now()), clock, None, "sim"), clock


# -- policies ---------------------------------------------------------------------------------------------


async def test_band_policy_skip_rule_skips_a_trade_that_costs_more_than_it_removes_and_says_both_numbers(
    tmp_path: Path,
) -> None:
    # A one-day horizon: the opening hedge (1,000 SOL) removes far more risk than it costs and goes; the
    # inventory's small moves out of the one-coin band cost more than the risk they would remove.
    settings = make_settings(tmp_path, policy="band", skip_horizon_secs=86_400)
    async with journal_for(settings) as journal, running(settings, journal) as (_runner, tap):

        async def skipped() -> bool:
            return any(d["reason"] == "cost_exceeds_risk" for d in await journal.list_decisions())

        await until(skipped, 20, "a skipped trade")
        runner_decisions = await journal.list_decisions()
    skips = [d for d in runner_decisions if d["reason"] == "cost_exceeds_risk"]
    for skip in skips:
        match = re.fullmatch(r"cost_usd=(\d+\.\d\d) risk_removed_usd=(\d+\.\d\d)", skip["detail"])
        assert match, skip["detail"]
        assert D(match[1]) >= D(match[2])
        assert abs(skip["delta_coin"] - skip["target_coin"]) > skip["band_coin"]
    trades = [d for d in runner_decisions if d["reason"] == "rebalance"]
    assert trades and all(d["amount_contracts"] for d in trades)
    orders = await journal.list_orders()
    assert {o["decision_id"] for o in orders} == {d["decision_id"] for d in trades}
    assert {o["status"] for o in orders} == {"filled"}
    no_order_overlaps(tap)


async def test_timer_policy_trades_to_target_once_per_interval_of_simulated_time(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, policy="timer", timer_secs=3600)
    async with journal_for(settings) as journal, running(settings, journal) as (_runner, tap):

        async def three_trades() -> bool:
            return sum(d["reason"] == "rebalance" for d in await journal.list_decisions()) >= 3

        await until(three_trades, 20, "three timed trades")
        decisions = await journal.list_decisions()
    trades = [d for d in decisions if d["reason"] == "rebalance"]
    assert all(d["detail"] == "timer_secs=3600" for d in trades)
    slots = [math.floor(d["ts"].timestamp() / 3600) for d in trades]
    assert len(slots) == len(set(slots)), slots  # at most one trade an hour
    assert "timer_not_due" in {d["reason"] for d in decisions}
    for trade in trades[1:]:  # to the target, whatever the asset's one-coin band says
        assert trade["band_coin"] == 0
    no_order_overlaps(tap)


async def test_cost_aware_policy_trades_on_the_cube_root_band_and_journals_its_width_and_inputs(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path, policy="cost-aware", risk_aversion=0.1, max_deviation_pct=10)
    async with journal_for(settings) as journal, running(settings, journal) as (_runner, tap):

        async def banded_trades() -> bool:
            decisions = await journal.list_decisions()
            return sum(d["reason"] == "rebalance" and "cost_rate=" in d["detail"] for d in decisions) >= 2

        await until(banded_trades, 20, "trades on the cost-aware band")
        decisions = await journal.list_decisions()
        orders = await journal.list_orders()
    trades = [d for d in decisions if d["reason"] == "rebalance"]
    # the opening hedge, before any data, and every trade until 30 returns: on the asset's own band
    assert trades[0]["detail"] == "warming_up returns=0/30 band=own"
    assert trades[0]["band_coin"] == 1
    warming = [d for d in trades if d["detail"].startswith("warming_up")]
    assert all(d["band_coin"] == 1 for d in warming)
    banded = [d for d in trades if "cost_rate=" in d["detail"]]
    for trade in banded:
        assert re.search(r"cost_rate=0\.000\d+ vol=\d\.\d{4} drift_var_coin2_per_year=\S+ risk_aversion=0\.1",
                         trade["detail"]), trade["detail"]
        assert 0 < trade["band_coin"] < 100  # under the hard maximum, 10% of some 2,000 SOL gross
        assert abs(trade["delta_coin"] - trade["target_coin"]) > trade["band_coin"]
    banded_ids = {d["decision_id"] for d in banded}
    assert {o["status"] for o in orders if o["decision_id"] in banded_ids} == {"filled"}
    no_order_overlaps(tap)


# -- execution styles -------------------------------------------------------------------------------------


async def test_post_only_order_rests_at_the_touch_and_fills_as_maker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, execution="post-only", post_only_timeout_secs=5)
    async with journal_for(settings) as journal, running(settings, journal) as (_runner, tap):

        async def maker_fill() -> bool:
            return any(f["is_maker"] for f in await journal.list_fills())

        await until(maker_fill, 20, "a post-only order filled as maker")
        fills = await journal.list_fills()
        orders = {o["client_order_id"]: o for o in await journal.list_orders()}
        decisions = {d["decision_id"]: d for d in await journal.list_decisions()}
    maker = next(f for f in fills if f["is_maker"])
    order = orders[maker["client_order_id"]]
    assert order["order_type"] == "limit" and order["price"] == maker["price"]
    assert maker["fee"] == (maker["notional_usd"] * D("0.0002")).quantize(D("1E-8"))  # the maker rate
    assert "execution=post-only timeout_secs=5" in decisions[order["decision_id"]]["detail"]
    no_order_overlaps(tap)


async def test_post_only_order_that_does_not_fill_falls_back_to_market_after_the_timeout(
    tmp_path: Path,
) -> None:
    # A market that never moves: the sell resting at the ask never fills.
    settings = make_settings(tmp_path, execution="post-only", post_only_timeout_secs=0.3)
    gateway, clock = gateway_over(settings, lambda start: flat_feed(start, 100.0),
                                  {"USDT": D(100_000), "SOL": D(100)})
    async with journal_for(settings) as journal, running(settings, journal, gateway, clock) as (runner, tap):

        async def first_settled() -> bool:
            trades = [d for d in await journal.list_decisions() if d["reason"] == "rebalance"]
            return bool(trades) and await settled(journal, runner, trades[0])()

        await until(first_settled, 15, "the first hedge to settle")
        await until(idle(runner), 5, "nothing in flight")
        trade = next(d for d in await journal.list_decisions() if d["reason"] == "rebalance")
        orders = [o for o in await journal.list_orders() if o["decision_id"] == trade["decision_id"]]
        fills = await journal.list_fills()
    limit, fallback = orders
    assert (limit["order_type"], limit["status"], limit["filled_contracts"]) == ("limit", "canceled", 0)
    assert limit["price"] == D("100.01") and limit["side"] == "sell"  # the ask
    assert (fallback["order_type"], fallback["status"]) == ("market", "filled")
    assert fallback["amount_contracts"] == fallback["filled_contracts"] == D(100) == trade["amount_contracts"]
    assert limit["client_order_id"] != fallback["client_order_id"]
    assert [f["client_order_id"] for f in fills] == [fallback["client_order_id"]]
    assert not fills[0]["is_maker"]
    no_order_overlaps(tap)


async def test_a_large_hedge_is_sent_in_slices_one_after_another_each_with_its_own_client_id(
    tmp_path: Path,
) -> None:
    # The opening hedge sells about 1,000 SOL (some 100,000 USD): slices of at most 30,000 USD.
    settings = make_settings(tmp_path, slice_max_usd=30_000)
    async with journal_for(settings) as journal, running(settings, journal) as (runner, tap):
        first = await first_trade(journal)
        await until(settled(journal, runner, first), 20, "every slice to settle")
        orders = [o for o in await journal.list_orders() if o["decision_id"] == first["decision_id"]]
    count = int(re.search(r"slices=(\d+)", first["detail"])[1])  # type: ignore[index]
    assert count >= 3 and len(orders) == count
    assert len({o["client_order_id"] for o in orders}) == count
    assert all(o["order_type"] == "market" and o["status"] == "filled" for o in orders)
    assert sum(o["filled_contracts"] for o in orders) == first["amount_contracts"]
    assert all(o["amount_contracts"] * o["average_price"] <= 30_000 for o in orders)
    no_order_overlaps(tap)


async def test_slices_are_sized_so_that_none_walks_the_book_beyond_the_slippage_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, slice_max_slippage_bps=1)
    gateway, clock = build_sim_exchange(settings)
    assert isinstance(gateway, SimGateway) and isinstance(clock, SimClock)
    gateway.engine.depth_level_usd = D(5_000)  # a thin book: 5,000 USD at the touch, 10,000 a bp away...
    async with journal_for(settings) as journal, running(settings, journal, gateway, clock) as (runner, tap):
        first = await first_trade(journal)
        await until(settled(journal, runner, first), 20, "every slice to settle")
        orders = [o for o in await journal.list_orders() if o["decision_id"] == first["decision_id"]]
        fills = await journal.list_fills()
    assert len(orders) >= 3
    assert sum(o["filled_contracts"] for o in orders) == first["amount_contracts"]
    for order in orders:
        mine = [f for f in fills if f["client_order_id"] == order["client_order_id"]]
        touch = max(f["price"] for f in mine)  # a sell walks down from the bid
        walked_bps = (touch - order["average_price"]) / touch * 10_000
        assert walked_bps <= D("1.2"), (order, walked_bps)
    no_order_overlaps(tap)


async def first_trade(journal: SqlJournal) -> dict[str, Any]:
    async def traded() -> bool:
        return any(d["reason"] == "rebalance" for d in await journal.list_decisions())

    await until(traded, 20, "the first trade")
    return next(d for d in await journal.list_decisions() if d["reason"] == "rebalance")


# -- proxy hedges -----------------------------------------------------------------------------------------


async def test_eth_hedged_with_the_btc_perpetual_at_beta_trades_once_then_stays_inside_its_band(
    tmp_path: Path,
) -> None:
    settings = make_settings(
        tmp_path, assets={"ETH": AssetSettings(hedge=BTC, beta="0.8", band_pct=D(2))}
    )
    gateway, clock = gateway_over(settings, lambda start: pair_feed(start, vol_btc=0.2),
                                  {"USDT": D(1_000_000), "ETH": D(10)})
    async with journal_for(settings) as journal, running(settings, journal, gateway, clock) as (runner, tap):
        first = await first_trade(journal)
        await until(settled(journal, runner, first), 10, "the proxy hedge to settle")
        await asyncio.sleep(2)  # an hour of simulated time more
        decisions = await journal.list_decisions(asset="ETH")
        orders = await journal.list_orders()
        position = next(p for p in gateway.engine.positions("sim") if p.symbol == BTC)
    # 0.8 x 10 ETH x ETH price / BTC price, in BTC: sold once
    assert [(o["symbol"], o["side"], o["status"]) for o in orders] == [(BTC, "sell", "filled")]
    expected = (D("0.8") * 10 * first["price_usd"] / D(60_000)).quantize(D("0.001"))
    assert abs(orders[0]["filled_contracts"] - expected) <= D("0.002")
    assert position.contracts == -orders[0]["filled_contracts"]
    assert first["delta_coin"] == 10
    assert re.match(r"beta=0\.8 residual_vol=", first["detail"])
    later = [d for d in decisions if d["ts"] > first["ts"]]
    assert later and {d["reason"] for d in later} == {"inside_band"}
    for decision in later:  # the hedge counted back at the beta: ETH's delta is near zero
        assert abs(decision["delta_coin"]) <= decision["band_coin"]
        assert decision["detail"].startswith("beta=0.8 residual_vol=")
    # once the EWMA has returns of both: the basis risk the beta leaves, on the ETH held
    residual = r"beta=0\.8 residual_vol=(\d\.\d{4}) residual_risk_usd=(\d+\.\d\d)"
    match = re.fullmatch(residual, later[-1]["detail"])
    assert match, later[-1]["detail"]
    approx = D(match[1]) * 10 * later[-1]["price_usd"]  # the vol is shown to 4 places
    assert abs(D(match[2]) - approx) <= approx * D("0.002")
    no_order_overlaps(tap)
    assert runner.service.orders.in_flight == {}


async def test_an_ewma_beta_is_estimated_before_the_proxy_hedge_trades(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, assets={"ETH": AssetSettings(hedge=BTC, beta="ewma", band_pct=D(2))}
    )
    gateway, clock = gateway_over(settings, lambda start: pair_feed(start, beta=1.5, vol_btc=0.6),
                                  {"USDT": D(1_000_000), "ETH": D(10)})
    async with journal_for(settings) as journal, running(settings, journal, gateway, clock):
        first = await first_trade(journal)
        earlier = [d for d in await journal.list_decisions(asset="ETH") if d["ts"] < first["ts"]]
    assert earlier and {d["reason"] for d in earlier} == {"beta_unknown"}
    beta = D(re.match(r"beta=(\S+) ", first["detail"])[1])  # type: ignore[index]
    assert D("0.5") < beta < D("3")  # 1.5 in truth; a few returns in, an estimate
    assert first["symbol"] == BTC and first["side"] == "sell"


# -- the proxy maths, pure --------------------------------------------------------------------------------


BTC_PERP = Instrument(BTC, Kind.PERPETUAL, "BTC", "USDT", "USDT", lot_step_contracts=D("0.001"),
                      min_contracts=D("0.001"))
BTC_INVERSE = Instrument("BTC/USD:BTC", Kind.PERPETUAL, "BTC", "USD", "BTC", inverse=True,
                         contract_size=D(1), lot_step_contracts=D(1), min_contracts=D(1))


def test_proxy_view_sizes_beta_times_the_usd_exposure_in_hedge_coins_and_counts_the_hedge_back() -> None:
    own = AssetView("ETH", D(10), D(10), D(3000), BTC_PERP, D(60_000))
    view = proxy_view(own, D(0), D("0.8"))
    # 0.8 x 10 x 3,000 / 60,000 = 0.4 BTC of hedge for 10 ETH
    assert view.hedge.contracts_for_coin(-view.delta_coin, view.hedge_price) == D("-0.4")
    assert view.hedge.notional_usd(D("0.4"), view.hedge_price) == D(24_000)
    hedged = proxy_view(own, D("-0.4"), D("0.8"))
    assert hedged.delta_coin == 0 and hedged.gross_coin == 20
    own_inverse = AssetView("ETH", D(10), D(10), D(3000), BTC_INVERSE, D(60_000))
    inverse = proxy_view(own_inverse, D(-24_000), D("0.8"))
    assert inverse.delta_coin == 0  # 24,000 USD of inverse face is 0.4 BTC


def test_residual_vol_at_the_ewma_beta_is_ewma_betas_own_and_larger_at_any_other_beta() -> None:
    model = EwmaBeta.for_bar(3600.0)
    rng = random.Random(3)
    a, h = 100.0, 100.0
    for _ in range(200):
        r = rng.gauss(0, 0.01)
        h *= math.exp(r)
        a *= math.exp(0.8 * r + rng.gauss(0, 0.004))
        model = model.update(a, h)
    assert model.beta is not None and model.residual_vol is not None
    at_estimate = residual_vol(model, model.beta)
    assert at_estimate is not None and math.isclose(at_estimate, model.residual_vol, rel_tol=1e-9)
    assert all((residual_vol(model, b) or 0) > at_estimate for b in (0.5, 1.0, 1.2))


# -- the order book through both adapters ------------------------------------------------------------------


async def test_order_book_port_gives_best_first_levels_in_coins_from_the_simulator_and_through_ccxt(
    tmp_path: Path,
) -> None:
    from tests.integration.emulator_clients import adapter, start_emulator

    settings = make_settings(tmp_path)
    gateway, _clock = build_sim_exchange(settings)
    server = await start_emulator()
    bybit = adapter(server)
    try:
        await gateway.load_instruments()
        await bybit.load_instruments()
        for exchange in (gateway, bybit):

            async def quoted(exchange: Any = exchange) -> bool:
                bids, asks = await exchange.fetch_order_book(SOL, 10)
                return bool(bids and asks)

            await until(quoted, 10, f"a book on {exchange.name}")
            bids, asks = await exchange.fetch_order_book(SOL, 10)
            assert len(bids) == len(asks) == 10  # the depth asked: both books run deeper
            assert bids[0].price < asks[0].price
            assert [b.price for b in bids] == sorted((b.price for b in bids), reverse=True)
            assert [a.price for a in asks] == sorted(a.price for a in asks)
            assert all(level.size_coin > 0 for level in (*bids, *asks))
    finally:
        await bybit.close()
        await server.close()
        await gateway.close()


# -- the settings ---------------------------------------------------------------------------------------


def test_beta_is_a_positive_number_or_ewma_and_a_bad_one_names_its_variable(monkeypatch: Any) -> None:
    monkeypatch.setenv("DK_ASSETS__ETH__HEDGE", BTC)
    monkeypatch.setenv("DK_ASSETS__ETH__BETA", "EWMA")
    assert load_settings().assets["ETH"].beta == "ewma"
    monkeypatch.setenv("DK_ASSETS__ETH__BETA", "0.8")
    assert load_settings().assets["ETH"].beta == "0.8"
    for bad in ("0", "-1", "abc", "nan"):
        monkeypatch.setenv("DK_ASSETS__ETH__BETA", bad)
        try:
            load_settings()
        except ConfigError as exc:
            assert "DK_ASSETS__ETH__BETA" in str(exc) and "ewma" in str(exc)
        else:
            raise AssertionError(f"BETA={bad} was accepted")


def test_a_beta_needs_a_hedge_on_another_asset_and_a_hedge_market_serves_one_asset(tmp_path: Path) -> None:
    instruments = default_instruments()
    band = Band(BandUnit.PCT, D(1))
    proxy = {"ETH": AssetPolicy("ETH", BTC, band)}
    settings = make_settings(tmp_path, assets={"ETH": AssetSettings(hedge=BTC, beta="ewma")})
    assert resolve_betas(settings, proxy, instruments) == {"ETH": None}
    assert resolve_betas(make_settings(tmp_path, assets={"ETH": AssetSettings(hedge=BTC)}), proxy,
                         instruments) == {"ETH": D(1)}
    own = make_settings(tmp_path, assets={"ETH": AssetSettings(hedge=ETH, beta="0.8")})
    try:
        resolve_betas(own, {"ETH": AssetPolicy("ETH", ETH, band)}, instruments)
    except ConfigError as exc:
        assert "DK_ASSETS__ETH__BETA" in str(exc)
    else:
        raise AssertionError("a beta on ETH's own perpetual was accepted")
    shared = {"BTC": AssetPolicy("BTC", BTC, band), "ETH": AssetPolicy("ETH", BTC, band)}
    try:
        resolve_betas(settings, shared, instruments)
    except ConfigError as exc:
        assert "DK_ASSETS__ETH__HEDGE" in str(exc)
    else:
        raise AssertionError("two assets on one hedge market were accepted")
