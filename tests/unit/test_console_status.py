"""The console's summary and alert list (app.status), with hand-written fakes for the journal reads and the
alert channel, and a fixed clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from deltakeeper.app.console import CONSOLE_MAX_ROWS, RECENT_ALERTS, Console, RecentAlerts
from deltakeeper.app.figures import coins, ratio, usd
from deltakeeper.domain.errors import ConfigError

NOW = datetime(2026, 3, 4, 15, 30, tzinfo=UTC)


class FakeReader:
    def __init__(self, costs: dict[str, Any]) -> None:
        self.costs = costs
        self.since: list[datetime] = []
        self.recent_calls: list[tuple[str, int, int | None, str | None]] = []

    async def costs_since(self, since: datetime) -> dict[str, Any]:
        self.since.append(since)
        return self.costs

    async def recent(self, view: str, limit: int, after_id: int | None = None, asset: str | None = None
                     ) -> list[dict[str, Any]]:
        self.recent_calls.append((view, limit, after_id, asset))
        return []


class FakeAlerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, str]] = []

    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        self.sent.append((level, event, message, subject))


COSTS = {
    "fills": 3,
    "traded_usd": Decimal("30123.456"),
    "fees": {"USDT": {"count": 2, "amount": Decimal("1.505")},
             "BTC": {"count": 1, "amount": Decimal("0.00002")}},
    "funding": {"USDC": {"count": 1, "amount": Decimal("-0.333")},
                "ETH": {"count": 1, "amount": Decimal("0.001")}},
}


async def test_summary_converts_each_currency_to_usd_before_adding_them_up() -> None:
    prices = {"BTC": Decimal(60000), "ETH": Decimal(3000)}
    reader = FakeReader(COSTS)
    summary = await Console(lambda: NOW, prices.get, reader, None).summary()

    assert reader.since == [datetime(2026, 3, 4, tzinfo=UTC)]  # the exchange's day, from 00:00 UTC
    assert summary["fees"] == {
        "BTC": {"count": 1, "amount": Decimal("0.00002000"), "usd": Decimal("1.20")},
        "USDT": {"count": 2, "amount": Decimal("1.50500000"), "usd": Decimal("1.50")},  # half-even cents
    }
    assert summary["fees_usd"] == Decimal("2.70")  # not 1.505 + 0.00002 coins of two kinds
    assert summary["funding_usd"] == Decimal("2.67")  # -0.33 USDC + 0.001 ETH x 3000
    assert summary["traded_usd"] == Decimal("30123.46")
    assert summary["unpriced"] == [] and summary["fills"] == 3 and summary["alerts"] == []


async def test_a_currency_without_a_price_leaves_the_total_unknown_and_is_named() -> None:
    summary = await Console(lambda: NOW, {"ETH": Decimal(3000)}.get, FakeReader(COSTS), None).summary()
    assert summary["fees"]["BTC"]["usd"] is None
    assert summary["fees_usd"] is None  # never a total that silently counts BTC as 0
    assert summary["funding_usd"] == Decimal("2.67")
    assert summary["unpriced"] == ["BTC"]


async def test_recent_reads_check_their_parameters() -> None:
    reader = FakeReader(COSTS)
    console = Console(lambda: NOW, {}.get, reader, None)
    await console.recent("decisions", {"limit": "2000", "after_id": "41", "asset": "SOL"})
    await console.recent("fills", {})
    assert reader.recent_calls == [("decisions", 2000, 41, "SOL"), ("fills", 50, None, None)]
    for query in ({"limit": str(CONSOLE_MAX_ROWS + 1)}, {"limit": "0"}, {"after_id": "-1"}, {"limit": "x"}):
        with pytest.raises(ConfigError):
            await console.recent("fills", query)
    with pytest.raises(ValueError, match="unknown parameter 'offset'"):
        await console.recent("fills", {"offset": "5"})
    with pytest.raises(ValueError, match="unknown view"):
        await console.recent("control", {})


async def test_recent_alerts_pass_every_alert_on_and_keep_the_newest_first() -> None:
    channel = FakeAlerts()
    times = iter(NOW + timedelta(seconds=i) for i in range(RECENT_ALERTS + 5))
    alerts = RecentAlerts(channel, now=lambda: next(times))
    for i in range(RECENT_ALERTS + 5):
        await alerts.send("warning", f"event_{i}", f"message {i}", "SOL")
    assert len(channel.sent) == RECENT_ALERTS + 5
    recent = alerts.recent()
    assert len(recent) == RECENT_ALERTS
    assert recent[0] == {"ts": NOW + timedelta(seconds=RECENT_ALERTS + 4), "level": "warning",
                         "event": f"event_{RECENT_ALERTS + 4}", "message": f"message {RECENT_ALERTS + 4}",
                         "subject": "SOL"}
    assert recent[-1]["event"] == "event_5"
    summary = await Console(lambda: NOW, {}.get, FakeReader(COSTS), alerts).summary()
    assert summary["alerts"] == recent


def test_rounding_of_money_coins_and_ratios() -> None:
    assert usd(Decimal("-197.0949")) == Decimal("-197.09") and usd(None) is None
    assert coins(Decimal("136.2689238459276683328432814")) == Decimal("136.26892385")
    assert coins(Decimal("-996.44"), Decimal("0.1")) == Decimal("-996.4")
    assert coins(Decimal("12.6"), Decimal("1")) == Decimal("13")
    assert ratio(-0.07283018867) == -0.0728 and ratio(Decimal("0.99381")) == 0.9938
    assert ratio(float("-inf")) == float("-inf") and ratio(None) is None
