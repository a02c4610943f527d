"""The real ccxt/ccxt.pro Bybit client against the Bybit v5 emulator on loopback: every call the bot
needs on spot, linear and inverse markets, authentication refusals, funding, and injected faults."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar
from unittest.mock import ANY

import aiohttp
import ccxt.pro as ccxtpro
import pytest
from ccxt.base import errors as ccxt_errors

from deltakeeper.sim.bybit.auth import sign
from deltakeeper.sim.bybit.client import point_ccxt_at
from deltakeeper.sim.bybit.server import RunningServer, serve

KEY, SECRET = "dk-test-key", "dk-test-secret"
SPEED = 60.0
"""Simulated seconds per wall second: a quote every 5 simulated seconds is 12 a wall second."""
FUNDING_LEAD_SECS = 240
"""The simulated clock starts this long before a funding time: funding settles ~4 s into a test."""
FUNDING_INTERVAL_SECS = 8 * 3600
FIXTURES = Path(__file__).parent / "fixtures" / "bybit"
LINEAR, SPOT, INVERSE = "SOL/USDT:USDT", "SOL/USDT", "SOL/USD:SOL"

T = TypeVar("T")


def funding_start() -> datetime:
    boundary = (math.floor(time.time() / FUNDING_INTERVAL_SECS) + 1) * FUNDING_INTERVAL_SECS
    return datetime.fromtimestamp(boundary - FUNDING_LEAD_SECS, UTC)


def next_funding_stamp_ms(server: RunningServer) -> int:
    """The wall time, in ms, at which the emulator's simulated clock reaches its next funding time: the
    funding timestamps it sends (one clock for every timestamp)."""
    sim_secs = server.venue.clock.now().timestamp()
    boundary = (math.floor(sim_secs / FUNDING_INTERVAL_SECS) + 1) * FUNDING_INTERVAL_SECS
    return server.venue.stamp_ms(datetime.fromtimestamp(boundary, UTC))


@pytest.fixture
async def emulator() -> AsyncIterator[RunningServer]:
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=SPEED, seed=7, start=funding_start(),
                         tick_secs=5)
    try:
        yield server
    finally:
        await server.close()


def client(server: RunningServer, key: str = KEY, secret: str = SECRET) -> Any:
    exchange = ccxtpro.bybit({"apiKey": key, "secret": secret, "enableRateLimit": False})
    point_ccxt_at(exchange, server.url)
    return exchange


@pytest.fixture
async def exchange(emulator: RunningServer) -> AsyncIterator[Any]:
    exchange = client(emulator)
    try:
        await exchange.load_markets()
        yield exchange
    finally:
        await exchange.close()


async def set_faults(server: RunningServer, **changes: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(f"{server.url}/sim/faults",
                                                                json=changes) as response:
        assert response.status == 200, await response.text()
        return dict(await response.json())


async def eventually(check: Callable[[], Awaitable[T | None]], timeout_secs: float = 10) -> T:
    """Poll `check` until it returns something truthy."""
    deadline = time.monotonic() + timeout_secs
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.2)


async def fetch_order(exchange: Any, order_id: str, symbol: str) -> dict[str, Any]:
    """ccxt's fetchOrder on a unified account (it asks to acknowledge its 500-order horizon)."""
    return dict(await exchange.fetch_order(order_id, symbol, params={"acknowledged": True}))


async def price(exchange: Any, symbol: str) -> tuple[float, float]:
    ticker = await exchange.fetch_ticker(symbol)
    return ticker["bid"], ticker["ask"]


# markets and market data


