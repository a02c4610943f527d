"""Alerts through apprise (DESIGN.md 2): filtered by level, an event repeated within the cool-down (per
event and subject: one asset's or market's alert does not hold back another's) folded into one message with
a count, delivered in the background so that a slow or failing channel never
delays trading."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import apprise
import structlog

from deltakeeper.domain.errors import ConfigError

log = structlog.get_logger("deltakeeper.alerts")

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
"""Alert levels, valued as the standard logging levels."""

NOTIFY_TYPES = {
    "debug": apprise.NotifyType.INFO,
    "info": apprise.NotifyType.INFO,
    "warning": apprise.NotifyType.WARNING,
    "error": apprise.NotifyType.FAILURE,
    "critical": apprise.NotifyType.FAILURE,
}
QUEUE_SIZE = 1000
FLUSH_SECS = 3.0


def parse_alert_urls(text: str | None) -> list[str]:
    """`DK_ALERT_URLS`: apprise URLs separated by commas or whitespace."""
    return [url for url in re.split(r"[,\s]+", text or "") if url]


def _shown(url: str) -> str:
    """What of a URL apprise refused can be shown: its scheme, when it has one (the rest may hold a token,
    and a mistyped URL cannot be told apart)."""
    scheme = re.match(r"[A-Za-z][A-Za-z0-9+.-]*(?=://)", url)
    return f"{scheme.group(0)}://..." if scheme else "a URL without scheme://"


@dataclass(frozen=True, slots=True)
class Alert:
    level: str
    event: str
    message: str

    @property
    def title(self) -> str:
        return f"deltakeeper {self.level}: {self.event}"


class _Channel:
    """One apprise URL with its own queue and worker, so that one failing service never holds up
    another, and a retry never sends twice to a service that accepted the alert."""

    def __init__(self, url: str, attempts: int, retry_secs: float) -> None:
        self.apprise = apprise.Apprise()
        if not self.apprise.add(url):
            raise ConfigError("DK_ALERT_URLS", "URLs that apprise supports", _shown(url))
        self.name = self.apprise[0].url(privacy=True)
        self.attempts = attempts
        self.retry_secs = retry_secs
        self.queue: asyncio.Queue[Alert] = asyncio.Queue(QUEUE_SIZE)

    def offer(self, alert: Alert) -> None:
        try:
            self.queue.put_nowait(alert)
        except asyncio.QueueFull:
            log.error("alert_dropped", channel=self.name, alert=alert.event, reason="queue full")

    async def run(self) -> None:
        while True:
            alert = await self.queue.get()
            try:
                await self._deliver(alert)
            finally:
                self.queue.task_done()

    async def _deliver(self, alert: Alert) -> None:
        """Send, retrying with exponential backoff up to `attempts` times in all."""
        for attempt in range(1, self.attempts + 1):
            try:
                delivered = bool(
                    await self.apprise.async_notify(
                        title=alert.title, body=alert.message, notify_type=NOTIFY_TYPES[alert.level]
                    )
                )
                error = "" if delivered else "not accepted"
            except Exception as exc:  # a plugin's bug must not end the worker
                delivered, error = False, str(exc)
            if delivered:
                log.debug("alert_delivered", channel=self.name, alert=alert.event, attempt=attempt)
                return
            if attempt == self.attempts:
                log.error(
                    "alert_dropped", channel=self.name, alert=alert.event, reason=error, attempt=attempt
                )
                return
            delay = self.retry_secs * 2 ** (attempt - 1)
            log.warning(
                "alert_delivery_failed",
                channel=self.name,
                alert=alert.event,
                error=error,
                attempt=attempt,
                retry_in_secs=delay,
            )
            await asyncio.sleep(delay)


class AppriseAlerts:
    """The Alerts port. Every alert that passes the level filter and the cool-down is logged; with
    URLs it is also delivered through apprise. `start()` the workers inside the event loop, `aclose()`
    them on shutdown."""

    def __init__(
        self,
        urls: Sequence[str],
        min_level: str,
        cooldown_secs: float,
        clock_monotonic: Callable[[], float] = time.monotonic,
        *,
        attempts: int = 5,
        retry_secs: float = 2.0,
    ) -> None:
        self._min_level = LEVELS[min_level]
        self._cooldown_secs = cooldown_secs
        self._clock = clock_monotonic
        self._channels = [_Channel(url, attempts, retry_secs) for url in urls]
        self._last_sent: dict[tuple[str, str], float] = {}
        self._suppressed: dict[tuple[str, str], int] = {}
        self._workers: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._workers = [asyncio.create_task(channel.run()) for channel in self._channels]

    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        """Never raises and never waits: delivery is queued. An unknown level counts as `warning`. The
        cool-down is per event and `subject` (the asset or market the alert is about; "": the bot)."""
        if level not in LEVELS:
            level = "warning"
        if LEVELS[level] < self._min_level:
            return
        now = self._clock()
        key = (event, subject)
        last = self._last_sent.get(key)
        if last is not None and now - last < self._cooldown_secs:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last_sent[key] = now
        repeated = self._suppressed.pop(key, 0)
        if repeated:
            message = f"{message} (repeated {repeated} {'time' if repeated == 1 else 'times'})"
        log.log(LEVELS[level], "alert", alert=event, message=message)
        for channel in self._channels:
            channel.offer(Alert(level, event, message))

    async def aclose(self, flush_secs: float = FLUSH_SECS) -> None:
        """Deliver what is queued for at most `flush_secs`, then stop the workers."""
        if self._workers:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*(channel.queue.join() for channel in self._channels)), flush_secs
                )
            except TimeoutError:
                pending = sum(channel.queue.qsize() for channel in self._channels)
                log.warning("alerts_not_flushed", pending=pending, waited_secs=flush_secs)
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
