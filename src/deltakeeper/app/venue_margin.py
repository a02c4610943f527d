"""The venue's own view of the account's margin (issue 13) beside the bot's estimate: the account mode
(standard, unified, portfolio) detected at start and logged, and the venue's maintenance margin ratio,
read again at most every `refresh_secs` by the scheduled margin check.

A read that fails (any error) is not an answer: the mode and the ratio are then `unknown` (with the reason,
logged), never `standard`; it is read again once due. The read never stops the bot's own margin check.
The bot's own estimate is standard cross margin per settlement currency (`domain.margin.account_margin`)
whatever the mode: on a unified or portfolio-margin account the venue's ratio is the one it liquidates on
(logged at start), the estimate a conservative view beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import structlog

from deltakeeper.domain.venue_margin import AccountMode, VenueMargin, unknown_margin
from deltakeeper.ports import Clock, Exchange

log = structlog.get_logger("deltakeeper.margin")

REFRESH_SECS = 60.0


class VenueMarginView:
    """The last read of the exchange's account margin (`last`), and when it is due again."""

    def __init__(self, exchange: Exchange, clock: Clock, refresh_secs: float = REFRESH_SECS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.exchange = exchange
        self.clock = clock
        self.refresh_secs = refresh_secs
        self.last: VenueMargin | None = None
        self._monotonic = monotonic
        self._read_at: float | None = None

    async def refresh(self) -> VenueMargin:
        """Read the venue's view now; logs the mode when it is first known or changes."""
        try:
            venue = await self.exchange.fetch_account_margin()
        except Exception as exc:  # informational: any failure is `unknown`, stamped, read again when due
            venue = unknown_margin(self.clock.now(), f"{type(exc).__name__}: {exc}")
        before = self.last
        self.last = venue
        self._read_at = self._monotonic()
        if before is None or before.mode is not venue.mode:
            self._log(venue)
        return venue

    async def refresh_if_due(self) -> None:
        if self._read_at is None or self._monotonic() - self._read_at >= self.refresh_secs:
            await self.refresh()

    def _log(self, venue: VenueMargin) -> None:
        figures = {"mode": venue.mode.value, "ratio": _float(venue.maintenance_ratio),
                   "source": venue.ratio_source, "detail": venue.detail}
        if venue.mode is AccountMode.UNKNOWN:
            log.warning("account_margin_mode_unknown", **figures)
        elif venue.pooled:
            log.info("account_margin_mode", **figures,
                     estimate="standard cross margin per settlement currency: the venue margins the "
                              "account as one pool; its ratio is shown beside the estimate")
        else:
            log.info("account_margin_mode", **figures)

    def status(self, estimate_headroom: Decimal | None) -> dict[str, Any]:
        """The venue's figures and the bot's estimate in the same terms (MM / equity)."""
        estimate = None if estimate_headroom is None else 1 - estimate_headroom
        if self.last is None:
            return {"mode": AccountMode.UNKNOWN.value, "maintenance_ratio": None, "ratio_source": "",
                    "as_of": None, "detail": "not read yet", "estimate_maintenance_ratio": estimate}
        return {**venue_entry(self.last), "estimate_maintenance_ratio": estimate}

    def metrics(self) -> dict[str, Any]:
        """The metrics' `venue_margin` snapshot: the mode, and the ratio where known."""
        venue = self.last
        mode = venue.mode.value if venue is not None else AccountMode.UNKNOWN.value
        ratio = venue.maintenance_ratio if venue is not None else None
        return {"mode": mode, **({"maintenance_ratio": float(ratio)} if ratio is not None else {})}


def venue_entry(venue: VenueMargin) -> dict[str, Any]:
    return {"mode": venue.mode.value, "maintenance_ratio": venue.maintenance_ratio,
            "ratio_source": venue.ratio_source, "as_of": venue.as_of, "detail": venue.detail}


def venue_line(entry: Mapping[str, Any] | None, estimate_headroom: Mapping[str, float | None]) -> str:
    """One line for `deltakeeper margin`: the venue's mode and ratio (`venue_entry`, or a portfolio file's
    `account_margin` of the same keys) beside the estimate's standard cross margin ratio per settlement
    currency (1 - its headroom)."""
    if not entry:
        venue = "not read (a portfolio file without account_margin)"
    else:
        ratio = entry.get("maintenance_ratio")
        venue = str(entry.get("mode", AccountMode.UNKNOWN.value))
        venue += (f", maintenance margin {_pct(float(ratio))} of equity ({entry.get('ratio_source')})"
                  if ratio is not None else ", maintenance margin ratio unknown")
        venue += f" [{entry['detail']}]" if entry.get("detail") else ""
    estimate = ", ".join(f"{settle} {_pct(1 - h)}" for settle, h in sorted(estimate_headroom.items())
                         if h is not None) or "no derivative positions"
    return f"account margin (the exchange's): {venue}; estimate (standard cross margin): {estimate}"


def _pct(x: float) -> str:
    return f"{x:.2%}"


def _float(x: Decimal | None) -> float | None:
    return None if x is None else float(x)
