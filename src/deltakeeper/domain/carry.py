"""Perpetual or dated future: carry, break-even funding and quarterly expiries (REFERENCE.md section 6).

Rates are fractions (0.1014 = 10.14%). Times are tz-aware UTC `datetime`s passed in: nothing reads a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

DAYS_PER_YEAR = 365
FUNDING_PERIODS_PER_DAY = 3  # one every 8 hours
_FRIDAY = 4


def quarterly_carry(future_price: Decimal, spot_price: Decimal) -> Decimal:
    """Carry to expiry of a short future against spot: F0/S0 - 1."""
    return future_price / spot_price - 1


def quarterly_carry_annualised(future_price: Decimal, spot_price: Decimal, days: Decimal | int) -> Decimal:
    """(F0/S0 - 1) * 365 / days."""
    return quarterly_carry(future_price, spot_price) * DAYS_PER_YEAR / days


def break_even_funding_per_8h(future_price: Decimal, spot_price: Decimal, days: Decimal | int) -> Decimal:
    """The 8h funding rate at which a perp earns over `days` what the future's basis locks in."""
    return quarterly_carry(future_price, spot_price) / (Decimal(days) * FUNDING_PERIODS_PER_DAY)


def funding_per_8h(rate: Decimal, interval_secs: int | None) -> Decimal:
    """A funding rate paid every `interval_secs` as its 8-hour equivalent (Hyperliquid's hourly 0.001% is
    0.008% per 8h); an unknown interval is taken for 8 hours, the usual one."""
    return rate if not interval_secs else rate * 8 * 3600 / interval_secs


def prefer_hedge(
    perp_expected_funding_rate_per_8h: Decimal,
    future_price: Decimal,
    spot_price: Decimal,
    days: Decimal | int,
    hedge_side: Literal["short", "long"] = "short",
) -> Literal["perp", "future"]:
    """The cheaper hedge to carry. A short perp receives positive funding, a long one pays it; the future's
    basis is locked in, so it wins a tie."""
    break_even = break_even_funding_per_8h(future_price, spot_price, days)
    funding = perp_expected_funding_rate_per_8h
    perp_better = funding > break_even if hedge_side == "short" else funding < break_even
    return "perp" if perp_better else "future"


def last_friday_of_quarter_0800_utc(year: int, quarter: int) -> datetime:
    """Quarterly expiry (Binance, Deribit): the last Friday of the quarter's last month, 08:00 UTC."""
    if quarter not in (1, 2, 3, 4):
        raise ValueError(f"quarter must be 1..4, got {quarter}")
    next_month_start = datetime(year + quarter // 4, quarter * 3 % 12 + 1, 1, 8, tzinfo=UTC)
    last_day = next_month_start - timedelta(days=1)
    return last_day - timedelta(days=(last_day.weekday() - _FRIDAY) % 7)


def must_roll(now: datetime, expiry: datetime, window_secs: float) -> bool:
    """True once `now` is within `window_secs` of `expiry` (or past it): roll before settlement averaging."""
    if now.tzinfo is None or expiry.tzinfo is None:
        raise ValueError("now and expiry must be tz-aware")
    return now >= expiry - timedelta(seconds=window_secs)
