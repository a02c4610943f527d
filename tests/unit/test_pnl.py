"""PnL attribution over hand-made journal rows (deltakeeper.domain.pnl)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from deltakeeper.domain.average_entry import Filled, fill_position, realised_pnl
from deltakeeper.domain.pnl import PNL_COLUMNS, SUMMED_COLUMNS, attribute, total_row
from deltakeeper.domain.pnl_journal import market_of

D = Decimal
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
LINEAR = "SOL/USDT:USDT"
INVERSE = "BTC/USD:BTC"


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def fill(hours: float, side: str, amount: str, price: str, *, symbol: str = LINEAR, fee: str = "0",
         fee_currency: str = "USDT", order: str | None = None, face: str = "1") -> dict[str, Any]:
    inverse = market_of(symbol).inverse
    notional = D(amount) * D(face) if inverse else D(amount) * D(price)
    return {"ts": at(hours), "symbol": symbol, "side": side, "amount_contracts": D(amount), "price": D(price),
            "fee": D(fee), "fee_currency": fee_currency, "notional_usd": notional, "is_maker": False,
            "trade_id": f"t{hours}{side}", "exchange_order_id": "x", "client_order_id": order}


def payment(hours: float, amount: str, *, symbol: str = LINEAR, currency: str = "USDT") -> dict[str, Any]:
    return {"ts": at(hours), "symbol": symbol, "amount": D(amount), "currency": currency, "rate": D("0.0001"),
            "position_contracts": D(-10), "payment_id": f"p{hours}"}


def decision(hours: float, price: str, asset: str = "SOL", delta: str | None = None) -> dict[str, Any]:
    """A decision; `delta`: the delta of everything held, hedge included (`delta_coin`)."""
    return {"ts": at(hours), "asset": asset, "price_usd": D(price), "reason": "inside_band",
            "delta_coin": None if delta is None else D(delta)}


def order(client_order_id: str, reference_price: str) -> dict[str, Any]:
    return {"client_order_id": client_order_id, "reference_price": D(reference_price), "asset": "SOL"}


def one(rows: list[dict[str, Any]], asset: str = "SOL", period: str = "all") -> dict[str, Any]:
    [row] = [r for r in rows if r["asset"] == asset and r["period"] == period]
    return row


def assert_reconciles(row: dict[str, Any]) -> None:
    assert row["hedge_pnl_usd"] == row["realised_pnl_usd"] + row["marked_pnl_usd"]
    assert row["market_pnl_usd"] == row["hedge_pnl_usd"] + row["slippage_usd"]
    assert row["hedging_cost_usd"] == (row["fees_usd"] + row["funding_paid_usd"] - row["funding_received_usd"]
                                       + row["slippage_usd"])
    assert row["total_usd"] == (row["hedge_pnl_usd"] - row["fees_usd"] - row["funding_paid_usd"]
                                + row["funding_received_usd"])
    assert row["total_usd"] == row["market_pnl_usd"] - row["hedging_cost_usd"]
    assert row["net_pnl_usd"] == row["exposure_pnl_usd"] + row["total_usd"]


def test_a_buy_and_a_sell_at_different_prices_realise_the_difference() -> None:
    rows = attribute([fill(0, "buy", "10", "100"), fill(1, "sell", "10", "110")], [], [], [])
    row = one(rows)
    assert row["realised_pnl_usd"] == D(100)
    assert row["marked_pnl_usd"] == 0 and row["hedge_pnl_usd"] == D(100)
    assert row["position_coin"] == 0 and row["mark_price_usd"] is None
    assert row["fills"] == 2 and row["traded_usd"] == D(2100)
    assert set(row) == set(PNL_COLUMNS)


def test_a_short_is_realised_against_its_average_entry_and_the_rest_marked_at_the_latest_price() -> None:
    fills = [fill(0, "sell", "10", "100"), fill(1, "sell", "10", "110"), fill(2, "buy", "5", "90")]
    rows = attribute(fills, [], [], [decision(1.5, "120"), decision(3, "100")])
    row = one(rows)
    assert row["realised_pnl_usd"] == D(75)  # 5 bought back at 90 against an entry of 105
    assert row["marked_pnl_usd"] == D(75)  # 15 short from 105, marked at 100
    assert row["hedge_pnl_usd"] == D(150)  # cash 1000 + 1100 - 450, less 15 x 100
    assert row["position_coin"] == D(-15) and row["mark_price_usd"] == D(100)


def test_the_last_fill_price_marks_the_position_when_it_is_later_than_the_last_decision() -> None:
    rows = attribute([fill(0, "sell", "10", "100"), fill(2, "sell", "1", "98")], [], [],
                     [decision(1, "95")])
    row = one(rows)
    assert row["mark_price_usd"] == D(98)
    assert row["hedge_pnl_usd"] == D(20)  # 10 short from 100 at 98


def test_fees_in_usdt_count_as_they_are_and_fees_in_coin_at_the_fill_price() -> None:
    fills = [
        fill(0, "sell", "10", "100", fee="0.55"),
        fill(1, "sell", "100", "60000", symbol=INVERSE, fee="0.0001", fee_currency="BTC"),
        fill(2, "buy", "2", "101", symbol="SOL/USDT", fee="0.002", fee_currency="SOL"),
    ]
    rows = attribute(fills, [], [], [])
    assert one(rows, "SOL")["fees_usd"] == D("0.55") + D("0.202")
    assert one(rows, "BTC")["fees_usd"] == D(6)
    assert total_row(rows)["fees_usd"] == D("6.752")


def test_funding_received_and_paid_are_split_and_coin_funding_is_priced_nearest_in_time() -> None:
    funding = [payment(8, "1.5"), payment(16, "-2"), payment(24, "0.0001", symbol=INVERSE, currency="BTC")]
    decisions = [decision(22, "50000", "BTC"), decision(27.5, "52000", "BTC")]
    rows = attribute([], funding, [], decisions)
    sol, btc = one(rows, "SOL"), one(rows, "BTC")
    assert sol["funding_received_usd"] == D("1.5") and sol["funding_paid_usd"] == D(2)
    assert sol["total_usd"] == D("-0.5") and sol["hedging_cost_usd"] == D("0.5")
    assert btc["funding_received_usd"] == D(5) and btc["funding_paid_usd"] == 0
    for row in rows:
        assert_reconciles(row)


def test_slippage_is_a_cost_when_the_fill_is_worse_than_the_decision_price() -> None:
    orders = [order("a", "100"), order("b", "100"), order("c", "100")]
    cases = [
        (fill(0, "buy", "10", "101", order="a"), D(10)),  # paid more than the reference
        (fill(0, "sell", "10", "99", order="b"), D(10)),  # sold for less
        (fill(0, "sell", "5", "102", order="c"), D(-10)),  # sold for more: a gain
        (fill(0, "sell", "5", "90"), D(0)),  # no order, no reference price
    ]
    for one_fill, expected in cases:
        row = one(attribute([one_fill], [], orders, []))
        assert row["slippage_usd"] == expected, one_fill
        assert_reconciles(row)


def test_slippage_moves_pnl_from_the_market_to_the_cost_of_hedging() -> None:
    # sold 10 at 99 against a decision at 100, bought back at the reference 100
    fills = [fill(0, "sell", "10", "99", order="a"), fill(1, "buy", "10", "100", order="b")]
    row = one(attribute(fills, [], [order("a", "100"), order("b", "100")], []))
    assert row["hedge_pnl_usd"] == D(-10)
    assert row["slippage_usd"] == D(10)
    assert row["market_pnl_usd"] == 0 and row["hedging_cost_usd"] == D(10)


def test_by_day_splits_on_utc_days_and_the_days_add_up_to_the_whole() -> None:
    fills = [fill(0, "sell", "10", "100", fee="0.5"), fill(20, "buy", "4", "90", fee="0.2")]
    funding = [payment(6, "1"), payment(22, "-3")]
    decisions = [decision(1, "95"), decision(13, "97"), decision(21, "92"), decision(30, "94")]
    by_day = attribute(fills, funding, [], decisions, by="day")
    assert [(r["period"], r["asset"]) for r in by_day] == [("2026-03-01", "SOL"), ("2026-03-02", "SOL")]
    first, second = by_day
    assert first["marked_pnl_usd"] == D(30)  # 10 short from 100, marked at 97 at midnight
    assert first["fees_usd"] == D("0.5") and first["funding_received_usd"] == D(1)
    assert second["realised_pnl_usd"] == D(40)  # 4 bought back at 90 against 100
    assert second["hedge_pnl_usd"] == D(46)  # from 1000 - 10 x 97 = 30 to 1000 - 360 - 6 x 94 = 76
    assert second["funding_paid_usd"] == D(3)
    whole = one(attribute(fills, funding, [], decisions, by="asset"))
    days = total_row(by_day)
    for column in SUMMED_COLUMNS:
        assert days[column] == whole[column], column
    for row in [*by_day, whole]:
        assert_reconciles(row)


def test_totals_add_up_and_fees_and_funding_equal_the_journaled_sums() -> None:
    fills = [
        fill(0, "sell", "10", "100", fee="0.55", order="a"),
        fill(3, "buy", "3", "104", fee="0.17", order="b"),
        fill(4, "sell", "200", "60000", symbol=INVERSE, fee="0.00000183", fee_currency="BTC"),
        fill(9, "buy", "100", "61000", symbol=INVERSE, fee="0.0000009", fee_currency="BTC"),
    ]
    funding = [payment(8, "0.3"), payment(16, "-0.1"),
               payment(16, "0.0000002", symbol=INVERSE, currency="BTC")]
    decisions = [decision(5, "103"), decision(10, "59000", "BTC"), decision(17, "101")]
    orders = [order("a", "100.5"), order("b", "103.5")]
    rows = attribute(fills, funding, orders, decisions)
    total = total_row(rows)
    assert total["asset"] == "TOTAL" and total["position_coin"] is None
    assert total["fees_usd"] == D("0.55") + D("0.17") + D("0.00000183") * 60000 + D("0.0000009") * 61000
    assert total["funding_received_usd"] - total["funding_paid_usd"] == D("0.2") + D("0.0000002") * 59000
    assert total["fills"] == 4
    for row in [*rows, total]:
        assert_reconciles(row)
    for column in SUMMED_COLUMNS:
        assert total[column] == sum((row[column] for row in rows), D(0) if column.endswith("_usd") else 0)


def test_inverse_pnl_is_in_coin_converted_at_the_closing_price() -> None:
    # REFERENCE 1.2: 10,000 USD of face bought at 8,000 and sold at 12,500 earn 0.45 BTC
    fills = [fill(0, "buy", "10000", "8000", symbol=INVERSE),
             fill(1, "sell", "10000", "12500", symbol=INVERSE)]
    row = one(attribute(fills, [], [], []), "BTC")
    assert row["realised_pnl_usd"] == D("0.45") * 12500
    assert row["position_coin"] == 0


def test_an_open_inverse_short_is_marked_in_coin_at_the_mark() -> None:
    fills = [fill(0, "sell", "60000", "60000", symbol=INVERSE)]
    row = one(attribute(fills, [], [], [decision(1, "50000", "BTC")]), "BTC")
    # short 60,000 USD from 60,000: coin PnL 60000 x (1/50000 - 1/60000) = 0.2 BTC, worth 10,000 USD
    assert row["marked_pnl_usd"] == D(10000)
    assert row["position_coin"] == D("-1.2")


def test_since_marks_the_position_held_before_it_at_the_last_price_before_it() -> None:
    fills = [fill(0, "sell", "10", "100", fee="1"), fill(5, "buy", "2", "96", fee="0.1")]
    decisions = [decision(1, "90"), decision(6, "95")]
    row = one(attribute(fills, [payment(3, "1")], [], decisions, since=at(2)))
    assert row["fills"] == 1 and row["fees_usd"] == D("0.1")
    assert row["realised_pnl_usd"] == D(8)  # 2 bought back at 96 against 100
    # at since: cash 1000 less 10 x 90 = 100; at the end: cash 1000 - 192 less 8 x 95 = 48
    assert row["hedge_pnl_usd"] == (1000 - 192 - 8 * 95) - (1000 - 900)
    assert row["funding_received_usd"] == D(1)
    assert_reconciles(row)


def test_until_leaves_out_everything_at_or_after_it() -> None:
    fills = [fill(0, "sell", "10", "100"), fill(5, "buy", "10", "50")]
    rows = attribute(fills, [payment(5, "9")], [], [decision(1, "90"), decision(5, "40")], until=at(5))
    row = one(rows)
    assert row["fills"] == 1 and row["funding_received_usd"] == 0
    assert row["hedge_pnl_usd"] == D(100) and row["mark_price_usd"] == D(90)


def test_a_fee_in_a_coin_without_a_price_is_counted_as_unpriced() -> None:
    row = one(attribute([fill(0, "sell", "10", "100", fee="0.01", fee_currency="BNB")], [], [], []))
    assert row["unpriced_rows"] == 1 and row["fees_usd"] == 0


def test_rows_read_back_from_json_are_accepted() -> None:
    fills = [{**fill(0, "buy", "10", "100"), "ts": "2026-03-01T10:00:00Z", "price": "100",
              "notional_usd": "1000", "fee": "0.5"},
             {**fill(1, "sell", "10", "101.5"), "ts": "2026-03-01T11:00:00Z", "notional_usd": "1015"}]
    row = one(attribute(fills, [], [], []))
    assert row["hedge_pnl_usd"] == D(15) and row["total_usd"] == D("14.5")


def test_assets_with_nothing_in_the_window_have_no_row() -> None:
    fills = [fill(0, "buy", "1", "100"), fill(1, "sell", "1", "100")]
    assert attribute(fills, [], [], [decision(3, "120")], since=at(2)) == []
    assert attribute([], [], [], [decision(3, "120")]) == []


def test_by_must_be_asset_or_day() -> None:
    with pytest.raises(ValueError, match="by must be"):
        attribute([], [], [], [], by="week")  # type: ignore[arg-type]


@pytest.mark.parametrize(("symbol", "base", "settle", "inverse"), [
    ("SOL/USDT:USDT", "SOL", "USDT", False),
    ("BTC/USD:BTC", "BTC", "BTC", True),
    ("BTC/USD:BTC-261225", "BTC", "BTC", True),
    ("ETH/USDC", "ETH", "USDC", False),
])
def test_market_of_reads_ccxt_symbols(symbol: str, base: str, settle: str, inverse: bool) -> None:
    market = market_of(symbol)
    assert (market.base, market.settle, market.inverse) == (base, settle, inverse)


def hedged_holding() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """10 SOL held; the hedge sells 10 at 100 (fee 1); the price goes 100, 110, 90."""
    fills = [fill(0.5, "sell", "10", "100", fee="1")]
    decisions = [decision(0, "100", delta="10"), decision(1, "110", delta="0"), decision(2, "90", delta="0")]
    return fills, decisions


def test_pnl_shows_the_hedged_exposure_beside_the_hedge_and_their_net() -> None:
    fills, decisions = hedged_holding()
    row = one(attribute(fills, [], [], decisions))
    # The holding: delta 10 before the hedge, then delta 0 with the hedge short 10: 10 SOL throughout.
    assert row["exposure_coin"] == D(10) and row["position_coin"] == D(-10)
    assert row["exposure_pnl_usd"] == D(-100)  # 10 x (90 - 100)
    assert row["hedge_pnl_usd"] == D(100)  # short 10 from 100, marked at 90
    assert row["total_usd"] == D(99)  # less the fee
    assert row["net_pnl_usd"] == D(-1)  # the holding, hedged, lost only the fee
    assert_reconciles(row)
    total = total_row([row])
    assert total["exposure_pnl_usd"] == D(-100) and total["net_pnl_usd"] == D(-1)
    assert total["exposure_coin"] is None


def test_the_exposure_since_a_time_is_valued_from_the_last_price_before_it() -> None:
    fills, decisions = hedged_holding()
    row = one(attribute(fills, [], [], decisions, since=at(1.5)))
    assert row["exposure_pnl_usd"] == D(-200)  # 10 x (90 - 110)
    assert row["hedge_pnl_usd"] == D(200) and row["net_pnl_usd"] == 0
    assert row["fills"] == 0 and row["fees_usd"] == 0


def test_an_unhedged_holding_has_a_row_with_its_exposure_only() -> None:
    row = one(attribute([], [], [], [decision(0, "100", delta="5"), decision(1, "120", delta="5")]))
    assert row["exposure_coin"] == D(5) and row["exposure_pnl_usd"] == D(100) and row["net_pnl_usd"] == D(100)
    assert row["hedge_pnl_usd"] == 0 and row["fills"] == 0 and row["position_coin"] == 0
    assert_reconciles(row)


def test_the_exposure_changes_at_each_decision_and_days_add_up_to_the_whole() -> None:
    # 10 SOL held until the second day, when 4 more are bought (delta 4 with the hedge still short 10).
    fills = [fill(0.5, "sell", "10", "100")]
    decisions = [decision(0, "100", delta="10"), decision(1, "110", delta="0"),
                 decision(24, "120", delta="4"), decision(25, "100", delta="4")]
    days = attribute(fills, [], [], decisions, by="day")
    first, second = one(days, period="2026-03-01"), one(days, period="2026-03-02")
    assert first["exposure_pnl_usd"] == D(100) and first["exposure_coin"] == D(10)  # 10 x (110 - 100)
    # 10 x (120 - 110) to the decision that sees the buy, then 14 x (100 - 120)
    assert second["exposure_pnl_usd"] == D(100 - 280) and second["exposure_coin"] == D(14)
    whole = one(attribute(fills, [], [], decisions))
    assert whole["exposure_pnl_usd"] == first["exposure_pnl_usd"] + second["exposure_pnl_usd"]
    assert whole["net_pnl_usd"] == first["net_pnl_usd"] + second["net_pnl_usd"]


# -- average entry and realised PnL (one implementation for the simulator and the attribution) --------


def test_linear_fills_average_the_entry_keep_it_when_reducing_and_reopen_a_flip_at_the_fill_price() -> None:
    added = fill_position(D(2), D(100), D(2), D(110), inverse=False)
    reduced = fill_position(added.size, added.entry, D(-3), D(120), inverse=False)
    flipped = fill_position(reduced.size, reduced.entry, D(-3), D(100), inverse=False)
    closed = fill_position(flipped.size, flipped.entry, D(2), D(90), inverse=False)

    assert added == Filled(D(4), D(105), D(0))
    assert reduced == Filled(D(1), D(105), D(3))
    assert realised_pnl(reduced.closed, D(105), D(120), inverse=False) == D(45)
    assert flipped == Filled(D(-2), D(100), D(1))
    assert closed == Filled(D(0), D(0), D(-2))
    assert realised_pnl(closed.closed, D(100), D(90), inverse=False) == D(20)  # the short gains 10 a coin


def test_inverse_fills_average_the_entry_harmonically_and_realise_coin_pnl() -> None:
    # 100 USD face at 50 (2 coins) and 100 at 100 (1 coin): 200 face for 3 coins, entry 66.67.
    added = fill_position(D(100), D(50), D(100), D(100), inverse=True, quantum=D("1e-10"))
    assert added.entry == D("66.6666666667")
    exact = fill_position(D(100), D(50), D(100), D(100), inverse=True)
    assert abs(exact.entry - D(200) / 3) < D("1e-24")

    reduced = fill_position(D(200), D(80), D(-100), D(100), inverse=True)
    # a long of 100 face closed from 80 at 100: 100 x (1/80 - 1/100) = 0.25 coin
    assert (reduced.size, reduced.entry, reduced.closed) == (D(100), D(80), D(100))
    assert realised_pnl(reduced.closed, D(80), D(100), inverse=True) == D("0.25")
