"""The backtest's settings: the live bot's `DK_` settings (so that good settings can be copied into
production as they are), plus what only a replay needs (the quoted spread). The fixed sweep grids."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from deltakeeper.domain.decide_policies import HedgePolicy
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.policy import Band, BandUnit, RebalanceTo
from deltakeeper.domain.policy_params import (
    DEFAULT_BAND,
    DEFAULT_PARAMS,
    POLICIES,
    PolicyParams,
    make_policy,
)
from deltakeeper.domain.risk import DEFAULT_LIMITS, RiskLimits
from deltakeeper.domain.roll import DEFAULT_ROLL_WINDOW_SECS
from deltakeeper.domain.volatility import RISKMETRICS_DAILY_DECAY

__all__ = ["POLICIES", "SWEEP_GRID", "BacktestSettings"]

# The fixed grid `--sweep` runs for each policy: the same for every run, so results compare across data.
SWEEP_GRID: dict[str, tuple[dict[str, Any], ...]] = {
    "timer": tuple({"timer_secs": float(hours * 3600)} for hours in (1, 4, 8, 24)),
    "band": tuple({"band_pct": Decimal(pct)} for pct in ("0.5", "1", "2", "5", "10")),
    "cost-aware": tuple({"risk_aversion_per_usd": ra} for ra in (1e-6, 1e-5, 1e-4, 1e-3)),
}


@dataclass(frozen=True, slots=True)
class BacktestSettings:
    """Every setting a backtest uses. The names follow the `DK_` variables (`settings_used` maps them)."""

    rebalance_to: RebalanceTo = RebalanceTo.EDGE
    default_band: Band = DEFAULT_BAND
    asset_bands: Mapping[str, Band] = field(default_factory=dict)
    """`DK_ASSETS__<ASSET>__BAND_*`: an asset's own band, in place of the default."""
    targets_coin: Mapping[str, Decimal] = field(default_factory=dict)
    hedges: Mapping[str, str] = field(default_factory=dict)
    """`DK_ASSETS__<ASSET>__HEDGE`: the linear perpetual of the asset, or of another asset with prices (a
    proxy hedge), `quarterly` or `carry` (backtest/hedges.py)."""
    roll_window_secs: float = DEFAULT_ROLL_WINDOW_SECS
    """`DK_ROLL_WINDOW_SECS`: a quarterly hedge (`DK_ASSETS__<ASSET>__HEDGE=quarterly`) is rolled into the
    next contract once fewer seconds than this are left to its expiry."""
    betas: Mapping[str, Decimal | None] = field(default_factory=dict)
    """`DK_ASSETS__<ASSET>__BETA` of a proxy-hedged asset: a ratio, or None for the EWMA estimate (unset:
    1)."""
    slice_max_usd: Decimal = Decimal(0)
    """`DK_SLICE_MAX_USD`: orders larger than this go in slices, one a price event (0: none)."""
    slice_max_slippage_bps: Decimal = Decimal(0)
    """`DK_SLICE_MAX_SLIPPAGE_BPS`: slices that walk the engine's book by at most this (0: none)."""
    external_coin: Mapping[str, Decimal] = field(default_factory=dict)
    """`DK_EXTERNAL__<ASSET>`: coins held, for the static exposure (else its starting value in USD)."""
    timer_secs: float = DEFAULT_PARAMS.timer_secs
    risk_aversion_per_usd: float = DEFAULT_PARAMS.risk_aversion_per_usd
    max_deviation_pct: Decimal = DEFAULT_PARAMS.max_deviation_pct
    slippage_bps: Decimal = DEFAULT_PARAMS.slippage_bps
    fixed_cost_usd: Decimal = DEFAULT_PARAMS.fixed_cost_usd
    skip_horizon_secs: float = DEFAULT_PARAMS.skip_horizon_secs
    """The policy's parameters: see `domain.policy_params.PolicyParams`."""
    ewma_daily_decay: float = RISKMETRICS_DAILY_DECAY
    spread_bps: float = 1.0
    """The quoted bid-ask spread the replay puts around each bar's close (replay only)."""
    option_vol: float = 0.6
    """The implied volatility an options book (`--exposure calls:...`) is valued at (replay only)."""
    start_hedged: bool = True
    """Open the hedge at the target on each asset's first price event, outside the figures (its cost is
    reported as `initial_hedge`), so that policies are compared on the hedging itself."""
    limits: RiskLimits = DEFAULT_LIMITS

    @classmethod
    def from_settings(cls, settings: Any) -> BacktestSettings:
        """From the live bot's `config.Settings`. Fields that it does not (yet) have keep their defaults."""
        default = cls()

        def get(name: str, fallback: Any) -> Any:
            value = getattr(settings, name, None)
            return fallback if value is None else value

        asset_bands: dict[str, Band] = {}
        targets: dict[str, Decimal] = {}
        hedges: dict[str, str] = {}
        betas: dict[str, Decimal | None] = {}
        for asset, spec in (getattr(settings, "assets", None) or {}).items():
            if spec.hedge:
                hedges[asset.upper()] = str(spec.hedge)
            if getattr(spec, "beta", None) is not None:
                betas[asset.upper()] = None if spec.beta == "ewma" else Decimal(spec.beta)
            band = spec.band(None)
            if band is not None:
                asset_bands[asset.upper()] = band
            if spec.target:
                targets[asset.upper()] = Decimal(spec.target)
        limits = default.limits
        return cls(
            rebalance_to=RebalanceTo(get("rebalance_to", default.rebalance_to.value)),
            default_band=Band(BandUnit.PCT, Decimal(get("default_band_pct", DEFAULT_BAND.half_width))),
            asset_bands=asset_bands,
            targets_coin=targets,
            hedges=hedges,
            betas=betas,
            roll_window_secs=float(get("roll_window_secs", default.roll_window_secs)),
            slice_max_usd=Decimal(get("slice_max_usd", default.slice_max_usd)),
            slice_max_slippage_bps=Decimal(get("slice_max_slippage_bps", default.slice_max_slippage_bps)),
            external_coin={k.upper(): Decimal(v) for k, v in (get("external", {}) or {}).items()},
            timer_secs=float(get("timer_secs", default.timer_secs)),
            risk_aversion_per_usd=float(get("risk_aversion", default.risk_aversion_per_usd)),
            max_deviation_pct=Decimal(get("max_deviation_pct", default.max_deviation_pct)),
            slippage_bps=Decimal(get("slippage_bps", default.slippage_bps)),
            fixed_cost_usd=Decimal(get("fixed_cost_usd", default.fixed_cost_usd)),
            skip_horizon_secs=float(get("skip_horizon_secs", default.skip_horizon_secs)),
            ewma_daily_decay=float(get("ewma_daily_decay", default.ewma_daily_decay)),
            spread_bps=float(get("backtest_spread_bps", default.spread_bps)),
            limits=RiskLimits(
                max_order_usd=Decimal(get("max_order_usd", limits.max_order_usd)),
                max_daily_traded_usd=Decimal(get("max_daily_traded_usd", limits.max_daily_traded_usd)),
                max_position_usd=Decimal(get("max_position_usd", limits.max_position_usd)),
                stale_secs=float(get("stale_secs", limits.stale_secs)),
                price_collar_bps=Decimal(get("price_collar_bps", limits.price_collar_bps)),
            ),
        )

    def with_point(self, point: Mapping[str, Any]) -> BacktestSettings:
        """These settings with one grid point applied. `band_pct` sets every asset's band."""
        changes = dict(point)
        if "band_pct" in changes:
            changes["default_band"] = Band(BandUnit.PCT, Decimal(changes.pop("band_pct")))
            changes["asset_bands"] = {}
        return replace(self, **changes)

    def band_for(self, asset: str) -> Band:
        return self.asset_bands.get(asset, self.default_band)

    def validate(self) -> None:
        checks = (
            ("DK_TIMER_SECS", self.timer_secs > 0, "a positive number of seconds", self.timer_secs),
            ("DK_RISK_AVERSION", self.risk_aversion_per_usd > 0, "a positive number per USD",
             self.risk_aversion_per_usd),
            ("DK_MAX_DEVIATION_PCT", 0 < self.max_deviation_pct <= 100, "a percentage in (0, 100]",
             self.max_deviation_pct),
            ("DK_SLIPPAGE_BPS", self.slippage_bps >= 0, "a non-negative number of bps", self.slippage_bps),
            ("DK_FIXED_COST_USD", self.fixed_cost_usd >= 0, "a non-negative USD amount", self.fixed_cost_usd),
            ("DK_SKIP_HORIZON_SECS", self.skip_horizon_secs >= 0, "0 (off) or a positive number of seconds",
             self.skip_horizon_secs),
            ("DK_EWMA_DAILY_DECAY", 0 < self.ewma_daily_decay < 1, "a decay in (0, 1)",
             self.ewma_daily_decay),
            ("DK_ROLL_WINDOW_SECS", self.roll_window_secs > 0, "a positive number of seconds",
             self.roll_window_secs),
            ("--spread-bps", self.spread_bps >= 0, "a non-negative number of bps", self.spread_bps),
            ("--option-vol", self.option_vol > 0, "a positive annualised volatility (0.6 = 60%)",
             self.option_vol),
        )
        for variable, ok, expected, got in checks:
            if not ok:
                raise ConfigError(variable, expected, got)
        for band in (self.default_band, *self.asset_bands.values()):
            if band.half_width <= 0:
                raise ConfigError("--band-pct", "a positive band", str(band.half_width))

    def policy(self, name: str) -> HedgePolicy:
        params = PolicyParams(
            timer_secs=self.timer_secs, risk_aversion_per_usd=self.risk_aversion_per_usd,
            max_deviation_pct=self.max_deviation_pct, slippage_bps=self.slippage_bps,
            fixed_cost_usd=self.fixed_cost_usd, skip_horizon_secs=self.skip_horizon_secs,
        )
        return make_policy(name, params, "--policy")

    def settings_used(self, name: str) -> dict[str, Any]:
        """The policy's settings, keyed by the `DK_` variable that sets each in production."""
        used: dict[str, Any] = {"DK_POLICY": name}
        for asset, beta in sorted(self.betas.items()):
            used[f"DK_ASSETS__{asset}__BETA"] = "ewma" if beta is None else beta
        for asset, hedge in sorted(self.hedges.items()):
            used[f"DK_ASSETS__{asset}__HEDGE"] = hedge
        if {"quarterly", "carry"} & set(self.hedges.values()):
            used["DK_ROLL_WINDOW_SECS"] = self.roll_window_secs
        if self.slice_max_usd:
            used["DK_SLICE_MAX_USD"] = self.slice_max_usd
        if self.slice_max_slippage_bps:
            used["DK_SLICE_MAX_SLIPPAGE_BPS"] = self.slice_max_slippage_bps
        if name == "timer":
            used["DK_TIMER_SECS"] = self.timer_secs
            return used
        used["DK_REBALANCE_TO"] = self.rebalance_to.value
        if name == "band":
            used["DK_DEFAULT_BAND_PCT"] = self.default_band.half_width
            for asset, band in sorted(self.asset_bands.items()):
                used[f"DK_ASSETS__{asset}__BAND_{band.unit.value.upper()}"] = band.half_width
            used["DK_SKIP_HORIZON_SECS"] = self.skip_horizon_secs
            if self.skip_horizon_secs > 0:
                used["DK_RISK_AVERSION"] = self.risk_aversion_per_usd
                used["DK_SLIPPAGE_BPS"] = self.slippage_bps
                used["DK_FIXED_COST_USD"] = self.fixed_cost_usd
        else:
            used["DK_RISK_AVERSION"] = self.risk_aversion_per_usd
            used["DK_MAX_DEVIATION_PCT"] = self.max_deviation_pct
            used["DK_SLIPPAGE_BPS"] = self.slippage_bps
            used["DK_EWMA_DAILY_DECAY"] = self.ewma_daily_decay
        return used
