"""Which columns and rows of a price or funding file a backtest reads: `[ASSET=]FILE[:OPTION=VALUE,...]`.

Options, after the file name and a colon, separated by commas:
- `time=COLUMN`: the time column (default: the first of timestamp, datetime, time, date, ts).
- `close=COLUMN` (`--prices`): the price column (default `close`). `rate=COLUMN` (`--funding`): the rate
  column (default: the first of rate, funding_rate, funding rate, fundingrate).
- `tz=ZONE`: the zone of times written without one, an IANA name (`Europe/London`) or an offset
  (`+03:00`); UTC by default. Epoch numbers are UTC whatever it says.
- `every=HOURS` (`--funding`): keep only the rows on that UTC grid (8: 00, 08 and 16 UTC), for a file
  that repeats the rate on every row between settlements.
- any other `COLUMN=VALUE`: keep only the rows whose COLUMN is VALUE (case-insensitive), to pick one
  series out of a file that holds several.

Known layouts are recognised by their columns, and give the defaults that options then override:
- OKX hourly spot and perpetual (`close_perp_okx`, `funding_rate_raw_okx`): the price is the perpetual's
  close; the funding rate, repeated on every hour, settles on the 8-hour UTC grid.
- Several exchanges' 8-hourly bars in one file (`exchange`, `pair`, `contract`, `funding rate`): times
  in UK local time (`Europe/London`); one series must be picked, with `exchange=` and `pair=`.
- A venue's funding history (`symbol`, `date`, `funding rate`) in a file named `<PAIR>_<venue>_...`:
  the binance, bybit, htx and mexc files are in UTC+3 (their first Binance rate is Binance's 00:00 UTC
  print at 03:00).
Rows without a value in the price or rate column are skipped. Files are read by `sim.feeds.read_rows`, the
one reader of CSV and Parquet rows, only the columns needed (`table_rows`: a file it cannot read is a
ConfigError naming the flag).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from deltakeeper.domain.errors import ConfigError
from deltakeeper.sim.feeds import column_names, read_rows

FileKind = Literal["prices", "funding"]
TIME_COLUMNS = ("timestamp", "datetime", "time", "date", "ts")
VALUE_COLUMNS: dict[FileKind, tuple[str, ...]] = {
    "prices": ("close",),
    "funding": ("rate", "funding_rate", "funding rate", "fundingrate"),
}
VALUE_OPTION: dict[FileKind, str] = {"prices": "close", "funding": "rate"}
_OFFSET = re.compile(r"^([+-])(\d\d):?(\d\d)$")
_MS_THRESHOLD = 1e11
_UTC_PLUS_3_VENUES = ("binance", "bybit", "htx", "mexc")
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class DataFile:
    """A file and how to read it. None: the known layout's choice, else the default."""

    path: Path
    time_column: str | None = None
    value_column: str | None = None
    tz: tzinfo | None = None
    every_hours: int | None = None
    filters: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return str(self.path)


@dataclass(frozen=True, slots=True)
class _Layout:
    name: str
    value_column: Mapping[FileKind, str] | None = None
    tz: tzinfo | None = None
    funding_every_hours: int | None = None
    series_columns: tuple[str, ...] = ()
    """Columns that tell the file's series apart: one series must remain after the filters."""


def _tz(text: str, flag: str) -> tzinfo:
    match = _OFFSET.match(text)
    if match:
        sign = -1 if match[1] == "-" else 1
        return timezone(sign * timedelta(hours=int(match[2]), minutes=int(match[3])))
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(flag, "tz= an IANA zone such as Europe/London, or an offset such as +03:00",
                          text) from None


def parse_data_file(text: str, flag: str, kind: FileKind) -> DataFile:
    """`FILE[:OPTION=VALUE,...]` (the part after `ASSET=`)."""
    path_text, options = text, ""
    if not Path(text).is_file():
        # the options start after the first colon that ends an existing file, else after the first colon
        # that is followed by KEY=VALUE
        splits = [i for i, char in enumerate(text) if char == ":" and "=" in text[i + 1:].split(",")[0]]
        at = next((i for i in splits if Path(text[:i]).is_file()), splits[0] if splits else None)
        if at is not None:
            path_text, options = text[:at], text[at + 1:]
    file = DataFile(Path(path_text))
    filters: list[tuple[str, str]] = []
    for option in filter(None, (o.strip() for o in options.split(","))):
        key, sep, value = option.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise ConfigError(flag, "options as KEY=VALUE after FILE:, separated by commas", option)
        if key == "time":
            file = replace(file, time_column=value.lower())
        elif key == VALUE_OPTION[kind]:
            file = replace(file, value_column=value.lower())
        elif key in VALUE_OPTION.values():
            raise ConfigError(flag, f"{VALUE_OPTION[kind]}=COLUMN ({key}= is for the other files)", option)
        elif key == "tz":
            file = replace(file, tz=_tz(value, flag))
        elif key == "every":
            if kind != "funding" or not value.rstrip("h").isdigit() or int(value.rstrip("h")) <= 0:
                raise ConfigError(flag, "every=HOURS (a whole number of hours) on a --funding file", option)
            file = replace(file, every_hours=int(value.rstrip("h")))
        else:
            filters.append((key, value))
    return replace(file, filters=tuple(filters))


