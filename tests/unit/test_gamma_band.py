"""The gamma of an options book in the delta, and the cost-aware band it widens (REFERENCE.md 1.3 and 4)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from deltakeeper.domain.decide_policies import WARMUP_RISK_SAMPLES, CostAwarePolicy, MarketContext, RiskModel
from deltakeeper.domain.exposure import Position, asset_deltas
from deltakeeper.domain.greeks import greeks
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.policy import AssetView, Band, BandUnit
from deltakeeper.domain.volatility import SECONDS_PER_YEAR, EwmaDrift, EwmaVol

AS_OF = datetime(2024, 1, 1, 8, tzinfo=UTC)
S = D(60_000)
ATM_CALL = Instrument("BTC/USD:BTC-240131-60000-C", Kind.OPTION, "BTC", "USD", "BTC", contract_size=D(1),
                      expiry=AS_OF + timedelta(days=30), strike=D(60_000), option_type="call")
PERP = Instrument("BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT", lot_step_contracts=D("0.001"),
                  min_contracts=D("0.001"), taker_fee_rate=D("0.0005"))
INSTRUMENTS = {ATM_CALL.symbol: ATM_CALL, PERP.symbol: PERP}
SHORT_100 = Position(ATM_CALL.symbol, D(-100), D(0), D(0), mark_iv=0.60)
"""REFERENCE 4's book: short 100 ATM 30-day calls at 60% (no mark: valued by Black-76 at each price)."""
HEDGE = Position(PERP.symbol, D(53), D(60_000), D(60_000))
# REFERENCE 4's example: c = 5 bp (the perp's taker fee, no spread), ra = 1e-4 per USD.
RA = 1e-4
POLICY = CostAwarePolicy(RA, Band(BandUnit.COIN, D(10)))
OWN_BAND = Band(BandUnit.COIN, D(1))


def book_delta(price: D) -> D:
    return asset_deltas(INSTRUMENTS, {}, [SHORT_100, HEDGE], {"BTC": price}, as_of=AS_OF)["BTC"].delta_coin


def risk_model(vol: float, drift_var: float) -> RiskModel:
    """Exactly this annual vol and measured drift variance (coins^2 a year): one-year bars."""
    ewma = EwmaVol(0.9, SECONDS_PER_YEAR, last_price=1.0, weighted_sq=vol * vol, weight=1.0)
    drift = EwmaDrift(last_delta_coin=0.0, last_t_secs=0.0, weighted_sq_coin2=drift_var,
                      weighted_time_secs=float(SECONDS_PER_YEAR))
    return RiskModel(ewma, drift, returns=WARMUP_RISK_SAMPLES)


def band(gamma: float, vol: float = 0.6, drift_var: float = 0.0) -> tuple[D, str]:
    view = AssetView("BTC", D(0), D(100), S, PERP, S)
    ctx = MarketContext(0.0, D(0), risk_model(vol, drift_var), None, gamma)
    return POLICY.band_coin(view, ctx, OWN_BAND)


def test_the_books_gamma_is_the_slope_of_its_delta_as_counted():
    book = asset_deltas(INSTRUMENTS, {}, [SHORT_100, HEDGE], {"BTC": S}, as_of=AS_OF)["BTC"]
    gamma = book.gamma_coin_per_usd
    # REFERENCE 4: G_book = 3.85112e-3 per USD for the 100 calls (short: negative); the perp has none.
    assert gamma == pytest.approx(-3.85112e-3, rel=1e-5)
    # It is how the delta the bot hedges moves: the calls' adjusted delta plus their value in coin.
    h = D(1)
    slope = float(book_delta(S + h) - book_delta(S - h)) / 2
    assert slope == pytest.approx(gamma, rel=1e-6)
    # Not the gamma of the adjusted delta alone: that misses the slope of the calls' coin value.
    g = greeks(60_000.0, 60_000.0, 30 / 365, 0.60, True)
    assert -100 * g.gamma_adj_per_usd != pytest.approx(gamma, rel=0.1)


