"""The journal PnL (domain.pnl) by a fill's kind: a delivery is applied like any fill, by its side and
amount at the settlement price; only trades count as the traded volume, every fill's fee counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from deltakeeper.domain.pnl import attribute

D = Decimal
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
BTC = "BTC/USDT:USDT"


def fill(hours: float, side: str, amount: str, price: str, kind: str = "trade", fee: str = "0"
         ) -> dict[str, Any]:
    return {"ts": T0 + timedelta(hours=hours), "symbol": BTC, "side": side, "amount_contracts": D(amount),
            "price": D(price), "fee": D(fee), "fee_currency": "USDT", "notional_usd": D(amount) * D(price),
            "is_maker": False, "trade_id": f"t{hours}", "exchange_order_id": None,
            "client_order_id": None, "kind": kind}


def btc(rows: list[dict[str, Any]]) -> dict[str, Any]:
    [row] = [r for r in rows if r["asset"] == "BTC" and r["period"] == "all"]
    return row


def test_a_delivery_of_more_than_the_journal_holds_counts_like_the_same_closing_trade() -> None:
    # 1 short journaled; 2 more were short before the journal began; the exchange delivers all 3
    delivered = btc(attribute([fill(0, "sell", "1", "60000"), fill(1, "buy", "3", "61000", "delivery")],
                              [], [], []))
    traded = btc(attribute([fill(0, "sell", "1", "60000"), fill(1, "buy", "3", "61000")], [], [], []))
    assert delivered["hedge_pnl_usd"] == traded["hedge_pnl_usd"] == D(-1000)
    assert delivered["realised_pnl_usd"] == traded["realised_pnl_usd"] == D(-1000)
    assert delivered["position_coin"] == traded["position_coin"] == D(2)


def test_two_delivery_rows_for_one_position_each_close_their_own_amount() -> None:
    fills = [fill(0, "sell", "3", "60000"), fill(1, "buy", "1", "61000", "delivery"),
             fill(2, "buy", "2", "61000", "delivery")]
    first = btc(attribute(fills, [], [], [], until=T0 + timedelta(hours=1, minutes=30)))
    assert first["realised_pnl_usd"] == D(-1000)  # 1 of 3 delivered
    assert first["position_coin"] == D(-2) and first["hedge_pnl_usd"] == D(-3000)  # 2 marked at 61,000
    both = btc(attribute(fills, [], [], []))
    assert both["realised_pnl_usd"] == both["hedge_pnl_usd"] == D(-3000) and both["position_coin"] == 0


def test_traded_volume_counts_trades_only_and_fees_count_every_fill() -> None:
    fills = [fill(0, "sell", "2", "60000", fee="6"), fill(1, "buy", "1", "59000", "liquidation", fee="5"),
             fill(2, "buy", "1", "61000", "delivery")]
    row = btc(attribute(fills, [], [], []))
    assert row["fills"] == 1 and row["traded_usd"] == D(120000)
    assert row["fees_usd"] == D(11)
    assert row["realised_pnl_usd"] == D(0) and row["position_coin"] == 0