async def test_load_markets_with_keys_lists_spot_linear_and_inverse_markets(exchange: Any) -> None:
    markets = exchange.markets
    assert {SPOT, LINEAR, INVERSE, "BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC"} <= set(markets)
    assert markets[SPOT]["spot"] and markets[SPOT]["id"] == "SOLUSDT"
    assert markets[LINEAR]["linear"] and markets[LINEAR]["id"] == "SOLUSDT" and markets[LINEAR]["swap"]
    assert markets[INVERSE]["inverse"] and markets[INVERSE]["id"] == "SOLUSD"
    assert markets[INVERSE]["settle"] == "SOL" and markets[INVERSE]["contractSize"] == 1
    assert markets[LINEAR]["precision"]["amount"] == 0.1 and markets[LINEAR]["limits"]["cost"]["min"] == 5
    assert {"SOL", "USDT", "BTC", "ETH"} <= set(exchange.currencies)
    assert await exchange.is_unified_enabled() == [False, True]


async def test_fetch_ticker_and_tickers_quote_each_market_type(exchange: Any) -> None:
    for symbol in (SPOT, LINEAR, INVERSE):
        ticker = await exchange.fetch_ticker(symbol)
        assert ticker["symbol"] == symbol
        assert 0 < ticker["bid"] < ticker["ask"]
    perp = await exchange.fetch_ticker(LINEAR)
    assert perp["markPrice"] and perp["indexPrice"]
    tickers = await exchange.fetch_tickers([LINEAR, "BTC/USDT:USDT"])
    assert set(tickers) == {LINEAR, "BTC/USDT:USDT"}
    inverse = await exchange.fetch_tickers([INVERSE, "ETH/USD:ETH"])
    assert set(inverse) == {INVERSE, "ETH/USD:ETH"}


async def test_fetch_order_book_returns_sorted_levels_around_the_quote(exchange: Any) -> None:
    for symbol in (SPOT, LINEAR, INVERSE):
        book = await exchange.fetch_order_book(symbol, 10)
        bids, asks = book["bids"], book["asks"]
        assert len(bids) == len(asks) == 10
        assert bids[0][0] < asks[0][0]
        assert [level[0] for level in bids] == sorted((level[0] for level in bids), reverse=True)
        assert [level[0] for level in asks] == sorted(level[0] for level in asks)


async def test_fetch_funding_rate_and_leverage_tiers_describe_perpetuals(emulator: RunningServer,
                                                                       exchange: Any) -> None:
    before = next_funding_stamp_ms(emulator)
    rate = await exchange.fetch_funding_rate(LINEAR)
    assert abs(rate["fundingRate"]) < 0.01
    assert rate["interval"] == "8h"
    assert rate["fundingTimestamp"] in (before, next_funding_stamp_ms(emulator))
    tiers = await exchange.fetch_leverage_tiers([LINEAR])
    assert tiers[LINEAR][0]["maxLeverage"] == 100 and tiers[LINEAR][0]["currency"] == "USDT"
    inverse_tiers = await exchange.fetch_leverage_tiers([INVERSE])
    assert inverse_tiers[INVERSE][0]["currency"] == "SOL"


# account and orders


async def test_fetch_balance_reports_the_default_scenario_wallet(exchange: Any) -> None:
    balance = await exchange.fetch_balance()
    assert balance["USDT"]["total"] == pytest.approx(100_000, rel=0.01)
    assert balance["SOL"]["total"] == pytest.approx(1_000, rel=0.05)
    assert balance["USDT"]["free"] <= balance["USDT"]["total"]


