"""The venue's margin view in the app (issue 13): a failed read is `unknown`, never `standard`; the mode is
logged when first known and when it changes; the ratio is read again once due; it is shown beside the
bot's estimate in the status, the `deltakeeper margin` line and the metrics."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from deltakeeper.adapters.metrics import BotMetrics
from deltakeeper.app.venue_margin import VenueMarginView, venue_entry, venue_line
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.venue_margin import AccountMode, VenueMargin

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class Clock:
    speed = 1.0

    def now(self) -> datetime:
        return T0


class Venue:
    """An exchange whose account margin read answers `answers` in turn (an exception is raised)."""

    def __init__(self, *answers: VenueMargin | Exception) -> None:
        self.answers = list(answers)
        self.reads = 0

    async def fetch_account_margin(self) -> VenueMargin:
        self.reads += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


class Ticks:
    def __init__(self) -> None:
        self.secs = 0.0

    def __call__(self) -> float:
        return self.secs


PORTFOLIO = VenueMargin(AccountMode.PORTFOLIO, T0, Decimal("0.0215"), "accountMMRate",
                        "unifiedMarginStatus=5, marginMode=PORTFOLIO_MARGIN")


async def test_a_failed_read_is_unknown_with_its_reason_never_standard() -> None:
    view = VenueMarginView(Venue(ExchangeUnavailable("503 Service Unavailable")), Clock())  # type: ignore[arg-type]

    with capture_logs() as logs:
        venue = await view.refresh()

    assert venue.mode is AccountMode.UNKNOWN and venue.maintenance_ratio is None
    assert venue.detail == "ExchangeUnavailable: 503 Service Unavailable"
    assert [(e["event"], e["log_level"], e["mode"]) for e in logs] == [
        ("account_margin_mode_unknown", "warning", "unknown")]
    status = view.status(Decimal("0.9"))
    assert status["mode"] == "unknown" and status["maintenance_ratio"] is None
    assert status["estimate_maintenance_ratio"] == Decimal("0.1")


async def test_the_mode_is_logged_at_the_first_read_and_on_change_and_read_again_once_due() -> None:
    exchange = Venue(PORTFOLIO, PORTFOLIO, ExchangeUnavailable("timeout"))
    ticks = Ticks()
    view = VenueMarginView(exchange, Clock(), refresh_secs=60, monotonic=ticks)  # type: ignore[arg-type]

    with capture_logs() as logs:
        await view.refresh_if_due()  # never read: due
        ticks.secs = 59
        await view.refresh_if_due()
        assert exchange.reads == 1
        ticks.secs = 60
        await view.refresh_if_due()  # the same mode: not logged again
        ticks.secs = 120
        await view.refresh_if_due()

    assert exchange.reads == 3
    assert [(e["event"], e["mode"]) for e in logs] == [("account_margin_mode", "portfolio"),
                                                       ("account_margin_mode_unknown", "unknown")]
    assert logs[0]["ratio"] == 0.0215 and logs[0]["source"] == "accountMMRate"
    assert view.last is not None and view.last.mode is AccountMode.UNKNOWN


async def test_status_shows_the_venue_ratio_beside_the_estimate() -> None:
    view = VenueMarginView(Venue(PORTFOLIO), Clock())  # type: ignore[arg-type]
    assert view.status(None)["detail"] == "not read yet"
    await view.refresh()

    assert view.status(Decimal("0.95")) == {
        "mode": "portfolio", "maintenance_ratio": Decimal("0.0215"), "ratio_source": "accountMMRate",
        "as_of": T0, "detail": PORTFOLIO.detail, "estimate_maintenance_ratio": Decimal("0.05")}


def test_the_margin_command_line_names_the_venue_s_mode_ratio_and_the_estimate() -> None:
    line = venue_line(venue_entry(PORTFOLIO), {"USDT": 0.95, "BTC": None})

    assert line == ("account margin (the exchange's): portfolio, maintenance margin 2.15% of equity "
                    "(accountMMRate) [unifiedMarginStatus=5, marginMode=PORTFOLIO_MARGIN]; "
                    "estimate (standard cross margin): USDT 5.00%")
    unknown = venue_entry(VenueMargin(AccountMode.UNKNOWN, T0, detail="ExchangeUnavailable: timeout"))
    assert venue_line(unknown, {}) == (
        "account margin (the exchange's): unknown, maintenance margin ratio unknown "
        "[ExchangeUnavailable: timeout]; estimate (standard cross margin): no derivative positions")


def test_metrics_carry_the_mode_and_the_venue_ratio_only_where_known() -> None:
    def families(venue: dict[str, object]) -> dict[str, dict[str, float]]:
        text = BotMetrics().render({"venue_margin": venue})
        return {f.name: {s.labels.get("mode", ""): s.value for s in f.samples}
                for f in text_string_to_metric_families(text) if f.name.startswith("deltakeeper_")}

    known = families({"mode": "portfolio", "maintenance_ratio": 0.0215})
    assert known["deltakeeper_account_margin_mode"] == {"unknown": 0, "standard": 0, "unified": 0,
                                                        "portfolio": 1}
    assert known["deltakeeper_venue_maintenance_margin_ratio"] == {"": 0.0215}
    unknown = families({"mode": "unknown"})
    assert unknown["deltakeeper_account_margin_mode"]["unknown"] == 1
    assert "deltakeeper_venue_maintenance_margin_ratio" not in unknown
