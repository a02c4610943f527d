"""The Bybit emulator as real Bybit behaves, seen through the stock ccxt client: one clock for every
timestamp at the default simulated speed, the `X-Bapi-Limit*` headers and the per-key limits they announce,
conditional and take-profit / stop-loss parameters refused, the unified account's empty
`availableToWithdraw`, and funding executions that name their order."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt.pro as ccxtpro
import pytest
from ccxt.base import errors as ccxt_errors

from deltakeeper.config import Settings
from deltakeeper.sim.bybit.client import point_ccxt_at
from deltakeeper.sim.bybit.server import RunningServer, serve

KEY, SECRET = "dk-fidelity-key", "dk-fidelity-secret"
LINEAR, SPOT, INVERSE = "SOL/USDT:USDT", "SOL/USDT", "SOL/USD:SOL"
DEFAULT_SPEED = Settings.model_fields["sim_speed"].default
FUNDING_INTERVAL_SECS = 8 * 3600
FUNDING_LEAD_SECS = 1800
"""The simulated clock starts this long before a funding time, hours after the wall time: at the default
speed the funding settles three seconds into a test."""
CCXT_AHEAD_MS = 60_000
"""ccxt's own test suite refuses an item stamped more than a minute after the client's clock."""
SLACK_MS = 1000


def next_funding_time() -> datetime:
    boundary = (math.floor(time.time() / FUNDING_INTERVAL_SECS) + 1) * FUNDING_INTERVAL_SECS
    return datetime.fromtimestamp(boundary - FUNDING_LEAD_SECS, UTC)


@pytest.fixture
async def emulator() -> AsyncIterator[RunningServer]:
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=DEFAULT_SPEED, seed=11,
                         start=next_funding_time(), tick_secs=30, scenario=False)
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
async def exchange(emulator: RunningServer) -> AsyncIterator[Any]:
    client = ccxtpro.bybit({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    point_ccxt_at(client, emulator.url)
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()


async def funding_history(exchange: Any, symbol: str) -> list[dict[str, Any]]:
    """The symbol's funding payments, once the first has settled."""
    deadline = time.monotonic() + 10
    while not (payments := await exchange.fetch_funding_history(symbol)):
        assert time.monotonic() < deadline, "no funding settled"
        await asyncio.sleep(0.2)
    return list(payments)


async def test_every_timestamp_reads_the_servers_clock_at_the_default_speed(exchange: Any) -> None:
    started_ms = exchange.milliseconds()
    created = await exchange.create_order(LINEAR, "market", "sell", 1, params={"clientOrderId": "dkclock"})
    payments = await funding_history(exchange, LINEAR)
    order = await exchange.fetch_order(created["id"], LINEAR, params={"acknowledged": True})
    trades = await exchange.fetch_my_trades(LINEAR)
    position = (await exchange.fetch_positions([LINEAR]))[0]
    ticker = await exchange.fetch_ticker(LINEAR)
    book = await exchange.fetch_order_book(LINEAR)
    streamed = await exchange.watch_ticker(LINEAR)
    server_ms = await exchange.fetch_time()
    local_ms = exchange.milliseconds()

    stamps = {
        "order": order["timestamp"],
        "order updatedTime": int(order["info"]["updatedTime"]),
        "fill": trades[0]["timestamp"],
        "funding": payments[0]["timestamp"],
        "position createdTime": int(position["info"]["createdTime"]),
        "position updatedTime": position["timestamp"],
        "order book": book["timestamp"],
        "streamed ticker": streamed["timestamp"],
    }
    late = {name: ms for name, ms in stamps.items()
            if not started_ms - SLACK_MS <= ms <= server_ms + SLACK_MS}
    assert not late, f"outside [{started_ms}, {server_ms}]: {late}"
    assert all(ms < local_ms + CCXT_AHEAD_MS for ms in stamps.values())
    assert abs(server_ms - local_ms) < SLACK_MS
    wall_interval_ms = FUNDING_INTERVAL_SECS * 1000 / DEFAULT_SPEED  # the next funding, a simulated 8h on
    assert abs(int(ticker["info"]["nextFundingTime"]) - payments[0]["timestamp"] - wall_interval_ms) <= 1


