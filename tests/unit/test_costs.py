from decimal import Decimal as D

import pytest

from deltakeeper.domain.costs import (
    BookLevel,
    CostModel,
    estimate_trade_cost,
    proportional_cost_rate,
    risk_reduction_usd,
    walk_book,
    worth_trading,
)
from deltakeeper.domain.orders import Side

# mid 60,000; spread 20 USD
BIDS = (BookLevel(D("59990"), D("1")), BookLevel(D("59980"), D("2")), BookLevel(D("59970"), D("5")))
ASKS = (BookLevel(D("60010"), D("0.5")), BookLevel(D("60020"), D("1")), BookLevel(D("60040"), D("2")))
MODEL = CostModel(taker_fee_rate=D("0.0005"), maker_fee_rate=D("-0.0001"), fixed_cost_usd=D("1"))


def test_walk_book_averages_over_three_levels():
    # 0.5 @ 60,010 + 1 @ 60,020 + 0.5 @ 60,040 = 120,045 for 2 coins
    assert walk_book(ASKS, D("2")) == (D("60022.5"), D("2"))


def test_walk_book_reports_partial_fill_when_book_is_thin():
    avg, filled = walk_book(ASKS, D("5"))
    assert filled == D("3.5")
    assert avg == (D("30005") + D("60020") + D("120080")) / D("3.5")


def test_taker_buy_cost_splits_fee_half_spread_and_slippage():
    cost = estimate_trade_cost(Side.BUY, D("2"), BIDS, ASKS, MODEL)
    assert cost.avg_price == D("60022.5")
    assert cost.fee_usd == D("60.0225")  # 5 bp of 120,045
    assert cost.spread_usd == D("20")  # (60,010 - 60,000) x 2
    assert cost.slippage_usd == D("25")  # (60,022.5 - 60,010) x 2
    assert cost.fixed_usd == D("1")
    assert cost.total_usd == D("106.0225")
    assert cost.proportional_rate == D("105.0225") / D("120000")
    assert not cost.book_too_thin


def test_taker_sell_walks_the_bids():
    cost = estimate_trade_cost(Side.SELL, D("2"), BIDS, ASKS, MODEL)
    assert cost.avg_price == D("59985")
    assert cost.spread_usd == D("20")
    assert cost.slippage_usd == D("10")


def test_thin_book_is_flagged_with_the_unfilled_size():
    cost = estimate_trade_cost(Side.BUY, D("5"), BIDS, ASKS, MODEL)
    assert cost.book_too_thin
    assert cost.filled_coin == D("3.5")
    assert cost.unfilled_coin == D("1.5")


def test_maker_order_pays_only_the_maker_fee_on_mid_notional():
    cost = estimate_trade_cost(Side.BUY, D("2"), BIDS, ASKS, MODEL, maker=True)
    assert (cost.fee_usd, cost.spread_usd, cost.slippage_usd) == (D("-12"), D("0"), D("0"))
    assert cost.total_usd == D("-11")
    assert cost.unfilled_coin == 0


def test_crossed_book_is_rejected():
    with pytest.raises(ValueError, match="crossed"):
        estimate_trade_cost(Side.BUY, D("1"), ASKS, BIDS, MODEL)


def test_proportional_cost_rate_adds_fee_half_spread_and_slippage():
    assert proportional_cost_rate(D("0.0005"), spread_bps=D("2"), slippage_bps=D("1")) == D("0.0007")


def test_risk_reduction_matches_formula():
    # (1e-4 / 2) x (2^2 - 0) x 60,000^2 x 0.6^2 x 1/365 = 259,200 / 365
    removed = risk_reduction_usd(D("2"), D("0"), D("60000"), 0.6, 1 / 365, 1e-4)
    assert float(removed) == pytest.approx(259_200 / 365)


def test_trade_worth_it_when_risk_removed_exceeds_cost():
    cost = estimate_trade_cost(Side.BUY, D("2"), BIDS, ASKS, MODEL)  # 106.02 USD
    verdict = worth_trading(D("-2"), D("0"), D("60000"), 0.6, 1 / 365, 1e-4, cost.total_usd)
    assert float(verdict.risk_removed_usd) == pytest.approx(710.137, abs=1e-3)
    assert verdict.worth


def test_trade_not_worth_it_when_cost_exceeds_risk_removed():
    cost = estimate_trade_cost(Side.BUY, D("0.2"), BIDS, ASKS, MODEL)  # 6.001 fee + 2 spread + 1 fixed
    verdict = worth_trading(D("-0.2"), D("0"), D("60000"), 0.6, 1 / 365, 1e-4, cost.total_usd)
    assert verdict.cost_usd == D("9.001")
    assert float(verdict.risk_removed_usd) == pytest.approx(7.101, abs=1e-3)
    assert not verdict.worth
