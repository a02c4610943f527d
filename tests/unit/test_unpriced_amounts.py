"""Fees and funding in a coin the bot has no USD price for are never counted as $0: left out of the USD
totals (the metrics, the daily summary), logged once per coin, and named apart in the summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import cast

from structlog.testing import capture_logs
from tests.unit.test_proxy_beta import Clock

from deltakeeper.app.daily_summary import summarize
from deltakeeper.app.ingest import DailyTraded, Ingest
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.trading_state import Counters
from deltakeeper.domain import risk
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.journal_rows import FillRow, FundingRow
from deltakeeper.domain.orders import Fill, FundingPayment, Quote, Side
from deltakeeper.domain.usd import to_usd
from deltakeeper.ports import Journal

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SOL = Instrument("SOL/USDT:USDT", Kind.PERPETUAL, "SOL", "USDT", "USDT", lot_step_contracts=D("0.1"))
LIMITS = risk.RiskLimits(D(10**9), D(10**12), D(10**12), 60.0, D(100))


@dataclass
class FillLog:
    """The Journal port as far as journaling fills and funding uses it."""

    rows: list[object] = field(default_factory=list)

    async def record_fills(self, fills: list[Fill]) -> bool:
        self.rows.extend(fills)
        return True

    async def record_funding(self, payments: list[FundingPayment]) -> bool:
        self.rows.extend(payments)
        return True


def ingest() -> Ingest:
    state = MarketState({SOL.symbol: SOL}, {}, {"SOL": SOL.symbol}, monotonic=lambda: 0.0)
    state.on_quote(Quote(SOL.symbol, D("149.99"), D("150.01"), D(150), T0, index=D(150)))
    return Ingest(state, cast(Journal, FillLog()), Clock(T0), Counters(), DailyTraded())


def fill(i: int, fee: str, currency: str) -> Fill:
    return Fill(f"t{i}", f"o{i}", f"c{i}", SOL.symbol, Side.BUY, D(1), D(150), D(fee), currency,
                T0 + timedelta(seconds=i), D(150))


async def test_unpriced_fees_and_funding_are_left_out_of_the_usd_totals_and_logged_once_per_coin() -> None:
    h = ingest()
    with capture_logs() as logs:
        await h.on_fill(fill(1, "0.5", "USDT"))
        await h.on_fill(fill(2, "0.01", "SOL"))  # priced: 150 USD a SOL
        await h.on_fill(fill(3, "0.05", "BNB"))
        await h.on_fill(fill(4, "-0.02", "BNB"))  # a maker rebate, unpriced too
        await h.on_funding(FundingPayment("p1", SOL.symbol, D("-0.3"), "BNB", D("0.0001"), D(1), T0))
        await h.on_funding(FundingPayment("p2", SOL.symbol, D("1.25"), "USDT", D("0.0001"), D(1), T0))
    assert h.counters.fees_usd == D("0.5") + D("1.5")
    assert h.counters.funding_usd == D("1.25")
    assert h.counters.fills == 4
    unpriced = [e for e in logs if e["event"] == "amount_unpriced"]
    assert [e["currency"] for e in unpriced] == ["BNB"] and unpriced[0]["log_level"] == "warning"


def fill_row(i: int, fee: str, currency: str, notional_usd: str, kind: str = "trade") -> FillRow:
    return FillRow(i, f"t{i}", f"o{i}", None, SOL.symbol, "buy", D(1), D(150), D(fee), currency,
                   D(notional_usd), False, T0 - timedelta(hours=i), T0, kind)


def funding_row(i: int, amount: str, currency: str) -> FundingRow:
    return FundingRow(i, f"p{i}", SOL.symbol, D(amount), currency, D("0.0001"), D(1),
                      T0 - timedelta(hours=i), T0)


def test_the_daily_summary_names_unpriced_amounts_apart_from_the_usd_totals() -> None:
    h = ingest()
    fills = [fill_row(1, "5", "USDT", "1000"), fill_row(2, "0.03", "BNB", "500"),
             fill_row(3, "0.02", "BNB", "500")]
    funding = [funding_row(1, "2", "USDT"), funding_row(2, "-0.1", "BNB")]
    summary = summarize(T0 - timedelta(days=1), T0, fills, funding, [], h.usd)
    assert summary.fees_usd == D(5) and summary.fees_unpriced == {"BNB": D("0.05")}
    assert summary.funding_usd == D(2) and summary.funding_unpriced == {"BNB": D("-0.1")}
    message = summary.message()
    assert "fees $5.00 + 0.05 BNB unpriced, funding +$2.00 - 0.1 BNB unpriced" in message, message


def test_to_usd_takes_stablecoins_as_they_are_and_a_coin_at_its_price_never_an_unpriced_one_as_0() -> None:
    prices = {"SOL": D(150)}.get
    assert to_usd(D("1.5"), "USDC", prices) == D("1.5")
    assert to_usd(D(2), "SOL", prices) == D(300)
    assert to_usd(D(2), "BNB", prices) is None
