import random
from decimal import Decimal as D

import pytest
from tests.instruments import LINEAR_WHOLE as LINEAR
from tests.instruments import OKX_INVERSE as INVERSE

from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Side
from deltakeeper.domain.policy import (
    AssetPolicy,
    AssetView,
    Band,
    BandUnit,
    Decision,
    RebalanceTo,
    auto_hedge_symbol,
    decide,
    min_band_coin,
)

PRICE = D(60_000)


def view(delta: str | D, hedge: Instrument = LINEAR, gross: str | D = "10", price: D = PRICE) -> AssetView:
    return AssetView("BTC", D(delta), D(gross), price, hedge, price)


def policy(
    band: str | D,
    to: RebalanceTo = RebalanceTo.TARGET,
    target: str | D = "0",
    unit: BandUnit = BandUnit.COIN,
    hedge: Instrument = LINEAR,
) -> AssetPolicy:
    return AssetPolicy("BTC", hedge.symbol, Band(unit, D(band)), D(target), to)


def signed_contracts(decision: Decision) -> D:
    assert decision.intent is not None
    return decision.intent.amount_contracts * decision.intent.side.sign


def test_band_half_width_in_coin_is_taken_as_is():
    assert Band(BandUnit.COIN, D("0.25")).half_width_coin(PRICE, D(100)) == D("0.25")


def test_band_half_width_in_usd_is_divided_by_price():
    assert Band(BandUnit.USD, D(3_000)).half_width_coin(PRICE, D(100)) == D("0.05")


def test_band_half_width_in_pct_is_a_share_of_gross_exposure():
    assert Band(BandUnit.PCT, D(2)).half_width_coin(PRICE, D(15)) == D("0.3")


def test_decide_does_not_trade_inside_the_band():
    decision = decide(view("0.09"), policy("0.1"))
    assert decision.intent is None
    assert decision.reason == "inside_band"
    assert decision.band_coin == D("0.1")


def test_decide_does_not_trade_on_the_band_edge():
    assert decide(view("-0.1"), policy("0.1")).intent is None
    assert decide(view("1.1"), policy("0.1", target="1")).intent is None


def test_decide_band_is_centred_on_the_target():
    decision = decide(view("0.5"), policy("0.1", target="0.45"))
    assert decision.intent is None
    assert decision.deviation_coin == D("0.05")


def test_decide_trades_to_target_when_outside_band():
    decision = decide(view("0.5"), policy("0.1"))
    assert decision.reason == "rebalance"
    assert decision.intent is not None
    assert decision.intent.symbol == "BTC/USDT:USDT"
    assert decision.intent.side is Side.SELL
    assert decision.intent.amount_contracts == D(50)
    assert decision.intent.reference_price == PRICE
    assert not decision.intent.reduce_only


def test_decide_trades_to_a_nonzero_target():
    decision = decide(view("-0.3"), policy("0.1", target="0.5"))
    assert signed_contracts(decision) == D(80)  # buy 0.8 BTC


def test_decide_to_target_rounds_to_the_nearest_lot():
    assert signed_contracts(decide(view("0.5049"), policy("0.1"))) == D(-50)
    assert signed_contracts(decide(view("0.5051"), policy("0.1"))) == D(-51)


def test_decide_trades_to_band_edge():
    decision = decide(view("0.5"), policy("0.1", RebalanceTo.EDGE))
    assert signed_contracts(decision) == D(-40)  # 0.5 -> 0.1


def test_decide_trades_to_band_edge_rounding_away_from_zero():
    # 0.4049 BTC to the edge is 40.49 contracts: 40 would leave 0.1049 outside the band, 41 leaves 0.0949
    long = decide(view("0.5049"), policy("0.1", RebalanceTo.EDGE))
    assert signed_contracts(long) == D(-41)
    short = decide(view("-0.5049"), policy("0.1", RebalanceTo.EDGE))
    assert signed_contracts(short) == D(41)
    assert short.intent is not None and short.intent.side is Side.BUY


def test_decide_to_edge_from_below_a_nonzero_target():
    # target 1, band 0.2: delta 0.5 is 0.5 below; the lower edge 0.8 needs 0.3 BTC
    assert signed_contracts(decide(view("0.5"), policy("0.2", RebalanceTo.EDGE, target="1"))) == D(30)


def test_decide_sizes_an_inverse_hedge_in_usd_contracts():
    # 1 BTC long at 60,000 = 60,000 USD face = 600 contracts of 100 USD
    decision = decide(view("1", INVERSE), policy("0.01", hedge=INVERSE))
    assert signed_contracts(decision) == D(-600)
    assert decision.intent is not None and decision.intent.symbol == "BTC/USD:BTC"


def test_decide_inverse_hedge_to_edge_rounds_away_from_zero():
    # to the edge: 0.9 BTC x 50,000 / 100 = 450 contracts; 0.9001 -> 450.05 -> 451
    at_50k = AssetView("BTC", D("1.0001"), D(10), D(50_000), INVERSE, D(50_000))
    decision = decide(at_50k, policy("0.1", RebalanceTo.EDGE, hedge=INVERSE))
    assert signed_contracts(decision) == D(-451)


