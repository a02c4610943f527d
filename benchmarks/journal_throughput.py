"""Benchmark 4: fills the journal records per second, one transaction each (the live path: one
`SqlJournal.record_fills([fill])` per fill) and in batches (a backfill: `record_fills(batch)` of 1,000),
on SQLite and PostgreSQL; then the same batches again, which must add nothing. Targets: at least 1,000/s
one by one and 20,000/s batched, on each database.

    python benchmarks/journal_throughput.py [--quick] [--postgres-url URL] [--single 3000] [--batches 30]

SQLite is a fresh file in a temporary folder; PostgreSQL a fresh database created on the server of
`--postgres-url` (else `DK_TEST_POSTGRES_URL`) and dropped afterwards; without either, PostgreSQL is skipped
with a message. Both are brought to the newest schema with the project's migrations, as `deltakeeper run`
does.

Baseline, in the same run: the bare driver doing the same durable work on a second database of the same
schema: aiosqlite (same PRAGMAs) executing the insert-or-ignore and committing, or asyncpg sending one
autocommitted `INSERT ... ON CONFLICT DO NOTHING` per fill and an `executemany` in a transaction per batch.
It is the floor the journal's own overhead sits on (the disk's flush on PostgreSQL, the hop to aiosqlite's
thread on SQLite), shown for comparison: the verdict is against the targets.

The journal and the baseline alternate in rounds so that a busy machine slows both alike. After the run the
rows are counted: every fill once, nothing from the repeated batches.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from _common import fmt_rate, machine, ratio_line, table

from deltakeeper.adapters.journal import SqlJournal, create_journal, upgrade
from deltakeeper.domain.orders import Fill, Side

TARGET_SINGLE = 1_000
TARGET_BATCH = 20_000
BATCH = 1_000
POSTGRES_URL_VARIABLE = "DK_TEST_POSTGRES_URL"
T0 = datetime(2024, 3, 1, tzinfo=UTC)
COLUMNS = ("trade_id", "exchange_order_id", "client_order_id", "symbol", "side", "amount_contracts", "price",
           "fee", "fee_currency", "notional_usd", "is_maker", "ts", "recorded_at")


def fills(start: int, count: int, tag: str) -> list[Fill]:
    """Fills as the exchange adapters make them: fresh Decimals and ids for each."""
    return [
        Fill(
            trade_id=f"{tag}-{n}", exchange_order_id=f"ex-{n // 3}", client_order_id=f"dk{n // 3:x}a0",
            symbol="BTC/USDT:USDT" if n % 2 else "ETH/USDT:USDT", side=Side.BUY if n % 3 else Side.SELL,
            amount_contracts=Decimal(f"0.{n % 997 + 1:03d}"), price=Decimal(f"{60_000 + n % 5_000}.5"),
            fee=Decimal(f"0.0{n % 89 + 10}"), fee_currency="USDT", ts=T0 + timedelta(milliseconds=37 * n),
            notional_usd=Decimal(f"{n % 7_000 + 100}.25"), is_maker=n % 5 == 0,
        )
        for n in range(start, start + count)
    ]


# -- the bare-driver baseline ----------------------------------------------------------------------------

class BareSqlite:
    """aiosqlite on its own connection, with the journal's PRAGMAs: insert-or-ignore, then commit."""

    SQL = (f"INSERT INTO fills ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)}) "
           "ON CONFLICT (symbol, trade_id) DO NOTHING")

    def __init__(self, path: str) -> None:
        self.path = path
        self.conn: Any = None

    async def open(self) -> None:
        import aiosqlite

        self.conn = await aiosqlite.connect(self.path)
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=10000"):
            await self.conn.execute(f"PRAGMA {pragma}")

    @staticmethod
    def _row(fill: Fill, now: datetime) -> tuple[Any, ...]:
        return (fill.trade_id, fill.exchange_order_id, fill.client_order_id, fill.symbol, fill.side.value,
                str(fill.amount_contracts), str(fill.price), str(fill.fee), fill.fee_currency,
                str(fill.notional_usd), fill.is_maker, fill.ts.strftime("%Y-%m-%d %H:%M:%S.%f"),
                now.strftime("%Y-%m-%d %H:%M:%S.%f"))

    async def record(self, batch: list[Fill]) -> None:
        now = datetime.now(UTC)
        await self.conn.executemany(self.SQL, [self._row(f, now) for f in batch])
        await self.conn.commit()

    async def close(self) -> None:
        await self.conn.close()