async def test_linear_market_limit_post_only_and_reduce_only_orders(exchange: Any) -> None:
    market = await exchange.create_order(LINEAR, "market", "buy", 0.5, params={"clientOrderId": "dkl1"})
    filled = await fetch_order(exchange, market["id"], LINEAR)
    assert filled["status"] == "closed" and filled["filled"] == 0.5 and filled["clientOrderId"] == "dkl1"
    assert filled["fee"]["currency"] == "USDT" and filled["fee"]["cost"] > 0

    bid, ask = await price(exchange, LINEAR)
    resting = await exchange.create_order(LINEAR, "limit", "buy", 0.5, round(bid * 0.8, 2),
                                          params={"clientOrderId": "dkl2"})
    open_orders = await exchange.fetch_open_orders(LINEAR)
    assert [o["clientOrderId"] for o in open_orders] == ["dkl2"]
    assert open_orders[0]["status"] == "open" and open_orders[0]["price"] == round(bid * 0.8, 2)
    cancelled = await exchange.cancel_order(resting["id"], LINEAR)
    assert cancelled["id"] == resting["id"]
    after_cancel = await fetch_order(exchange, resting["id"], LINEAR)
    assert after_cancel["status"] == "canceled"

    taker = await exchange.create_order(LINEAR, "limit", "buy", 0.5, round(ask * 1.01, 2),
                                        params={"postOnly": True, "clientOrderId": "dkl3"})
    refused = await fetch_order(exchange, taker["id"], LINEAR)
    assert refused["status"] == "canceled" and refused["filled"] == 0
    assert refused["info"]["rejectReason"] == "EC_PostOnlyWillTakeLiquidity"
    ioc = await exchange.create_order(LINEAR, "limit", "buy", 0.5, round(bid * 0.8, 2),
                                      params={"timeInForce": "IOC"})
    assert (await fetch_order(exchange, ioc["id"], LINEAR))["status"] == "canceled"
    maker = await exchange.create_order(LINEAR, "limit", "sell", 0.5, round(ask * 1.2, 2),
                                        params={"postOnly": True, "clientOrderId": "dkl4"})
    assert (await exchange.fetch_open_orders(LINEAR))[0]["id"] == maker["id"]
    assert (await exchange.cancel_all_orders(LINEAR))[0]["id"] == maker["id"]

    await exchange.create_order(LINEAR, "market", "sell", 0.5, params={"reduceOnly": True,
                                                                      "clientOrderId": "dkl5"})
    positions = await exchange.fetch_positions([LINEAR])
    assert positions[0]["contracts"] == 0
    with pytest.raises(ccxt_errors.InvalidOrder):
        await exchange.create_order(LINEAR, "market", "sell", 0.5, params={"reduceOnly": True})

    closed = await exchange.fetch_closed_orders(LINEAR)
    assert {o["clientOrderId"] for o in closed} == {"dkl1", "dkl5"}
    trades = await exchange.fetch_my_trades(LINEAR)
    assert sorted(t["side"] for t in trades) == ["buy", "sell"]
    assert {t["order"] for t in trades} == {o["id"] for o in closed}


async def test_spot_orders_move_both_coins_and_cancel_all_clears_the_market(exchange: Any) -> None:
    before = await exchange.fetch_balance()
    bought = await exchange.create_order(SPOT, "market", "buy", 0.1, params={"clientOrderId": "dks1"})
    order = await fetch_order(exchange, bought["id"], SPOT)
    assert order["status"] == "closed" and order["filled"] == 0.1
    after = await exchange.fetch_balance()
    assert after["USDT"]["total"] < before["USDT"]["total"]
    by_cost = await exchange.create_market_buy_order_with_cost(SPOT, 20)
    spent = await fetch_order(exchange, by_cost["id"], SPOT)
    assert spent["info"]["marketUnit"] == "quoteCoin" and 19 < spent["cost"] <= 20
    _, ask = await price(exchange, SPOT)
    for cid in ("dks2", "dks3"):
        await exchange.create_order(SPOT, "limit", "sell", 0.1, round(ask * 1.2, 2),
                                    params={"clientOrderId": cid})
    assert {o["clientOrderId"] for o in await exchange.fetch_open_orders(SPOT)} == {"dks2", "dks3"}
    locked = await exchange.fetch_balance()
    assert locked["SOL"]["free"] == pytest.approx(locked["SOL"]["total"] - 0.2, abs=1e-9)
    assert len(await exchange.cancel_all_orders(SPOT)) == 2
    assert await exchange.fetch_open_orders(SPOT) == []
    trades = await exchange.fetch_my_trades(SPOT)
    assert {t["order"] for t in trades} == {bought["id"], by_cost["id"]}


