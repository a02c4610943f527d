"""Margin headroom and the levels the bot acts at: the one definition of the thresholds and their
defaults (DK_MARGIN_MIN/WARN/CRITICAL_HEADROOM_PCT), used by the settings, the pre-trade check, the
watches, status and metrics."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

DEFAULT_MIN_HEADROOM_PCT = Decimal(20)
DEFAULT_WARN_HEADROOM_PCT = Decimal(35)
DEFAULT_CRITICAL_HEADROOM_PCT = Decimal(15)


def margin_headroom(equity: Decimal, maintenance_margin: Decimal) -> Decimal:
    """`(equity - MM) / equity`: 1 with nothing at risk, 0 at the margin call, negative past it
    (-Infinity with no equity at all)."""
    if equity <= 0:
        return Decimal("-Infinity")
    return (equity - maintenance_margin) / equity


def first_breach(
    breached: Callable[[float], bool], sign: float, max_move: float, step: float, tolerance: float
) -> float | None:
    """The signed move (`sign` +1 up, -1 down) nearest to zero, up to `max_move`, at which `breached`
    first holds: scanned in `step`s, then the first breach bisected to `tolerance` (0: to the float's
    resolution); None if none does. The one scan behind the distances to a margin call and to
    liquidation."""
    safe = 0.0
    while safe < max_move:
        trial = min(safe + step, max_move)
        if breached(sign * trial):
            while trial - safe > tolerance:
                mid = (safe + trial) / 2
                if mid in (safe, trial):
                    break
                safe, trial = (safe, mid) if breached(sign * mid) else (mid, trial)
            return sign * trial
        safe = trial
    return None


def _fraction(pct: Decimal | None) -> Decimal | None:
    return None if pct is None else pct / 100


@dataclass(frozen=True, slots=True)
class HeadroomLevels:
    """Margin headroom levels, as fractions of equity; None: that level is off.

    - `min`: pre-trade, an order may not leave its settlement currency's headroom below it;
    - `warn`: the account's headroom below it alerts `margin_headroom_low`;
    - `critical`: below it the account trades reduce-only (the `margin_low` breach).
    """

    min: Decimal | None = DEFAULT_MIN_HEADROOM_PCT / 100
    warn: Decimal | None = DEFAULT_WARN_HEADROOM_PCT / 100
    critical: Decimal | None = DEFAULT_CRITICAL_HEADROOM_PCT / 100

    @classmethod
    def from_pct(
        cls, min_pct: Decimal | None, warn_pct: Decimal | None, critical_pct: Decimal | None
    ) -> HeadroomLevels:
        return cls(_fraction(min_pct), _fraction(warn_pct), _fraction(critical_pct))

    def below_warn(self, headroom: Decimal | float) -> bool:
        return _below(headroom, self.warn)

    def below_critical(self, headroom: Decimal | float) -> bool:
        return _below(headroom, self.critical)


def _below(headroom: Decimal | float, level: Decimal | None) -> bool:
    """Whether the headroom is below the level (never when it is off); a float headroom is compared with
    the level as a float (0.15 is not below 15%)."""
    if level is None:
        return False
    return headroom < (float(level) if isinstance(headroom, float) else level)