class BarePostgres:
    """asyncpg on its own connection: one autocommitted statement per fill, executemany per batch."""

    SQL = (f"INSERT INTO fills ({', '.join(COLUMNS)}) VALUES ({', '.join(f'${i}' for i in range(1, 14))}) "
           "ON CONFLICT (symbol, trade_id) DO NOTHING")

    def __init__(self, url: str) -> None:
        self.url = url
        self.conn: Any = None

    async def open(self) -> None:
        import asyncpg

        self.conn = await asyncpg.connect(self.url)

    @staticmethod
    def _row(fill: Fill, now: datetime) -> tuple[Any, ...]:
        return (fill.trade_id, fill.exchange_order_id, fill.client_order_id, fill.symbol, fill.side.value,
                fill.amount_contracts, fill.price, fill.fee, fill.fee_currency, fill.notional_usd,
                fill.is_maker, fill.ts, now)

    async def record(self, batch: list[Fill]) -> None:
        now = datetime.now(UTC)
        if len(batch) == 1:
            await self.conn.execute(self.SQL, *self._row(batch[0], now))
        else:
            async with self.conn.transaction():
                await self.conn.executemany(self.SQL, [self._row(f, now) for f in batch])

    async def close(self) -> None:
        await self.conn.close()


# -- databases --------------------------------------------------------------------------------------------

@dataclass
class Database:
    name: str
    journal_url: str
    baseline_url: str
    cleanup: Callable[[], Awaitable[None]]


async def sqlite_databases(folder: Path) -> Database:
    async def nothing() -> None:
        return None

    return Database("sqlite", f"sqlite:///{folder / 'journal.db'}", str(folder / "baseline.db"), nothing)


