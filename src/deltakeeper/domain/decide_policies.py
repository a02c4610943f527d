"""The policies `DK_POLICY` chooses: a fixed timer, a fixed band with the fee-aware skip rule, and the
cost-aware band (DESIGN.md 5, REFERENCE.md 4).

Every policy wraps `policy.decide`: the policy chooses the band (or whether the timer is due), and `decide`
sizes the trade, rounds it to the lot step and checks the minimum size and notional. Pure: the time, the
quoted spread and the risk model's state are arguments; a policy returns its new timer state, it keeps none.

- `TimerPolicy`: trade to the target at the first decision in each interval of `interval_secs` (aligned on
  the epoch: an hourly timer trades at the first decision after every whole hour), whatever the band.
- `FixedBandPolicy`: the asset's own band (coins, USD or percent of gross). With a `SkipRule`, a trade whose
  cost `c |x_before - x_after| S + fixed` is not less than the risk it removes over the horizon,
  `(ra/2)(x_before^2 - x_after^2) S^2 vol^2 T_h`, is skipped; the detail carries both numbers.
- `CostAwarePolicy`: the cube-root band `w* = (3 k sD^2 / (4 a))^(1/3)` with `k = c S`,
  `a = ra vol^2 S^2 / 2`, the cost rate `c` = taker fee + half the quoted spread + a slippage estimate,
  `vol` the EWMA volatility of the price and `sD^2` the drift variance of the exposure being hedged,
  clamped to [one lot step, the hard maximum deviation]: a deviation beyond the hard maximum always trades.
  `sD^2` is the measured drift (the risk model's, of the exposure without its options) plus the options'
  gamma term `(G vol S)^2`: their delta moves with the price (with only the gamma term this is
  Whalley-Wilmott's band).
  Warm-up: until the risk model has seen `WARMUP_RISK_SAMPLES` returns (and as many intervals of the
  exposure), it is not trusted: the band is the asset's own (`DK_DEFAULT_BAND_PCT` or its `BAND_*`),
  within [one lot step, the hard maximum], so that a decision never rests on an empty or barely filled
  risk model (a drift estimate of zero from one unchanged interval would make the band one lot step).
  The same while the drift is still zero (an exposure that has not moved, and no options): the journal's
  detail then says `drift=0`.

Proxy hedges (REFERENCE.md 5): an asset hedged with another asset's contract at a ratio `beta`. `proxy_view`
re-expresses the hedge in coins of the asset (one hedge contract carries `hedge coins x hedge price /
(beta x asset price)` of them) and adds the hedge position so converted back to the asset's delta, so that
every policy above sizes, rounds and bands a proxy hedge unchanged: `beta x asset USD exposure / hedge
price` hedge coins. Its costs are on the hedge's notional, `beta` times the asset's (`_cost_scale`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import ClassVar

from deltakeeper.domain.bands import cost_aware_half_width_coin, gamma_drift_var_coin2_per_year
from deltakeeper.domain.costs import proportional_cost_rate, worth_trading
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.policy import (
    AssetPolicy,
    AssetView,
    Band,
    BandUnit,
    Decision,
    RebalanceTo,
    decide,
    gross_share_of,
    min_band_coin,
)
from deltakeeper.domain.volatility import (
    RISKMETRICS_DAILY_DECAY,
    SECONDS_PER_YEAR,
    EwmaBeta,
    EwmaDrift,
    EwmaVol,
)

WARMUP_RISK_SAMPLES = 30
"""Returns the risk model must have seen (one per bar) before the cost-aware band is used."""
_CENT = Decimal("0.01")
_ZERO_BAND = Band(BandUnit.COIN, ZERO)
_PROXY_QUANTUM = Decimal("1E-12")
"""A proxy hedge counted back in the asset's coins is rounded to this (the journal shows it)."""


