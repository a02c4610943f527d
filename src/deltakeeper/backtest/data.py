"""Reading a backtest's inputs: price bars into price events, funding rates, inventory paths, and the
`--prices` / `--funding` / `--exposure` specifications. Bad input raises ConfigError naming the flag."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from pathlib import Path

from deltakeeper.backtest.files import (
    TIME_COLUMNS,
    DataFile,
    FileKind,
    parse_data_file,
    read_values,
    table_rows,
)
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.exposure_models import InventoryPath
from deltakeeper.domain.instruments import Instrument, Kind, is_stable
from deltakeeper.domain.orders import Quote
from deltakeeper.sim.feeds import parse_timestamp
from deltakeeper.sim.markets import (
    ASSETS,
    MIN_NOTIONAL_USD,
    OPTION_FEE_RATE,
    OPTION_LOT_STEP,
    PERP_MAKER_FEE_RATE,
    PERP_TAKER_FEE_RATE,
    option_symbol,
)

QUOTE_SUFFIXES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "PERP", "USD")
DEFAULT_POOL_USD = Decimal(1_000_000)
DEFAULT_STRIKE_PCT = Decimal(110)
DEFAULT_EXPIRY_DAYS = Decimal(30)
_LEADING_LETTERS = re.compile(r"^[A-Za-z]+")
_ASSET = re.compile(r"^[A-Za-z0-9]+$")

_SIGNIFICANT_PRICE_DIGITS = 6
_BPS = Decimal(10_000)


@dataclass(frozen=True, slots=True)
class PriceEvent:
    """One bar's close, as the hedge's quote: stamped at the bar's close time (its open + the bar length)."""

    ts: datetime
    t_secs: float
    asset: str
    quote: Quote
    price: float
    """The quote's mid, as a float, for statistics and exposure models."""
    spread_bps: Decimal
    """The quote's bid-ask spread in bps of the mid."""


@dataclass(frozen=True, slots=True)
class AssetSeries:
    asset: str
    bar_secs: float
    events: tuple[PriceEvent, ...]


# -- naming ------------------------------------------------------------------------------------------


def asset_from_filename(path: str | Path) -> str | None:
    """The file name's leading letters without a quote suffix: `BTCUSDT_5m.csv` -> BTC; None if none."""
    match = _LEADING_LETTERS.match(Path(path).name)
    if not match:
        return None
    letters = match.group(0).upper()
    for suffix in QUOTE_SUFFIXES:
        if letters.endswith(suffix) and len(letters) > len(suffix):
            letters = letters[: -len(suffix)]
            break
    return None if is_stable(letters) else letters


def parse_file_specs(specs: Sequence[str], flag: str) -> dict[str, DataFile]:
    """`ASSET=FILE[:OPTIONS]` or `FILE[:OPTIONS]` (the asset from the file name), each asset once, each file
    readable (`files.parse_data_file` reads the options)."""
    kind: FileKind = "funding" if flag == "--funding" else "prices"
    files: dict[str, DataFile] = {}
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and _ASSET.match(name):
            asset, file = name.upper(), parse_data_file(rest, flag, kind)
        else:
            file = parse_data_file(spec, flag, kind)
            found = asset_from_filename(file.path)
            if found is None:
                raise ConfigError(flag, "ASSET=FILE, or a file named after its asset such as BTCUSDT_5m.csv",
                                  spec)
            asset = found
        if is_stable(asset):
            raise ConfigError(flag, "an asset that is not a stablecoin", asset)
        if asset in files:
            raise ConfigError(flag, "one file per asset", asset)
        if not file.path.is_file():
            raise ConfigError(flag, "a readable file", str(file.path))
        files[asset] = file
    return files


@dataclass(frozen=True, slots=True)
class ExposureSpec:
    kind: str
    """`static`, `lp`, `inventory` or `calls`."""
    value_usd: Decimal = DEFAULT_POOL_USD
    """Starting value per asset: of the pool (`lp`), of the holdings (`static`, unless DK_EXTERNAL_ names
    them in coins)."""
    path: Path | None = None
    calls: Decimal = Decimal(0)
    """`calls`: signed contracts (one coin each, + long) of a coin-settled call on each asset."""
    strike_pct: Decimal = DEFAULT_STRIKE_PCT
    """`calls`: the strike, percent of the asset's first price."""
    expiry_days: Decimal = DEFAULT_EXPIRY_DAYS
    """`calls`: days from the asset's first price event to expiry."""

    def __str__(self) -> str:
        if self.kind == "inventory":
            return f"inventory={self.path}"
        if self.kind == "calls":
            return f"calls:{self.calls:f}:{self.strike_pct:f}:{self.expiry_days:f}"
        return f"{self.kind}:{self.value_usd}"


