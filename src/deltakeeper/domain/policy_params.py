"""Which hedge policy decides, with its parameters: the one place the live bot and the backtest make a
policy from their settings, and the parameters' defaults (DK_POLICY, DK_TIMER_SECS, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from deltakeeper.domain.decide_policies import (
    CostAwarePolicy,
    FixedBandPolicy,
    HedgePolicy,
    SkipRule,
    TimerPolicy,
)
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.policy import Band, BandUnit

PolicyName = Literal["timer", "band", "cost-aware"]
POLICIES: tuple[PolicyName, ...] = ("timer", "band", "cost-aware")
DEFAULT_BAND = Band(BandUnit.PCT, Decimal(1))
"""DK_DEFAULT_BAND_PCT unset: 1 % of the asset's gross exposure either side of the target."""


@dataclass(frozen=True, slots=True)
class PolicyParams:
    """A policy's parameters; the defaults are those of their unset `DK_` variables."""

    timer_secs: float = 3600.0
    """DK_TIMER_SECS: the timer policy's interval."""
    risk_aversion_per_usd: float = 1e-4
    """DK_RISK_AVERSION: the cost-aware band's (and the skip rule's) risk aversion."""
    max_deviation_pct: Decimal = Decimal(10)
    """DK_MAX_DEVIATION_PCT: the cost-aware band's hard maximum, percent of the asset's gross exposure."""
    slippage_bps: Decimal = Decimal(0)
    """DK_SLIPPAGE_BPS: slippage estimate added to the cost rate of the cost-aware band and the skip rule."""
    fixed_cost_usd: Decimal = Decimal(0)
    """DK_FIXED_COST_USD: a fixed cost per trade, for the skip rule."""
    skip_horizon_secs: float = 0.0
    """DK_SKIP_HORIZON_SECS: the fixed band's skip rule horizon; 0 turns the rule off."""


DEFAULT_PARAMS = PolicyParams()


def make_policy(name: str, params: PolicyParams, variable: str = "DK_POLICY") -> HedgePolicy:
    """The policy `name` (timer, band or cost-aware) with `params`; another name is refused, naming
    `variable`."""
    if name == "timer":
        return TimerPolicy(params.timer_secs)
    if name == "band":
        skip = None
        if params.skip_horizon_secs > 0:
            skip = SkipRule(params.risk_aversion_per_usd, params.skip_horizon_secs, params.slippage_bps,
                            params.fixed_cost_usd)
        return FixedBandPolicy(skip)
    if name == "cost-aware":
        return CostAwarePolicy(params.risk_aversion_per_usd, Band(BandUnit.PCT, params.max_deviation_pct),
                               params.slippage_bps)
    raise ConfigError(variable, "timer, band or cost-aware", name)
