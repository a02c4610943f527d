"""What the service-level integration tests share: settings for a fast simulated run, a migrated journal,
a recording fake of the Alerts port, and a wait for a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from deltakeeper.adapters.journal import SqlJournal, create_journal, upgrade
from deltakeeper.config import AssetSettings, Settings

SOL_PERP = "SOL/USDT:USDT"


@dataclass
class RecordingAlerts:
    sent: list[tuple[str, str, str]] = field(default_factory=list)

    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        self.sent.append((level, event, message))

    def events(self) -> list[str]:
        return [event for _, event, _ in self.sent]

    def of(self, event: str) -> list[tuple[str, str]]:
        """(level, message) of every alert of `event`."""
        return [(level, message) for level, name, message in self.sent if name == event]


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """A one-coin band (the fixed band policy, to the target) on the market-maker scenario at 1800x: the bot
    trades every second or two."""
    values: dict[str, Any] = {
        "policy": "band",
        "rebalance_to": "target",
        "data_dir": tmp_path,
        "database_url": f"sqlite:///{tmp_path / 'journal.db'}",
        "sim_speed": 1800,
        "recompute_secs": 0.3,
        "assets": {"SOL": AssetSettings(hedge=SOL_PERP, band_coin=Decimal(1))},
        "http_port": 0,
    }
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def journal_for(settings: Settings) -> AsyncIterator[SqlJournal]:
    await asyncio.to_thread(upgrade, settings.database)
    journal = create_journal(settings.database)
    try:
        yield journal
    finally:
        await journal.close()


async def until(condition: Callable[[], bool], timeout_secs: float, what: str) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_secs}s waiting for {what}")
        await asyncio.sleep(0.05)