def _parse_calls(spec: str, fields: list[str]) -> ExposureSpec:
    """`calls:N[:STRIKE_PCT[:DAYS]]`: N contracts non-zero, the strike percent and the days positive."""
    expected = "calls:N[:STRIKE_PCT[:DAYS]] with N non-zero contracts, STRIKE_PCT and DAYS positive"
    if not 1 <= len(fields) <= 3:
        raise ConfigError("--exposure", expected, spec)
    try:
        numbers = [Decimal(f.strip().replace("_", "")) for f in fields]
    except InvalidOperation:
        raise ConfigError("--exposure", expected, spec) from None
    contracts, *rest = numbers
    if not all(n.is_finite() for n in numbers) or contracts == 0 or any(n <= 0 for n in rest):
        raise ConfigError("--exposure", expected, spec)
    strike_pct = rest[0] if rest else DEFAULT_STRIKE_PCT
    days = rest[1] if len(rest) > 1 else DEFAULT_EXPIRY_DAYS
    return ExposureSpec("calls", calls=contracts, strike_pct=strike_pct, expiry_days=days)


def parse_exposure(spec: str) -> ExposureSpec:
    """`static[:USD]`, `lp[:USD]` (1,000,000 USD per asset by default), `inventory=FILE` or
    `calls:N[:STRIKE_PCT[:DAYS]]` (N coin-settled calls per asset, strike 110 % of the first price and 30
    days to expiry by default)."""
    text = spec.strip()
    expected = "static[:USD], lp[:USD], inventory=FILE or calls:N[:STRIKE_PCT[:DAYS]]"
    if text.lower().startswith("inventory="):
        path = Path(text.split("=", 1)[1])
        if not path.is_file():
            raise ConfigError("--exposure", "inventory=FILE with a readable CSV of timestamp,asset,quantity",
                              spec)
        return ExposureSpec("inventory", path=path)
    kind, sep, amount = text.partition(":")
    kind = kind.lower()
    if kind == "calls" and sep:
        return _parse_calls(spec, amount.split(":"))
    if kind not in ("static", "lp"):
        raise ConfigError("--exposure", expected, spec)
    if not sep:
        return ExposureSpec(kind)
    try:
        value = Decimal(amount.replace("_", "").replace(",", ""))
    except InvalidOperation:
        raise ConfigError("--exposure", f"{kind}:USD with a positive number of USD", spec) from None
    if not value.is_finite() or value <= 0:
        raise ConfigError("--exposure", f"{kind}:USD with a positive number of USD", spec)
    return ExposureSpec(kind, value_usd=value)


# -- instruments and quotes -------------------------------------------------------------------------


def linear_perp(asset: str) -> Instrument:
    """`{ASSET}/USDT:USDT`: the simulator's market where it lists the asset, else one made on the fly with
    contract size 1, lot step 0.001 and Bybit's fees. Funding is settled by the backtest from the data's
    timestamps, not by the engine's 8h grid, so the instrument has no funding interval."""
    sim = ASSETS.get(asset)
    if sim is not None:
        instrument = next(i for i in sim.instruments() if i.symbol == sim.linear_symbol)
    else:
        step = Decimal("0.001")
        instrument = Instrument(
            symbol=f"{asset}/USDT:USDT", kind=Kind.PERPETUAL, base=asset, quote="USDT", settle="USDT",
            contract_size=Decimal(1), lot_step_contracts=step, min_contracts=step,
            min_notional_usd=MIN_NOTIONAL_USD, taker_fee_rate=PERP_TAKER_FEE_RATE,
            maker_fee_rate=PERP_MAKER_FEE_RATE,
        )
    return replace(instrument, funding_interval_secs=None)


def coin_settled_call(asset: str, strike_usd: Decimal, expiry: datetime) -> Instrument:
    """A Deribit-style call on `asset`: settled in the asset, one coin a contract, the simulator's sizes."""
    return Instrument(
        symbol=option_symbol(asset, expiry, strike_usd, True), kind=Kind.OPTION, base=asset, quote="USD",
        settle=asset, lot_step_contracts=OPTION_LOT_STEP, min_contracts=OPTION_LOT_STEP,
        taker_fee_rate=OPTION_FEE_RATE, maker_fee_rate=OPTION_FEE_RATE, expiry=expiry, strike=strike_usd,
        option_type="call",
    )


def price_decimals(asset: str, first_price: float) -> int:
    """The simulator's price precision where it lists the asset, else six significant digits."""
    sim = ASSETS.get(asset)
    if sim is not None:
        return sim.price_decimals
    return max(0, _SIGNIFICANT_PRICE_DIGITS - 1 - math.floor(math.log10(first_price)))


class Quoter:
    """A bar close to a quote `spread_bps` wide, bid and ask rounded outwards to the price tick."""

    def __init__(self, symbol: str, decimals: int, spread_bps: float) -> None:
        self.symbol = symbol
        self._half = spread_bps / 20_000
        self._scale = 10**decimals
        self._exponent = -decimals

    def quote(self, ts: datetime, close: float) -> Quote:
        bid_units = math.floor(close * (1 - self._half) * self._scale)
        ask_units = max(math.ceil(close * (1 + self._half) * self._scale), bid_units + 1)
        bid = Decimal(bid_units).scaleb(self._exponent)
        ask = Decimal(ask_units).scaleb(self._exponent)
        return Quote(self.symbol, bid, ask, (bid + ask) / 2, ts)


