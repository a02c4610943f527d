"""Perp or quarterly by carry, and the two-legged roll before expiry, with worked numbers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from deltakeeper.domain.exposure import Position
from deltakeeper.domain.orders import OrderIntent, Side
from deltakeeper.domain.roll import choose_hedge, days_to_expiry, nearest_quarterly, next_contract, plan_roll
from deltakeeper.sim.markets import future_instruments

START = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
DEC = datetime(2026, 12, 25, 8, 0, tzinfo=UTC)
FUTURES = future_instruments(START)
LIN_DEC, LIN_MAR = FUTURES["BTC/USDT:USDT-261225"], FUTURES["BTC/USDT:USDT-270326"]
INV_DEC, INV_MAR = FUTURES["BTC/USD:BTC-261225"], FUTURES["BTC/USD:BTC-270326"]
PERP = "BTC/USDT:USDT"
HOUR = timedelta(hours=1)


def test_days_to_expiry_are_fractional() -> None:
    assert days_to_expiry(DEC, DEC - timedelta(days=2, hours=12)) == D("2.5")


def test_a_short_hedge_takes_the_perp_while_funding_beats_the_basis_and_the_future_otherwise() -> None:
    # REFERENCE 6: F 61,500 over S 60,000 for 90 days is 10.14% a year, break-even 0.009259% per 8h.
    now = DEC - timedelta(days=90)
    perp = choose_hedge(PERP, D("0.0001"), LIN_DEC, D(61_500), D(60_000), now)
    assert (perp.symbol, perp.kind, perp.days_to_expiry) == (PERP, "perp", D(90))
    assert round(perp.carry_annualised * 100, 2) == D("10.14")  # type: ignore[operator]
    assert round(perp.break_even_funding_per_8h * 100, 6) == D("0.009259")  # type: ignore[operator]
    future = choose_hedge(PERP, D("0.00005"), LIN_DEC, D(61_500), D(60_000), now)
    assert (future.symbol, future.kind) == (LIN_DEC.symbol, "future")


def test_a_long_hedge_prefers_the_perp_when_its_funding_costs_less_than_the_basis() -> None:
    now = DEC - timedelta(days=90)
    negative = choose_hedge(PERP, D("-0.0001"), LIN_DEC, D(61_500), D(60_000), now, hedge_side="long")
    positive = choose_hedge(PERP, D("0.0001"), LIN_DEC, D(61_500), D(60_000), now, hedge_side="long")
    assert (negative.kind, positive.kind) == ("perp", "future")


def test_a_future_inside_its_roll_window_is_never_chosen() -> None:
    choice = choose_hedge(PERP, D("-0.01"), LIN_DEC, D(61_500), D(60_000), DEC - 47 * HOUR)
    assert (choice.kind, choice.carry_annualised) == ("perp", None)


def test_the_next_contract_is_the_same_market_one_quarter_later() -> None:
    instruments = list(FUTURES.values())
    assert next_contract(instruments, LIN_DEC, DEC - HOUR) == LIN_MAR
    assert next_contract(instruments, INV_DEC, DEC - HOUR) == INV_MAR
    assert next_contract(instruments, LIN_MAR, DEC - HOUR) is None
    # a later contract that is itself inside the window is no roll target
    assert next_contract(instruments, LIN_DEC, LIN_MAR.expiry - HOUR) is None  # type: ignore[operator]


def test_the_quarterly_to_hedge_with_is_the_nearest_outside_the_roll_window() -> None:
    instruments = list(FUTURES.values())
    assert nearest_quarterly(instruments, "BTC", DEC - 49 * HOUR) == LIN_DEC
    assert nearest_quarterly(instruments, "BTC", DEC - 47 * HOUR) == LIN_MAR
    assert nearest_quarterly(instruments, "BTC", DEC - 49 * HOUR, inverse=True) == INV_DEC
    assert nearest_quarterly(instruments, "SOL", DEC - HOUR, inverse=True) is None  # no inverse SOL
    assert nearest_quarterly(instruments, "BTC", LIN_MAR.expiry) is None  # type: ignore[arg-type]


def test_no_roll_outside_the_window_without_a_position_or_after_expiry() -> None:
    short = Position(LIN_DEC.symbol, D("-0.5"), D(60_000), D(60_100))
    assert plan_roll(short, LIN_DEC, LIN_MAR, DEC - 49 * HOUR, D(60_100), D(61_200)) is None
    assert plan_roll(short, LIN_DEC, LIN_MAR, DEC - 49 * HOUR, D(60_100), D(61_200),
                     roll_window_secs=50 * 3600) is not None
    flat = Position(LIN_DEC.symbol, D(0), D(0), D(60_100))
    assert plan_roll(flat, LIN_DEC, LIN_MAR, DEC - HOUR, D(60_100), D(61_200)) is None
    assert plan_roll(short, LIN_DEC, LIN_MAR, DEC, D(60_100), D(61_200)) is None


def test_a_linear_short_rolls_contract_for_contract() -> None:
    short = Position(LIN_DEC.symbol, D("-0.5"), D(60_000), D(60_100))
    plan = plan_roll(short, LIN_DEC, LIN_MAR, DEC - 47 * HOUR, D(60_100), D(61_200))
    assert plan is not None
    assert (plan.asset, plan.expiring, plan.next, plan.expiry) == ("BTC", LIN_DEC.symbol, LIN_MAR.symbol, DEC)
    assert plan.exposure_coin == D("-0.5")
    assert plan.close == OrderIntent(LIN_DEC.symbol, Side.BUY, D("0.5"), D(60_100), reduce_only=True)
    assert plan.open == OrderIntent(LIN_MAR.symbol, Side.SELL, D("0.500"), D(61_200))
    assert plan.legs == (plan.close, plan.open)


def test_an_inverse_short_rolls_the_same_coins_into_more_usd_face_at_the_higher_price() -> None:
    # 30,000 USD face at 60,000 is 0.5 BTC; at 61,200 the same 0.5 BTC is 30,600 USD face.
    short = Position(INV_DEC.symbol, D(-30_000), D(59_000), D(60_000))
    plan = plan_roll(short, INV_DEC, INV_MAR, DEC - 47 * HOUR, D(60_000), D(61_200))
    assert plan is not None and plan.open is not None
    assert plan.exposure_coin == D("-0.5")
    assert plan.close == OrderIntent(INV_DEC.symbol, Side.BUY, D(30_000), D(60_000), reduce_only=True)
    assert plan.open == OrderIntent(INV_MAR.symbol, Side.SELL, D(30_600), D(61_200))


def test_a_long_rolls_into_a_long() -> None:
    long = Position(LIN_DEC.symbol, D("0.25"), D(60_000), D(60_100))
    plan = plan_roll(long, LIN_DEC, LIN_MAR, DEC - HOUR, D(60_100), D(61_200))
    assert plan is not None and plan.open is not None
    assert (plan.close.side, plan.open.side, plan.open.amount_contracts) == (Side.SELL, Side.BUY, D("0.25"))


def test_an_exposure_too_small_for_the_next_contract_is_only_closed() -> None:
    # 1 USD face at 60,000 is 1/60,000 BTC: 0.41 USD face at 25,000, below the 1-contract minimum.
    tiny = Position(INV_DEC.symbol, D(-1), D(60_000), D(60_000))
    plan = plan_roll(tiny, INV_DEC, INV_MAR, DEC - HOUR, D(60_000), D(25_000))
    assert plan is not None and plan.open is None and plan.legs == (plan.close,)


def test_a_roll_into_another_asset_or_an_earlier_contract_is_refused() -> None:
    short = Position(LIN_DEC.symbol, D("-0.5"), D(60_000), D(60_100))
    with pytest.raises(ValueError):
        plan_roll(short, LIN_MAR, LIN_DEC, DEC - HOUR, D(60_100), D(61_200))
    with pytest.raises(ValueError):
        plan_roll(short, LIN_DEC, FUTURES["ETH/USDT:USDT-270326"], DEC - HOUR, D(60_100), D(3_000))
