"""Price feeds for the simulated exchange: replay of OHLCV bars, and a synthetic GBM path.

A feed is an iterator of `(sim time, quotes)`: at every tick, one quote for each market of one asset
(spot, linear perpetual, inverse perpetual). The markets see the same underlying price; the perpetuals
carry a small basis to spot. Bid and ask sit `spread_bps` apart around the price, rounded outwards to the
asset's price tick; the mark is the mid; the index is the underlying (spot) price. Perpetual quotes carry
the current funding rate (None where the data has none, so the engine uses its default).

Prices along the path are floats (cheap to generate); quotes are `Decimal`, made once per tick.
"""

from __future__ import annotations

import csv
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from itertools import pairwise
from pathlib import Path

from deltakeeper.domain.greeks import black76_price_usd
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Quote
from deltakeeper.sim.markets import ASSETS, FUNDING_INTERVAL_SECS, OPTION_PRICE_TICK, SimAsset

Feed = Iterator[tuple[datetime, list[Quote]]]

BUNDLED_EXCERPT = "okx_SOL_1h.csv"
_REQUIRED = ("timestamp", "open", "high", "low", "close")
_MS_THRESHOLD = 100_000_000_000  # integer timestamps above this are milliseconds, below it seconds
_SECONDS_PER_YEAR = 365 * 86_400


@dataclass(frozen=True, slots=True)
class Bar:
    """One OHLCV bar of the underlying (spot). `ts` is the bar's open time, UTC.

    `perp_close` (optional) gives the perpetuals' basis to spot over the bar. `funding_rate` (optional) is
    the perpetual's rate per funding interval from this bar on: the replay keeps the last one seen.
    """

    ts: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    perp_close: float | None = None
    funding_rate: Decimal | None = None


def parse_timestamp(value: object) -> datetime:
    """UTC datetime from epoch milliseconds (or seconds), an ISO-8601 string, or a datetime (naive = UTC)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int | float):
        number = float(value)
    else:
        text = str(value).strip()
        try:
            number = float(text)
        except ValueError:
            return parse_timestamp(datetime.fromisoformat(text.replace("Z", "+00:00")))
    seconds = number / 1000 if abs(number) >= _MS_THRESHOLD else number
    return datetime.fromtimestamp(seconds, UTC)


def _optional_float(value: object) -> float | None:
    if value is None or value == "":
        return None
    number = float(str(value))
    return None if math.isnan(number) else number


def _optional_decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value))
    return None if number.is_nan() else number


def _bar(row: Mapping[str, object]) -> Bar:
    missing = [name for name in _REQUIRED if row.get(name) in (None, "")]
    if missing:
        raise ValueError(f"bar at {row.get('timestamp')!r} lacks {', '.join(missing)}")
    return Bar(
        ts=parse_timestamp(row["timestamp"]),
        open=float(str(row["open"])),
        high=float(str(row["high"])),
        low=float(str(row["low"])),
        close=float(str(row["close"])),
        volume=_optional_float(row.get("volume")) or 0.0,
        perp_close=_optional_float(row.get("perp_close")),
        funding_rate=_optional_decimal(row.get("funding_rate")),
    )


def _key(name: object) -> str:
    return str(name).strip().lower()


def column_names(path: str | Path) -> list[str]:
    """The column names of a CSV or Parquet file (by suffix), stripped and lower-cased, in file order;
    its rows are not read."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return [_key(name) for name in pq.ParquetFile(path).schema_arrow.names]
    with path.open(newline="") as handle:
        return [_key(name) for name in next(csv.reader(handle), [])]


def read_rows(path: str | Path, columns: Sequence[str] | None = None) -> list[dict[str, object]]:
    """The rows of a CSV or Parquet file (by suffix), keyed by column name stripped and lower-cased: the
    one reader of bar and series files (the simulator's replay, the backtest's inputs). `columns` (names
    as keyed): only those, a Parquet file's others not read; ValueError naming one the file lacks."""
    path = Path(path)
    wanted = None if columns is None else list(dict.fromkeys(columns))
    raw: Sequence[Mapping[object, object]]
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        originals = None
        if wanted is not None:
            names = pq.ParquetFile(path).schema_arrow.names
            keys = [_key(name) for name in names]
            _require(path, wanted, keys)
            originals = [names[keys.index(name)] for name in wanted]
        raw = pq.read_table(path, columns=originals).to_pylist()
    else:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            if wanted is not None:
                _require(path, wanted, [_key(name) for name in reader.fieldnames or ()])
            raw = list(reader)
    rows = [{_key(k): v for k, v in row.items()} for row in raw]
    return rows if wanted is None else [{name: row[name] for name in wanted} for row in rows]