async def test_inverse_orders_open_a_coin_margined_position(exchange: Any) -> None:
    sold = await exchange.create_order(INVERSE, "market", "sell", 100, params={"clientOrderId": "dki1"})
    positions = await exchange.fetch_positions([INVERSE])
    assert positions[0]["side"] == "short" and positions[0]["contracts"] == 100
    assert positions[0]["info"]["positionValue"] != ""
    trades = await exchange.fetch_my_trades(INVERSE)
    assert trades[0]["order"] == sold["id"] and trades[0]["fee"]["currency"] == "SOL"
    await exchange.create_order(INVERSE, "market", "buy", 100, params={"reduceOnly": True})
    assert (await exchange.fetch_positions([INVERSE]))[0]["contracts"] == 0
    assert len(await exchange.fetch_closed_orders(INVERSE)) == 2


async def test_a_repeated_order_link_id_is_refused_as_bybit_refuses_it(exchange: Any) -> None:
    await exchange.create_order(LINEAR, "market", "buy", 0.1, params={"clientOrderId": "dkdup"})
    with pytest.raises(ccxt_errors.InvalidOrder, match="110072"):
        await exchange.create_order(LINEAR, "market", "buy", 0.1, params={"clientOrderId": "dkdup"})
    await exchange.create_order(SPOT, "market", "buy", 0.1, params={"clientOrderId": "dkdup"})
    with pytest.raises(ccxt_errors.InvalidOrder, match="170141"):
        await exchange.create_order(SPOT, "market", "buy", 0.1, params={"clientOrderId": "dkdup"})
    assert len(await exchange.fetch_closed_orders(LINEAR)) == 1


async def test_a_refused_signature_raises_authentication_error(emulator: RunningServer) -> None:
    for key, secret in ((KEY, "wrong-secret"), ("unknown-key", SECRET)):
        bad = client(emulator, key, secret)
        try:
            with pytest.raises(ccxt_errors.AuthenticationError):
                await bad.load_markets()
        finally:
            await bad.close()


async def test_a_refused_websocket_auth_leaves_private_topics_closed(emulator: RunningServer) -> None:
    expires = int(time.time() * 1000) + 10_000
    url = emulator.url.replace("http://", "ws://") + "/v5/private"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await ws.send_json({"op": "auth", "args": [KEY, expires, sign("wrong", f"GET/realtime{expires}")]})
        assert await ws.receive_json() == {"success": False, "ret_msg": "Params Error", "op": "auth",
                                           "conn_id": ANY}
        await ws.send_json({"op": "subscribe", "args": ["order"]})
        refused = await ws.receive_json()
        assert refused["success"] is False and refused["ret_msg"] == "Request not authorized"
        await ws.send_json({"req_id": "p1", "op": "ping"})
        pong = await ws.receive_json()
        assert pong["op"] == "pong" and pong["req_id"] == "p1"


async def test_a_timestamp_outside_the_receive_window_is_refused(exchange: Any) -> None:
    exchange.options["timeDifference"] = 60_000
    with pytest.raises(ccxt_errors.InvalidNonce, match="10002"):
        await exchange.fetch_balance()


async def test_the_api_key_reports_trade_but_not_withdraw_permission(exchange: Any) -> None:
    info = (await exchange.private_get_v5_user_query_api())["result"]
    assert info["permissions"]["ContractTrade"] == ["Order", "Position"]
    assert "Withdraw" not in info["permissions"]["Wallet"] and info["readOnly"] == 0


