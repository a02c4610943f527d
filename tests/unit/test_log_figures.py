"""`figure`: computed Decimals for log lines."""

from __future__ import annotations

from decimal import Decimal

import pytest

from deltakeeper.app.figures import figure


@pytest.mark.parametrize(("value", "shown"), [
    ("85.79916684959306", "85.7992"),
    ("0.0000098000647231", "0.00000980006"),
    ("123456.789", "123457"),  # every digit before the point is kept
    ("1000.0", "1000"),
    ("1E+3", "1000"),
    ("-4.60", "-4.6"),
    ("-0.000", "0"),
])
def test_figure_keeps_six_significant_digits_in_plain_notation(value: str, shown: str) -> None:
    assert figure(Decimal(value)) == shown
