"""Alerts through real apprise, posting JSON to a local HTTP receiver."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable

import pytest
from structlog.testing import capture_logs
from tests.alert_receiver import Receiver, alert_receiver

from deltakeeper.adapters.alerts import AppriseAlerts, parse_alert_urls
from deltakeeper.domain.errors import ConfigError


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with alert_receiver() as recv:
        yield recv


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def wait_until(condition: Callable[[], bool], timeout_secs: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def dead_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_alert_is_posted_with_title_body_and_apprise_type_for_its_level(receiver: Receiver) -> None:
    alerts = AppriseAlerts([receiver.url], "debug", cooldown_secs=600)
    await alerts.start()
    await alerts.send("debug", "rebalance_considered", "d")
    await alerts.send("info", "rebalance_completed", "BTC hedged: sold 0.5 BTC/USDT:USDT")
    await alerts.send("warning", "stream_stale", "s")
    await alerts.send("error", "order_rejected", "e")
    await alerts.send("critical", "delta_outside_hard_limit", "c")
    await alerts.aclose()

    assert [(r["title"], r["type"]) for r in receiver.received] == [
        ("deltakeeper debug: rebalance_considered", "info"),
        ("deltakeeper info: rebalance_completed", "info"),
        ("deltakeeper warning: stream_stale", "warning"),
        ("deltakeeper error: order_rejected", "failure"),
        ("deltakeeper critical: delta_outside_hard_limit", "failure"),
    ]
    assert receiver.received[1]["message"] == "BTC hedged: sold 0.5 BTC/USDT:USDT"


async def test_alerts_below_the_minimum_level_are_not_sent(receiver: Receiver) -> None:
    alerts = AppriseAlerts([receiver.url], "warning", cooldown_secs=600)
    await alerts.start()
    await alerts.send("debug", "a", "debug")
    await alerts.send("info", "b", "info")
    await alerts.send("warning", "c", "warning")
    await alerts.send("error", "d", "error")
    await alerts.send("notice", "e", "an unknown level counts as a warning")
    await alerts.aclose()

    assert [(r["message"], r["type"]) for r in receiver.received] == [
        ("warning", "warning"),
        ("error", "failure"),
        ("an unknown level counts as a warning", "warning"),
    ]


async def test_repeats_within_the_cooldown_are_sent_once_then_counted(receiver: Receiver) -> None:
    clock = FakeClock()
    alerts = AppriseAlerts([receiver.url], "info", cooldown_secs=600, clock_monotonic=clock)
    await alerts.start()
    for _ in range(3):
        await alerts.send("warning", "stream_stale", "BTC/USDT:USDT quotes are 12 s old")
        clock.now += 10
    await alerts.send("warning", "margin_low", "other events are not held back")
    clock.now += 600
    await alerts.send("warning", "stream_stale", "BTC/USDT:USDT quotes are 40 s old")
    await alerts.aclose()

    assert [r["message"] for r in receiver.received] == [
        "BTC/USDT:USDT quotes are 12 s old",
        "other events are not held back",
        "BTC/USDT:USDT quotes are 40 s old (repeated 2 times)",
    ]


async def test_the_cooldown_is_per_event_and_subject(receiver: Receiver) -> None:
    clock = FakeClock()
    alerts = AppriseAlerts([receiver.url], "info", cooldown_secs=600, clock_monotonic=clock)
    await alerts.start()
    for symbol in ("SOL/USDT:USDT", "BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"):
        await alerts.send("warning", "stream_stale", f"{symbol} stale", symbol)
        clock.now += 10
    await alerts.send("warning", "stream_stale", "every market stale")  # the bot as a whole
    clock.now += 600
    await alerts.send("warning", "stream_stale", "SOL/USDT:USDT stale again", "SOL/USDT:USDT")
    await alerts.send("warning", "stream_stale", "BTC/USDT:USDT stale again", "BTC/USDT:USDT")
    await alerts.aclose()

    assert [r["message"] for r in receiver.received] == [
        "SOL/USDT:USDT stale",
        "BTC/USDT:USDT stale",
        "ETH/USDT:USDT stale",
        "every market stale",
        "SOL/USDT:USDT stale again (repeated 1 time)",
        "BTC/USDT:USDT stale again",
    ]


async def test_failing_channel_is_retried_in_the_background_without_delaying_the_caller(
    receiver: Receiver,
) -> None:
    receiver.failures_left = 2
    alerts = AppriseAlerts([receiver.url], "info", cooldown_secs=600, retry_secs=0.05)
    await alerts.start()
    with capture_logs() as logs:
        started = time.monotonic()
        await alerts.send("error", "order_rejected", "order dk1 rejected")
        assert time.monotonic() - started < 0.01
        await wait_until(lambda: bool(receiver.received))
    await alerts.aclose()

    assert receiver.hits == 3
    assert [r["message"] for r in receiver.received] == ["order dk1 rejected"]
    failed = [e for e in logs if e["event"] == "alert_delivery_failed"]
    assert [e["attempt"] for e in failed] == [1, 2]


async def test_dead_channel_is_logged_and_does_not_hold_up_a_working_one(receiver: Receiver) -> None:
    dead = f"json://127.0.0.1:{dead_port()}/hook"
    alerts = AppriseAlerts([dead, receiver.url], "info", cooldown_secs=600, attempts=3, retry_secs=0.2)
    await alerts.start()
    with capture_logs() as logs:
        await alerts.send("critical", "halted", "trading halted by ops: maintenance")
        await wait_until(lambda: bool(receiver.received), timeout_secs=0.5)
        await alerts.aclose()

    assert [r["message"] for r in receiver.received] == ["trading halted by ops: maintenance"]
    dropped = [e for e in logs if e["event"] == "alert_dropped"]
    assert len(dropped) == 1 and dropped[0]["attempt"] == 3
    assert dropped[0]["channel"].startswith(dead)


async def test_without_urls_alerts_are_only_logged() -> None:
    alerts = AppriseAlerts([], "info", cooldown_secs=600)
    await alerts.start()
    with capture_logs() as logs:
        await alerts.send("warning", "reconciliation_mismatch", "position differs")
    await alerts.aclose()

    assert logs == [
        {
            "event": "alert",
            "log_level": "warning",
            "alert": "reconciliation_mismatch",
            "message": "position differs",
        }
    ]


def test_alert_urls_split_on_commas_and_whitespace() -> None:
    text = "json://a/x, tgram://bot/chat\n  ntfy://topic,,mailto://u:p@example.com "
    assert parse_alert_urls(text) == [
        "json://a/x",
        "tgram://bot/chat",
        "ntfy://topic",
        "mailto://u:p@example.com",
    ]
    assert parse_alert_urls(None) == []
    assert parse_alert_urls("  ") == []


@pytest.mark.parametrize(
    "url",
    [
        "tgram//123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100200300",  # the colon forgotten
        "tgram:/123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100200300",
        "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
    ],
)
def test_a_mistyped_url_is_refused_without_showing_its_token(url: str) -> None:
    with pytest.raises(ConfigError) as error:
        AppriseAlerts([url], "warning", cooldown_secs=600)
    assert error.value.variable == "DK_ALERT_URLS"
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in str(error.value)


def test_an_url_apprise_does_not_know_is_refused_without_showing_its_secret() -> None:
    with pytest.raises(ConfigError) as error:
        AppriseAlerts(["nosuchservice://token-secret@host"], "warning", cooldown_secs=600)
    assert error.value.variable == "DK_ALERT_URLS"
    assert "token-secret" not in str(error.value)