@dataclass(frozen=True, slots=True)
class RiskModel:
    """Per asset: EWMA volatility of the price (per bar) and the drift rate of the exposure being hedged.

    The exposure observed leaves options out (`AssetDelta.option_delta_coin`): their delta moves with the
    price by their gamma, which the cost-aware band adds as its own term, `(G vol S)^2`."""

    vol: EwmaVol
    drift: EwmaDrift
    returns: int = 0
    """Bars observed after the first: returns seen by `vol`, intervals seen by `drift`."""

    @classmethod
    def for_bar(cls, bar_secs: float, daily_decay: float = RISKMETRICS_DAILY_DECAY) -> RiskModel:
        """Volatility decays per bar with the half-life of `daily_decay` per day (REFERENCE.md 5)."""
        return cls(EwmaVol.for_bar(bar_secs, daily_decay), EwmaDrift(daily_decay))

    def observe(self, price_usd: Decimal | float, exposure_coin: Decimal | float, t_secs: float) -> RiskModel:
        """One bar close: the price, and the exposure before hedges and options (holdings, not the hedge's
        fills)."""
        seen = self.returns + (self.vol.last_price is not None)
        return RiskModel(self.vol.update(price_usd), self.drift.update(exposure_coin, t_secs), seen)

    @property
    def warmed_up(self) -> bool:
        return self.returns >= WARMUP_RISK_SAMPLES

    @property
    def vol_per_sqrt_year(self) -> float | None:
        return self.vol.annualised_vol()

    @property
    def drift_var_coin2_per_year(self) -> float | None:
        return self.drift.drift_var_coin2_per_year()


@dataclass(frozen=True, slots=True)
class MarketContext:
    """What a policy sees besides the asset's view: the time, the hedge's quoted spread, the risk model,
    the timer slot last traded (None before the first) and the gamma of the asset's delta
    (`AssetDelta.gamma_coin_per_usd`: coins per USD of its price, from options)."""

    now_secs: float
    spread_bps: Decimal
    risk: RiskModel
    timer_slot: int | None = None
    gamma_coin_per_usd: float = 0.0


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    decision: Decision
    detail: str = ""
    """For the decision journal: the band's inputs, the skip rule's numbers, or why the policy waited."""
    timer_slot: int | None = None
    """The timer state to keep for the next decision (the context's, unless the timer fired)."""


def cost_rate(hedge: Instrument, spread_bps: Decimal, slippage_bps: Decimal) -> Decimal:
    """Proportional cost of a market order on `hedge`: taker fee + half the quoted spread + slippage."""
    return proportional_cost_rate(hedge.taker_fee_rate, spread_bps, slippage_bps)


def _wait(view: AssetView, policy: AssetPolicy, band_coin: Decimal, reason: str) -> Decision:
    return Decision(view.asset, view.delta_coin, policy.target_coin, band_coin, view.price_usd, None, reason)


def _traded_coin(decision: Decision, view: AssetView) -> Decimal:
    intent = decision.intent
    if intent is None:
        return ZERO
    return view.hedge.delta_coin(intent.amount_contracts * intent.side.sign, view.hedge_price)


def _cost_scale(view: AssetView) -> Decimal | None:
    """Hedge notional per USD of the asset's coins it offsets: `beta` for a proxy hedge (`proxy_view`),
    None (1) for a hedge on the asset itself."""
    if view.hedge.base == view.asset:
        return None
    return view.hedge_price / view.price_usd


@dataclass(frozen=True, slots=True)
class TimerPolicy:
    interval_secs: float

    def __post_init__(self) -> None:
        if not self.interval_secs > 0:
            raise ValueError(f"interval_secs must be positive, got {self.interval_secs}")

    uses_risk_model: ClassVar[bool] = False

    def slot(self, now_secs: float) -> int:
        return math.floor(now_secs / self.interval_secs)

    def decide(self, view: AssetView, policy: AssetPolicy, ctx: MarketContext) -> PolicyDecision:
        slot = self.slot(ctx.now_secs)
        if ctx.timer_slot is not None and slot <= ctx.timer_slot:
            return PolicyDecision(_wait(view, policy, ZERO, "timer_not_due"), timer_slot=ctx.timer_slot)
        to_target = AssetPolicy(policy.asset, policy.hedge_symbol, _ZERO_BAND, policy.target_coin,
                                RebalanceTo.TARGET)
        return PolicyDecision(decide(view, to_target), f"timer_secs={self.interval_secs:g}", slot)


@dataclass(frozen=True, slots=True)
class SkipRule:
    """Skip a trade that costs at least the risk it removes over `horizon_secs` (REFERENCE.md 4)."""

    risk_aversion_per_usd: float
    horizon_secs: float
    slippage_bps: Decimal = ZERO
    fixed_cost_usd: Decimal = ZERO

    def __post_init__(self) -> None:
        if not self.risk_aversion_per_usd > 0 or not self.horizon_secs > 0:
            raise ValueError("risk aversion and horizon must be positive")


@dataclass(frozen=True, slots=True)
class FixedBandPolicy:
    skip: SkipRule | None = None

    @property
    def uses_risk_model(self) -> bool:
        return self.skip is not None

    def decide(self, view: AssetView, policy: AssetPolicy, ctx: MarketContext) -> PolicyDecision:
        decision = decide(view, policy)
        if decision.intent is None or self.skip is None:
            return PolicyDecision(decision, timer_slot=ctx.timer_slot)
        vol = ctx.risk.vol_per_sqrt_year
        if vol is None:
            return PolicyDecision(decision, "skip_rule=no_volatility_yet", ctx.timer_slot)
        rule = self.skip
        traded = _traded_coin(decision, view)
        x_before = decision.deviation_coin
        rate = cost_rate(view.hedge, ctx.spread_bps, rule.slippage_bps)
        scale = _cost_scale(view)
        if scale is not None:
            rate *= scale
        cost_usd = rate * abs(traded) * view.price_usd + rule.fixed_cost_usd
        worth = worth_trading(
            x_before,
            x_before + traded,
            view.price_usd,
            vol,
            rule.horizon_secs / SECONDS_PER_YEAR,
            rule.risk_aversion_per_usd,
            cost_usd,
        )
        detail = (
            f"cost_usd={worth.cost_usd.quantize(_CENT)} "
            f"risk_removed_usd={worth.risk_removed_usd.quantize(_CENT)}"
        )
        if not worth.worth:
            return PolicyDecision(
                _wait(view, policy, decision.band_coin, "cost_exceeds_risk"), detail, ctx.timer_slot
            )
        return PolicyDecision(decision, detail, ctx.timer_slot)


@dataclass(frozen=True, slots=True)
class CostAwarePolicy:
    risk_aversion_per_usd: float
    max_deviation: Band
    """The hard maximum deviation: the band never exceeds it, so a deviation beyond it always trades."""
    slippage_bps: Decimal = ZERO
    uses_risk_model: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.risk_aversion_per_usd > 0:
            raise ValueError(f"risk aversion must be positive, got {self.risk_aversion_per_usd}")
        if self.max_deviation.half_width <= 0:
            raise ValueError("the hard maximum deviation must be positive")

    def band_coin(self, view: AssetView, ctx: MarketContext, warmup_band: Band) -> tuple[Decimal, str]:
        """The half-width in coins, and what it was computed from (for the decision journal).
        `warmup_band`: the asset's own band, used until the risk model has warmed up."""
        width, inputs = self._band(view, ctx, warmup_band)
        return width, inputs.describe(width)

    def _band(self, view: AssetView, ctx: MarketContext, warmup_band: Band) -> tuple[Decimal, _BandInputs]:
        hard_max = self.max_deviation.half_width_coin(view.price_usd, view.gross_coin)
        lot = min_band_coin(view.hedge, view.hedge_price)
        if hard_max <= lot:
            return lot, _BandInputs(lot, hard_max)
        capped = gross_share_of(self.max_deviation)
        vol = ctx.risk.vol_per_sqrt_year
        drift_var = ctx.risk.drift_var_coin2_per_year
        price = float(view.price_usd)
        gamma = ctx.gamma_coin_per_usd
        gamma_var = gamma_drift_var_coin2_per_year(gamma, vol, price) if vol is not None else 0.0
        if vol is None or drift_var is None or not ctx.risk.warmed_up or drift_var + gamma_var == 0:
            own = warmup_band.half_width_coin(view.price_usd, view.gross_coin)
            width = min(max(own, lot), hard_max)
            share = capped if width == hard_max else gross_share_of(warmup_band) if width == own else None
            return width, _BandInputs(lot, hard_max, warmup_returns=ctx.risk.returns, gross_share=share)
        rate = cost_rate(view.hedge, ctx.spread_bps, self.slippage_bps)
        scale = _cost_scale(view)
        if scale is not None:
            rate *= scale
        width = cost_aware_half_width_coin(
            float(rate), price, vol, drift_var + gamma_var, self.risk_aversion_per_usd, lot, hard_max
        )
        return width, _BandInputs(
            lot, hard_max, rate, vol, drift_var, self.risk_aversion_per_usd, gamma=gamma, gamma_var=gamma_var,
            gross_share=capped if width == hard_max else None,
        )

    def decide(self, view: AssetView, policy: AssetPolicy, ctx: MarketContext) -> PolicyDecision:
        width, inputs = self._band(view, ctx, policy.band)
        decision = decide(view, policy, width, inputs.gross_share)
        shown = decision.intent is not None or inputs.warmup_returns is not None
        detail = inputs.describe(width) if shown else ""
        return PolicyDecision(decision, detail, ctx.timer_slot)


