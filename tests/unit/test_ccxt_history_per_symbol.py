"""Fills and funding where ccxt lists them per symbol only: Binance COIN-M (`binancecoinm`) and Bitget
futures, through real ccxt clients whose HTTP answers are the recorded shapes of
`fixtures/ccxt/binancecoinm_futures.json` and `bitget_mix.json`, served by a fake transport a page at a time
within the time window asked for."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import ccxt
import pytest
from tests.unit.test_ccxt_order_lookup import NOW_MS, Clock, answering, recorded

from deltakeeper.adapters.ccxt_binance import use_futures_errors
from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.bootstrap import track_markets
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.sim.bybit.client import point_ccxt_at

COINM = recorded("binancecoinm_futures.json")
BITGET = recorded("bitget_mix.json")
SINCE = datetime(2023, 12, 1, tzinfo=UTC)
"""A month before the clock's now (2024-01-01): more than one window on either exchange."""
SINCE_MS = int(SINCE.timestamp() * 1000)
DAY_MS = 86_400_000
BINANCE_INTERNAL_ERROR = {"code": -1001,
                          "msg": "Internal error; unable to process your request. Please try again."}
BITGET_OK = {"code": "00000", "msg": "success", "requestTime": NOW_MS}


def window(query: dict[str, str], default_span_ms: int) -> tuple[int, int]:
    """The [startTime, endTime] a request asks for (both inclusive), its end by default the start plus
    `default_span_ms`."""
    start = int(query["startTime"])
    return start, int(query.get("endTime", start + default_span_ms))


# --- Binance COIN-M --------------------------------------------------------------------------------


def coinm() -> CcxtExchange:
    """A COIN-M account without ccxt's rate limiter (the fake transport answers at once)."""
    return CcxtExchange("binancecoinm", clock=Clock(), api_key="k", secret="s",
                        ccxt_config={"enableRateLimit": False})


def coinm_trade(symbol: str, n: int, ts_ms: int) -> dict[str, Any]:
    """The recorded `userTrades` entry on `symbol`, as the account's n-th trade (ten trades an order)."""
    return {**COINM["user_trades"][0], "symbol": symbol, "pair": symbol.split("_")[0], "id": 800_000 + n,
            "orderId": 900_000 + n // 10, "marginAsset": symbol[:3], "commissionAsset": symbol[:3],
            "time": ts_ms}


def coinm_history() -> tuple[list[dict[str, Any]], list[dict[str, str]], Any]:
    """A busy COIN-M account since SINCE: 230 ETHUSD_PERP trades in its last week (three pages) and one a
    week before, 3 BTCUSD_PERP trades; each trade's order answering its client id `dk<orderId>`. Answers
    `userTrades` as Binance does: one symbol's, oldest first, at most `limit` of them, within a window of
    at most 7 days; the queries asked are kept."""
    eth = [coinm_trade("ETHUSD_PERP", n, NOW_MS - 6 * DAY_MS + 60_000 * n) for n in range(230)]
    eth.append(coinm_trade("ETHUSD_PERP", 230, NOW_MS - 13 * DAY_MS))
    btc = [coinm_trade("BTCUSD_PERP", 300 + n, SINCE_MS + DAY_MS + 3_600_000 * n) for n in range(3)]
    trades = eth + btc
    asked: list[dict[str, str]] = []

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/dapi/v1/exchangeInfo"):
            return COINM["exchange_info"]
        if path.endswith("/dapi/v1/positionRisk"):
            return COINM["position_risk"]
        if path.endswith("/dapi/v1/account"):
            return recorded("binancecoinm_account.json")
        if path.endswith("/dapi/v1/order"):
            order_id = query["orderId"]
            return {**COINM["order"], "orderId": order_id, "clientOrderId": f"dk{order_id}",
                    "symbol": query["symbol"]}
        if not path.endswith("/dapi/v1/userTrades"):
            return []  # ccxt's look-ups of currencies and margin pairs, leverage brackets
        asked.append(query)
        start, end = window(query, 7 * DAY_MS)
        if end - start > 7 * DAY_MS:
            return {"code": -1127, "msg": "More than 7 days between startTime and endTime."}
        inside = [t for t in trades if t["symbol"] == query["symbol"] and start <= t["time"] <= end]
        return sorted(inside, key=lambda t: t["time"])[:int(query["limit"])]

    return trades, asked, answer


