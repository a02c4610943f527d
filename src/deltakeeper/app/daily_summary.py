"""The daily summary (the scheduled `daily_summary` alert): trades, traded notional, fees and funding in
USD (amounts in a coin without a price named apart, never counted as $0), and the worst deviation of the
last 24 hours' decisions, from the journal's typed rows (ports.JournalReader)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Protocol

from deltakeeper.app.figures import short
from deltakeeper.domain.journal_rows import DecisionRow, FillRow, FundingRow, JournalQuery
from deltakeeper.domain.orders import FillKind


class SummaryReader(Protocol):
    """The journal reads the daily summary needs (ports.JournalReader's)."""

    async def fills(self, query: JournalQuery = ...) -> list[FillRow]: ...

    async def funding(self, query: JournalQuery = ...) -> list[FundingRow]: ...

    async def decisions(self, query: JournalQuery = ...) -> list[DecisionRow]: ...


@dataclass(frozen=True, slots=True)
class WorstDeviation:
    asset: str
    bands: Decimal
    """|delta - target| in band half-widths."""
    delta_coin: Decimal
    target_coin: Decimal
    ts: datetime


@dataclass(frozen=True, slots=True)
class DailySummary:
    since: datetime
    until: datetime
    trades: int
    """Fills of kind `trade` (a liquidation or a delivery is the exchange's close, not a trade)."""
    traded_usd: Decimal
    """The notional of those trades."""
    fees_usd: Decimal
    """Fees paid: a stable fee currency as it is, a coin fee at that coin's current price."""
    funding_usd: Decimal
    """Net funding, received positive."""
    decisions: int
    rebalances: int
    worst: WorstDeviation | None
    fees_unpriced: Mapping[str, Decimal] = field(default_factory=dict)
    """Fees in coins without a USD price, per coin: left out of `fees_usd`."""
    funding_unpriced: Mapping[str, Decimal] = field(default_factory=dict)
    """Funding in coins without a USD price, per coin: left out of `funding_usd`."""

    def message(self) -> str:
        worst = "no decision journaled"
        if self.worst is not None:
            w = self.worst
            worst = (
                f"{short(w.bands, 2)} bands ({w.asset} delta {short(w.delta_coin)} against target "
                f"{short(w.target_coin)} at {w.ts.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
            )
        return (
            f"24 h to {self.until.astimezone(UTC):%Y-%m-%d %H:%M} UTC: {self.trades} trades "
            f"({_usd(self.traded_usd)} traded), fees {_usd(self.fees_usd)}{_unpriced(self.fees_unpriced)}, "
            f"funding {_usd(self.funding_usd, signed=True)}{_unpriced(self.funding_unpriced)}, "
            f"worst deviation {worst}; "
            f"{self.decisions} decisions, {self.rebalances} rebalances"
        )


def _unpriced(amounts: Mapping[str, Decimal]) -> str:
    """" + 0.05 BNB unpriced" (" - 0.1 BNB" for a negative amount) for the amounts that have no USD price;
    "" when there is none."""
    if not amounts:
        return ""
    parts = (f" {'-' if a < 0 else '+'} {short(abs(a), 8)} {c}" for c, a in sorted(amounts.items()))
    return "".join(parts) + " unpriced"


def _usd(amount: Decimal, signed: bool = False) -> str:
    text = f"${abs(amount):,.2f}"
    if signed and amount:
        return ("+" if amount > 0 else "-") + text
    return text if amount >= 0 else "-" + text


def summarize(
    since: datetime,
    until: datetime,
    fills: Sequence[FillRow],
    funding: Sequence[FundingRow],
    decisions: Sequence[DecisionRow],
    usd: Callable[[Decimal, str], Decimal | None],
) -> DailySummary:
    """The summary of the journal's rows: trades and traded notional of the fills of kind `trade`, fees
    of every fill; amounts in a coin `usd` has no price for are summed apart, per coin, never counted as
    $0."""
    trades = [f for f in fills if f.kind == FillKind.TRADE.value]
    fee_totals = _in_usd([(f.fee, f.fee_currency) for f in fills], usd)
    funding_totals = _in_usd([(p.amount, p.currency) for p in funding], usd)
    worst: WorstDeviation | None = None
    for d in decisions:
        if d.band_coin <= 0:
            continue
        bands = abs(d.delta_coin - d.target_coin) / d.band_coin
        if worst is None or bands > worst.bands:
            worst = WorstDeviation(d.asset, bands, d.delta_coin, d.target_coin, d.ts)
    return DailySummary(
        since=since,
        until=until,
        trades=len(trades),
        traded_usd=sum((f.notional_usd for f in trades), Decimal(0)),
        fees_usd=fee_totals[0],
        funding_usd=funding_totals[0],
        decisions=len(decisions),
        rebalances=sum(1 for d in decisions if d.reason == "rebalance"),
        worst=worst,
        fees_unpriced=fee_totals[1],
        funding_unpriced=funding_totals[1],
    )


def _in_usd(
    amounts: Sequence[tuple[Decimal, str]], usd: Callable[[Decimal, str], Decimal | None]
) -> tuple[Decimal, dict[str, Decimal]]:
    """The USD total of the (amount, currency) that have a price, and the others summed per currency."""
    total = Decimal(0)
    unpriced: dict[str, Decimal] = {}
    for amount, currency in amounts:
        in_usd = usd(amount, currency)
        if in_usd is None:
            unpriced[currency] = unpriced.get(currency, Decimal(0)) + amount
        else:
            total += in_usd
    return total, unpriced