async def test_funding_settles_as_funding_executions_and_rate_history(emulator: RunningServer,
                                                                     exchange: Any) -> None:
    await exchange.create_order(LINEAR, "market", "sell", 1, params={"clientOrderId": "dkf1"})
    await exchange.create_order(INVERSE, "market", "sell", 100, params={"clientOrderId": "dkf2"})

    async def funding() -> list[dict[str, Any]]:
        return list(await exchange.fetch_funding_history(LINEAR))

    payments = await eventually(funding)
    by_symbol = {p.symbol: p for p in emulator.venue.engine.funding_payments(KEY)}
    engine_payment = by_symbol[LINEAR]
    inverse = await exchange.fetch_funding_history(INVERSE)
    assert [(p["id"], Decimal(str(p["amount"]))) for p in inverse] == [
        (by_symbol[INVERSE].payment_id, -by_symbol[INVERSE].amount)]
    assert payments[0]["id"] == engine_payment.payment_id
    assert Decimal(str(payments[0]["amount"])) == -engine_payment.amount
    assert payments[0]["rate"] == float(engine_payment.rate)
    assert payments[0]["timestamp"] == emulator.venue.stamp_ms(engine_payment.ts)
    history = await exchange.fetch_funding_rate_history(LINEAR)
    assert [h["timestamp"] for h in history] == [payments[0]["timestamp"]]
    log = await exchange.private_get_v5_account_transaction_log(
        {"accountType": "UNIFIED", "category": "linear", "type": "SETTLEMENT"})
    entry = log["result"]["list"][0]
    assert entry["tradeId"] == engine_payment.payment_id
    assert Decimal(entry["funding"]) == engine_payment.amount
    position = (await exchange.fetch_positions([LINEAR]))[0]["info"]
    fee = Decimal(str((await exchange.fetch_my_trades(LINEAR))[0]["fee"]["cost"]))
    assert Decimal(position["cumRealisedPnl"]) == engine_payment.amount - fee


# websockets


async def test_watch_tickers_and_order_books_stream_public_updates(exchange: Any) -> None:
    for symbol in (SPOT, LINEAR, INVERSE):
        first = await exchange.watch_ticker(symbol)
        second = await exchange.watch_ticker(symbol)
        assert first["symbol"] == second["symbol"] == symbol and second["last"]
        book = await exchange.watch_order_book(symbol)
        book = await exchange.watch_order_book(symbol)
        assert book["bids"][0][0] < book["asks"][0][0] and len(book["bids"]) == 50
    perp = await exchange.watch_ticker(LINEAR)
    assert perp["bid"] < perp["ask"] and perp["markPrice"]
    tickers = await exchange.watch_tickers([LINEAR, "BTC/USDT:USDT"])
    assert set(tickers) <= {LINEAR, "BTC/USDT:USDT"} and tickers


async def test_private_streams_push_orders_fills_positions_and_balance(exchange: Any) -> None:
    assert await exchange.watch_positions() == []
    orders = asyncio.ensure_future(exchange.watch_orders())
    trades = asyncio.ensure_future(exchange.watch_my_trades())
    positions = asyncio.ensure_future(exchange.watch_positions())
    balance = asyncio.ensure_future(exchange.watch_balance())
    await asyncio.sleep(0.3)
    created = await exchange.create_order(LINEAR, "market", "buy", 1, params={"clientOrderId": "dkw1"})
    pushed = await asyncio.wait_for(orders, 5)
    assert [(o["id"], o["clientOrderId"], o["status"]) for o in pushed] == [(created["id"], "dkw1", "closed")]
    fills = await asyncio.wait_for(trades, 5)
    assert fills[0]["order"] == created["id"] and fills[0]["amount"] == 1
    assert (await exchange.fetch_my_trades(LINEAR))[0]["id"] == fills[0]["id"]
    moved = await asyncio.wait_for(positions, 5)
    assert [(p["symbol"], p["side"], p["contracts"]) for p in moved] == [(LINEAR, "long", 1)]
    wallet = await asyncio.wait_for(balance, 5)
    assert wallet["USDT"]["total"] > 0 and wallet["SOL"]["total"] > 0


# recorded payload shapes


def _same_shape(recorded: Any, ours: Any, where: str) -> None:
    """`ours` has every key of `recorded`, with values of the same JSON type (recursively)."""
    if isinstance(recorded, dict):
        assert isinstance(ours, dict), where
        if where.endswith("cumFeeDetail"):
            return
        missing = set(recorded) - set(ours) - {"mmrSysUpdateTime"}
        assert not missing, f"{where}: missing {sorted(missing)}"
        for key in recorded.keys() & ours.keys():
            _same_shape(recorded[key], ours[key], f"{where}.{key}")
    elif isinstance(recorded, list) and recorded and ours:
        _same_shape(recorded[0], ours[0], f"{where}[0]")
    elif recorded is not None and not isinstance(recorded, list):
        assert type(ours) is type(recorded), f"{where}: {ours!r} is not like {recorded!r}"