def test_decide_uses_usd_and_pct_bands():
    # 3,000 USD at 60,000 = 0.05 BTC
    assert decide(view("0.05"), policy("3000", unit=BandUnit.USD)).intent is None
    assert decide(view("0.06"), policy("3000", unit=BandUnit.USD)).intent is not None
    # 1% of 10 BTC gross = 0.1 BTC
    assert decide(view("0.1", gross="10"), policy("1", unit=BandUnit.PCT)).intent is None
    assert decide(view("0.1", gross="5"), policy("1", unit=BandUnit.PCT)).intent is not None


def test_decide_never_sends_an_order_that_rounds_to_zero():
    # band 0.001 BTC is narrower than half a lot (0.005 BTC): 0.004 BTC is 0.4 contracts
    decision = decide(view("0.004"), policy("0.001"))
    assert decision.intent is None
    assert decision.reason == "rounds_to_zero"


def test_decide_skips_an_order_below_the_minimum_size():
    hedge = Instrument(
        "BTC/USDT:USDT",
        Kind.PERPETUAL,
        "BTC",
        "USDT",
        "USDT",
        contract_size=D("0.01"),
        lot_step_contracts=D(1),
        min_contracts=D(10),
    )
    decision = decide(view("0.05", hedge), policy("0.01", hedge=hedge))
    assert decision.intent is None
    assert decision.reason == "below_min_size"
    assert decide(view("0.1", hedge), policy("0.01", hedge=hedge)).intent is not None


def test_decide_skips_an_order_below_the_minimum_notional():
    hedge = Instrument(
        "BTC/USDT:USDT",
        Kind.PERPETUAL,
        "BTC",
        "USDT",
        "USDT",
        contract_size=D("0.01"),
        lot_step_contracts=D(1),
        min_notional_usd=D(1_000),
    )
    # 0.01 BTC x 60,000 = 600 USD < 1,000
    decision = decide(view("0.01", hedge), policy("0.005", hedge=hedge))
    assert decision.intent is None
    assert decision.reason == "below_min_notional"
    # 0.02 BTC = 1,200 USD
    assert decide(view("0.02", hedge), policy("0.005", hedge=hedge)).intent is not None


@pytest.mark.parametrize("to", list(RebalanceTo))
@pytest.mark.parametrize("hedge", [LINEAR, INVERSE], ids=["linear", "inverse"])
def test_decided_trade_lands_inside_the_band(to, hedge):
    """Property: a sent trade leaves |delta - target| <= band whenever the band is at least one lot."""
    rng = random.Random(20240517)
    sent = 0
    for _ in range(1_500):
        price = D(rng.randint(5_000, 150_000))
        step_coin = min_band_coin(hedge, price)
        band = (step_coin * D(repr(rng.uniform(1, 40)))).quantize(D("1e-9"))
        band = max(band, step_coin)
        target = D(rng.randint(-50_000, 50_000)) / 10_000
        delta = target + D(rng.randint(-300_000, 300_000)) / 10_000
        decision = decide(
            AssetView("BTC", delta, abs(delta), price, hedge, price),
            AssetPolicy("BTC", hedge.symbol, Band(BandUnit.COIN, band), target, to),
        )
        if decision.intent is None:
            assert decision.reason == "inside_band"
            assert abs(delta - target) <= band
            continue
        sent += 1
        contracts = signed_contracts(decision)
        assert contracts != 0
        assert contracts % hedge.lot_step_contracts == 0
        after = delta + hedge.delta_coin(contracts, price)
        assert abs(after - target) <= band + D("1e-18"), (to, delta, target, band, contracts, after)
        # trading to the edge never crosses the target
        if to is RebalanceTo.EDGE:
            assert (after - target) * (1 if delta > target else -1) >= D("-1e-18")
    assert sent > 500


def test_auto_hedge_symbol_prefers_the_usdt_linear_perpetual():
    instruments = {
        i.symbol: i
        for i in (
            Instrument("BTC/USDT", Kind.SPOT, "BTC", "USDT", "USDT"),
            Instrument("BTC/USD:BTC", Kind.PERPETUAL, "BTC", "USD", "BTC", inverse=True),
            Instrument("BTC/USDC:USDC", Kind.PERPETUAL, "BTC", "USDC", "USDC"),
            Instrument("BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT"),
            Instrument("BTC/USDT:USDT-250627", Kind.FUTURE, "BTC", "USDT", "USDT"),
            Instrument("ETH/USDT:USDT", Kind.PERPETUAL, "ETH", "USDT", "USDT"),
        )
    }
    assert auto_hedge_symbol("BTC", instruments) == "BTC/USDT:USDT"
    del instruments["BTC/USDT:USDT"]
    assert auto_hedge_symbol("BTC", instruments) == "BTC/USDC:USDC"
    assert auto_hedge_symbol("ETH", instruments) == "ETH/USDT:USDT"