def test_gamma_is_black76s_beside_a_published_delta_and_zero_without_options_or_its_inputs():
    published = Position(ATM_CALL.symbol, D(-100), D(0), D("0.0685"), delta=D("0.53"), mark_iv=0.60)
    with_iv = asset_deltas(INSTRUMENTS, {}, [published], {"BTC": S}, as_of=AS_OF)["BTC"]
    assert with_iv.gamma_coin_per_usd == pytest.approx(-3.85112e-3, rel=1e-5)
    no_time = asset_deltas(INSTRUMENTS, {}, [published], {"BTC": S})["BTC"]
    assert no_time.gamma_coin_per_usd == 0.0 and no_time.delta_coin == with_iv.delta_coin
    assert asset_deltas(INSTRUMENTS, {"BTC": D(1)}, [HEDGE], {"BTC": S})["BTC"].gamma_coin_per_usd == 0.0


def test_a_book_with_gamma_gets_whalley_wilmotts_band():
    gamma = asset_deltas(INSTRUMENTS, {}, [SHORT_100], {"BTC": S}, as_of=AS_OF)["BTC"].gamma_coin_per_usd
    width, detail = band(gamma)
    # REFERENCE 4: w* = (3 c S G^2 / (2 ra))^(1/3) = 1.8828 BTC, whatever the volatility.
    by_hand = (3 * 0.0005 * 60_000 * gamma**2 / (2 * RA)) ** (1 / 3)
    assert by_hand == pytest.approx(1.8828, abs=1e-4)
    assert float(width) == pytest.approx(by_hand, rel=1e-9)
    assert float(band(gamma, vol=1.2)[0]) == pytest.approx(by_hand, rel=1e-9)
    assert f"gamma_coin_per_usd={gamma:.6g}" in detail and "gamma_drift_var=" in detail
    # Without the gamma nothing drifts: no cube-root band (it would be the lot step), the asset's own band.
    assert band(0.0) == (OWN_BAND.half_width, "warming_up returns=30/30 drift=0 band=own")
    # Four times the gamma: 4^(2/3) times the band.
    assert float(band(4 * gamma)[0]) == pytest.approx(by_hand * 4 ** (2 / 3), rel=1e-9)


def test_the_gamma_term_adds_to_the_measured_drift():
    gamma, vol, measured = -3.85112e-3, 0.5, 4.0
    width, detail = band(gamma, vol, measured)
    # w* = (3 k sD^2 / (4 a))^(1/3), k = c S, a = ra vol^2 S^2 / 2, sD^2 = measured + (G vol S)^2
    s_d2 = measured + (gamma * vol * 60_000) ** 2
    by_hand = (3 * 0.0005 * 60_000 * s_d2 / (4 * RA * vol**2 * 60_000**2 / 2)) ** (1 / 3)
    assert float(width) == pytest.approx(by_hand, rel=1e-9)
    assert width > band(0.0, vol, measured)[0]
    assert f"drift_var_coin2_per_year={s_d2:.6g}" in detail and "measured_drift_var=4 " in detail


def test_the_options_share_of_the_delta_is_apart_so_that_the_measured_drift_leaves_it_out():
    book = asset_deltas(INSTRUMENTS, {"BTC": D(2)}, [SHORT_100, HEDGE], {"BTC": S}, as_of=AS_OF)["BTC"]
    g = greeks(60_000.0, 60_000.0, 30 / 365, 0.60, True)
    # the calls' adjusted delta plus their value in coin; the rest is the wallet and the perp
    assert float(book.option_delta_coin) == pytest.approx(-100 * (g.delta_adj + g.premium_coin), rel=1e-12)
    assert book.delta_coin - book.option_delta_coin == D(2) + D(53)
    assert asset_deltas(INSTRUMENTS, {"BTC": D(2)}, [HEDGE], {"BTC": S})["BTC"].option_delta_coin == 0
