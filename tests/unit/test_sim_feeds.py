from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import islice, pairwise
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltakeeper.backtest.data import load_inventory
from deltakeeper.sim.feeds import (
    Bar,
    bundled_bars,
    column_names,
    intrabar_path,
    load_bars,
    parse_timestamp,
    read_rows,
    replay_feed,
    synthetic_feed,
)
from deltakeeper.sim.markets import ASSETS

START = datetime(2026, 1, 5, tzinfo=UTC)
SOL_SYMBOLS = ["SOL/USDT", "SOL/USDT:USDT", "SOL/USD:SOL"]


def test_load_bars_reads_csv_with_millisecond_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n"
        "1767578400000,100,101,99,100.5,12.5\n"
        "1767574800000,99,100.5,98.5,100,10\n"
    )

    first, second = load_bars(path)

    assert (first.ts, second.ts) == (datetime(2026, 1, 5, 1, tzinfo=UTC), datetime(2026, 1, 5, 2, tzinfo=UTC))
    assert (second.open, second.high, second.low, second.close, second.volume) == (100, 101, 99, 100.5, 12.5)
    assert second.funding_rate is None and second.perp_close is None


def test_load_bars_reads_csv_with_iso_timestamps_perp_close_and_funding(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume,perp_close,funding_rate\n"
        "2026-01-05T08:00:00Z,100,101,99,100.5,1,100.4,0.0001\n"
        "2026-01-05 09:00:00,100.5,102,100,101,1,,\n"
    )

    first, second = load_bars(path)

    assert (first.ts, second.ts) == (datetime(2026, 1, 5, 8, tzinfo=UTC), datetime(2026, 1, 5, 9, tzinfo=UTC))
    assert first.funding_rate == Decimal("0.0001") and first.perp_close == 100.4
    assert second.funding_rate is None and second.perp_close is None


