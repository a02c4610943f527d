"""The Bybit v5 REST emulator's request: parameters as Bybit reads them (category, times, the 7-day
window, pages), and a route's handler and limit."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from aiohttp import web

from deltakeeper.domain.instruments import Instrument
from deltakeeper.sim.bybit.protocol import CATEGORIES, OPTION, PARAM_ERROR, BybitError, page, page_limit
from deltakeeper.sim.bybit.venue import BybitVenue
from deltakeeper.sim.markets import ASSETS

WEEK_MS = 7 * 86_400_000


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Call:
    venue: BybitVenue
    account: str
    params: Mapping[str, Any]
    request: web.Request

    def get(self, name: str, default: str = "") -> str:
        value = self.params.get(name)
        return default if value is None else str(value)

    def category(self, allowed: Iterable[str] = CATEGORIES) -> str:
        category = self.get("category")
        if category not in allowed:
            raise BybitError(PARAM_ERROR, f"Illegal category: {category or 'empty'}")
        return category

    def ms(self, name: str) -> int | None:
        raw = self.get(name)
        if not raw:
            return None
        if not raw.isdigit():
            raise BybitError(PARAM_ERROR, f"params error: {name} invalid")
        return int(raw)

    def week(self) -> tuple[int, int]:
        """[start, end] in ms by Bybit's rule: 7 days back from now by default, from startTime or back
        from endTime when only one is given, and at most 7 days when both are."""
        start, end = self.ms("startTime"), self.ms("endTime")
        if start is None:
            end = self.venue.now_ms() if end is None else end
            return end - WEEK_MS, end
        if end is None:
            return start, start + WEEK_MS
        if end < start or end - start > WEEK_MS:
            raise BybitError(PARAM_ERROR, "The time range between startTime and endTime must be <= 7 days")
        return start, end

    def page(self, items: list[Any], default: int, maximum: int) -> tuple[list[Any], str]:
        return page(items, page_limit(self.get("limit") or None, default, maximum), self.get("cursor"))


Handler = Callable[[Call], Awaitable[dict[str, Any]]]


@dataclass(frozen=True, slots=True)
class Route:
    handler: Handler
    private: bool
    per_sec: int = 0
    """Bybit's per-UID limit on the path, requests in any rolling second (private paths only)."""


def tick_size(instrument: Instrument) -> Decimal:
    asset = ASSETS.get(instrument.base)
    return asset.price_tick if asset else Decimal("0.01")


def base_coin_matches(call: Call, category: str, instrument: Instrument) -> bool:
    """Bybit's `baseCoin` filter, which applies to options only."""
    return category != OPTION or call.get("baseCoin") in ("", instrument.base)

