from decimal import Decimal as D

import pytest
from tests.instruments import BYBIT_INVERSE, OKX_INVERSE, OKX_LINEAR

from deltakeeper.domain.instruments import Instrument, Kind, is_stable

SPOT = Instrument("ETH/USDT", Kind.SPOT, "ETH", "USDT", "USDT", lot_step_contracts=D("0.0001"))


@pytest.mark.parametrize("asset", ["USDT", "usdc", "USD", "Dai", "FDUSD", "EUR"])
def test_is_stable_recognises_stablecoins_and_usd_in_any_case(asset):
    assert is_stable(asset)


@pytest.mark.parametrize("asset", ["BTC", "eth", "SOL", "USDX"])
def test_is_stable_rejects_volatile_assets(asset):
    assert not is_stable(asset)


def test_linear_delta_is_contracts_times_contract_size():
    # 250 contracts x 0.01 BTC = 2.5 BTC at any price
    assert OKX_LINEAR.delta_coin(D(250), D(60_000)) == D("2.5")
    assert OKX_LINEAR.delta_coin(D(250), D(10)) == D("2.5")
    assert OKX_LINEAR.delta_coin(D(-250), D(60_000)) == D("-2.5")


def test_inverse_delta_is_usd_face_over_mark():
    # -50,000 USD face at 50,000 = -1 BTC; at 60,000 = -0.8333 BTC
    assert BYBIT_INVERSE.delta_coin(D(-50_000), D(50_000)) == D(-1)
    assert OKX_INVERSE.delta_coin(D(-500), D(50_000)) == D(-1)
    assert OKX_INVERSE.delta_coin(D(-500), D(62_500)) == D("-0.8")


def test_spot_delta_is_the_amount_in_coins():
    assert SPOT.delta_coin(D("1.2345"), D(3_000)) == D("1.2345")


def test_contracts_for_coin_inverts_delta_coin_for_linear_and_inverse():
    assert OKX_LINEAR.contracts_for_coin(D("2.5"), D(60_000)) == D(250)
    assert OKX_INVERSE.contracts_for_coin(D(-1), D(50_000)) == D(-500)
    assert BYBIT_INVERSE.contracts_for_coin(D("0.45"), D(12_500)) == D(5_625)
    for instrument in (OKX_LINEAR, OKX_INVERSE, BYBIT_INVERSE, SPOT):
        contracts = instrument.contracts_for_coin(D("-0.37"), D(40_000))
        assert instrument.delta_coin(contracts, D(40_000)) == D("-0.37")


def test_notional_usd_is_unsigned_and_in_usd():
    assert OKX_LINEAR.notional_usd(D(-250), D(60_000)) == D(150_000)
    assert OKX_LINEAR.notional_usd(D(250), D(60_000)) == D(150_000)
    # inverse notional is the USD face, whatever the price
    assert OKX_INVERSE.notional_usd(D(-3), D(60_000)) == D(300)
    assert OKX_INVERSE.notional_usd(D(3), D(1)) == D(300)
    assert SPOT.notional_usd(D("0.5"), D(3_000)) == D(1_500)


def test_round_contracts_rounds_to_nearest_lot_step():
    assert OKX_LINEAR.round_contracts(D("12.344")) == D("12.34")
    assert OKX_LINEAR.round_contracts(D("12.346")) == D("12.35")
    assert OKX_LINEAR.round_contracts(D("-12.346")) == D("-12.35")
    assert BYBIT_INVERSE.round_contracts(D("5624.6")) == D(5_625)


def test_round_contracts_toward_zero_truncates_both_signs():
    assert OKX_LINEAR.round_contracts(D("12.349"), toward_zero=True) == D("12.34")
    assert OKX_LINEAR.round_contracts(D("-12.349"), toward_zero=True) == D("-12.34")
    assert OKX_LINEAR.round_contracts(D("0.009"), toward_zero=True) == 0


def test_round_contracts_result_is_a_multiple_of_the_lot_step():
    odd = Instrument("X/USDT:USDT", Kind.PERPETUAL, "X", "USDT", "USDT", lot_step_contracts=D("0.25"))
    assert odd.round_contracts(D("1.1")) == D("1.0")
    assert odd.round_contracts(D("1.2")) == D("1.25")
    assert odd.round_contracts(D("1.49"), toward_zero=True) == D("1.25")


def test_derivatives_and_usd_margin_are_told_apart():
    assert OKX_LINEAR.is_derivative and OKX_LINEAR.usd_margined
    assert OKX_INVERSE.is_derivative and not OKX_INVERSE.usd_margined
    assert not SPOT.is_derivative
