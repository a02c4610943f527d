"""Fills and funding read page by page outside Bybit: a real ccxt OKX client whose HTTP answers are
recorded shapes, answered by a fake transport that serves a busy account's history a page at a time."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from tests.unit.test_ccxt_order_lookup import NOW_MS, Clock, answering, okx, recorded

from deltakeeper.adapters import ccxt_history
from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.domain.errors import ExchangeUnavailable

SINCE = datetime(2023, 12, 31, tzinfo=UTC)
SINCE_MS = int(SINCE.timestamp() * 1000)


def okx_fill(n: int, ts_ms: int) -> dict[str, Any]:
    """OKX `GET /api/v5/trade/fills-history` entry (the shape of `okx_inverse_fill.json`) on BTC-USDT-SWAP."""
    return {"side": "sell", "fillSz": "1", "fillPx": "100", "fee": "-0.01", "ordId": str(1000 + n),
            "instType": "SWAP", "instId": "BTC-USDT-SWAP", "clOrdId": f"dk{n}", "posSide": "net",
            "billId": str(5000 + n), "subType": "2", "tag": "", "execType": "T", "tradeId": str(9000 + n),
            "feeCcy": "USDT", "ts": str(ts_ms)}


def fills_history(count: int, newest_first: bool) -> list[dict[str, Any]]:
    """`count` fills since SINCE, a second apart but for two pairs sharing a millisecond across the edges
    of the first page (fills 99 and 100 oldest first, 149 and 150 newest first); served 100 at most per
    answer, within `begin` and `end` (both inclusive), from the newest (OKX's order) or from the oldest."""
    stamps = [SINCE_MS + 1000 * (n - (n in (100, 150))) for n in range(count)]
    fills = [okx_fill(n, ts_ms) for n, ts_ms in enumerate(stamps)]

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/public/instruments"):
            swaps = [recorded("okx_instrument_swap.json")] if query.get("instType") == "SWAP" else []
            return {"code": "0", "msg": "", "data": swaps}
        if not path.endswith("/trade/fills-history"):
            return {"code": "0", "msg": "", "data": []}  # ccxt's look-up of currencies
        begin, end = int(query.get("begin", 0)), int(query.get("end", NOW_MS))
        inside = [fill for fill in fills if begin <= int(fill["ts"]) <= end]
        page = list(reversed(inside))[:100] if newest_first else inside[:100]
        return {"code": "0", "msg": "", "data": page}

    answer.fills = fills  # type: ignore[attr-defined]
    return answer  # type: ignore[return-value]


@pytest.mark.parametrize("newest_first", [True, False], ids=["newest_first", "oldest_first"])
async def test_every_fill_of_three_pages_is_read_once_in_order(newest_first: bool) -> None:
    exchange = okx()
    answer: Any = fills_history(250, newest_first)
    asked = answering(exchange, answer)
    try:
        fills = await exchange.fetch_fills(SINCE)
    finally:
        await exchange.close()

    assert sorted(fill.client_order_id for fill in fills) == sorted(fill["clOrdId"] for fill in answer.fills)
    assert len(fills) == 250
    assert [fill.ts for fill in fills] == sorted(fill.ts for fill in fills)
    assert asked.count("/api/v5/trade/fills-history") >= 3


async def test_more_pages_than_the_bound_fail_not_answer_part(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ccxt_history, "_HISTORY_PAGES", 2)
    exchange = okx()
    answering(exchange, fills_history(250, newest_first=True))
    try:
        with pytest.raises(ExchangeUnavailable):
            await exchange.fetch_fills(SINCE)
    finally:
        await exchange.close()


async def test_deribit_perpetual_funding_is_read_from_every_page_of_the_transaction_log() -> None:
    exchange = CcxtExchange("deribit", clock=Clock(), api_key="k", secret="s")
    log = recorded("deribit_transaction_log_settlement.json")
    asked: list[dict[str, str]] = []

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/public/get_instruments"):
            return recorded("deribit_instruments.json")
        if path.endswith("/private/get_transaction_log"):
            asked.append(query)
            return log["second_page"] if query.get("continuation") == "61304" else log["first_page"]
        return {"jsonrpc": "2.0", "result": []}  # ccxt's look-up of currencies

    answering(exchange, answer)
    try:
        await exchange.load_instruments()
        payments = await exchange.fetch_funding_payments(SINCE)
    finally:
        await exchange.close()

    assert [(p.payment_id, p.symbol, p.amount, p.currency) for p in payments] == [
        ("log900101", "BTC/USD:BTC", Decimal("0.00000105"), "BTC"),
        ("log900104", "BTC/USD:BTC", Decimal("-0.00000238"), "BTC"),
    ]
    assert payments[0].ts == datetime(2023, 12, 31, 4, tzinfo=UTC)
    assert [(q["currency"], q["query"], q["start_timestamp"]) for q in asked] == [
        ("BTC", "settlement", str(SINCE_MS))] * 2


async def test_okx_funding_bills_are_read_across_pages_by_okxs_own_bounds() -> None:
    """ccxt's okx `fetch_funding_history` sends no time bounds: the adapter gives OKX's `begin`/`end`."""
    exchange = okx()
    bill = recorded("okx_funding_bill.json")
    bills = [{**bill, "instId": "BTC-USDT-SWAP", "ccy": "USDT", "billId": str(7000 + n),
              "ts": str(SINCE_MS + 60_000 * n), "balChg": "0.01", "pnl": "0.01"} for n in range(230)]

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/public/instruments"):
            swaps = [recorded("okx_instrument_swap.json")] if query.get("instType") == "SWAP" else []
            return {"code": "0", "msg": "", "data": swaps}
        if not path.endswith("/account/bills-archive"):
            return {"code": "0", "msg": "", "data": []}
        begin, end = int(query.get("begin", 0)), int(query.get("end", NOW_MS))
        inside = [b for b in bills if begin <= int(b["ts"]) <= end]
        return {"code": "0", "msg": "", "data": list(reversed(inside))[:100]}  # newest first, 100 at most

    answering(exchange, answer)
    try:
        payments = await exchange.fetch_funding_payments(SINCE)
    finally:
        await exchange.close()

    assert [payment.payment_id for payment in payments] == [b["billId"] for b in bills]


async def test_deribit_fills_are_read_across_pages_by_deribits_end_timestamp() -> None:
    """ccxt's deribit `fetch_my_trades` sends no end: the adapter gives Deribit's `end_timestamp`."""
    exchange = CcxtExchange("deribit", clock=Clock(), api_key="k", secret="s")
    trade = recorded("deribit_user_trades_liquidation.json")["counterparty"]
    trades = [{**trade, "instrument_name": "BTC-PERPETUAL", "fee_currency": "BTC", "index_price": 42000,
               "price": 42000, "amount": 10, "liquidation": None, "trade_id": f"BTC-{n}",
               "trade_seq": n, "order_id": f"BTC-9{n}", "timestamp": SINCE_MS + 60_000 * n}
              for n in range(230)]

    def answer(path: str, query: dict[str, str]) -> Any:
        if path.endswith("/public/get_instruments"):
            return recorded("deribit_instruments.json")
        if not path.endswith("/private/get_user_trades_by_currency_and_time"):
            return {"jsonrpc": "2.0", "result": []}
        start, end = int(query["start_timestamp"]), int(query.get("end_timestamp", NOW_MS))
        inside = [t for t in trades if start <= t["timestamp"] <= end]
        page = list(reversed(inside))[:int(query["count"])]  # newest first
        return {"jsonrpc": "2.0", "result": {"trades": page, "has_more": len(inside) > len(page)}}

    answering(exchange, answer)
    try:
        await exchange.load_instruments()
        fills = await exchange.fetch_fills(SINCE)
    finally:
        await exchange.close()

    assert [fill.trade_id for fill in fills] == [t["trade_id"] for t in trades]
