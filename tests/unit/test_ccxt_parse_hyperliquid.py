"""Hyperliquid perpetual positions, fills and funding, against recorded payloads (fixtures/ccxt/README.md),
each through ccxt's own `hyperliquid` first (offline: its `info` endpoint answers with the recording)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt
from tests.unit.test_ccxt_order_lookup import Clock
from tests.unit.test_ccxt_parse import recorded

from deltakeeper.adapters.ccxt_account import position_from_ccxt
from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.adapters.ccxt_markets import instrument_from_market
from deltakeeper.adapters.ccxt_trades import fill_from_trade, funding_from_ccxt
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Side

RECORDING = recorded("hyperliquid_perp.json")
WALLET = "0x0000000000000000000000000000000000000001"
ANSWERS = {"metaAndAssetCtxs": RECORDING["meta_and_asset_ctxs"],
           "clearinghouseState": RECORDING["clearinghouse_state"],
           "userFills": RECORDING["user_fills"], "userFillsByTime": RECORDING["user_fills"],
           "userFunding": RECORDING["user_funding"],
           "spotMeta": {"universe": [], "tokens": []},
           "spotMetaAndAssetCtxs": [{"universe": [], "tokens": []}, []], "perpDexs": [None]}
"""The `info` endpoint's answers, by request `type`."""


def hyperliquid() -> ccxt.hyperliquid:
    exchange = ccxt.hyperliquid({"walletAddress": WALLET, "options": {"fetchMarkets": {"types": ["swap"]}}})
    exchange.publicPostInfo = lambda params: ANSWERS[params["type"]]
    exchange.set_markets(exchange.fetch_markets())
    return exchange


def instrument(exchange: ccxt.hyperliquid, symbol: str) -> Instrument:
    return instrument_from_market(exchange.market(symbol), "hyperliquid", exchange.precisionMode)


def test_hyperliquid_perpetual_is_a_usdc_linear_contract_funded_every_hour() -> None:
    sol = instrument(hyperliquid(), "SOL/USDC:USDC")

    assert (sol.kind, sol.inverse, sol.settle, sol.contract_size) == (Kind.PERPETUAL, False, "USDC", 1)
    assert sol.lot_step_contracts == Decimal("0.01")  # szDecimals 2
    assert sol.funding_interval_secs == 3600


def test_hyperliquid_positions_are_signed_coins_marked_at_their_value_over_their_size() -> None:
    exchange = hyperliquid()

    parsed = {raw["symbol"]: raw for raw in exchange.fetch_positions()}
    short = position_from_ccxt(parsed["SOL/USDC:USDC"], instrument(exchange, "SOL/USDC:USDC"), "hyperliquid")
    long = position_from_ccxt(parsed["ETH/USDC:USDC"], instrument(exchange, "ETH/USDC:USDC"), "hyperliquid")

    assert (short.contracts, short.entry_price) == (Decimal("-0.5"), Decimal("138.76"))
    assert short.mark_price == Decimal("137.96")  # positionValue 68.98 / 0.5: Hyperliquid sends no mark
    assert short.unrealized_pnl == Decimal("0.4") == -short.contracts * (short.entry_price - short.mark_price)
    assert short.liquidation_price == Decimal("22881.19788911")
    assert (short.margin_mode, short.leverage, short.collateral) == ("cross", 20, Decimal("3.449"))
    assert (long.contracts, long.mark_price, long.liquidation_price) == (Decimal("1.6"), 2387, None)


def test_hyperliquid_fill_is_its_usdc_notional_with_its_client_id() -> None:
    exchange = hyperliquid()

    [trade] = exchange.fetch_my_trades("SOL/USDC:USDC")
    fill = fill_from_trade(trade, instrument(exchange, "SOL/USDC:USDC"), "hyperliquid")

    assert (fill.trade_id, fill.exchange_order_id) == ("566849930446139", "6928122855")
    assert (fill.side, fill.amount_contracts, fill.price) == (Side.BUY, Decimal("0.5"), Decimal("132.31"))
    assert fill.notional_usd == Decimal("66.155")
    assert (fill.fee, fill.fee_currency, fill.is_maker) == (Decimal("0.023154"), "USDC", False)
    assert fill.client_order_id == "0x1234567890abcdef1234567890abcdef"  # the order's cloid
    assert fill.ts == datetime(2024, 3, 5, 12, 55, 46, 297000, tzinfo=UTC)


def test_hyperliquid_funding_is_signed_in_usdc_and_each_payment_named_apart_despite_a_shared_hash() -> None:
    exchange = hyperliquid()
    sol = instrument(exchange, "SOL/USDC:USDC")

    items = exchange.fetch_funding_history()
    received, paid = (funding_from_ccxt(item, sol, "hyperliquid") for item in items)

    assert items[0]["id"] == items[1]["id"]  # the zero hash
    assert (received.symbol, received.amount, received.currency) == ("SOL/USDC:USDC", Decimal("75.635093"),
                                                                     "USDC")
    assert received.rate == Decimal("0.00004381")  # a short receives at a positive rate
    assert (paid.amount, paid.currency) == (Decimal("-17.264349"), "USDC")
    assert received.payment_id != paid.payment_id
    assert paid.ts == datetime(2024, 12, 12, 19, 0, 0, 57000, tzinfo=UTC)


async def test_the_adapter_reads_every_hyperliquid_funding_payment_of_a_read() -> None:
    """Through the adapter's own history read (deduplicated by id across pages): both payments, not one."""
    adapter = CcxtExchange("hyperliquid", clock=Clock(), ccxt_config={"walletAddress": WALLET})
    asked: list[str] = []

    async def fetch(url: str, method: str = "GET", headers: Any = None, body: Any = None) -> Any:
        request = json.loads(body)
        asked.append(request["type"])
        return ANSWERS[request["type"]]

    adapter._rest.fetch = fetch
    try:
        payments = await adapter.fetch_funding_payments(datetime(2024, 12, 12, tzinfo=UTC))
    finally:
        await adapter.close()

    assert [(p.symbol, p.amount) for p in payments] == [("SOL/USDC:USDC", Decimal("75.635093")),
                                                        ("SOL/USDC:USDC", Decimal("-17.264349"))]
    assert "userFunding" in asked
