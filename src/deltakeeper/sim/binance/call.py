"""A Binance REST request as its handlers see it: the account, the parameters and Binance's rules for
limits and time windows."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from deltakeeper.sim.binance.protocol import BinanceError
from deltakeeper.sim.binance.venue import BinanceVenue

WEEK_MS = 7 * 86_400_000


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True, slots=True)
class Call:
    venue: BinanceVenue
    account: str
    params: Mapping[str, str]
    request: web.Request

    def get(self, name: str) -> str:
        return self.params.get(name, "")

    def ms(self, name: str) -> int | None:
        raw = self.get(name)
        if not raw:
            return None
        if not raw.isdigit():
            raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'; legal range is "
                               "'^[0-9]{1,20}$'.")
        return int(raw)

    def limit(self, default: int, maximum: int) -> int:
        raw = self.get("limit")
        if not raw:
            return default
        if not raw.isdigit() or not 0 < int(raw) <= maximum:
            raise BinanceError(-1130, "Data sent for parameter 'limit' is not valid.")
        return int(raw)

    def window(self, span_ms: int) -> tuple[int, int]:
        """[start, end] in ms by Binance's rule: the last `span_ms` by default, `span_ms` from startTime or
        back from endTime when only one is given, and at most `span_ms` when both are."""
        start, end = self.ms("startTime"), self.ms("endTime")
        if start is None:
            end = self.venue.now_ms() if end is None else end
            return end - span_ms, end
        if end is None:
            return start, start + span_ms
        if end < start or end - start > span_ms:
            raise BinanceError(-1127, "The time between startTime and endTime can't be longer than 7 days.")
        return start, end


Handler = Callable[[Call], Awaitable[Any]]