def _layout(columns: Sequence[str], path: Path) -> _Layout | None:
    names = set(columns)
    if {"close_perp_okx", "funding_rate_raw_okx"} <= names:
        return _Layout("OKX hourly", {"prices": "close_perp_okx", "funding": "funding_rate_raw_okx"},
                       funding_every_hours=8)
    if {"exchange", "pair", "contract", "funding rate"} <= names:
        return _Layout("several exchanges", tz=ZoneInfo("Europe/London"), series_columns=("exchange", "pair"))
    if {"symbol", "date", "funding rate"} <= names:
        venue = next((v for v in _UTC_PLUS_3_VENUES if f"_{v}_" in path.name.lower()), None)
        return _Layout("venue funding history", tz=timezone(timedelta(hours=3)) if venue else None)
    return None


def _pick(columns: Sequence[str], wanted: str | None, defaults: Sequence[str], flag: str, path: Path,
          what: str) -> str:
    for name in ((wanted,) if wanted is not None else defaults):
        if name in columns:
            return name
    names = wanted if wanted is not None else " or ".join(defaults)
    raise ConfigError(flag, f"a {what} column named {names} (choose one with FILE:{what}=COLUMN)",
                      f"{path}: {', '.join(columns)}")


def _readable(path: Path, flag: str, read: Callable[[], _T]) -> _T:
    """`read()` of the file (`sim.feeds`' one reader of CSV and Parquet), a file it cannot read a
    ConfigError naming the flag."""
    try:
        return read()
    except Exception as exc:  # pyarrow's errors when a file is not Parquet
        raise ConfigError(flag, "a readable CSV or Parquet file", f"{path}: {exc}") from None


def table_rows(path: Path, flag: str, columns: Sequence[str] | None = None) -> list[dict[str, object]]:
    """`sim.feeds.read_rows` of the file (only `columns`, when given), a ConfigError naming the flag."""
    return _readable(path, flag, lambda: read_rows(path, columns))


def _empty(value: object) -> bool:
    return value is None or value == "" or (isinstance(value, float) and math.isnan(value))


def _time(value: object, tz: tzinfo, flag: str, path: Path) -> datetime:
    """UTC: epoch ms (or seconds), ISO-8601, or a datetime; one without a zone is in `tz`."""
    try:
        if isinstance(value, datetime):
            stamp = value
        elif isinstance(value, int | float):
            number = float(value)
            return datetime.fromtimestamp(number / 1000 if abs(number) >= _MS_THRESHOLD else number, UTC)
        else:
            text = str(value).strip()
            try:
                number = float(text)
            except ValueError:
                stamp = datetime.fromisoformat(text.replace("Z", "+00:00"))
            else:
                return datetime.fromtimestamp(number / 1000 if abs(number) >= _MS_THRESHOLD else number, UTC)
        if stamp.tzinfo is None:
            stamp = stamp.replace(tzinfo=tz)
        return stamp.astimezone(UTC)
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(flag, "timestamps in epoch ms or ISO-8601", f"{path}: {value!r}") from None


def read_values(file: DataFile, flag: str, kind: FileKind) -> list[tuple[datetime, object]]:
    """(UTC time, raw value) of every row the options keep that has a value, in file order."""
    path = file.path
    columns = _readable(path, flag, lambda: column_names(path))
    layout = _layout(columns, path)
    time_col = _pick(columns, file.time_column, TIME_COLUMNS, flag, path, "time")
    layout_value = layout.value_column[kind] if layout and layout.value_column else None
    value_col = _pick(columns, file.value_column or layout_value, VALUE_COLUMNS[kind], flag, path,
                      VALUE_OPTION[kind])
    for column, _ in file.filters:
        _pick(columns, column, (), flag, path, column)
    series_cols = tuple(c for c in (layout.series_columns if layout else ()) if c in columns)
    wanted = [time_col, value_col, *(c for c, _ in file.filters), *series_cols]
    tz = file.tz or (layout.tz if layout else None) or UTC
    every = file.every_hours or (layout.funding_every_hours if layout and kind == "funding" else None)
    rows = [tuple(row[name] for name in wanted) for row in table_rows(path, flag, wanted)]
    n_filters = len(file.filters)
    out: list[tuple[datetime, object]] = []
    series: set[tuple[str, ...]] = set()
    for row in rows:
        if any(str(row[2 + i]).strip().lower() != value.lower() for i, (_, value) in enumerate(file.filters)):
            continue
        if _empty(row[1]):
            continue
        ts = _time(row[0], tz, flag, path)
        if every is not None and ts.timestamp() % (every * 3600) >= 1:
            continue
        series.add(tuple(str(v) for v in row[2 + n_filters:]))
        out.append((ts, row[1]))
    if len(series) > 1:
        choices = "; ".join(", ".join(f"{c}={v}" for c, v in zip(series_cols, s, strict=True))
                            for s in sorted(series))
        raise ConfigError(flag, f"one series: pick it with FILE:{'=...,'.join(series_cols)}=...",
                          f"{path} holds {len(series)}: {choices}")
    return out