def _require(path: Path, wanted: Sequence[str], keys: Sequence[str]) -> None:
    missing = [name for name in wanted if name not in keys]
    if missing:
        raise ValueError(f"{path}: no column {', '.join(missing)} (it has {', '.join(keys)})")


def load_bars(path: str | Path) -> list[Bar]:
    """Bars from a CSV or Parquet file (`read_rows`) with columns `timestamp, open, high, low, close` and
    optionally `volume, perp_close, funding_rate` (any case); other columns are ignored. Sorted by time."""
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"{path}: no bars")
    return sorted((_bar(row) for row in rows), key=lambda bar: bar.ts)


def bundled_bars() -> list[Bar]:
    """The bundled excerpt: 60 days of hourly OKX SOL spot, perp close and funding (data/ATTRIBUTION.md)."""
    with resources.as_file(resources.files("deltakeeper.sim") / "data" / BUNDLED_EXCERPT) as path:
        return load_bars(path)


def intrabar_path(bar: Bar, ticks: int, rng: random.Random) -> list[float]:
    """`ticks` prices at evenly spaced times through the bar: from open to close, touching the high and the
    low (in a random order, at random times) when there are at least 4 ticks, never outside [low, high].
    Brownian bridges join the four points."""
    if ticks < 1:
        raise ValueError(f"ticks must be positive, got {ticks}")
    if ticks == 1:
        return [bar.close]
    anchors = [(0, bar.open), (ticks - 1, bar.close)]
    if ticks >= 4:
        first, second = sorted(rng.sample(range(1, ticks - 1), 2))
        extremes = (bar.high, bar.low) if rng.random() < 0.5 else (bar.low, bar.high)
        anchors[1:1] = [(first, extremes[0]), (second, extremes[1])]
    sigma = (bar.high - bar.low) / (2 * math.sqrt(ticks))
    path: list[float] = []
    for (k0, p0), (k1, p1) in pairwise(anchors):
        path.extend(_bridge(p0, p1, k1 - k0, sigma, rng)[:-1])
    path.append(bar.close)
    return [min(max(price, bar.low), bar.high) for price in path]


def _bridge(start: float, end: float, steps: int, sigma: float, rng: random.Random) -> list[float]:
    """steps + 1 points of a random walk pinned to `start` and `end`."""
    walk = [0.0]
    for _ in range(steps):
        walk.append(walk[-1] + rng.gauss(0.0, sigma))
    excess = walk[-1] - (end - start)
    return [start + w - excess * k / steps for k, w in enumerate(walk)]


class _Quoter:
    """Turns an underlying price into one quote per market of an asset."""

    def __init__(self, asset: SimAsset, spread_bps: float) -> None:
        self._markets = [(i.symbol, i.kind is Kind.SPOT, i.funding_interval_secs is not None)
                         for i in asset.instruments()]
        self._half_spread = spread_bps / 20_000
        self._scale = 10**asset.price_decimals
        self._exponent = -asset.price_decimals

    def _book(self, level: float) -> tuple[Decimal, Decimal, Decimal]:
        bid_units = math.floor(level * (1 - self._half_spread) * self._scale)
        ask_units = max(math.ceil(level * (1 + self._half_spread) * self._scale), bid_units + 1)
        bid, ask = Decimal(bid_units).scaleb(self._exponent), Decimal(ask_units).scaleb(self._exponent)
        return bid, ask, (bid + ask) / 2

    def quotes(self, ts: datetime, price: float, basis: float, funding_rate: Decimal | None) -> list[Quote]:
        index = Decimal(round(price * self._scale)).scaleb(self._exponent)
        spot = self._book(price)
        perp = self._book(price * (1 + basis))
        return [
            Quote(symbol, *(spot if is_spot else perp), ts, index=index,
                  funding_rate=funding_rate if has_funding else None)
            for symbol, is_spot, has_funding in self._markets
        ]