async def test_coinm_fills_of_every_held_market_are_read_week_by_week_with_their_client_ids() -> None:
    exchange = coinm()
    trades, asked, answer = coinm_history()
    answering(exchange, answer)
    try:
        await exchange.load_instruments()
        await exchange.fetch_account()  # holds BTCUSD_PERP and ETHUSD_PERP
        fills = await exchange.fetch_fills(SINCE)
    finally:
        await exchange.close()

    assert sorted(fill.trade_id for fill in fills) == sorted(str(t["id"]) for t in trades)
    assert all(fill.client_order_id == f"dk{fill.exchange_order_id}" for fill in fills)
    assert [fill.ts for fill in fills] == sorted(fill.ts for fill in fills)
    eth = next(fill for fill in fills if fill.symbol == "ETH/USD:ETH")
    assert (eth.notional_usd, eth.fee_currency) == (Decimal(10), "ETH")  # one 10 USD contract
    assert {query["symbol"] for query in asked} == {"BTCUSD_PERP", "ETHUSD_PERP"}
    assert all(int(q.get("endTime", NOW_MS)) - int(q["startTime"]) <= 7 * DAY_MS for q in asked)
    assert min(int(q["startTime"]) for q in asked) == SINCE_MS


async def test_a_failing_coinm_read_of_one_market_fails_the_whole_read() -> None:
    exchange = coinm()
    _, asked, history = coinm_history()

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/userTrades") and query.get("symbol") == "ETHUSD_PERP":
            return BINANCE_INTERNAL_ERROR
        return history(path, query)

    answering(exchange, answer)
    try:
        await exchange.load_instruments()
        await exchange.fetch_account()
        with pytest.raises(ExchangeUnavailable):
            await exchange.fetch_fills(SINCE)
    finally:
        await exchange.close()

    assert any(query["symbol"] == "BTCUSD_PERP" for query in asked)  # read, then not answered in part


def test_coinm_errors_behind_a_proxy_are_read_with_the_inverse_futures_codes() -> None:
    """ccxt picks Binance's error table by the URL's host; behind an emulator or proxy the adapter picks
    the client's: -4087 is a bad symbol on COIN-M, a permission refusal on USD-M."""
    exchange = ccxt.binancecoinm()
    point_ccxt_at(exchange, "http://127.0.0.1:9")
    use_futures_errors(exchange)
    body = {"code": -4087, "msg": "Reduce only order is not allowed."}
    url = exchange.urls["api"]["dapiPrivate"] + "/order"

    with pytest.raises(ccxt.BadSymbol):
        exchange.handle_errors(400, "Bad Request", url, "POST", {}, str(body), body, None, None)


async def test_a_coinm_quote_by_rest_is_its_book_ticker_with_its_mark_merged_in() -> None:
    """COIN-M's 24h ticker carries no bid or ask: the book comes from `bookTicker`, the mark, index and
    funding rate from `premiumIndex` (answered as a list on COIN-M)."""
    exchange = coinm()

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/dapi/v1/exchangeInfo"):
            return COINM["exchange_info"]
        if path.endswith("/dapi/v1/ticker/bookTicker"):
            return [COINM["book_ticker"]]
        if path.endswith("/dapi/v1/premiumIndex"):
            return COINM["premium_index"]
        return []

    answering(exchange, answer)
    try:
        await exchange.load_instruments()
        quote = await exchange.fetch_quote("BTC/USD:BTC")
    finally:
        await exchange.close()

    assert (quote.bid, quote.ask, quote.mark) == (Decimal("21301.2"), Decimal("21301.3"), Decimal("21301.51"))
    assert quote.funding_rate == Decimal("0.0001")