async def test_rate_limit_headers_count_a_keys_requests_down_per_path(exchange: Any) -> None:
    statuses = []
    for _ in range(3):
        await exchange.fetch_balance()
        headers = exchange.last_response_headers
        assert headers["X-Bapi-Limit"] == "50"
        assert abs(int(headers["X-Bapi-Limit-Reset-Timestamp"]) - exchange.milliseconds()) < SLACK_MS
        statuses.append(int(headers["X-Bapi-Limit-Status"]))
    assert statuses == sorted(statuses, reverse=True) and statuses[0] < 50 and len(set(statuses)) == 3
    await exchange.fetch_positions([LINEAR])
    assert exchange.last_response_headers["X-Bapi-Limit-Status"] == "49"  # another path, its own count


async def test_requests_over_a_paths_limit_are_refused_until_it_resets(exchange: Any) -> None:
    results = await asyncio.gather(
        *(exchange.cancel_order(f"missing-{i}", LINEAR) for i in range(11)), return_exceptions=True)
    refused = [r for r in results if isinstance(r, ccxt_errors.RateLimitExceeded)]
    assert len(refused) == 1 and "10006" in str(refused[0])
    assert sum(isinstance(r, ccxt_errors.OrderNotFound) for r in results) == 10


@pytest.mark.parametrize("params", [
    {"stopLoss": {"triggerPrice": 50}},
    {"takeProfit": {"triggerPrice": 500}},
    {"triggerPrice": 150, "triggerDirection": "ascending"},
    {"stopLossPrice": 50},
])
async def test_conditional_and_tpsl_orders_are_refused_not_placed_plain(
        emulator: RunningServer, exchange: Any, params: dict[str, Any]) -> None:
    with pytest.raises(ccxt_errors.BadRequest, match=r"10001.*not supported"):
        await exchange.create_order(LINEAR, "market", "sell", 1, params=params)
    assert emulator.venue.engine.orders(KEY) == []


async def test_a_plain_order_filter_is_a_plain_order(exchange: Any) -> None:
    order = await exchange.create_order(SPOT, "market", "sell", 1, params={"orderFilter": "Order"})
    assert (await exchange.fetch_order(order["id"], SPOT, params={"acknowledged": True}))["filled"] == 1


async def test_the_unified_wallet_leaves_available_to_withdraw_empty(exchange: Any) -> None:
    await exchange.create_order(LINEAR, "market", "sell", 10)
    balance = await exchange.fetch_balance()

    coins = balance["info"]["result"]["list"][0]["coin"]
    assert coins and all(coin["availableToWithdraw"] == "" for coin in coins)
    usdt = next(coin for coin in coins if coin["coin"] == "USDT")
    used = Decimal(usdt["locked"]) + Decimal(usdt["totalPositionIM"]) + Decimal(usdt["totalOrderIM"])
    assert used > 0
    assert Decimal(str(balance["USDT"]["used"])) == used
    assert Decimal(str(balance["USDT"]["free"])) == Decimal(usdt["walletBalance"]) - used


async def test_funding_executions_name_their_order(exchange: Any) -> None:
    await exchange.create_order(LINEAR, "market", "sell", 1)
    await exchange.create_order(INVERSE, "market", "buy", 10)
    uid = (await exchange.private_get_v5_user_query_api())["result"]["userID"]
    for symbol, bybit_symbol, side in ((LINEAR, "SOLUSDT", "Sell"), (INVERSE, "SOLUSD", "Buy")):
        payment = (await funding_history(exchange, symbol))[0]
        assert payment["info"]["execType"] == "Funding"
        assert payment["info"]["orderId"] == (
            f"{payment['timestamp'] // 1000}-{bybit_symbol}-{uid}-{side}")