def replay_feed(
    bars: Sequence[Bar],
    asset: SimAsset = ASSETS["SOL"],
    *,
    tick_secs: int = 10,
    spread_bps: float = 2.0,
    basis_bps: float = 0.0,
    seed: int = 0,
    start: datetime | None = None,
) -> Feed:
    """Replay `bars` as quotes every `tick_secs` simulated seconds along a seeded intra-bar path.

    The bar length is the smallest spacing between bars; a longer gap has no ticks. The perpetuals' basis
    is `perp_close / close - 1` on bars that have a perp close, else `basis_bps`.

    With `start`, the history is moved forward by a whole number of funding intervals (8h) so that it
    covers `start`, and the replay begins at the first tick at or after `start`: the data's 00/08/16 UTC
    funding settlements stay on the 00/08/16 UTC grid, where the engine settles funding.
    """
    if tick_secs <= 0:
        raise ValueError(f"tick_secs must be positive, got {tick_secs}")
    if not bars:
        raise ValueError("no bars to replay")
    spacings = [(b.ts - a.ts).total_seconds() for a, b in pairwise(bars)]
    bar_secs = min((s for s in spacings if s > 0), default=3600.0)
    shift = timedelta(0)
    if start is not None:
        intervals = (start - bars[0].ts).total_seconds() // FUNDING_INTERVAL_SECS
        shift = timedelta(seconds=intervals * FUNDING_INTERVAL_SECS)
    return _replay(bars, _Quoter(asset, spread_bps), int(bar_secs), tick_secs, basis_bps / 10_000,
                   random.Random(seed), shift, start)


