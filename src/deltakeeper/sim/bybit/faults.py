"""Fault injection for the Bybit emulator, switchable per run (constructor) and at run time
(`POST /sim/faults` from loopback). Rates are probabilities in [0, 1] drawn from the run's seeded
random generator, so a run with the same seed and requests injects the same faults."""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True, slots=True)
class FaultConfig:
    rate_limit: float = 0.0
    """Share of REST requests refused with retCode 10006 (Bybit's per-key limit)."""
    ip_rate_limit: float = 0.0
    """Share of REST requests refused with HTTP 403 (Bybit's IP limit)."""
    server_error: float = 0.0
    """Share of REST requests answered with HTTP 503 (nothing is done)."""
    latency_ms: int = 0
    """Added before every REST answer and every websocket push."""
    order_latency_ms: int = 0
    """Added before an order placement is handled, after its request was received and authenticated: the
    order waits in the exchange's gateway, and lands even when its client has gone meanwhile."""
    ws_drop: float = 0.0
    """Share of websocket pushes after which the server closes the connection."""
    ws_malformed: float = 0.0
    """Share of websocket pushes sent as truncated, invalid JSON."""
    partial_fill: float = 0.0
    """Share of market orders that fill half at once and the rest at the next quote."""
    delayed_fill: float = 0.0
    """Share of market orders that rest until the next quote of their market, then fill."""
    insufficient_balance: float = 0.0
    """Share of orders refused as if the balance were insufficient (110007, spot 170131)."""
    timeout_after_accept: float = 0.0
    """Share of orders accepted by the engine whose HTTP answer never comes: the connection hangs for
    `hang_ms`, then closes."""
    hang_ms: int = 30_000
    http_rate_limit: float = 0.0
    """Share of REST requests refused with HTTP 429 (a gateway's rate limit)."""
    retry_after_ms: int = 0
    """How long rate-limit refusals (HTTP 429 and 403, retCode 10006) tell the client to wait: a
    `Retry-After` header in whole seconds (rounded up; 429 and 403) and Bybit's
    `X-Bapi-Limit-Reset-Timestamp` (ms since the epoch; 10006). None when 0."""
    malformed_wallet: float = 0.0
    """Share of wallet-balance answers with retCode 0 that are malformed, in turn: no `result`, a
    `result.list` that is not a list, a coin entry without its coin and wallet balance."""
    malformed_positions: float = 0.0
    """Share of position-list answers with retCode 0 that are malformed, in turn: no `result`, a
    `result.list` that is not a list, a position without its size and side."""
    ws_nan_prices: float = 0.0
    """Share of websocket topic pushes sent with every price and balance field "NaN"."""
    ws_absurd_ts: float = 0.0
    """Share of websocket topic pushes sent with their timestamps (`ts`, `*Time`) at 1e20 ms."""

    def updated(self, changes: dict[str, Any]) -> FaultConfig:
        """A copy with `changes` applied; raises ValueError naming an unknown or invalid field."""
        known = {f.name: f.type for f in fields(self)}
        values: dict[str, Any] = {}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{name} must be a number")
            if name.endswith("_ms"):
                if value < 0 or int(value) != value:
                    raise ValueError(f"{name} must be a non-negative integer")
                values[name] = int(value)
            elif not 0 <= value <= 1:
                raise ValueError(f"{name} must be a probability in [0, 1]")
            else:
                values[name] = float(value)
        return replace(self, **values)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Faults:
    """The current fault settings and the seeded dice that apply them."""

    def __init__(self, config: FaultConfig, seed: int) -> None:
        self.config = config
        self._rng = random.Random(seed)
        self._malformed_turns: dict[str, int] = {}

    def turn(self, fault: str, kinds: int) -> int:
        """Which of a fault's `kinds` of malformation comes next: each in turn."""
        turn = self._malformed_turns.get(fault, 0)
        self._malformed_turns[fault] = turn + 1
        return turn % kinds

    def roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate
