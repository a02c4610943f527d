"""The fault proxy's settings (`ProxyFaults`, see `deltakeeper.sim.fault_proxy`) and the rewrites of the
exchange's frames and answers its faults make. Part of the simulation layer: it imports nothing of the bot."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

TICKER_PRICE_KEYS = ("lastPrice", "markPrice", "indexPrice", "bid1Price", "ask1Price", "prevPrice24h",
                     "highPrice24h", "lowPrice24h", "usdIndexPrice")
PRIVATE_ORDER_TOPICS = ("order", "execution")
CORRUPTIONS = ("invalid_json", "nan_price", "huge_timestamp", "truncated")
HUGE_TIMESTAMP = 1e20


@dataclass(frozen=True, slots=True)
class ProxyFaults:
    rest_drop: float = 0.0
    rest_drop_after: float = 0.0
    rest_5xx: float = 0.0
    rest_429: float = 0.0
    rest_hang: float = 0.0
    rest_hang_after: float = 0.0
    rest_delay: float = 0.0
    rest_malformed: float = 0.0
    rest_absurd: float = 0.0
    ws_drop: float = 0.0
    ws_corrupt: float = 0.0
    ws_absurd: float = 0.0
    ws_duplicate: float = 0.0
    ws_delay: float = 0.0
    delay_ms: int = 500
    hang_secs: float = 60.0
    retry_after_secs: int = 2
    absurd_factors: tuple[float, ...] = (3.0, 1000.0, 0.001)
    rest_paths: tuple[str, ...] = ()
    ws_topics: tuple[str, ...] = ()

    def updated(self, changes: dict[str, Any]) -> ProxyFaults:
        """A copy with `changes` applied; raises ValueError naming an unknown or invalid field."""
        known = {f.name for f in fields(self)}
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            if name in ("rest_paths", "ws_topics"):
                if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                    raise ValueError(f"{name} must be a list of strings")
                values[name] = tuple(value)
            elif name == "absurd_factors":
                if (not isinstance(value, list | tuple) or not value
                        or not all(isinstance(v, int | float) and v > 0 for v in value)):
                    raise ValueError("absurd_factors must be a list of positive numbers")
                values[name] = tuple(float(v) for v in value)
            elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a number")
            elif name in ("delay_ms", "retry_after_secs"):
                if value < 0 or int(value) != value:
                    raise ValueError(f"{name} must be a non-negative integer")
                values[name] = int(value)
            elif name == "hang_secs":
                if value < 0:
                    raise ValueError("hang_secs must not be negative")
                values[name] = float(value)
            elif not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1]")
            else:
                values[name] = float(value)
        return replace(self, **values)

    def as_dict(self) -> dict[str, Any]:
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class AbsurdPrice:
    wall_secs: float
    symbol: str
    key: str
    price: float
    factor: float



def corrupt_frame(kind: str, frame: dict[str, Any], text: str) -> str:
    """`text` (the JSON of `frame`) corrupted by one of CORRUPTIONS."""
    if kind == "invalid_json":
        return text[:1] + "\x00:" + text[1:]
    if kind == "truncated":
        return text[: len(text) // 2]
    if kind == "huge_timestamp":
        for key in ("ts", "creationTime", "cts"):
            if key in frame:
                frame[key] = HUGE_TIMESTAMP
        return json.dumps(frame)
    data = frame.get("data")
    items = data if isinstance(data, list) else [data]
    for item in items:
        if not isinstance(item, dict):
            continue
        for key in (*TICKER_PRICE_KEYS, "price", "execPrice", "avgPrice"):
            if key in item:
                item[key] = math.nan
        for side in ("b", "a"):
            levels = item.get(side)
            if isinstance(levels, list) and levels and isinstance(levels[0], list):
                levels[0][0] = math.nan
    return json.dumps(frame)  # NaN as the JSON literal `NaN`, which json.loads reads back as a float


def scale_prices(item: dict[str, Any], factor: float) -> list[tuple[str, float]]:
    """Multiply the ticker prices in `item` by `factor` (as decimal strings); the prices written."""
    written = []
    for key in TICKER_PRICE_KEYS:
        value = item.get(key)
        try:
            price = float(value) * factor  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if not math.isfinite(price):
            continue
        item[key] = f"{price:.10g}"
        written.append((key, price))
    return written
