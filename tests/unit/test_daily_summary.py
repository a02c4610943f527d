"""The daily summary of the journal's typed rows: trades and the traded notional count the fills of kind
`trade` only (a liquidation or a delivery is the exchange's close), fees count every fill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from tests.unit.test_unpriced_amounts import SOL, fill_row

from deltakeeper.app.daily_summary import summarize
from deltakeeper.domain.journal_rows import DecisionRow
from deltakeeper.domain.usd import to_usd

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SINCE = T0 - timedelta(days=1)


def usd(amount: D, currency: str) -> D | None:
    return to_usd(amount, currency, {}.get)  # stablecoins only


def decision_row(i: int, delta_coin: str, band_coin: str, reason: str = "rebalance") -> DecisionRow:
    return DecisionRow(i, i, T0 - timedelta(hours=i), "SOL", D(delta_coin), D(delta_coin) * 150, D(0),
                       D(band_coin), D(150), reason, "active", SOL.symbol, None, None, None, "", T0)


def test_liquidations_and_deliveries_are_not_traded_but_their_fees_are_paid() -> None:
    fills = [fill_row(1, "0.5", "USDT", "1000"),
             fill_row(2, "1.2", "USDT", "2000", kind="liquidation"),
             fill_row(3, "0", "USDT", "30000", kind="delivery"),
             fill_row(4, "0.25", "USDT", "500")]

    summary = summarize(SINCE, T0, fills, [], [], usd)

    assert (summary.trades, summary.traded_usd, summary.fees_usd) == (2, D(1500), D("1.95"))
    assert "2 trades ($1,500.00 traded), fees $1.95" in summary.message(), summary.message()


def test_the_worst_deviation_is_the_decision_furthest_from_its_target_in_bands() -> None:
    decisions = [decision_row(1, "0.3", "0.1"), decision_row(2, "-0.5", "0.1", reason="within_band"),
                 decision_row(3, "4", "0"),  # no band: no deviation to measure
                 decision_row(4, "0.2", "0.1")]

    summary = summarize(SINCE, T0, [], [], decisions, usd)

    assert summary.worst is not None
    assert (summary.worst.asset, summary.worst.bands, summary.worst.delta_coin) == ("SOL", D(5), D("-0.5"))
    assert (summary.decisions, summary.rebalances) == (4, 3)
    assert summary.message() == (
        "24 h to 2026-01-05 12:00 UTC: 0 trades ($0.00 traded), fees $0.00, funding $0.00, worst deviation "
        "5 bands (SOL delta -0.5 against target 0 at 2026-01-05 10:00 UTC); 4 decisions, 3 rebalances")
