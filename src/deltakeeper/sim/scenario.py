"""The default scenario: a market maker's inventory that moves the account's delta on its own.

Every `step_secs` simulated seconds the spot holding of the base coin changes by a mean-reverting
random step (a discrete Ornstein-Uhlenbeck process around the starting holding), settled against the
quote currency at the spot mid, as if the inventory had been bought or sold elsewhere. The bot then has
real hedging to do. The changes depend only on the parameters and the seed.

With the defaults (SOL near 90-135 USDT in the bundled replay): 100,000 USDT and 1,000 SOL to start, a
step every 5 minutes with a standard deviation of 5 SOL, pulled back by 2% a step toward the starting
1,000 SOL. The inventory's deviation then has a stationary standard deviation of about 25 SOL and moves
by about 17 SOL an hour.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from deltakeeper.sim.engine import SimEngine

_COIN_QUANTUM = Decimal("0.01")
_CASH_QUANTUM = Decimal("0.0001")


def _default_balances() -> dict[str, Decimal]:
    return {"USDT": Decimal(100_000), "SOL": Decimal(1_000)}


@dataclass(frozen=True, slots=True)
class ScenarioParams:
    starting_balances: dict[str, Decimal] = field(default_factory=_default_balances)
    market: str = "SOL/USDT"
    """The spot market whose base coin the inventory holds and whose mid prices the changes."""
    step_secs: int = 300
    step_sd_coin: float = 5.0
    reversion_per_step: float = 0.02
    """The fraction of the deviation from the starting holding that each step takes back."""
    seed: int = 0


def inventory_changes(params: ScenarioParams) -> Iterator[Decimal]:
    """The signed change of the holding at each step, in coins rounded to 0.01; endless and seeded.
    The deviation from the start never goes below minus the starting holding (the holding stays >= 0)."""
    rng = random.Random(params.seed)
    base = params.market.split("/")[0]
    floor = -params.starting_balances.get(base, Decimal(0))
    deviation = Decimal(0)
    while True:
        shock = rng.gauss(0.0, params.step_sd_coin)
        target = float(deviation) * (1 - params.reversion_per_step) + shock
        new_deviation = max(Decimal(repr(target)).quantize(_COIN_QUANTUM), floor)
        yield new_deviation - deviation
        deviation = new_deviation


class InventoryScenario:
    """Applies `inventory_changes` to an account as simulated time passes."""

    def __init__(self, params: ScenarioParams | None = None) -> None:
        self.params = params or ScenarioParams()
        self._base, self._quote = self.params.market.split("/")
        self._changes = inventory_changes(self.params)
        self._next_step: datetime | None = None

    def advance(self, engine: SimEngine, account_id: str, now: datetime) -> None:
        """Apply every step due by `now` (the first one `step_secs` after the first call), at the current
        spot mid. Does nothing before the market has a quote."""
        quote = engine.quote(self.params.market)
        if quote is None:
            return
        step = timedelta(seconds=self.params.step_secs)
        if self._next_step is None:
            self._next_step = now + step
        while self._next_step <= now:
            change = next(self._changes)
            if change:
                cash = (change * quote.mid).quantize(_CASH_QUANTUM)
                engine.adjust_balance(account_id, self._base, change, self._next_step)
                engine.adjust_balance(account_id, self._quote, -cash, self._next_step)
            self._next_step += step
