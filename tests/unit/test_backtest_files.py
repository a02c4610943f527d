"""Reading other people's files: column and row options after the file name, the layouts recognised by
their columns (on the real files in ../shared/data, next to the repo), and the funding gaps reported."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal as D
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deltakeeper.backtest.data import load_funding, load_price_series, parse_file_specs
from deltakeeper.backtest.files import parse_data_file
from deltakeeper.backtest.run import funding_gaps, load_dataset
from deltakeeper.domain.errors import ConfigError

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"
OKX_HOURLY = SHARED_DATA / "pietro_okx_hourly" / "okx_SOL_2020-09-30_2026-03-05.parquet"
ALL_EXCHANGES = SHARED_DATA / "aha_binance_bybit_okx_8h" / "all_exchanges.csv"
BYBIT_FUNDING = SHARED_DATA / "supervik_funding" / "BTC-USDT_bybit_2021-01-01_2024-01-01_funding_history.csv"
EIGHT_HOURS = 8 * 3600


def needs(path: Path) -> pytest.MarkDecorator:
    return pytest.mark.skipif(not path.is_file(), reason=f"the shared market data is not at {path}")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# -- options ---------------------------------------------------------------------------------------------


def test_options_after_the_file_name_pick_columns_rows_and_the_zone(tmp_path):
    path = tmp_path / "prices.csv"
    path.write_text("When,Venue,Last\n"
                    "2024-01-01 03:00,a,100\n2024-01-01 03:00,b,999\n2024-01-01 04:00,a,101\n")
    spec = f"XYZ={path}:time=When,close=Last,venue=A,tz=+03:00"
    series = load_price_series("XYZ", parse_file_specs([spec], "--prices")["XYZ"], 0.0)
    # 03:00 at UTC+3 is 00:00 UTC; the bar closes an hour later; venue b's row is left out
    assert [(e.ts, e.quote.bid) for e in series.events] == [(utc(2024, 1, 1, 1), D(100)),
                                                             (utc(2024, 1, 1, 2), D(101))]


def test_a_file_whose_name_has_a_colon_and_equals_sign_is_still_a_file(tmp_path):
    path = tmp_path / "XYZ:a=b.csv"
    path.write_text("timestamp,close\n1704067200000,100\n")
    assert parse_data_file(str(path), "--prices", "prices").path == path


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("close=", "KEY=VALUE"),
        ("rate=funding", "close=COLUMN"),
        ("tz=Mars/Olympus", "IANA zone"),
        ("every=8h", "--funding file"),
        ("time=when", "time column named when"),
        ("close=last", "close column named last"),
        ("venue=a", "venue column named venue"),
    ],
)
def test_bad_options_name_the_flag_and_say_what_is_expected(tmp_path, option, expected):
    path = tmp_path / "XYZ.csv"
    path.write_text("timestamp,close\n1704067200000,100\n")
    with pytest.raises(ConfigError, match=expected) as error:
        files = parse_file_specs([f"{path}:{option}"], "--prices")
        load_price_series("XYZ", files["XYZ"], 1.0)
    assert error.value.variable == "--prices"


@pytest.mark.parametrize(("name", "flag"), [("closes.parquet", "--prices"), ("rates.parquet", "--funding")])
def test_a_file_the_reader_cannot_read_is_a_config_error_naming_the_flag(tmp_path, name, flag):
    path = tmp_path / name
    path.write_text("timestamp,close,rate\n1704067200000,100,0.0001\n")  # CSV text in a .parquet file

    with pytest.raises(ConfigError) as caught:
        if flag == "--prices":
            load_price_series("XYZ", path, 0.0)
        else:
            load_funding(path)

    assert caught.value.variable == flag and caught.value.expected == "a readable CSV or Parquet file"


def test_a_parquet_file_is_read_by_its_chosen_columns_whatever_else_it_holds(tmp_path):
    path = tmp_path / "closes.parquet"
    pq.write_table(pa.table({"Notes": ["a", "b"], "TS": [1704067200000, 1704070800000],
                             "Mid": [100.0, 101.0], "Close": [1.0, 2.0]}), path)

    series = load_price_series("XYZ", parse_data_file(f"{path}:time=ts,close=mid", "--prices", "prices"), 0.0)

    # the bars close an hour after their times
    assert [(e.ts, e.quote.bid) for e in series.events] == [(utc(2024, 1, 1, 1), D(100)),
                                                             (utc(2024, 1, 1, 2), D(101))]


def test_funding_every_keeps_only_the_rates_on_the_utc_grid(tmp_path):
    path = tmp_path / "f.csv"
    path.write_text("timestamp,funding_rate\n" + "".join(
        f"2024-01-01T{h:02d}:00:00Z,0.000{h % 8 + 1}\n" for h in range(17)))
    file = parse_data_file(f"{path}:every=8", "--funding", "funding")
    assert load_funding(file) == ((1704067200.0, D("0.0001")), (1704096000.0, D("0.0001")),
                                  (1704124800.0, D("0.0001")))


# -- the shared data's layouts ---------------------------------------------------------------------------


@needs(OKX_HOURLY)
def test_okx_hourly_parquet_prices_are_the_perpetuals_close_and_funding_settles_every_8_hours():
    files = parse_file_specs([f"SOL={OKX_HOURLY}"], "--prices")
    series = load_price_series("SOL", files["SOL"], 0.0)
    assert len(series.events) == 44_849  # the rows with a perpetual close: from 2021-01-22
    assert series.events[0].ts == utc(2021, 1, 22, 7)
    assert series.events[0].quote.bid == D("3.02")  # the close, to the price tick
    assert series.bar_secs == 3600
    rates = load_funding(parse_file_specs([f"SOL={OKX_HOURLY}"], "--funding")["SOL"])
    assert len(rates) == 4_398  # 2022-03-01 00:00 to 2026-03-05 16:00, one every 8 hours
    assert all(t % EIGHT_HOURS == 0 for t, _ in rates)
    assert rates[0] == (utc(2022, 3, 1).timestamp(), D("0.0000579503174709"))


@needs(OKX_HOURLY)
def test_okx_hourly_spot_close_by_option():
    file = parse_file_specs([f"SOL={OKX_HOURLY}:close=close_spot_okx"], "--prices")["SOL"]
    series = load_price_series("SOL", file, 0.0)
    assert series.events[0].ts == utc(2020, 9, 30, 11)
    assert series.events[0].quote.bid == D("2.92")


@needs(ALL_EXCHANGES)
def test_multi_exchange_csv_wants_one_series_and_names_them():
    file = parse_file_specs([f"BTC={ALL_EXCHANGES}:exchange=bybit"], "--prices")["BTC"]
    with pytest.raises(ConfigError, match=re.escape("pick it with FILE:exchange=...,pair=...")) as error:
        load_price_series("BTC", file, 1.0)
    assert "exchange=bybit, pair=BTCUSDT" in str(error.value)
    assert "exchange=binance" not in str(error.value)


@needs(ALL_EXCHANGES)
def test_multi_exchange_csv_uk_times_land_on_the_8_hour_utc_grid():
    spec = f"BTC={ALL_EXCHANGES}:exchange=bybit,pair=BTCUSDT"
    series = load_price_series("BTC", parse_file_specs([spec], "--prices")["BTC"], 0.0)
    assert len(series.events) == 1_642
    # summer rows are written 01/09/17 (UK time): in UTC every bar is on the 00/08/16 grid
    assert all(e.t_secs % EIGHT_HOURS == 0 for e in series.events)
    assert series.bar_secs == EIGHT_HOURS
    assert series.events[0].quote.bid == D("16553.0")
    rates = load_funding(parse_file_specs([spec], "--funding")["BTC"])
    assert len(rates) == 1_642 and all(t % EIGHT_HOURS == 0 for t, _ in rates)
    assert rates[0] == (utc(2023, 1, 1).timestamp(), D("0.00024639"))


@needs(BYBIT_FUNDING)
def test_a_venues_funding_history_in_utc_plus_3_is_read_in_utc():
    rates = load_funding(parse_file_specs([f"BTC={BYBIT_FUNDING}"], "--funding")["BTC"])
    assert rates[0] == (utc(2021, 1, 1).timestamp(), D("0.00034729"))  # written 2021-01-01 03:00
    assert all(t % EIGHT_HOURS == 0 for t, _ in rates)


# -- funding that does not cover the prices ----------------------------------------------------------------


def hourly(hours, value: str) -> str:
    return "".join(f"{1704067200000 + h * 3_600_000},{value}\n" for h in hours)


def test_funding_gaps_name_the_uncovered_spans(tmp_path):
    prices = tmp_path / "XYZ.csv"
    prices.write_text("timestamp,close\n" + hourly(range(80), "100"))  # closes 01-01 01:00 to 01-04 08:00
    funding = tmp_path / "f.csv"  # every 8h from 16:00 on day 1 to 16:00 on day 2, then 16:00 on day 3
    funding.write_text("timestamp,rate\n" + hourly([16, 24, 32, 40, 64], "0.0001"))
    data = load_dataset({"XYZ": prices}, {"XYZ": funding}, "static")
    spans = [("01-01 01:00", "01-01 16:00"), ("01-02 16:00", "01-03 16:00"), ("01-03 16:00", "01-04 08:00")]
    assert data.warnings == tuple(
        f"XYZ: no funding rate from 2024-{a} to 2024-{b} UTC in f.csv (funding is not counted there)"
        for a, b in spans
    )
    covered = tmp_path / "g.csv"
    covered.write_text("timestamp,rate\n" + hourly(range(0, 88, 8), "0.0001"))
    assert funding_gaps("XYZ", data.series["XYZ"], load_funding(covered), covered) == []
