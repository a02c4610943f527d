from decimal import Decimal as D

import pytest
from tests.instruments import BYBIT_INVERSE, OKX_LINEAR

from deltakeeper.domain.exposure import Position, asset_deltas, unrealized_pnl
from deltakeeper.domain.instruments import Instrument, Kind

ETH_LINEAR = Instrument("ETH/USDC:USDC", Kind.PERPETUAL, "ETH", "USDC", "USDC", contract_size=D("0.1"))
INSTRUMENTS = {i.symbol: i for i in (OKX_LINEAR, BYBIT_INVERSE, ETH_LINEAR)}
TOLERANCE = D("1e-20")


def test_okx_linear_position_of_250_contracts_is_2_5_btc():
    # REFERENCE 1.1: contractSize 0.01 BTC
    position = Position("BTC/USDT:USDT", D(250), D(60_000), D(60_000))
    deltas = asset_deltas(INSTRUMENTS, {}, [position], {"BTC": D(60_000)})
    assert deltas["BTC"].delta_coin == D("2.5")
    assert deltas["BTC"].delta_usd == D(150_000)


def test_linear_unrealized_pnl_is_contracts_times_size_times_move():
    position = Position("BTC/USDT:USDT", D(250), D(60_000), D(61_000))
    assert unrealized_pnl(OKX_LINEAR, position) == D(2_500)  # USDT
    short = Position("BTC/USDT:USDT", D(-250), D(60_000), D(61_000))
    assert unrealized_pnl(OKX_LINEAR, short) == D(-2_500)


def test_inverse_long_bought_at_8000_sold_at_12500_earns_0_45_btc():
    # REFERENCE 1.2, Bybit help page: 10,000 contracts of 1 USD
    position = Position("BTC/USD:BTC", D(10_000), D(8_000), D(12_500))
    assert unrealized_pnl(BYBIT_INVERSE, position) == D("0.45")


def test_unrealized_pnl_prefers_the_exchanges_figure():
    position = Position("BTC/USD:BTC", D(10_000), D(8_000), D(12_500), unrealized_pnl=D("0.4499"))
    assert unrealized_pnl(BYBIT_INVERSE, position) == D("0.4499")


def test_unrealized_pnl_is_zero_without_entry_or_mark():
    assert unrealized_pnl(BYBIT_INVERSE, Position("BTC/USD:BTC", D(10_000), D(0), D(12_500))) == 0
    assert unrealized_pnl(OKX_LINEAR, Position("BTC/USDT:USDT", D(10), D(60_000), D(0))) == 0


def _coin_margined_account(price: D, exchange_pnl: bool) -> D:
    """1 BTC collateral, short N = -50,000 USD inverse opened at 50,000, marked at `price`."""
    pnl = D(-50_000) * (1 / D(50_000) - 1 / price) if exchange_pnl else None
    position = Position("BTC/USD:BTC", D(-50_000), D(50_000), price, unrealized_pnl=pnl)
    deltas = asset_deltas(INSTRUMENTS, {"BTC": D(1)}, [position], {"BTC": price})
    return deltas["BTC"].delta_coin


def test_coin_margined_account_equity_at_60000_is_0_8333_btc_and_delta_zero():
    position = Position("BTC/USD:BTC", D(-50_000), D(50_000), D(60_000))
    equity = D(1) + unrealized_pnl(BYBIT_INVERSE, position)
    assert abs(equity - D("0.833333333")) < D("1e-9")
    assert abs(equity * D(60_000) - D(50_000)) < D("1e-15")
    assert abs(_coin_margined_account(D(60_000), exchange_pnl=False)) < TOLERANCE


@pytest.mark.parametrize("price", ["10000", "35000", "50000", "60000", "123456.78"])
@pytest.mark.parametrize("exchange_pnl", [False, True])
def test_short_inverse_against_its_coin_collateral_is_neutral_at_every_price(price, exchange_pnl):
    assert abs(_coin_margined_account(D(price), exchange_pnl)) < TOLERANCE


def test_inverse_hedge_without_unrealized_pnl_would_not_be_neutral():
    # guards the test above: the PnL term is what makes it zero
    position = Position("BTC/USD:BTC", D(-50_000), D(50_000), D(60_000), unrealized_pnl=D(0))
    deltas = asset_deltas(INSTRUMENTS, {"BTC": D(1)}, [position], {"BTC": D(60_000)})
    assert deltas["BTC"].delta_coin > D("0.16")


def test_stablecoins_never_appear_and_linear_pnl_is_not_a_coin_delta():
    balances = {"USDT": D(100_000), "usdc": D(5), "USD": D(7), "BTC": D(2)}
    position = Position("BTC/USDT:USDT", D(-200), D(60_000), D(55_000))
    deltas = asset_deltas(INSTRUMENTS, balances, [position], {"BTC": D(55_000)})
    assert set(deltas) == {"BTC"}
    assert deltas["BTC"].delta_coin == D(0)
    assert deltas["BTC"].delta_usd == D(0)


def test_stablecoin_external_holdings_are_ignored():
    deltas = asset_deltas(INSTRUMENTS, {}, [], {}, external={"USDT": D(1_000_000)})
    assert deltas == {}


def test_external_holdings_add_to_exchange_balances():
    deltas = asset_deltas(
        INSTRUMENTS,
        {"ETH": D("1.5")},
        [Position("ETH/USDC:USDC", D(-20), D(3_000), D(3_000))],
        {"ETH": D(3_000), "SOL": D(150)},
        external={"eth": D(3), "SOL": D(10)},
    )
    assert deltas["ETH"].delta_coin == D("2.5")  # 1.5 + 3 - 2
    assert deltas["ETH"].delta_usd == D(7_500)
    assert deltas["SOL"].delta_coin == D(10)
    assert deltas["SOL"].delta_usd == D(1_500)


def test_gross_exposure_sums_absolute_legs():
    deltas = asset_deltas(
        INSTRUMENTS,
        {"BTC": D(3)},
        [Position("BTC/USDT:USDT", D(-250), D(60_000), D(60_000))],
        {"BTC": D(60_000)},
        external={"BTC": D(-1)},
    )
    assert deltas["BTC"].delta_coin == D("-0.5")  # 3 - 1 - 2.5
    assert deltas["BTC"].gross_coin == D("6.5")  # 3 + 1 + 2.5


def test_position_in_unknown_market_is_an_error():
    with pytest.raises(KeyError, match="DOGE/USDT:USDT"):
        asset_deltas(INSTRUMENTS, {}, [Position("DOGE/USDT:USDT", D(1), D(1), D(1))], {"DOGE": D(1)})


def test_missing_usd_price_for_a_held_asset_is_an_error():
    with pytest.raises(KeyError, match="ETH"):
        asset_deltas(INSTRUMENTS, {"ETH": D(1)}, [], {"BTC": D(60_000)})


def test_missing_price_for_a_stablecoin_is_not_needed():
    assert asset_deltas(INSTRUMENTS, {"USDT": D(10)}, [], {}) == {}
