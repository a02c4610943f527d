"""How the service stops: the longest a stop takes (for deployments' grace periods), and the log of a
stop that is slow (where each task still running waits)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import structlog

from deltakeeper.config import Settings

log = structlog.get_logger("deltakeeper")

EXCHANGE_REQUEST_TIMEOUT_SECS = 10.0
"""Every REST request to an exchange ends within this (ccxt's timeout)."""
RECONCILE_REQUESTS = 5
"""Exchange requests of a periodic reconciliation: open orders, a cancel, fills, funding, the account."""
STOP_CLOSE_SECS = 1.0
"""Closing the journal's connections and the exchange's sessions, beyond one request's timeout."""


def stop_bound_secs(settings: Settings) -> float:
    """The longest a stop (SIGTERM, SIGINT) takes, every exchange request ending within its timeout R
    (EXCHANGE_REQUEST_TIMEOUT_SECS), T = max(DK_ORDER_TIMEOUT_SECS, DK_POST_ONLY_TIMEOUT_SECS), and H the
    longest an exchange's rate-limit pause holds the requests (Retry-After, at most RETRY_AFTER_MAX_SECS),
    once in each phase:

    - a scheduled job under way finishes: a periodic reconciliation waits for the orders in flight (at most
      DK_ORDER_TIMEOUT_SECS + QUIET_WAIT_EXTRA_SECS), then makes RECONCILE_REQUESTS requests, held once;
    - the orders in flight settle (side by side): the send under way, and the rate-limit pause after it
      (a stopping bot sends a refused order no more), the wait T, the poll that overshoots it, the cancel,
      the last look-up, the account refresh, held once;
    - the HTTP server, the exchange, the journal and the alerts' last deliveries close.

    About 362 s at the defaults; a stop with nothing in flight takes a second or two. Deployments give
    the process at least this long before a SIGKILL (which is survived too: the next start reconciles)."""
    from deltakeeper.adapters.alerts import FLUSH_SECS
    from deltakeeper.adapters.ccxt_parse import RETRY_AFTER_MAX_SECS
    from deltakeeper.adapters.http import HTTP_STOP_SECS
    from deltakeeper.app.orders import SETTLE_POLL_SECS
    from deltakeeper.app.runner import QUIET_WAIT_EXTRA_SECS

    request = EXCHANGE_REQUEST_TIMEOUT_SECS
    hold = RETRY_AFTER_MAX_SECS
    job = settings.order_timeout_secs + QUIET_WAIT_EXTRA_SECS + RECONCILE_REQUESTS * request + hold
    send = request + hold
    order_wait = max(settings.order_timeout_secs, settings.post_only_timeout_secs)
    settle = order_wait + 2 * (SETTLE_POLL_SECS + request) + hold
    drain = send + settle + 2 * request  # and the cancel, and the account refresh
    close = HTTP_STOP_SECS + request + STOP_CLOSE_SECS + FLUSH_SECS
    return job + drain + close


SLOW_STOP_SECS = 10.0
"""After this long stopping (in-flight orders settle first, each within DK_ORDER_TIMEOUT_SECS), the tasks
still running are logged with where each waits (`stop_slow`)."""


def log_slow_stop() -> None:
    waiting = [f"{task.get_name()}: {awaiting(task.get_coro())}" for task in asyncio.all_tasks()
               if not task.done()]
    log.warning("stop_slow", after_secs=SLOW_STOP_SECS, tasks=waiting)


def awaiting(awaitable: object) -> str:
    """Where a coroutine waits: its chain of awaits, innermost 3 first."""
    calls = []
    while awaitable is not None:
        code = getattr(awaitable, "cr_code", None) or getattr(awaitable, "gi_code", None)
        frame = getattr(awaitable, "cr_frame", None) or getattr(awaitable, "gi_frame", None)
        if code is not None and frame is not None:
            calls.append(f"{code.co_name} ({Path(code.co_filename).name}:{frame.f_lineno})")
        awaitable = getattr(awaitable, "cr_await", None) or getattr(awaitable, "gi_yieldfrom", None)
    return " < ".join(reversed(calls[-3:]))
