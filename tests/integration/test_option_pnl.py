"""`journal pnl` on option fills read back from a SQLite journal: an option's realised PnL in USD is its
premium difference x contracts x contract size, a coin premium converted at the coin's USD price at each
fill (as the fill's `notional_usd` records it); a delivery at expiry closes it at its intrinsic value.
Bybit's USDC options are quoted in USDC per coin (contract size 1), Deribit's coin-settled options in the
coin per coin (contract size 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from tests.integration.service_harness import journal_for

from deltakeeper.config import Settings
from deltakeeper.domain.orders import Fill, Side
from deltakeeper.domain.pnl import attribute

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
USDC_CALL = "BTC/USDC:USDC-260327-60000-C"  # Bybit: premium in USDC
COIN_CALL = "BTC/USD:BTC-260327-60000-C"  # Deribit: premium in BTC
COIN_PUT = "BTC/USD:BTC-260327-60000-P"


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def option_fill(hours: float, symbol: str, side: Side, contracts: str, premium: str, *, coin_usd: str = "1",
                fee: str = "0", fee_currency: str = "USDC", delivery: bool = False) -> Fill:
    """A fill as the adapters journal it: `notional_usd` = premium x contracts x contract size (1), a coin
    premium at the coin's USD price at the fill (`coin_usd`)."""
    return Fill(trade_id=f"{symbol}-{hours}-{side.value}", exchange_order_id=f"x{hours}",
                client_order_id=None, symbol=symbol, side=side, amount_contracts=D(contracts),
                price=D(premium), fee=D(fee), fee_currency=fee_currency, ts=at(hours),
                notional_usd=D(premium) * D(contracts) * D(coin_usd), delivery=delivery)


def btc_price(hours: float, price: str) -> dict[str, Any]:
    return {"ts": at(hours), "asset": "BTC", "price_usd": D(price), "reason": "inside_band",
            "delta_coin": None}


async def journaled(tmp_path: Path, fills: list[Fill]) -> list[dict[str, Any]]:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'journal.db'}")
    async with journal_for(settings) as journal:
        assert await journal.record_fills(fills) == len(fills)
        return await journal.list_fills()


async def test_a_usdc_option_bought_and_sold_realises_its_premium_difference(tmp_path: Path) -> None:
    rows = await journaled(tmp_path, [
        option_fill(0, USDC_CALL, Side.BUY, "2", "1500", fee="1.2"),
        option_fill(5, USDC_CALL, Side.SELL, "2", "1800", fee="1.2"),
    ])
    [row] = attribute(rows, [], [], [btc_price(0, "60000"), btc_price(5, "62000"), btc_price(6, "65000")])
    assert row["realised_pnl_usd"] == row["hedge_pnl_usd"] == 2 * (D(1800) - D(1500))
    assert row["marked_pnl_usd"] == 0 and row["position_coin"] == 0
    assert row["fees_usd"] == D("2.4") and row["traded_usd"] == D(3000) + D(3600)


async def test_a_coin_option_realises_its_premiums_at_the_coins_price_at_each_fill(tmp_path: Path) -> None:
    rows = await journaled(tmp_path, [
        option_fill(0, COIN_CALL, Side.BUY, "2", "0.025", coin_usd="60000", fee="0.0006", fee_currency="BTC"),
        option_fill(5, COIN_CALL, Side.SELL, "2", "0.03", coin_usd="62000", fee="0.0006", fee_currency="BTC"),
    ])
    [row] = attribute(rows, [], [], [btc_price(0, "60000"), btc_price(5, "62000"), btc_price(6, "65000")])
    # 2 x (0.03 BTC x 62,000 - 0.025 BTC x 60,000) = 2 x (1,860 - 1,500)
    assert row["realised_pnl_usd"] == row["hedge_pnl_usd"] == D(720)
    assert row["marked_pnl_usd"] == 0 and row["position_coin"] == 0
    assert row["fees_usd"] == D("0.0006") * 60_000 + D("0.0006") * 62_000  # BTC fees at BTC's price


async def test_options_held_to_expiry_realise_their_intrinsic_value_by_their_delivery(tmp_path: Path) -> None:
    payoff_btc = (D(3000) / D(63_000)).quantize(D("1E-8"))  # a 60,000 call at a 63,000 index, in BTC
    rows = await journaled(tmp_path, [
        option_fill(0, USDC_CALL, Side.BUY, "1", "1500"),
        option_fill(0, COIN_CALL, Side.BUY, "0.5", "0.025", coin_usd="60000", fee_currency="BTC"),
        option_fill(0, COIN_PUT, Side.SELL, "1", "0.02", coin_usd="60000", fee_currency="BTC"),
        option_fill(24, USDC_CALL, Side.SELL, "1", "3000", delivery=True),
        option_fill(24, COIN_CALL, Side.SELL, "0.5", str(payoff_btc), coin_usd="63000", fee_currency="BTC",
                    delivery=True),
        option_fill(24, COIN_PUT, Side.BUY, "1", "0", coin_usd="63000", fee_currency="BTC", delivery=True),
    ])
    assert [r["kind"] for r in rows] == ["trade"] * 3 + ["delivery"] * 3
    [row] = attribute(rows, [], [], [btc_price(0, "60000"), btc_price(24, "63000"), btc_price(25, "63000")])
    usdc_call = 1 * (D(3000) - D(1500))
    coin_call = D("0.5") * (payoff_btc * 63_000 - D("0.025") * 60_000)
    coin_put = 1 * (D("0.02") * 60_000 - 0)  # sold, expired worthless: the premium kept
    assert row["realised_pnl_usd"] == row["hedge_pnl_usd"] == usdc_call + coin_call + coin_put
    assert row["marked_pnl_usd"] == 0 and row["position_coin"] == 0
    assert row["fills"] == 3  # the deliveries are the exchange's close, not traded volume
    assert row["traded_usd"] == sum(D(r["notional_usd"]) for r in rows if r["kind"] == "trade")


async def test_an_open_option_is_marked_at_its_last_premium_not_at_the_coins_price(tmp_path: Path) -> None:
    rows = await journaled(tmp_path, [
        option_fill(0, COIN_CALL, Side.BUY, "2", "0.025", coin_usd="60000", fee_currency="BTC"),
        option_fill(5, COIN_CALL, Side.SELL, "1", "0.03", coin_usd="62000", fee_currency="BTC"),
    ])
    [row] = attribute(rows, [], [], [btc_price(0, "60000"), btc_price(5, "62000"), btc_price(6, "65000")])
    assert row["realised_pnl_usd"] == D("0.03") * 62_000 - D("0.025") * 60_000  # one of the two closed
    assert row["marked_pnl_usd"] == D("0.03") * 62_000 - D("0.025") * 60_000  # the other at the last premium
    assert row["position_coin"] == 0  # option contracts are not coins of the asset
