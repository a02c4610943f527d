from decimal import Decimal

import pytest

from deltakeeper.domain.greeks import black76_price_usd, coin_settled_delta_coin, d1_d2, greeks

# REFERENCE 1.3 worked example: F = K = 60,000, T = 30/365, s = 0.60.
F, K, T, VOL = 60_000.0, 60_000.0, 30 / 365, 0.60


def test_black76_reproduces_reference_worked_example() -> None:
    d1, d2 = d1_d2(F, K, T, VOL)
    call = greeks(F, K, T, VOL, is_call=True)

    assert d1 == pytest.approx(0.086007, abs=5e-7)
    assert d2 == pytest.approx(-0.086007, abs=5e-7)
    assert call.price_usd == pytest.approx(4_112.3644, abs=5e-5)
    assert call.premium_coin == pytest.approx(0.06853941, abs=5e-9)
    assert call.delta == pytest.approx(0.534270, abs=5e-7)
    assert call.delta_adj == pytest.approx(0.465730, abs=5e-7)
    assert call.gamma_per_usd == pytest.approx(3.8511e-05, abs=5e-10)


def test_adjusted_delta_is_delta_minus_coin_premium_for_calls_and_puts() -> None:
    for strike in (45_000.0, 60_000.0, 80_000.0):
        for is_call in (True, False):
            g = greeks(F, strike, T, VOL, is_call)
            assert g.delta_adj == pytest.approx(g.delta - g.premium_coin, abs=1e-12)


def test_put_call_parity_holds_on_the_forward() -> None:
    call = black76_price_usd(F, 55_000.0, T, VOL, is_call=True)
    put = black76_price_usd(F, 55_000.0, T, VOL, is_call=False)
    assert call - put == pytest.approx(F - 55_000.0, abs=1e-8)


@pytest.mark.parametrize("is_call", [True, False])
@pytest.mark.parametrize("strike", [50_000.0, 60_000.0, 72_000.0])
def test_greeks_match_finite_differences(is_call: bool, strike: float) -> None:
    g = greeks(F, strike, T, VOL, is_call)
    h = 0.5
    up, down = greeks(F + h, strike, T, VOL, is_call), greeks(F - h, strike, T, VOL, is_call)
    assert g.delta == pytest.approx((up.price_usd - down.price_usd) / (2 * h), rel=1e-7)
    assert g.gamma_per_usd == pytest.approx((up.delta - down.delta) / (2 * h), rel=1e-6)
    assert g.gamma_adj_per_usd == pytest.approx((up.delta_adj - down.delta_adj) / (2 * h), rel=1e-6)
    dv = 1e-5
    vol_up = black76_price_usd(F, strike, T, VOL + dv, is_call)
    vol_down = black76_price_usd(F, strike, T, VOL - dv, is_call)
    assert g.vega_usd == pytest.approx((vol_up - vol_down) / (2 * dv), rel=1e-6)


def test_expired_options_are_worth_intrinsic_with_step_deltas() -> None:
    itm_call = greeks(F, 50_000.0, 0.0, VOL, is_call=True)
    otm_call = greeks(F, 70_000.0, -1.0, VOL, is_call=True)
    itm_put = greeks(F, 70_000.0, 0.0, VOL, is_call=False)

    assert (itm_call.price_usd, itm_call.delta) == (10_000.0, 1.0)
    assert (itm_call.gamma_per_usd, itm_call.vega_usd) == (0.0, 0.0)
    assert (otm_call.price_usd, otm_call.delta) == (0.0, 0.0)
    assert (itm_put.price_usd, itm_put.delta) == (10_000.0, -1.0)
    # Coin-settled: an in-the-money call at expiry carries K/F of USD delta, and its slope is -K/F^2.
    assert itm_call.delta_adj == pytest.approx(50_000 / 60_000)
    assert itm_call.gamma_adj_per_usd == pytest.approx(-50_000 / 60_000**2)


def test_zero_vol_prices_intrinsic_and_at_the_money_delta_is_one_half() -> None:
    atm = greeks(F, K, T, 0.0, is_call=True)
    itm_put = greeks(F, 65_000.0, T, -0.1, is_call=False)

    assert (atm.price_usd, atm.delta, atm.gamma_per_usd) == (0.0, 0.5, 0.0)
    assert (itm_put.price_usd, itm_put.delta) == (5_000.0, -1.0)


def test_deribit_faq_call_with_delta_half_bought_for_a_tenth_adds_point_four_to_delta_total() -> None:
    assert coin_settled_delta_coin(Decimal(1), delta=0.50, premium_coin=0.10) == Decimal("0.4")


def test_short_option_position_adds_minus_contracts_times_adjusted_delta() -> None:
    g = greeks(F, K, T, VOL, is_call=True)
    contribution = coin_settled_delta_coin(Decimal(-100), g.delta, g.premium_coin)
    assert float(contribution) == pytest.approx(-46.5730, abs=5e-5)
