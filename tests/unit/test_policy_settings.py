"""The live bot's policy and risk limits from its DK_ settings (policy_settings), and the defaults the
live bot and the backtest share."""

import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from deltakeeper.backtest.settings import BacktestSettings
from deltakeeper.config import load_settings
from deltakeeper.domain.decide_policies import CostAwarePolicy, FixedBandPolicy, SkipRule, TimerPolicy
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.policy import Band, BandUnit
from deltakeeper.domain.policy_params import PolicyParams, make_policy
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.risk import DEFAULT_LIMITS, RiskLimits
from deltakeeper.policy_settings import carry_perps, live_policy, resolve_policies, risk_limits
from deltakeeper.sim.markets import default_instruments, future_instruments


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("DK_"):
            monkeypatch.delenv(name)


def settings_with(monkeypatch, **env: str):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


def test_the_live_policy_is_dk_policy_with_its_parameters(monkeypatch):
    common = {"DK_RISK_AVERSION": "0.002", "DK_SLIPPAGE_BPS": "3", "DK_MAX_DEVIATION_PCT": "7",
              "DK_FIXED_COST_USD": "0.5", "DK_TIMER_SECS": "900"}
    assert live_policy(settings_with(monkeypatch, DK_POLICY="cost-aware", **common)) == CostAwarePolicy(
        0.002, Band(BandUnit.PCT, D(7)), D(3))
    assert live_policy(settings_with(monkeypatch, DK_POLICY="timer")) == TimerPolicy(900.0)
    assert live_policy(settings_with(monkeypatch, DK_POLICY="band")) == FixedBandPolicy(None)
    skipping = settings_with(monkeypatch, DK_POLICY="band", DK_SKIP_HORIZON_SECS="600")
    assert live_policy(skipping) == FixedBandPolicy(SkipRule(0.002, 600.0, D(3), D("0.5")))


def test_the_backtest_makes_the_same_policy_of_the_same_settings(monkeypatch):
    settings = settings_with(monkeypatch, DK_RISK_AVERSION="0.003", DK_SKIP_HORIZON_SECS="60",
                             DK_SLIPPAGE_BPS="1.5")
    replayed = BacktestSettings.from_settings(settings)
    for name in ("timer", "band", "cost-aware"):
        assert replayed.policy(name) == make_policy(name, PolicyParams(
            settings.timer_secs, settings.risk_aversion, settings.max_deviation_pct, settings.slippage_bps,
            settings.fixed_cost_usd, settings.skip_horizon_secs))


def test_an_unknown_policy_is_refused_naming_the_variable():
    with pytest.raises(ConfigError, match="--policy"):
        BacktestSettings().policy("grid")
    with pytest.raises(ConfigError, match="DK_POLICY"):
        make_policy("grid", PolicyParams())


def test_risk_limits_and_their_defaults_are_the_same_live_and_in_a_backtest(monkeypatch):
    settings = load_settings()
    assert risk_limits(settings) == RiskLimits(
        DEFAULT_LIMITS.max_order_usd, DEFAULT_LIMITS.max_daily_traded_usd, DEFAULT_LIMITS.max_position_usd,
        DEFAULT_LIMITS.stale_secs, DEFAULT_LIMITS.price_collar_bps, D("0.2"), D("0.15"))
    assert BacktestSettings().limits == BacktestSettings.from_settings(settings).limits == DEFAULT_LIMITS
    assert BacktestSettings().policy("cost-aware") == live_policy(settings)
    custom = settings_with(monkeypatch, DK_MAX_ORDER_USD="1000", DK_MARGIN_MIN_HEADROOM_PCT="25")
    limits = risk_limits(custom)
    assert (limits.max_order_usd, limits.min_margin_headroom) == (D(1000), D("0.25"))


# -- a quarterly hedge -------------------------------------------------------------------------------------

EXPIRY_DEC = "SOL/USDT:USDT-261225"
EXPIRY_MAR = "SOL/USDT:USDT-270326"


def quarterly_policy(monkeypatch, now, **env: str):
    instruments = {**default_instruments(), **future_instruments(datetime(2026, 12, 1, tzinfo=UTC))}
    settings = settings_with(monkeypatch, DK_ASSETS__SOL__HEDGE="quarterly", **env)
    return resolve_policies(settings, instruments, AccountSnapshot({"SOL": D(10)}, (), now), now)


def test_a_quarterly_hedge_is_the_nearest_quarterly_outside_the_roll_window_priced_by_the_perpetual(
        monkeypatch):
    expiry = datetime(2026, 12, 25, 8, tzinfo=UTC)
    policies, prices = quarterly_policy(monkeypatch, expiry - timedelta(hours=49))
    assert policies["SOL"].hedge_symbol == EXPIRY_DEC
    assert prices["SOL"] == "SOL/USDT:USDT"  # the spot-like perpetual, not the future with its basis
    assert quarterly_policy(monkeypatch, expiry - timedelta(hours=47))[0]["SOL"].hedge_symbol == EXPIRY_MAR
    wider = quarterly_policy(monkeypatch, expiry - timedelta(hours=49), DK_ROLL_WINDOW_SECS="180000")
    assert wider[0]["SOL"].hedge_symbol == EXPIRY_MAR


def test_a_quarterly_hedge_with_no_quarterly_outside_the_roll_window_is_refused(monkeypatch):
    with pytest.raises(ConfigError, match=r"DK_ASSETS__SOL__HEDGE.*expires later than DK_ROLL_WINDOW_SECS"):
        quarterly_policy(monkeypatch, datetime(2027, 3, 25, 9, tzinfo=UTC))  # March inside, none after it


@pytest.mark.parametrize("value", ["0", "-1", "abc"])
def test_the_roll_window_is_a_positive_number_of_seconds(monkeypatch, value):
    with pytest.raises(ConfigError, match="DK_ROLL_WINDOW_SECS"):
        settings_with(monkeypatch, DK_ROLL_WINDOW_SECS=value)
    assert settings_with(monkeypatch, DK_ROLL_WINDOW_SECS="3600").roll_window_secs == 3600


def test_the_roll_window_is_48_hours_by_default(monkeypatch):
    assert load_settings().roll_window_secs == 48 * 3600


def test_a_carry_hedge_starts_on_the_perpetual_and_is_listed_for_the_choice(monkeypatch):
    now = datetime(2026, 12, 1, tzinfo=UTC)
    instruments = {**default_instruments(), **future_instruments(now)}
    settings = settings_with(monkeypatch, DK_ASSETS__SOL__HEDGE="carry", DK_ASSETS__BTC__HEDGE="quarterly")
    policies, _ = resolve_policies(settings, instruments, AccountSnapshot({"SOL": D(10)}, (), now), now)
    assert policies["SOL"].hedge_symbol == "SOL/USDT:USDT"
    assert carry_perps(settings, policies) == {"SOL": "SOL/USDT:USDT"}