def bar_secs_of(times: Sequence[datetime]) -> float:
    """The bar length: the smallest spacing between bars (an hour for a single bar)."""
    return min(((b - a).total_seconds() for a, b in pairwise(times) if b > a), default=3600.0)


def price_events(asset: str, closes: Sequence[tuple[datetime, float]], spread_bps: float) -> AssetSeries:
    """One price event per bar (open time, close), at the bar's close time."""
    if not closes:
        raise ValueError(f"no bars for {asset}")
    closes = sorted(closes, key=lambda bar: bar[0])
    bar_secs = bar_secs_of([ts for ts, _ in closes])
    length = timedelta(seconds=bar_secs)
    quoter = Quoter(linear_perp(asset).symbol, price_decimals(asset, closes[0][1]), spread_bps)
    events = []
    last_ts: datetime | None = None
    for opened, close in closes:
        if close <= 0 or not math.isfinite(close):
            raise ValueError(f"{asset} bar at {opened.isoformat()} has close {close}")
        ts = opened + length
        if ts == last_ts:
            continue  # a duplicated bar: keep the first
        last_ts = ts
        quote = quoter.quote(ts, close)
        quoted_bps = (quote.ask - quote.bid) / quote.mark * _BPS
        events.append(PriceEvent(ts, ts.timestamp(), asset, quote, float(quote.mark), quoted_bps))
    return AssetSeries(asset, bar_secs, tuple(events))


def load_price_series(
    asset: str, file: DataFile | Path, spread_bps: float, flag: str = "--prices"
) -> AssetSeries:
    """The bars' closes as price events (the columns and rows as `file` says, `files` module)."""
    file = file if isinstance(file, DataFile) else DataFile(Path(file))
    closes = []
    for ts, value in read_values(file, flag, "prices"):
        try:
            closes.append((ts, float(str(value))))
        except ValueError:
            raise ConfigError(flag, "numeric closing prices", f"{file.path}: {value!r}") from None
    if not closes:
        raise ConfigError(flag, "a file with price rows", str(file.path))
    try:
        return price_events(asset, closes, spread_bps)
    except ValueError as exc:
        raise ConfigError(flag, "positive closing prices", f"{file.path}: {exc}") from None


# -- tables of rows ----------------------------------------------------------------------------------


def _column(rows: Sequence[Mapping[str, object]], names: Sequence[str], flag: str, path: Path) -> str:
    columns = rows[0].keys() if rows else ()
    for name in names:
        if name in columns:
            return name
    raise ConfigError(flag, f"a column named one of {', '.join(names)}", f"{path}: {', '.join(columns)}")


def _epoch_secs(value: object, flag: str, path: Path) -> float:
    try:
        return float(math.floor(parse_timestamp(value).timestamp()))  # floor away millisecond jitter
    except (ValueError, TypeError, OverflowError):
        raise ConfigError(flag, "timestamps in epoch ms or ISO-8601", f"{path}: {value!r}") from None


def _decimal(value: object, flag: str, path: Path, what: str) -> Decimal:
    try:
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(str(value).strip())
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        raise ConfigError(flag, what, f"{path}: {value!r}")
    return number


def load_funding(file: DataFile | Path, flag: str = "--funding") -> tuple[tuple[float, Decimal], ...]:
    """(epoch seconds, rate per funding interval), sorted; times floored to the second. Rows without a
    rate are skipped. A positive rate means longs pay shorts."""
    file = file if isinstance(file, DataFile) else DataFile(Path(file))
    out: dict[float, Decimal] = {}
    for ts, rate in read_values(file, flag, "funding"):
        out[float(math.floor(ts.timestamp()))] = _decimal(rate, flag, file.path, "numeric funding rates")
    if not out:
        raise ConfigError(flag, "a file with funding rows", str(file.path))
    return tuple(sorted(out.items()))


def load_inventory(path: Path, flag: str = "--exposure") -> dict[str, InventoryPath]:
    """A recorded inventory: rows of `timestamp, asset, quantity`, the asset's holding (coins) from that
    time on. Per asset; before an asset's first row it holds nothing."""
    rows = table_rows(path, flag)
    if not rows:
        raise ConfigError(flag, "an inventory file with rows of timestamp,asset,quantity", str(path))
    time_col = _column(rows, TIME_COLUMNS, flag, path)
    asset_col = _column(rows, ("asset",), flag, path)
    qty_col = _column(rows, ("quantity", "qty", "holding"), flag, path)
    points: dict[str, list[tuple[float, Decimal]]] = {}
    for row in rows:
        asset = str(row[asset_col]).strip().upper()
        quantity = _decimal(row[qty_col], flag, path, "numeric quantities")
        points.setdefault(asset, []).append((_epoch_secs(row[time_col], flag, path), quantity))
    return {asset: InventoryPath.from_points(p) for asset, p in points.items()}