async def postgres_databases(server_url: str) -> Database:
    import asyncpg
    from sqlalchemy.engine import make_url

    server = make_url(server_url).set(drivername="postgresql")
    names = [f"dk_bench_{uuid.uuid4().hex[:12]}" for _ in range(2)]

    async def on_server(sql: str) -> None:
        conn = await asyncpg.connect(server.render_as_string(hide_password=False))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    for name in names:
        await on_server(f'CREATE DATABASE "{name}"')

    async def drop() -> None:
        for name in names:
            await on_server(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    urls = [server.set(database=name).render_as_string(hide_password=False) for name in names]
    return Database("postgresql", urls[0], urls[1], drop)


# -- the run ----------------------------------------------------------------------------------------------

@dataclass
class Phase:
    """Fills and seconds spent, for the journal and for the bare driver."""

    fills: int = 0
    journal_secs: float = 0.0
    baseline_secs: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def journal_rate(self) -> float:
        return self.fills / self.journal_secs

    @property
    def baseline_rate(self) -> float:
        return self.fills / self.baseline_secs


async def timed(run: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await run()
    return time.perf_counter() - started, result


async def measure(db: Database, single: int, batches: int, rounds: int) -> dict[str, Phase]:
    """One by one, batched, and the batches again, in `rounds` alternating rounds."""
    for url in (db.journal_url, (f"sqlite:///{db.baseline_url}" if db.name == "sqlite" else db.baseline_url)):
        await asyncio.to_thread(upgrade, url)
    journal: SqlJournal = create_journal(db.journal_url)
    bare = BareSqlite(db.baseline_url) if db.name == "sqlite" else BarePostgres(db.baseline_url)
    await bare.open()
    phases = {"one by one": Phase(), "batched": Phase(), "same batches again": Phase()}
    try:
        await journal.record_fills(fills(0, 1, "warm"))  # connect, prepare: not part of the figures
        await bare.record(fills(0, 1, "warm"))
        single_per_round, batches_per_round = max(1, single // rounds), max(1, batches // rounds)
        recorded: list[list[Fill]] = []
        for r in range(rounds):
            mine = fills(r * single_per_round, single_per_round, "s")
            theirs = fills(r * single_per_round, single_per_round, "s")

            async def one_by_one(journal_fills: list[Fill] = mine) -> int:
                return sum([await journal.record_fills([fill]) for fill in journal_fills])

            async def bare_one_by_one(bare_fills: list[Fill] = theirs) -> None:
                for fill in bare_fills:
                    await bare.record([fill])

            secs, added = await timed(one_by_one)
            assert added == len(mine), f"{db.name}: {added} of {len(mine)} single fills recorded"
            phase = phases["one by one"]
            phase.fills += len(mine)
            phase.journal_secs += secs
            phase.baseline_secs += (await timed(bare_one_by_one))[0]

            first = r * batches_per_round * BATCH
            mine_batches = [fills(first + k * BATCH, BATCH, "b") for k in range(batches_per_round)]
            theirs_batches = [fills(first + k * BATCH, BATCH, "b") for k in range(batches_per_round)]

            async def batched(journal_batches: list[list[Fill]] = mine_batches) -> list[int]:
                return [await journal.record_fills(batch) for batch in journal_batches]

            async def bare_batched(bare_batches: list[list[Fill]] = theirs_batches) -> None:
                for batch in bare_batches:
                    await bare.record(batch)

            secs, added_per_batch = await timed(batched)
            assert added_per_batch == [BATCH] * batches_per_round, f"{db.name}: added {added_per_batch}"
            phase = phases["batched"]
            phase.fills += batches_per_round * BATCH
            phase.journal_secs += secs
            phase.baseline_secs += (await timed(bare_batched))[0]
            recorded += mine_batches

        async def again() -> list[int]:
            return [await journal.record_fills(batch) for batch in recorded]

        async def bare_again() -> None:
            for batch in recorded:
                await bare.record(batch)

        secs, added_again = await timed(again)
        assert set(added_again) == {0}, f"{db.name}: the same batches again added {sum(added_again)} fills"
        phase = phases["same batches again"]
        phase.fills = len(recorded) * BATCH
        phase.journal_secs = secs
        phase.baseline_secs = (await timed(bare_again))[0]

        stored = await count_fills(journal)
        expected = 1 + phases["one by one"].fills + phases["batched"].fills
        assert stored == expected, f"{db.name}: {stored} fills stored, {expected} expected"
        phases["same batches again"].notes.append(f"{stored} rows, none duplicated")
    finally:
        await journal.close()
        await bare.close()
    return phases


async def count_fills(journal: SqlJournal) -> int:
    from sqlalchemy import func, select

    from deltakeeper.adapters.journal.models import fills as fills_table

    async with journal.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(fills_table)) or 0)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (the smoke test's)")
    parser.add_argument("--postgres-url", default=os.environ.get(POSTGRES_URL_VARIABLE),
                        help=f"a PostgreSQL server for a scratch database (default ${POSTGRES_URL_VARIABLE})")
    parser.add_argument("--single", type=int, default=3_000, help="fills recorded one by one")
    parser.add_argument("--batches", type=int, default=30, help=f"batches of {BATCH:,} fills")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    single, batches, rounds = (60, 2, 2) if args.quick else (args.single, args.batches, args.rounds)

    print(f"benchmark 4: journal throughput, fills per second (batches of {BATCH:,})")
    print(machine())
    print(f"{single:,} fills one by one and {batches} batches, "
          f"in {rounds} rounds alternating with the bare driver")
    print()
    rows: list[list[object]] = []
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="dk-bench-") as folder:
        databases = [await sqlite_databases(Path(folder))]
        if args.postgres_url:
            databases.append(await postgres_databases(args.postgres_url))
        for db in databases:
            try:
                phases = await measure(db, single, batches, rounds)
            finally:
                await db.cleanup()
            for mode, phase in phases.items():
                target = {"one by one": TARGET_SINGLE, "batched": TARGET_BATCH}.get(mode)
                rows.append([
                    f"{db.name} {mode}", f"{phase.fills:,}", f"{phase.journal_secs:.2f}",
                    fmt_rate(phase.journal_rate),
                    fmt_rate(phase.baseline_rate), f"{phase.journal_rate / phase.baseline_rate:.2f}x",
                    f">= {target:,}" if target else "-", "; ".join(phase.notes),
                ])
                if target:
                    ratio = phase.journal_rate / target
                    verdicts.append(ratio_line(f"{db.name} {mode} / target", ratio, f">= 1 ({target:,}/s)",
                                               ratio >= 1, f"{fmt_rate(phase.journal_rate)} fills/s"))
    print(table(["database, mode", "fills", "seconds", "fills/s", "bare driver/s", "vs bare", "target/s", ""],
                rows))
    print()
    if not args.postgres_url:
        print(f"PostgreSQL: skipped (set {POSTGRES_URL_VARIABLE} or pass --postgres-url)")
    print("\n".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