def test_auto_hedge_symbol_ignores_inverse_and_spot_markets():
    instruments = {
        i.symbol: i
        for i in (
            Instrument("BTC/USDT", Kind.SPOT, "BTC", "USDT", "USDT"),
            Instrument("BTC/USD:BTC", Kind.PERPETUAL, "BTC", "USD", "BTC", inverse=True),
        )
    }
    assert auto_hedge_symbol("BTC", instruments) is None
    assert auto_hedge_symbol("SOL", {}) is None


def test_min_band_coin_is_one_lot_step_in_coins():
    assert min_band_coin(LINEAR, PRICE) == D("0.01")
    assert min_band_coin(INVERSE, D(50_000)) == D("0.002")  # 100 USD / 50,000


def test_decide_to_edge_does_not_swing_across_a_band_narrower_than_a_lot_step():
    # band 0.003 BTC, lot 0.01 BTC: to the edge rounds up to 0.02 and lands at -0.004, outside on the other
    # side, from where the edge is 0.01 away again (+0.006): the trades would only swing across
    decision = decide(view("0.016"), policy("0.003", RebalanceTo.EDGE))
    assert signed_contracts(decision) == D(-1)  # rounded toward zero instead: +0.006, outside on this side
    after = decide(view("0.006"), policy("0.003", RebalanceTo.EDGE))  # from there, one lot would swing across
    assert after.intent is None and after.reason == "band_below_lot_step"
    # to the target the same trade lands within half a lot of it, and stays: made
    assert signed_contracts(decide(view("0.016"), policy("0.003"))) == D(-2)


def test_a_large_deviation_is_hedged_whatever_the_band_s_width_against_the_lot_step():
    # a 200 USD band is 0.0033 BTC, a third of the 0.01 BTC lot: the trade to its edge rounds toward zero and
    # is made, never refused for the band's width (about 300,000 USD of delta)
    decision = decide(view("5.006"), policy("200", RebalanceTo.EDGE, unit=BandUnit.USD))
    assert signed_contracts(decision) == D(-500)  # 5.00 BTC: 0.006 BTC left, within one lot of the band


def held_view(exposure_coin: D, hedge_coin: D, price: D) -> AssetView:
    """An asset's view with `exposure_coin` held outside and `hedge_coin` in its linear hedge, the gross as
    the exposure counts it (`domain.exposure.asset_deltas`)."""
    return AssetView("BTC", exposure_coin + hedge_coin, abs(exposure_coin) + abs(hedge_coin), price, LINEAR,
                     price, hedge_coin)


def test_a_trade_to_the_edge_of_a_band_in_percent_of_gross_lands_inside_the_band_it_leaves():
    """Trading back a short hedge shrinks the gross exposure, and a band in percent of it: the trade to the
    edge is sized to the band after it. 100 coins held against a 112.2-coin short: 12.2 coins short of
    the target against a 1 % band of 2.122; 10.08 coins to that band's edge (10.1 in lots) would leave
    the gross at 202.1 and the delta 0.079 outside its band of 2.021; 10.18 coins does not."""
    pct = policy("1", RebalanceTo.EDGE, unit=BandUnit.PCT)
    before = held_view(D(100), D("-112.2"), PRICE)
    decision = decide(before, pct)
    traded = signed_contracts(decision) * LINEAR.contract_size
    after = held_view(D(100), before.hedge_coin + traded, PRICE)
    assert decision.reason == "rebalance" and traded == D("10.18")
    assert decide(after, pct).reason == "inside_band"


@pytest.mark.parametrize("to", list(RebalanceTo))
def test_after_a_trade_on_a_band_in_percent_of_gross_the_next_decision_at_that_price_trades_nothing(to):
    """Property: whatever the hedge held (short, long, growing, shrinking, through zero), one decision's
    trade leaves the delta inside the band of the gross exposure after it; to the edge, a trade that
    shrinks the hedge is no more than a lot step larger than needed (one that grows it is sized to the
    band before it, a little wider than needed, as before)."""
    rng = random.Random(20261204)
    sent = 0
    for _ in range(2_000):
        price = D(rng.randint(5_000, 150_000))
        exposure = D(rng.randint(-200_000, 200_000)) / 1_000
        hedge = D(rng.randint(-250_000, 250_000)) / 1_000
        pct = policy(D(rng.choice(["0.5", "1", "2", "5", "10"])), to, unit=BandUnit.PCT)
        decision = decide(held_view(exposure, hedge, price), pct)
        if decision.intent is None:
            continue
        sent += 1
        traded = signed_contracts(decision) * LINEAR.contract_size
        assert decide(held_view(exposure, hedge + traded, price), pct).intent is None, (exposure, hedge)
        if to is RebalanceTo.EDGE and hedge != 0 and (hedge > 0) != (traded > 0):
            less = traded - LINEAR.lot_step_contracts * LINEAR.contract_size * (1 if traded > 0 else -1)
            assert decide(held_view(exposure, hedge + less, price), pct).reason != "inside_band"
    assert sent > 1_000