def _recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


async def _raw_stream(url: str, topics: list[str], *, private: bool = False,
                      action: Callable[[], Awaitable[Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Subscribe with a plain websocket client; the first message of each topic."""
    first: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        if private:
            expires = int(time.time() * 1000) + 10_000
            await ws.send_json({"op": "auth", "args": [KEY, expires, sign(SECRET, f"GET/realtime{expires}")]})
            assert (await ws.receive_json())["success"] is True
        await ws.send_json({"op": "subscribe", "req_id": "1", "args": topics})
        assert (await ws.receive_json())["success"] is True
        if action is not None:
            await action()
        while set(first) != set(topics):
            message = await asyncio.wait_for(ws.receive_json(), 5)
            first.setdefault(message["topic"], message)
    return first


async def test_payloads_carry_the_fields_of_bybits_recorded_examples(emulator: RunningServer,
                                                                     exchange: Any) -> None:
    base = emulator.url.replace("http://", "ws://")

    async def trade() -> None:
        await exchange.create_order(LINEAR, "market", "buy", 1, params={"clientOrderId": "dkshape"})

    private = await _raw_stream(f"{base}/v5/private", ["order", "execution", "position", "wallet"],
                                private=True, action=trade)
    for topic in private:
        _same_shape(_recorded(f"ws_{topic}.json"), private[topic], topic)
    linear = await _raw_stream(f"{base}/v5/public/linear", ["tickers.SOLUSDT", "orderbook.50.SOLUSDT"])
    _same_shape(_recorded("ws_ticker_linear.json"), linear["tickers.SOLUSDT"], "linear ticker")
    _same_shape(_recorded("ws_orderbook.json"), linear["orderbook.50.SOLUSDT"], "orderbook")
    spot = await _raw_stream(f"{base}/v5/public/spot", ["tickers.SOLUSDT"])
    _same_shape(_recorded("ws_ticker_spot.json"), spot["tickers.SOLUSDT"], "spot ticker")

    await exchange.create_order(LINEAR, "limit", "buy", 10, 1, params={"clientOrderId": "dkshape2"})
    await exchange.create_order(INVERSE, "market", "sell", 10)
    rest = {
        "rest_order_realtime_linear.json": exchange.private_get_v5_order_realtime(
            {"category": "linear", "symbol": "SOLUSDT"}),
        "rest_order_history_linear.json": exchange.private_get_v5_order_history({"category": "linear"}),
        "rest_execution_list_linear.json": exchange.private_get_v5_execution_list({"category": "linear"}),
        "rest_position_list_inverse.json": exchange.private_get_v5_position_list({"category": "inverse"}),
        "rest_wallet_balance_unified.json": exchange.private_get_v5_account_wallet_balance(
            {"accountType": "UNIFIED"}),
        "rest_tickers_inverse.json": exchange.public_get_v5_market_tickers({"category": "inverse"}),
        "rest_tickers_spot.json": exchange.public_get_v5_market_tickers({"category": "spot"}),
        "rest_instruments_linear.json": exchange.public_get_v5_market_instruments_info(
            {"category": "linear"}),
        "rest_instruments_spot.json": exchange.public_get_v5_market_instruments_info(
            {"category": "spot"}),
        "rest_api_key_info.json": exchange.private_get_v5_user_query_api(),
    }
    for name, call in rest.items():
        _same_shape(_recorded(name), await call, name)


# injected faults


async def test_rate_limits_raise_rate_limit_errors_and_clear(emulator: RunningServer, exchange: Any) -> None:
    await set_faults(emulator, rate_limit=1)
    with pytest.raises(ccxt_errors.RateLimitExceeded, match="10006"):
        await exchange.fetch_ticker(LINEAR)
    await set_faults(emulator, rate_limit=0, ip_rate_limit=1)
    with pytest.raises(ccxt_errors.RateLimitExceeded, match="403"):
        await exchange.fetch_balance()
    await set_faults(emulator, ip_rate_limit=0)
    assert (await exchange.fetch_ticker(LINEAR))["bid"]


async def test_rate_limit_refusals_name_their_wait(emulator: RunningServer) -> None:
    await set_faults(emulator, http_rate_limit=1, retry_after_ms=1500)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{emulator.url}/v5/market/time") as response:
            assert (response.status, response.headers["Retry-After"]) == (429, "2")  # whole seconds, up
        await set_faults(emulator, http_rate_limit=0, rate_limit=1)
        async with session.get(f"{emulator.url}/v5/market/time") as response:
            reset_ms = int(response.headers["X-Bapi-Limit-Reset-Timestamp"])
            assert (await response.json())["retCode"] == 10006
    assert 0 < reset_ms - time.time() * 1000 <= 1500


async def test_malformed_account_answers_are_injected_each_kind_in_turn(emulator: RunningServer,
                                                                       exchange: Any) -> None:
    exchange.enableLastJsonResponse = True
    await set_faults(emulator, malformed_wallet=1, malformed_positions=1)
    wallets, read = [], []
    for _ in range(3):
        read.append(await exchange.fetch_balance())
        wallets.append(exchange.last_json_response)
    held = await exchange.fetch_positions(None, {"subType": "linear", "settleCoin": "USDT"})
    positions = exchange.last_json_response

    assert not any(read[0]["total"].values()) and held == []  # stock ccxt: an empty account
    assert "result" not in wallets[0] and wallets[0]["retCode"] == 0
    assert wallets[1]["result"]["list"] == {"coin": "USDT"}
    assert all("walletBalance" not in coin for coin in wallets[2]["result"]["list"][0]["coin"])
    assert "result" not in positions and positions["retCode"] == 0


async def test_nan_prices_and_absurd_timestamps_are_injected(emulator: RunningServer) -> None:
    async with aiohttp.ClientSession() as session, session.ws_connect(
        emulator.url.replace("http://", "ws://") + "/v5/public/linear"
    ) as ws:
        await ws.send_json({"op": "subscribe", "args": ["tickers.SOLUSDT"]})
        assert json.loads(await ws.receive_str())["success"] is True
        await set_faults(emulator, ws_nan_prices=1)
        nan = await next_push(ws, lambda push: "NaN" in push["data"].values())
        await set_faults(emulator, ws_nan_prices=0, ws_absurd_ts=1)
        absurd = await next_push(ws, lambda push: push["ts"] == 10**20)

    assert all(value == "NaN" for key, value in nan["data"].items() if "Price" in key)
    assert all(value == 10**20 for key, value in absurd["data"].items() if key.endswith("Time"))


async def next_push(ws: aiohttp.ClientWebSocketResponse, wanted: Callable[[Any], bool]) -> Any:
    """The next push `wanted` (one sent before a fault was switched may come first)."""
    while not wanted(push := json.loads(await asyncio.wait_for(ws.receive_str(), 5))):
        pass
    return push


async def test_server_errors_raise_exchange_not_available(emulator: RunningServer, exchange: Any) -> None:
    await set_faults(emulator, server_error=1)
    with pytest.raises(ccxt_errors.ExchangeNotAvailable):
        await exchange.fetch_positions([LINEAR])
    await set_faults(emulator, server_error=0, latency_ms=300)
    started = time.monotonic()
    await exchange.fetch_time()
    assert time.monotonic() - started >= 0.3


async def test_a_timeout_after_acceptance_leaves_the_order_to_be_found_by_client_id(
    emulator: RunningServer, exchange: Any
) -> None:
    await set_faults(emulator, timeout_after_accept=1, hang_ms=1500)
    exchange.timeout = 500
    with pytest.raises(ccxt_errors.RequestTimeout):
        await exchange.create_order(LINEAR, "market", "buy", 0.1, params={"clientOrderId": "dkto1"})
    await set_faults(emulator, timeout_after_accept=0)
    exchange.timeout = 10_000
    found = await exchange.fetch_open_orders(LINEAR, params={"orderLinkId": "dkto1"})
    assert [(o["clientOrderId"], o["status"]) for o in found] == [("dkto1", "closed")]


async def test_partial_delayed_and_refused_fills_are_injected(emulator: RunningServer, exchange: Any) -> None:
    await set_faults(emulator, partial_fill=1)
    partial = await exchange.create_order(LINEAR, "market", "buy", 1, params={"clientOrderId": "dkp1"})
    await set_faults(emulator, partial_fill=0, delayed_fill=1)
    delayed = await exchange.create_order(LINEAR, "market", "buy", 1, params={"clientOrderId": "dkp2"})
    await set_faults(emulator, delayed_fill=0, insufficient_balance=1)
    with pytest.raises(ccxt_errors.InsufficientFunds, match="110007"):
        await exchange.create_order(LINEAR, "market", "buy", 1, params={"clientOrderId": "dkp3"})
    await set_faults(emulator, insufficient_balance=0)
    await exchange.create_order(LINEAR, "market", "buy", 1, params={"clientOrderId": "dkp3"})

    async def fills_of(order: dict[str, Any]) -> list[float] | None:
        state = await fetch_order(exchange, order["id"], LINEAR)
        if state["status"] != "closed":
            return None
        trades = await exchange.fetch_my_trades(LINEAR, params={"orderId": order["id"]})
        return sorted(t["amount"] for t in trades)

    assert await eventually(lambda: fills_of(partial)) == [0.5, 0.5]
    assert await eventually(lambda: fills_of(delayed)) == [1]
    created = (await fetch_order(exchange, delayed["id"], LINEAR))["timestamp"]
    fill = (await exchange.fetch_my_trades(LINEAR, params={"orderId": delayed["id"]}))[0]
    assert fill["timestamp"] > created


async def test_dropped_websockets_fail_the_watch_and_reconnect(emulator: RunningServer,
                                                               exchange: Any) -> None:
    await exchange.watch_ticker(LINEAR)
    pending_orders = asyncio.ensure_future(exchange.watch_orders())
    await asyncio.sleep(0.3)
    async with aiohttp.ClientSession() as session, session.post(f"{emulator.url}/sim/drop-websockets") as r:
        assert (await r.json())["dropped"] == 2
    with pytest.raises(ccxt_errors.NetworkError):
        await asyncio.wait_for(pending_orders, 5)

    async def ticker_again() -> dict[str, Any] | None:
        try:
            return dict(await exchange.watch_ticker(LINEAR))
        except ccxt_errors.NetworkError:
            return None

    assert (await eventually(ticker_again))["symbol"] == LINEAR
    orders = asyncio.ensure_future(exchange.watch_orders())
    await asyncio.sleep(0.3)
    await exchange.create_order(LINEAR, "market", "buy", 0.1, params={"clientOrderId": "dkr1"})
    assert (await asyncio.wait_for(orders, 5))[-1]["clientOrderId"] == "dkr1"


async def test_malformed_websocket_messages_are_injected(emulator: RunningServer) -> None:
    await set_faults(emulator, ws_malformed=1)
    async with aiohttp.ClientSession() as session, session.ws_connect(
        emulator.url.replace("http://", "ws://") + "/v5/public/linear"
    ) as ws:
        await ws.send_json({"op": "subscribe", "args": ["tickers.SOLUSDT"]})
        assert json.loads(await ws.receive_str())["success"] is True
        frame = await asyncio.wait_for(ws.receive_str(), 5)
    with pytest.raises(ValueError):
        json.loads(frame)


async def test_the_control_endpoint_refuses_unknown_faults(emulator: RunningServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{emulator.url}/sim/faults", json={"meteor_strike": 1}) as response:
            assert response.status == 400 and "meteor_strike" in (await response.json())["error"]
        async with session.get(f"{emulator.url}/sim/faults") as response:
            assert (await response.json())["rate_limit"] == 0