@dataclass(slots=True)
class _BandInputs:
    """What the cost-aware band was computed from, for the decision journal. Built on every decision and
    read at once: not frozen, which makes it cheaper to build."""

    lot_coin: Decimal
    max_coin: Decimal
    rate: Decimal | None = None
    vol: float | None = None
    drift_var: float | None = None
    """The measured drift variance; the band's is this plus `gamma_var`."""
    risk_aversion: float | None = None
    warmup_returns: int | None = None
    """Returns the risk model had seen, while it was warming up (the asset's own band)."""
    gamma: float = 0.0
    gamma_var: float = 0.0
    gross_share: Decimal | None = None
    """The band's share of the gross exposure, when it is one (the hard maximum, the warm-up's own band)."""

    def describe(self, width: Decimal) -> str:
        clamp = ""
        if width == self.max_coin:
            clamp = " band=max_deviation"
        elif width == self.lot_coin:
            clamp = " band=lot_step"
        if self.warmup_returns is not None:
            unmoved = " drift=0" if self.warmup_returns >= WARMUP_RISK_SAMPLES else ""
            return (f"warming_up returns={self.warmup_returns}/{WARMUP_RISK_SAMPLES}{unmoved}"
                    + (clamp or " band=own"))
        if self.rate is None or self.vol is None or self.drift_var is None:
            return clamp
        gamma = ""
        if self.gamma:
            gamma = (f" measured_drift_var={self.drift_var:.6g} gamma_coin_per_usd={self.gamma:.6g} "
                     f"gamma_drift_var={self.gamma_var:.6g}")
        return (
            f"cost_rate={self.rate} vol={self.vol:.4f} "
            f"drift_var_coin2_per_year={self.drift_var + self.gamma_var:.6g} "
            f"risk_aversion={self.risk_aversion:g}{gamma}{clamp}"
        )


HedgePolicy = TimerPolicy | FixedBandPolicy | CostAwarePolicy


# -- proxy hedges ---------------------------------------------------------------------------------------


def proxy_view(view: AssetView, hedge_contracts: Decimal, beta: Decimal) -> AssetView:
    """The asset's view for a hedge on another asset at `beta` (see the module's doc).

    `view` is the asset's own: its delta without the proxy hedge, its USD price, the hedge instrument and
    the hedge's price. The result counts the hedge position (`hedge_contracts`, signed) in the asset's
    delta and gross exposure, converted back by the beta, and trades the hedge at the price `beta x asset
    price` per asset coin: a linear hedge's contract size is rescaled to asset coins, an inverse hedge's
    USD face stays as it is. Sizes, lot steps, minimum size and notional then read right."""
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    hedge = view.hedge
    per_asset_coin = beta * view.price_usd
    hedge_usd = hedge.delta_coin(hedge_contracts, view.hedge_price) * view.hedge_price
    hedge_in_asset = (hedge_usd / per_asset_coin).quantize(_PROXY_QUANTUM)
    if not hedge.inverse:
        hedge = replace(hedge, contract_size=hedge.contract_size * view.hedge_price / per_asset_coin)
    return AssetView(
        view.asset,
        view.delta_coin + hedge_in_asset,
        view.gross_coin + abs(hedge_in_asset),
        view.price_usd,
        hedge,
        per_asset_coin,
        hedge_in_asset,
    )


def residual_vol(model: EwmaBeta, beta: float) -> float | None:
    """Annualised volatility of the asset's return less `beta` times the hedge's: what a proxy hedge at
    `beta` leaves. At the EWMA beta it is `EwmaBeta.residual_vol`. None before the first return."""
    if not model.weight:
        return None
    var = model.weighted_var_a - 2 * beta * model.weighted_cov + beta * beta * model.weighted_var_h
    return math.sqrt(max(var, 0.0) / model.weight * SECONDS_PER_YEAR / model.bar_secs)


def proxy_detail(beta: Decimal, vol: float | None, exposure_usd: Decimal) -> str:
    """The decision journal's account of a proxy hedge: the beta, the residual (basis) volatility, and the
    residual risk it leaves on the asset's exposure (one annualised standard deviation, USD)."""
    if vol is None:
        return f"beta={beta.normalize():f} residual_vol=unknown"
    risk_usd = (Decimal(repr(vol)) * abs(exposure_usd)).quantize(_CENT)
    return f"beta={beta.normalize():f} residual_vol={vol:.4f} residual_risk_usd={risk_usd}"