def _replay(bars: Sequence[Bar], quoter: _Quoter, bar_secs: int, tick_secs: int, default_basis: float,
            rng: random.Random, shift: timedelta, start: datetime | None) -> Feed:
    ticks = max(1, bar_secs // tick_secs)
    step = timedelta(seconds=bar_secs / ticks)
    funding_rate: Decimal | None = None
    for bar in bars:
        if bar.funding_rate is not None:
            funding_rate = bar.funding_rate
        basis = bar.perp_close / bar.close - 1 if bar.perp_close else default_basis
        bar_start = bar.ts + shift
        for k, price in enumerate(intrabar_path(bar, ticks, rng)):
            ts = bar_start + k * step
            if start is None or ts >= start:
                yield ts, quoter.quotes(ts, price, basis, funding_rate)


def synthetic_feed(
    asset: SimAsset = ASSETS["SOL"],
    *,
    start: datetime,
    price: float = 100.0,
    vol_annual: float = 0.8,
    drift_annual: float = 0.0,
    tick_secs: int = 10,
    spread_bps: float = 2.0,
    basis_bps: float = 2.0,
    funding_rate: Decimal | None = None,
    seed: int = 0,
) -> Feed:
    """An endless geometric Brownian motion from `price` at `start`, a tick every `tick_secs`."""
    if tick_secs <= 0 or price <= 0 or vol_annual < 0:
        raise ValueError("tick_secs and price must be positive, vol_annual non-negative")
    return _gbm(_Quoter(asset, spread_bps), start, price, vol_annual, drift_annual, tick_secs,
                basis_bps / 10_000, funding_rate, random.Random(seed))


def _gbm(quoter: _Quoter, start: datetime, price: float, vol_annual: float, drift_annual: float,
         tick_secs: int, basis: float, funding_rate: Decimal | None, rng: random.Random) -> Feed:
    dt = tick_secs / _SECONDS_PER_YEAR
    log_drift = (drift_annual - vol_annual**2 / 2) * dt
    log_vol = vol_annual * math.sqrt(dt)
    step = timedelta(seconds=tick_secs)
    ts = start
    while True:
        yield ts, quoter.quotes(ts, price, basis, funding_rate)
        price *= math.exp(log_drift + log_vol * rng.gauss(0.0, 1.0))
        ts += step


def rally_feed(
    asset: SimAsset = ASSETS["SOL"],
    *,
    start: datetime,
    price: float = 100.0,
    calm_secs: float = 2 * 3600,
    rally_secs: float = 3600,
    rise: float = 0.10,
    creep_per_hour: float = 0.0015,
    vol_annual: float = 0.05,
    tick_secs: int = 10,
    spread_bps: float = 2.0,
    basis_bps: float = 0.0,
    funding_rate: Decimal | None = None,
    seed: int = 0,
) -> Feed:
    """A rally (`DK_SIM_SCENARIO=rally`): `price` for `calm_secs` (time to open a hedge), a straight climb by
    `rise` over `rally_secs`, then a slow creep upward by `creep_per_hour` of the price an hour, all times
    a small driftless random walk (`vol_annual`). The creep takes a thinly collateralised short leg
    through its last fractions of a per cent before liquidation, where its margin headroom falls from
    comfortable to none, slowly enough to watch. Endless."""
    if tick_secs <= 0 or price <= 0 or vol_annual < 0 or rally_secs <= 0 or calm_secs < 0:
        raise ValueError("tick_secs, price, rally_secs must be positive; calm_secs, vol_annual not negative")
    quoter = _Quoter(asset, spread_bps)
    rng = random.Random(seed)
    log_vol = vol_annual * math.sqrt(tick_secs / _SECONDS_PER_YEAR)
    noise = 1.0
    step = timedelta(seconds=tick_secs)
    ts = start
    elapsed = 0.0
    while True:
        climbed = min(max(elapsed - calm_secs, 0.0) / rally_secs, 1.0)
        creep = max(elapsed - calm_secs - rally_secs, 0.0) / 3600 * creep_per_hour
        level = price * (1 + rise * climbed) * (1 + creep) * noise
        yield ts, quoter.quotes(ts, level, basis_bps / 10_000, funding_rate)
        noise *= math.exp(-log_vol * log_vol / 2 + log_vol * rng.gauss(0.0, 1.0))
        ts += step
        elapsed += tick_secs


# Options quotes (coin-settled, Deribit-style)


@dataclass(frozen=True, slots=True)
class OptionQuote(Quote):
    """An option's quote, priced in its settle coin per coin of underlying (`index` is the underlying's
    USD price it was valued at), with the implied volatility of its mark."""

    mark_iv: float | None = None


def option_quote(instrument: Instrument, ts: datetime, underlying_usd: float, vol: float,
                 spread_fraction: float = 0.02) -> OptionQuote:
    """Black-76 on the underlying (r = 0) at `vol`: the mark is the fair value in coin (USD for an option
    settled in a stablecoin), to 1e-8; bid and ask sit `spread_fraction` of it apart (at least a tick
    each side), rounded outwards to the 0.0001 tick, the bid never below zero."""
    if instrument.strike is None or instrument.expiry is None:
        raise ValueError(f"{instrument.symbol} is not an option")
    years = (instrument.expiry - ts).total_seconds() / _SECONDS_PER_YEAR
    value = black76_price_usd(underlying_usd, float(instrument.strike), years, vol, instrument.is_call)
    if instrument.coin_settled:
        value /= underlying_usd
    mark = Decimal(repr(value)).quantize(Decimal("1E-8"))
    tick = OPTION_PRICE_TICK
    half = max(mark * Decimal(repr(spread_fraction)) / 2, tick)
    bid = max(((mark - half) / tick).to_integral_value(rounding="ROUND_FLOOR") * tick, Decimal(0))
    ask = ((mark + half) / tick).to_integral_value(rounding="ROUND_CEILING") * tick
    index = Decimal(repr(underlying_usd))
    return OptionQuote(instrument.symbol, bid, ask, mark, ts, index=index, mark_iv=vol)


def with_option_quotes(feed: Feed, options: Mapping[str, Instrument], vol: float,
                       spread_fraction: float = 0.02) -> Feed:
    """`feed`, with a quote for each unexpired option after its underlying's quotes at every tick: valued
    by `option_quote` on the underlying's index (its spot price) at the fixed volatility `vol`."""
    by_base: dict[str, list[Instrument]] = {}
    for instrument in options.values():
        by_base.setdefault(instrument.base, []).append(instrument)
    for ts, quotes in feed:
        extra: list[Quote] = []
        for base, listed in by_base.items():
            index = next((q.index for q in quotes if q.symbol.split("/")[0] == base and q.index), None)
            if index is None:
                continue
            level = float(index)
            extra.extend(option_quote(i, ts, level, vol, spread_fraction) for i in listed
                         if i.expiry is not None and i.expiry > ts)
        yield ts, quotes + extra
