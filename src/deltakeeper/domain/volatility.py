"""EWMA volatility, proxy-hedge beta and exposure drift (REFERENCE.md sections 4 and 5).

Statistics are floats; prices and deltas may arrive as `Decimal` and are converted on the way in.
Returns are log returns with a zero mean (RiskMetrics). A year is 365 days: crypto trades every day.

Seeding: the estimators start from nothing and normalise by the total weight seen so far,
`sum(w_i r_i^2) / sum(w_i)` with `w_i = (1 - l) l^(n-i)`. After one return that is r_1^2, after a few it
is close to their plain mean, and as the weights fill up (sum -> 1) it becomes the usual recursion
`var_t = l var_{t-1} + (1 - l) r_t^2`. No arbitrary prior variance, and no warm-up returns thrown away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

SECONDS_PER_DAY = 86_400
SECONDS_PER_YEAR = 365 * SECONDS_PER_DAY
RISKMETRICS_DAILY_DECAY = 0.94
MIN_BETA_SAMPLES = 30
"""Returns an EWMA beta needs before it is a hedge ratio (`EwmaBeta.hedge_ratio`): with a few, one large
move of the asset against a quiet hedge makes it anything (36 was seen)."""
BETA_MIN = 0.2
BETA_MAX = 5.0
"""The range an estimated hedge ratio is clamped to: a proxy hedge outside it is a broken estimate, not a
hedge (`DK_ASSETS__<ASSET>__BETA` fixes a ratio outside it, if one is really meant)."""


def ewma_decay_for_bar(bar_secs: float, daily_decay: float = RISKMETRICS_DAILY_DECAY) -> float:
    """Decay per bar with the same half-life as `daily_decay` per day: daily_decay ** (bar / 1 day)."""
    if bar_secs <= 0:
        raise ValueError(f"bar_secs must be positive, got {bar_secs}")
    if not 0 < daily_decay < 1:
        raise ValueError(f"daily_decay must be in (0, 1), got {daily_decay}")
    return daily_decay ** (bar_secs / SECONDS_PER_DAY)


def _positive(price: Decimal | float) -> float:
    p = float(price)
    if p <= 0:
        raise ValueError(f"price must be positive, got {price}")
    return p


def _log_return(price: Decimal | float, last: float) -> tuple[float, float]:
    """(log return since `last`, the price as a float)."""
    p = _positive(price)
    return math.log(p / last), p


@dataclass(frozen=True, slots=True)
class EwmaVol:
    """EWMA variance of log returns over bars of `bar_secs`, updated once per bar close."""

    decay: float
    bar_secs: float
    last_price: float | None = None
    weighted_sq: float = 0.0
    weight: float = 0.0

    @classmethod
    def for_bar(cls, bar_secs: float, daily_decay: float = RISKMETRICS_DAILY_DECAY) -> EwmaVol:
        return cls(decay=ewma_decay_for_bar(bar_secs, daily_decay), bar_secs=bar_secs)

    def update(self, price: Decimal | float) -> EwmaVol:
        if self.last_price is None:
            return EwmaVol(self.decay, self.bar_secs, _positive(price), self.weighted_sq, self.weight)
        r, p = _log_return(price, self.last_price)
        lam = self.decay
        return EwmaVol(
            self.decay,
            self.bar_secs,
            last_price=p,
            weighted_sq=lam * self.weighted_sq + (1 - lam) * r * r,
            weight=lam * self.weight + (1 - lam),
        )

    def variance_per_bar(self) -> float | None:
        """None until a first return has been seen."""
        return self.weighted_sq / self.weight if self.weight else None

    def annualised_vol(self) -> float | None:
        var = self.variance_per_bar()
        return None if var is None else math.sqrt(var * SECONDS_PER_YEAR / self.bar_secs)


@dataclass(frozen=True, slots=True)
class EwmaBeta:
    """EWMA beta of asset A on hedge H: cov(rA, rH) / var(rH), with R^2 and the annualised residual vol."""

    decay: float
    bar_secs: float
    last_price_a: float | None = None
    last_price_h: float | None = None
    weighted_cov: float = 0.0
    weighted_var_a: float = 0.0
    weighted_var_h: float = 0.0
    weight: float = 0.0
    samples: int = 0
    """Returns seen."""

    @classmethod
    def for_bar(cls, bar_secs: float, daily_decay: float = RISKMETRICS_DAILY_DECAY) -> EwmaBeta:
        return cls(decay=ewma_decay_for_bar(bar_secs, daily_decay), bar_secs=bar_secs)

    def update(self, price_a: Decimal | float, price_h: Decimal | float) -> EwmaBeta:
        if self.last_price_a is None or self.last_price_h is None:
            return EwmaBeta(self.decay, self.bar_secs, _positive(price_a), _positive(price_h),
                            self.weighted_cov, self.weighted_var_a, self.weighted_var_h, self.weight,
                            self.samples)
        ra, pa = _log_return(price_a, self.last_price_a)
        rh, ph = _log_return(price_h, self.last_price_h)
        lam = self.decay
        return EwmaBeta(
            self.decay,
            self.bar_secs,
            last_price_a=pa,
            last_price_h=ph,
            weighted_cov=lam * self.weighted_cov + (1 - lam) * ra * rh,
            weighted_var_a=lam * self.weighted_var_a + (1 - lam) * ra * ra,
            weighted_var_h=lam * self.weighted_var_h + (1 - lam) * rh * rh,
            weight=lam * self.weight + (1 - lam),
            samples=self.samples + 1,
        )

    @property
    def beta(self) -> float | None:
        """The plain estimate: None until the hedge has moved."""
        return self.weighted_cov / self.weighted_var_h if self.weighted_var_h else None

    @property
    def hedge_ratio(self) -> float | None:
        """The beta to hedge at: None before `MIN_BETA_SAMPLES` returns, and while the estimate is not a
        positive number; else the estimate clamped to [`BETA_MIN`, `BETA_MAX`]."""
        beta = self.beta
        if self.samples < MIN_BETA_SAMPLES or beta is None or not math.isfinite(beta) or beta <= 0:
            return None
        return min(max(beta, BETA_MIN), BETA_MAX)

    @property
    def r_squared(self) -> float | None:
        denominator = self.weighted_var_a * self.weighted_var_h
        return self.weighted_cov**2 / denominator if denominator else None

    @property
    def residual_vol(self) -> float | None:
        """Annualised vol of rA - beta rH: sqrt(var_A - cov^2 / var_H)."""
        if not self.weighted_var_h:
            return None
        residual = max(self.weighted_var_a - self.weighted_cov**2 / self.weighted_var_h, 0.0)
        return math.sqrt(residual / self.weight * SECONDS_PER_YEAR / self.bar_secs)


def min_variance_hedge_ratio(sigma_a: float, sigma_h: float, rho: float) -> float:
    """h = rho sigma_A / sigma_H."""
    return rho * sigma_a / sigma_h


def residual_vol(sigma_a: float, rho: float) -> float:
    """Vol left after the minimum-variance hedge: sigma_A sqrt(1 - rho^2)."""
    return sigma_a * math.sqrt(1 - rho * rho)


@dataclass(frozen=True, slots=True)
class EwmaDrift:
    """Variance rate sD^2 of the exposure being hedged (coins^2 per year), from irregular observations.

    Feed the exposure before hedges (inventory, beta drift, coin PnL), not the hedge's own fills.
    Estimates sum(l^age dD^2) / sum(l^age dt): squared changes over the time they took, both decayed by
    age with `daily_decay` per day, so a long gap weighs as much as the many short steps it replaces.
    """

    daily_decay: float = RISKMETRICS_DAILY_DECAY
    last_delta_coin: float | None = None
    last_t_secs: float | None = None
    weighted_sq_coin2: float = 0.0
    weighted_time_secs: float = 0.0

    def update(self, delta_coin: Decimal | float, t_secs: float) -> EwmaDrift:
        d = float(delta_coin)
        if self.last_delta_coin is None or self.last_t_secs is None:
            return EwmaDrift(self.daily_decay, d, t_secs, self.weighted_sq_coin2, self.weighted_time_secs)
        dt = t_secs - self.last_t_secs
        if dt < 0:
            raise ValueError(f"time went backwards: {t_secs} < {self.last_t_secs}")
        lam = self.daily_decay ** (dt / SECONDS_PER_DAY)
        return EwmaDrift(
            self.daily_decay,
            last_delta_coin=d,
            last_t_secs=t_secs,
            weighted_sq_coin2=lam * self.weighted_sq_coin2 + (d - self.last_delta_coin) ** 2,
            weighted_time_secs=lam * self.weighted_time_secs + dt,
        )

    def drift_var_coin2_per_year(self) -> float | None:
        """None until some time has passed between two observations."""
        if not self.weighted_time_secs:
            return None
        return self.weighted_sq_coin2 / self.weighted_time_secs * SECONDS_PER_YEAR
