from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

import pytest

from deltakeeper.domain.carry import (
    break_even_funding_per_8h,
    last_friday_of_quarter_0800_utc,
    must_roll,
    prefer_hedge,
    quarterly_carry_annualised,
)

F, S, DAYS = D("61500"), D("60000"), 90


def test_quarterly_carry_annualised_matches_reference_example():
    assert round(quarterly_carry_annualised(F, S, DAYS) * 100, 2) == D("10.14")


def test_break_even_8h_funding_matches_reference_example():
    assert round(break_even_funding_per_8h(F, S, DAYS) * 100, 6) == D("0.009259")


def test_short_hedge_prefers_perp_only_when_funding_beats_the_basis():
    assert prefer_hedge(D("0.0001"), F, S, DAYS) == "perp"
    assert prefer_hedge(D("0.00005"), F, S, DAYS) == "future"
    assert prefer_hedge(break_even_funding_per_8h(F, S, DAYS), F, S, DAYS) == "future"


def test_long_hedge_prefers_perp_when_its_funding_costs_less_than_the_basis():
    assert prefer_hedge(D("-0.0001"), F, S, DAYS, hedge_side="long") == "perp"
    assert prefer_hedge(D("0.0001"), F, S, DAYS, hedge_side="long") == "future"


@pytest.mark.parametrize(
    ("year", "quarter", "day"),
    [
        (2024, 1, datetime(2024, 3, 29)),
        (2024, 2, datetime(2024, 6, 28)),
        (2024, 3, datetime(2024, 9, 27)),
        (2024, 4, datetime(2024, 12, 27)),
        (2023, 2, datetime(2023, 6, 30)),  # the month's last day is itself a Friday
        (2025, 4, datetime(2025, 12, 26)),
    ],
)
def test_quarterly_expiry_is_last_friday_at_0800_utc(year, quarter, day):
    expiry = last_friday_of_quarter_0800_utc(year, quarter)
    assert expiry == day.replace(hour=8, tzinfo=UTC)
    assert expiry.weekday() == 4


def test_quarter_out_of_range_is_rejected():
    with pytest.raises(ValueError):
        last_friday_of_quarter_0800_utc(2024, 5)


def test_must_roll_once_inside_the_window():
    expiry = last_friday_of_quarter_0800_utc(2024, 2)
    window_secs = 3 * 86_400
    start = expiry - timedelta(seconds=window_secs)
    assert not must_roll(start - timedelta(seconds=1), expiry, window_secs)
    assert must_roll(start, expiry, window_secs)
    assert must_roll(expiry + timedelta(hours=1), expiry, window_secs)


def test_must_roll_rejects_naive_times():
    expiry = last_friday_of_quarter_0800_utc(2024, 2)
    with pytest.raises(ValueError, match="tz-aware"):
        must_roll(datetime(2024, 6, 1), expiry, 60)