# --- Bitget ----------------------------------------------------------------------------------------


def bitget() -> CcxtExchange:
    """A classic (not unified) Bitget account, told so: ccxt asks no account settings of the network.
    Without ccxt's rate limiter (the fake transport answers at once)."""
    return CcxtExchange("bitget", clock=Clock(), api_key="k", secret="s", password="p",
                        ccxt_config={"options": {"uta": False}, "enableRateLimit": False})


def contracts(query: dict[str, str]) -> Any:
    """The recorded BTCUSDT contract and an **adapted** ETHUSDT one (the same terms on ETH) for USDT-futures,
    none for the other products."""
    if query.get("productType") != "USDT-FUTURES":
        return {**BITGET_OK, "data": []}
    [btc] = BITGET["contracts_usdt_futures"]["data"]
    return {**BITGET_OK, "data": [btc, {**btc, "symbol": "ETHUSDT", "baseCoin": "ETH"}]}


def bitget_fill(symbol: str, n: int, ts_ms: int) -> dict[str, Any]:
    return {**BITGET["order_fills"]["data"]["fillList"][0], "symbol": symbol, "tradeId": str(7_000_000 + n),
            "orderId": str(8_000_000 + n // 10), "cTime": str(ts_ms)}


def bitget_bill(symbol: str, n: int, ts_ms: int) -> dict[str, Any]:
    return {**BITGET["account_bill"]["data"]["bills"][n % 2], "symbol": symbol, "billId": str(6_000_000 + n),
            "cTime": str(ts_ms)}


Asked = list[tuple[str, dict[str, str]]]


def bitget_history() -> tuple[list[dict[str, Any]], list[dict[str, Any]], Asked, Any]:
    """A busy Bitget account since SINCE: 150 BTCUSDT fills in its last days and 2 ETHUSDT fills, funding
    every 8 hours on both (93 each); orders answering their client id `dk<orderId>`. Answers fills and
    bills as Bitget does: one symbol's, newest first, at most `limit` (fills: 100 at most, bills: 100),
    within a window of at most 30 days (bills) or three months (fills); the requests are kept."""
    fills = [bitget_fill("BTCUSDT", n, NOW_MS - 2 * DAY_MS + 60_000 * n) for n in range(150)]
    fills += [bitget_fill("ETHUSDT", 200 + n, SINCE_MS + 3_600_000 * (n + 1)) for n in range(2)]
    bills = [bitget_bill(symbol, 1000 * k + n, SINCE_MS + 8 * 3_600_000 * n + 1000 * k)
             for k, symbol in enumerate(["BTCUSDT", "ETHUSDT"]) for n in range(93)]
    asked: Asked = []

    def listing(items: list[dict[str, Any]], query: dict[str, str], max_span_ms: int) -> list[dict[str, Any]]:
        start, end = window(query, max_span_ms)
        assert end - start <= max_span_ms, "Bitget refuses a longer window"
        inside = [i for i in items if i["symbol"] == query["symbol"] and start <= int(i["cTime"]) <= end]
        return sorted(inside, key=lambda i: -int(i["cTime"]))[:min(int(query.get("limit", 100)), 100)]

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/mix/market/contracts"):
            return contracts(query)
        if path.endswith("/mix/order/detail"):
            order_id = query["orderId"]
            detail = {**BITGET["order_detail"]["data"], "orderId": order_id, "clientOid": f"dk{order_id}",
                      "symbol": query["symbol"]}
            return {**BITGET["order_detail"], "data": detail}
        if path.endswith("/mix/order/fills"):
            asked.append((path, query))
            return {**BITGET_OK, "data": {"fillList": listing(fills, query, 90 * DAY_MS), "endId": "0"}}
        if path.endswith("/mix/account/bill"):
            asked.append((path, query))
            return {**BITGET_OK, "data": {"bills": listing(bills, query, 30 * DAY_MS), "endId": "0"}}
        return {**BITGET_OK, "data": []}  # spot and margin markets, currencies

    return fills, bills, asked, answer


async def trading(exchange: CcxtExchange, symbols: list[str]) -> None:
    """The markets `symbols` quoted (as the bot does before it trades them)."""
    await exchange.load_instruments()
    exchange.quotes(symbols)  # subscribing registers the markets; the stream itself is never read


async def test_bitget_fills_of_every_traded_market_are_read_page_by_page_with_their_client_ids() -> None:
    exchange = bitget()
    fills, _, asked, answer = bitget_history()
    answering(exchange, answer)
    try:
        await trading(exchange, ["BTC/USDT:USDT", "ETH/USDT:USDT"])
        read = await exchange.fetch_fills(SINCE)
    finally:
        await exchange.close()

    assert sorted(fill.trade_id for fill in read) == sorted(fill["tradeId"] for fill in fills)
    assert all(fill.client_order_id == f"dk{fill.exchange_order_id}" for fill in read)
    assert {fill.symbol for fill in read} == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
    assert sum(1 for _, query in asked if query["symbol"] == "BTCUSDT") >= 3  # 150 fills: several pages
    assert all(query["productType"] == "USDT-FUTURES" for _, query in asked)


async def test_bitget_funding_of_every_traded_perpetual_is_read_30_days_at_a_time() -> None:
    exchange = bitget()
    _, bills, asked, answer = bitget_history()
    answering(exchange, answer)
    try:
        await trading(exchange, ["BTC/USDT:USDT", "ETH/USDT:USDT"])
        payments = await exchange.fetch_funding_payments(SINCE)
    finally:
        await exchange.close()

    oldest_first = sorted(bills, key=lambda bill: int(bill["cTime"]))
    assert [payment.payment_id for payment in payments] == [bill["billId"] for bill in oldest_first]
    received = next(p for p in payments if p.symbol == "ETH/USDT:USDT" and p.amount > 0)
    assert (received.amount, received.currency) == (Decimal("0.003117"), "USDT")
    assert {query["symbol"] for _, query in asked} == {"BTCUSDT", "ETHUSDT"}
    assert all(query["businessType"] == "contract_settle_fee" for _, query in asked)


async def test_a_failing_bitget_funding_read_of_one_market_fails_the_whole_read() -> None:
    exchange = bitget()
    _, _, asked, history = bitget_history()

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/mix/account/bill") and query.get("symbol") == "ETHUSDT":
            return {"code": "40015", "msg": "System error", "requestTime": NOW_MS, "data": None}
        return history(path, query)

    answering(exchange, answer)
    try:
        await trading(exchange, ["BTC/USDT:USDT", "ETH/USDT:USDT"])
        with pytest.raises(ExchangeUnavailable):
            await exchange.fetch_funding_payments(SINCE - timedelta(days=1))
    finally:
        await exchange.close()

    assert any(query["symbol"] == "BTCUSDT" for _, query in asked)  # read, then not answered in part


async def test_the_bots_markets_are_read_from_the_start_before_any_is_quoted_or_held() -> None:
    # The start's reconciliation runs before the quote streams: a hedge market with no position (closed
    # by a liquidation while the bot was down) is read because the composition root tracks it.
    trades, _, answer = coinm_history()
    read: dict[bool, list[str]] = {}
    for tracked in (False, True):
        exchange = coinm()
        answering(exchange, answer)
        try:
            await exchange.load_instruments()
            if tracked:
                track_markets(exchange, {"BTC/USD:BTC"})
            read[tracked] = [fill.trade_id for fill in await exchange.fetch_fills(SINCE)]
        finally:
            await exchange.close()

    assert read[False] == []
    assert sorted(read[True]) == sorted(str(t["id"]) for t in trades if t["symbol"] == "BTCUSD_PERP")
