"""Looking an order up by its client order id on exchanges other than Bybit (the emulator's): real ccxt
clients (OKX, Deribit) whose HTTP answers are recorded shapes, answered by a fake transport. A failed or
incomplete look-up is never "not found"."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import ccxt
import pytest

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.orders import OrderStatus

FIXTURES = Path(__file__).parent / "fixtures" / "ccxt"
NOW_MS = 1704067200000


class Clock:
    speed = 1.0

    def now(self) -> datetime:
        return datetime(2024, 1, 1, tzinfo=UTC)


def recorded(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def answering(exchange: CcxtExchange, answer: Callable[[str, dict[str, str]], Any]) -> list[str]:
    """The exchange's HTTP answers, by path and query, through ccxt's own error handling; the paths asked."""
    client = exchange._rest
    asked: list[str] = []

    async def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        parts = urlsplit(url)
        asked.append(parts.path)
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        response = answer(parts.path, query)
        client.handle_errors(200, "OK", url, method, {}, json.dumps(response), response, headers, body)
        return response

    client.fetch = fetch
    return asked


def okx() -> CcxtExchange:
    exchange = CcxtExchange("okx", clock=Clock(), api_key="k", secret="s", password="p")
    exchange._rest.set_markets([ccxt.okx().parse_market(recorded("okx_instrument_swap.json"))])
    return exchange


def okx_order(client_order_id: str, order_id: str = "1") -> dict[str, Any]:
    return {"instId": "BTC-USDT-SWAP", "ordId": order_id, "clOrdId": client_order_id, "side": "sell",
            "ordType": "market", "sz": "1", "accFillSz": "1", "avgPx": "100", "px": "", "state": "filled",
            "cTime": str(NOW_MS), "uTime": str(NOW_MS)}


def okx_answer(known: str) -> Callable[[str, dict[str, str]], Any]:
    """Asked for one order: the order with client id `known`, else OKX's 51603; asked for a listing: a
    full page of other orders."""

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/trade/order"):
            if query.get("clOrdId") == known:
                return {"code": "0", "msg": "", "data": [okx_order(known)]}
            return {"code": "51603", "msg": "Order does not exist", "data": []}
        return {"code": "0", "msg": "", "data": [okx_order(f"other{i}", str(i + 2)) for i in range(100)]}

    return answer


async def test_an_order_is_asked_for_by_its_client_id_where_the_exchange_can_be() -> None:
    exchange = okx()
    asked = answering(exchange, okx_answer("dkold1a0"))
    try:
        state = await exchange.fetch_order("BTC/USDT:USDT", "dkold1a0")
    finally:
        await exchange.close()

    assert state is not None and state.client_order_id == "dkold1a0"
    assert state.status is OrderStatus.FILLED
    assert asked == ["/api/v5/trade/order"]  # not behind a page of a busy account's other orders


async def test_an_order_the_exchange_says_it_does_not_have_is_not_found() -> None:
    exchange = okx()
    answering(exchange, okx_answer("dkold1a0"))
    try:
        assert await exchange.fetch_order("BTC/USDT:USDT", "dknever1a0") is None
    finally:
        await exchange.close()


def deribit(open_orders: int, closed_orders: int) -> CcxtExchange:
    """Deribit (no look-up by client id in ccxt): its listings answer that many orders of others."""
    exchange = CcxtExchange("deribit", clock=Clock(), api_key="k", secret="s")
    markets = ccxt.deribit()
    markets.publicGetGetInstruments = lambda params: recorded("deribit_instruments.json")
    exchange._rest.set_markets(markets.fetch_markets())

    def order(n: int) -> dict[str, Any]:
        return {"order_id": str(n), "label": f"other{n}", "instrument_name": "BTC-PERPETUAL",
                "direction": "sell", "amount": 10, "filled_amount": 10, "order_state": "filled",
                "order_type": "market", "average_price": 100, "creation_timestamp": NOW_MS,
                "last_update_timestamp": NOW_MS}

    def answer(path: str, query: dict[str, str]) -> Any:
        count = open_orders if "open_orders" in path else closed_orders
        return {"jsonrpc": "2.0", "result": [order(n) for n in range(count)]}

    answering(exchange, answer)
    return exchange


async def test_a_full_page_of_other_orders_is_an_unknown_outcome_not_not_found() -> None:
    exchange = deribit(open_orders=3, closed_orders=50)
    try:
        with pytest.raises(ExchangeUnavailable):
            await exchange.fetch_order("BTC/USD:BTC", "dkold1a0")
    finally:
        await exchange.close()


async def test_listings_shorter_than_a_page_without_the_order_are_not_found() -> None:
    exchange = deribit(open_orders=3, closed_orders=7)
    try:
        assert await exchange.fetch_order("BTC/USD:BTC", "dkold1a0") is None
    finally:
        await exchange.close()
