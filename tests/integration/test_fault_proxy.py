"""The fault-injecting proxy (`deltakeeper.sim.fault_proxy`) between real clients and the Bybit emulator on
loopback: with no fault switched on, stock ccxt.pro trades and streams through it as it does directly;
each fault, switched on with probability 1, does what it says to the request or frame, and is counted."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import ccxt.pro as ccxtpro
import pytest

from deltakeeper.sim.bybit.auth import sign
from deltakeeper.sim.bybit.client import point_ccxt_at
from deltakeeper.sim.bybit.server import RunningServer, serve
from deltakeeper.sim.fault_proxy import FaultProxy, ProxyFaults

KEY, SECRET = "dk-proxy-key", "dk-proxy-secret"
LINEAR = "SOL/USDT:USDT"
TICKERS = "/v5/market/tickers?category=linear&symbol=SOLUSDT"

pytestmark = pytest.mark.timeout(60)


@asynccontextmanager
async def emulator_and_proxy(seed: int = 3) -> AsyncIterator[tuple[RunningServer, FaultProxy]]:
    """The emulator quoting every 50 ms of wall time (600x, a quote every 30 simulated seconds), its
    inventory still; the proxy in front of it."""
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=600, seed=7, tick_secs=30, scenario=False)
    proxy = FaultProxy(server.url, seed=seed)
    await proxy.start()
    try:
        yield server, proxy
    finally:
        await proxy.close()
        await server.close()


@asynccontextmanager
async def ccxt_client(url: str) -> AsyncIterator[Any]:
    client = ccxtpro.bybit({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    point_ccxt_at(client, url)
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()


@asynccontextmanager
async def public_ws(proxy: FaultProxy, topic: str = "tickers.SOLUSDT") -> AsyncIterator[Any]:
    async with aiohttp.ClientSession() as session, session.ws_connect(
        proxy.url.replace("http", "ws") + "/v5/public/linear"
    ) as ws:
        await ws.send_str(json.dumps({"op": "subscribe", "args": [topic]}))
        answer = json.loads((await ws.receive(timeout=5)).data)
        assert answer["success"], answer
        yield ws


async def pushes(ws: Any, count: int) -> list[str]:
    """The text of the next `count` frames."""
    return [(await ws.receive(timeout=5)).data for _ in range(count)]


async def get(url: str, path: str, timeout_secs: float = 5) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_secs)) as session, \
            session.get(url + path) as response:
        return response.status, dict(response.headers), await response.text()


async def test_stock_ccxt_trades_and_streams_through_the_proxy_unchanged() -> None:
    async with emulator_and_proxy() as (server, proxy), ccxt_client(proxy.url) as client:
        ticker = await client.watch_ticker(LINEAR)
        again = await client.watch_ticker(LINEAR)
        assert ticker["last"] > 0 and again["symbol"] == LINEAR
        book = await client.watch_order_book(LINEAR)
        assert book["bids"] and book["asks"]
        rest_ticker = await client.fetch_ticker(LINEAR)
        assert rest_ticker["last"] == pytest.approx(ticker["last"], rel=0.05)

        trades = asyncio.create_task(client.watch_my_trades(LINEAR))
        await asyncio.sleep(0.3)  # the private stream subscribed
        order = await client.create_order(LINEAR, "market", "sell", 1, None, {"orderLinkId": "dk-proxy-1"})
        streamed = await asyncio.wait_for(trades, 10)
        fetched = await client.fetch_order(order["id"], LINEAR, {"acknowledged": True})
        balance = await client.fetch_balance()

        assert fetched["clientOrderId"] == "dk-proxy-1" and fetched["filled"] == 1
        assert streamed[0]["order"] == order["id"]
        assert balance["USDT"]["total"] > 0
        on_exchange = {o.client_order_id for o in server.venue.engine.orders(KEY)}
        assert on_exchange == {"dk-proxy-1"}
        assert proxy.injected == {} and proxy.counts()["rest_forwarded"] > 5
        assert proxy.counts()["ws_frames_forwarded"] > 3


async def test_rest_faults_each_answer_as_named_and_are_counted() -> None:
    async with emulator_and_proxy() as (_, proxy):
        proxy.set_faults(rest_5xx=1)
        assert (await get(proxy.url, TICKERS))[0] == 503

        proxy.set_faults(rest_5xx=0, rest_429=1, retry_after_secs=7)
        status, headers, _ = await get(proxy.url, TICKERS)
        assert (status, headers["Retry-After"]) == (429, "7")

        proxy.set_faults(rest_429=0, rest_drop=1)
        with pytest.raises(aiohttp.ClientError):
            await get(proxy.url, TICKERS)
        drops = proxy.injected["rest_drop"]  # aiohttp tries a GET again on a closed connection
        assert drops in (1, 2)

        proxy.set_faults(rest_drop=0, rest_hang=1, hang_secs=30)
        with pytest.raises(asyncio.TimeoutError):
            await get(proxy.url, TICKERS, timeout_secs=0.5)

        proxy.set_faults(rest_hang=0, rest_delay=1, delay_ms=10)
        status, _, text = await get(proxy.url, TICKERS)
        assert status == 200 and json.loads(text)["result"]["list"]

        proxy.set_faults(rest_delay=0, rest_malformed=1)
        shapes = set()
        for _ in range(8):
            answer = json.loads((await get(proxy.url, TICKERS))[2])
            assert answer["retCode"] == 0
            shapes.add("no result" if "result" not in answer else type(answer["result"]["list"]).__name__)
        assert shapes == {"no result", "str"} or shapes == {"no result", "dict"}

        proxy.set_faults(rest_malformed=0)
        honest = float(json.loads((await get(proxy.url, TICKERS))[2])["result"]["list"][0]["markPrice"])
        proxy.set_faults(rest_absurd=1, absurd_factors=[1000])
        absurd = float(json.loads((await get(proxy.url, TICKERS))[2])["result"]["list"][0]["markPrice"])
        assert absurd == pytest.approx(honest * 1000, rel=0.05)

        assert proxy.injected == {"rest_5xx": 1, "rest_429": 1, "rest_drop": drops, "rest_hang": 1,
                                  "rest_delay": 1, "rest_absurd": 1,
                                  "rest_malformed_no_result": proxy.injected["rest_malformed_no_result"],
                                  "rest_malformed_list": 8 - proxy.injected["rest_malformed_no_result"]}


async def test_an_answer_dropped_after_forwarding_leaves_the_order_on_the_exchange() -> None:
    async with emulator_and_proxy() as (server, proxy), ccxt_client(proxy.url) as client:
        proxy.set_faults(rest_drop_after=1, rest_paths=["/v5/order/create"])
        with pytest.raises(ccxtpro.NetworkError):
            await client.create_order(LINEAR, "market", "buy", 1, None, {"orderLinkId": "dk-lost-answer"})
        assert [o.client_order_id for o in server.venue.engine.orders(KEY)] == ["dk-lost-answer"]
        await client.fetch_ticker(LINEAR)  # other paths pass

        proxy.clear_faults()
        proxy.set_faults(path="/v5/order/realtime", rest_5xx=1)
        with pytest.raises(ccxtpro.ExchangeNotAvailable):
            await client.fetch_open_order("x", LINEAR, {"orderLinkId": "dk-lost-answer"})
        await client.fetch_ticker(LINEAR)  # the other paths follow the settings of every path: none
        proxy.clear_faults()
        proxy.set_faults(rest_drop_after=0, rest_hang_after=1, hang_secs=30)
        client.timeout = 500
        with pytest.raises(ccxtpro.RequestTimeout):
            await client.create_order(LINEAR, "market", "buy", 1, None, {"orderLinkId": "dk-hung-answer"})
        assert len(server.venue.engine.orders(KEY)) == 2
        assert proxy.injected == {"rest_drop_after": 1, "rest_5xx": 1, "rest_hang_after": 1}


async def test_websocket_frames_are_corrupted_in_each_way_and_counted() -> None:
    async with emulator_and_proxy() as (_, proxy), public_ws(proxy) as ws:
        proxy.set_faults(ws_corrupt=1)
        frames = await pushes(ws, 24)
        proxy.set_faults(ws_corrupt=0)
        kinds = {k.removeprefix("ws_corrupt_"): n for k, n in proxy.injected.items()}
        assert set(kinds) == {"invalid_json", "nan_price", "huge_timestamp", "truncated"}
        assert sum(kinds.values()) >= 20  # frames in flight when it was switched on and off
        strict_json = nan = huge = 0
        for text in frames:
            try:
                frame = json.loads(text, parse_constant=lambda _: math.nan)
            except ValueError:
                strict_json += 1
                continue
            nan += any(isinstance(v, float) and math.isnan(v) for v in frame["data"].values())
            huge += frame["ts"] == 1e20
        assert strict_json and nan and huge
        honest = json.loads((await pushes(ws, 1))[0])  # the stream goes on, clean
        assert honest["topic"] == "tickers.SOLUSDT" and honest["ts"] < 1e13


async def test_absurd_ticker_prices_are_scaled_and_logged() -> None:
    async with emulator_and_proxy() as (_, proxy), public_ws(proxy) as ws:
        mark = float(json.loads((await pushes(ws, 1))[0])["data"]["markPrice"])
        proxy.set_faults(ws_absurd=1, absurd_factors=[3])
        frame = json.loads((await pushes(ws, 1))[0])
        proxy.set_faults(ws_absurd=0)
        scaled = [float(frame["data"][key]) for key in ("markPrice", "lastPrice", "bid1Price", "ask1Price")
                  if key in frame["data"]]
        assert scaled and all(price == pytest.approx(3 * mark, rel=0.05) for price in scaled)
        assert proxy.injected["ws_absurd"] >= 1
        assert {(e.symbol, e.factor) for e in proxy.absurd_log} == {("SOLUSDT", 3.0)}


async def test_a_websocket_drop_cuts_the_connection() -> None:
    async with emulator_and_proxy() as (_, proxy), public_ws(proxy) as ws:
        await pushes(ws, 1)
        proxy.set_faults(ws_drop=1)
        message = await ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
        assert proxy.injected == {"ws_drop": 1}


async def test_order_and_execution_frames_arrive_twice() -> None:
    async with emulator_and_proxy() as (_, proxy), ccxt_client(proxy.url) as client, \
            aiohttp.ClientSession() as session, \
            session.ws_connect(proxy.url.replace("http", "ws") + "/v5/private") as ws:
        expires = str(10**13)  # far ahead
        signature = sign(SECRET, f"GET/realtime{expires}")
        await ws.send_str(json.dumps({"op": "auth", "args": [KEY, expires, signature]}))
        assert json.loads((await ws.receive(timeout=5)).data)["success"]
        await ws.send_str(json.dumps({"op": "subscribe", "args": ["order", "execution"]}))
        assert json.loads((await ws.receive(timeout=5)).data)["success"]
        proxy.set_faults(ws_duplicate=1)
        await client.create_order(LINEAR, "market", "sell", 1, None, {"orderLinkId": "dk-twice"})
        frames = []
        while len({f["topic"] for f in frames}) < 2 or len(frames) < 4:
            frames.append(json.loads((await ws.receive(timeout=5)).data))
        by_id: dict[str, int] = {}
        for frame in frames:
            by_id[frame["id"]] = by_id.get(frame["id"], 0) + 1
        assert set(by_id.values()) == {2}
        assert proxy.injected["ws_duplicate"] == len(by_id)


async def test_control_api_switches_schedules_and_counts() -> None:
    async with emulator_and_proxy() as (_, proxy), aiohttp.ClientSession() as session:
        async with session.post(proxy.url + "/proxy/faults", json={"rest_5xx": 1, "for_secs": 0.3}) as answer:
            assert (await answer.json())["rest_5xx"] == 1
        assert (await get(proxy.url, TICKERS))[0] == 503
        await asyncio.sleep(0.5)
        assert (await get(proxy.url, TICKERS))[0] == 200  # the schedule ended: back to no faults
        async with session.post(proxy.url + "/proxy/faults", json={"rest_5xz": 1}) as answer:
            assert answer.status == 400 and "rest_5xz" in (await answer.json())["error"]
        async with session.post(proxy.url + "/proxy/faults", json={"ws_drop": 2}) as answer:
            assert answer.status == 400
        async with session.get(proxy.url + "/proxy/counts") as answer:
            counts = await answer.json()
        assert counts["injected"] == {"rest_5xx": 1} and counts["rest_forwarded"] == 1
        async with session.get(proxy.url + "/proxy/faults") as answer:
            assert await answer.json() == {**ProxyFaults().as_dict(), "by_path": {}}


async def test_the_same_seed_injects_the_same_faults() -> None:
    statuses = []
    for _ in range(2):
        async with emulator_and_proxy(seed=11) as (_, proxy):
            proxy.set_faults(rest_5xx=0.5)
            statuses.append([(await get(proxy.url, TICKERS))[0] for _ in range(12)])
    assert statuses[0] == statuses[1] and set(statuses[0]) == {200, 503}


async def test_delayed_frames_arrive_in_order_and_are_counted() -> None:
    async with emulator_and_proxy() as (_, proxy), public_ws(proxy, "orderbook.1.SOLUSDT") as ws:
        proxy.set_faults(ws_delay=1, delay_ms=1)
        frames = [json.loads(text) for text in await pushes(ws, 6)]
        proxy.set_faults(ws_delay=0)
        updates = [frame["data"]["u"] for frame in frames]
        assert updates == sorted(updates) and len(set(updates)) == len(updates)
        assert proxy.injected["ws_delay"] >= 5