def test_load_bars_reads_parquet(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    table = pa.table({
        "timestamp": pa.array([datetime(2026, 1, 5, 0), datetime(2026, 1, 5, 1)], pa.timestamp("us")),
        "open": [100.0, 101.0], "high": [102.0, 103.0], "low": [99.0, 100.0], "close": [101.0, 102.0],
        "volume": [5.0, 6.0], "funding_rate": [0.0001, None],
    })
    pq.write_table(table, path)

    first, second = load_bars(path)

    assert first.ts == START and second.close == 102.0
    assert first.funding_rate == Decimal("0.0001") and second.funding_rate is None


def test_load_bars_and_backtest_inventory_share_one_reader_that_takes_columns_in_any_case(
    tmp_path: Path,
) -> None:
    bars = tmp_path / "bars.csv"
    bars.write_text(" Timestamp ,OPEN,High,Low,Close,Funding_Rate\n1767574800000,99,100.5,98.5,100,0.0002\n")
    inventory = tmp_path / "inventory.csv"
    inventory.write_text("Timestamp,Asset,Quantity\n1767574800000,sol,12.5\n")

    (bar,) = load_bars(bars)
    paths = load_inventory(inventory)

    assert (bar.ts, bar.open, bar.close) == (START + timedelta(hours=1), 99, 100)
    assert bar.funding_rate == Decimal("0.0002")
    assert list(paths) == ["SOL"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_read_rows_keeps_only_the_chosen_columns_in_any_case_and_names_a_missing_one(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"series{suffix}"
    if suffix == ".csv":
        path.write_text(" Timestamp ,Close,Volume\n1767574800000,100.5,5\n1767578400000,101,6\n")
    else:
        pq.write_table(pa.table({" Timestamp ": [1767574800000, 1767578400000], "Close": [100.5, 101.0],
                                 "Volume": [5.0, 6.0]}), path)

    rows = read_rows(path, ["close", "timestamp", "close"])

    assert column_names(path) == ["timestamp", "close", "volume"]
    assert [list(row) for row in rows] == [["close", "timestamp"]] * 2
    assert [float(str(row["close"])) for row in rows] == [100.5, 101.0]
    assert read_rows(path)[0].keys() == {"timestamp", "close", "volume"}
    with pytest.raises(ValueError, match="no column open"):
        read_rows(path, ["close", "open"])


def test_load_bars_names_a_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("timestamp,open,high,close\n1767574800000,1,2,1.5\n")

    with pytest.raises(ValueError, match="low"):
        load_bars(path)


def test_parse_timestamp_accepts_seconds_milliseconds_iso_and_naive_datetimes() -> None:
    expected = datetime(2026, 1, 5, 1, tzinfo=UTC)
    assert parse_timestamp("1767574800") == expected
    assert parse_timestamp(1767574800000) == expected
    assert parse_timestamp("2026-01-05T02:00:00+01:00") == expected
    assert parse_timestamp(datetime(2026, 1, 5, 1)) == expected


def test_bundled_excerpt_has_60_days_of_hourly_bars_with_funding_on_the_8h_grid() -> None:
    bars = bundled_bars()

    assert 1_400 <= len(bars) <= 1_450
    assert all(b.ts - a.ts == timedelta(hours=1) for a, b in pairwise(bars))
    assert all(b.perp_close is not None and b.low <= b.close <= b.high for b in bars)
    funded = [b for b in bars if b.funding_rate is not None]
    assert funded and all(b.ts.hour % 8 == 0 for b in funded)
    assert len(funded) == sum(1 for b in bars if b.ts.hour % 8 == 0)
    assert (Path(__file__).parents[2] / "src/deltakeeper/sim/data/okx_SOL_1h.csv").stat().st_size < 150_000


def test_intrabar_path_runs_from_open_to_close_through_high_and_low_and_stays_inside() -> None:
    bar = Bar(START, open=100.0, high=104.0, low=97.0, close=101.0)
    rng = random.Random(3)

    for ticks in (1, 2, 3, 4, 60, 360):
        path = intrabar_path(bar, ticks, rng)
        assert len(path) == ticks and path[-1] == bar.close
        assert all(bar.low <= p <= bar.high for p in path)
        if ticks >= 2:
            assert path[0] == bar.open
        if ticks >= 4:
            assert max(path) == bar.high and min(path) == bar.low


def test_replay_quotes_every_market_at_each_tick_with_spread_and_mark_at_mid() -> None:
    bars = [Bar(START, 100.0, 101.0, 99.0, 100.5, perp_close=100.6, funding_rate=Decimal("0.0002")),
            Bar(START + timedelta(hours=1), 100.5, 102.0, 100.0, 101.0)]

    ticks = list(replay_feed(bars, tick_secs=600, spread_bps=10))

    assert [ts for ts, _ in ticks] == [START + timedelta(minutes=10 * k) for k in range(12)]
    for _, quotes in ticks:
        assert [q.symbol for q in quotes] == SOL_SYMBOLS
        for q in quotes:
            assert q.bid < q.ask and q.mark == (q.bid + q.ask) / 2
            assert q.ask - q.bid <= q.mid * Decimal("0.0010") + Decimal("0.02")
        spot, linear, inverse = quotes
        assert spot.funding_rate is None and linear.funding_rate == inverse.funding_rate == Decimal("0.0002")
        assert linear.bid == inverse.bid
    first_linear = ticks[0][1][1]
    assert first_linear.index == Decimal("100.00") and first_linear.mid > first_linear.index


def test_replay_is_deterministic_for_a_seed() -> None:
    bars = bundled_bars()[:24]

    def prices(seed: int) -> list[Decimal]:
        return [quotes[0].mid for _, quotes in replay_feed(bars, tick_secs=60, seed=seed)]

    assert prices(5) == prices(5)
    assert prices(5) != prices(6)


def test_replay_from_a_start_time_keeps_funding_settlements_on_the_8h_grid() -> None:
    start = datetime(2030, 6, 1, 5, 17, tzinfo=UTC)

    feed = replay_feed(bundled_bars(), tick_secs=900, start=start)
    ticks = list(islice(feed, 200))

    assert ticks[0][0] >= start and ticks[0][0] - start < timedelta(minutes=15)
    changes = [ts for (_, a), (ts, b) in pairwise(ticks)
               if a[1].funding_rate != b[1].funding_rate]
    assert changes and all(ts.hour % 8 == 0 and ts.minute == 0 for ts in changes)


def test_synthetic_feed_is_seeded_and_ticks_at_its_interval() -> None:
    def run(seed: int) -> list[tuple[datetime, Decimal]]:
        feed = synthetic_feed(ASSETS["BTC"], start=START, price=60_000, tick_secs=5, seed=seed)
        return [(ts, quotes[1].mark) for ts, quotes in islice(feed, 100)]

    first = run(1)
    assert first == run(1) and first != run(2)
    assert [ts for ts, _ in first] == [START + timedelta(seconds=5 * k) for k in range(100)]
    assert all(Decimal(50_000) < mark < Decimal(70_000) for _, mark in first)
