"""The data a backtest replays: each asset's price events, funding rates and exposure, loaded once and
shared by the runs of a sweep."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from heapq import merge
from itertools import groupby, pairwise
from pathlib import Path

from deltakeeper.backtest.data import (
    AssetSeries,
    ExposureSpec,
    PriceEvent,
    load_funding,
    load_inventory,
    load_price_series,
    parse_exposure,
)
from deltakeeper.backtest.files import DataFile
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.exposure_models import InventoryPath


@dataclass(frozen=True, slots=True)
class Dataset:
    """Everything a run replays, loaded once and shared by the runs of a sweep."""

    series: Mapping[str, AssetSeries]
    funding: Mapping[str, tuple[tuple[float, Decimal], ...]]
    exposure: ExposureSpec
    inventory: Mapping[str, InventoryPath]
    spread_bps: float
    warnings: tuple[str, ...] = ()
    """What the data leaves out (`funding_gaps`): on stderr, and in every result."""

    @property
    def assets(self) -> list[str]:
        return list(self.series)

    def steps(self) -> list[tuple[float, list[PriceEvent]]]:
        """Price events of every asset merged in time, grouped by timestamp (assets in name order)."""
        streams = [self.series[a].events for a in sorted(self.series)]
        merged = merge(*streams, key=lambda e: e.t_secs)
        return [(t, list(group)) for t, group in groupby(merged, key=lambda e: e.t_secs)]

    @property
    def price_events(self) -> int:
        return sum(len(s.events) for s in self.series.values())


def _file(spec: str | Path | DataFile) -> DataFile:
    return spec if isinstance(spec, DataFile) else DataFile(Path(spec))


def load_dataset(
    prices: Mapping[str, str | Path | DataFile],
    funding: Mapping[str, str | Path | DataFile] | None = None,
    exposure: str | ExposureSpec = "static",
    spread_bps: float = 1.0,
) -> Dataset:
    if not prices:
        raise ConfigError("--prices", "at least one price file")
    series = {a.upper(): load_price_series(a.upper(), _file(p), spread_bps) for a, p in prices.items()}
    rates: dict[str, tuple[tuple[float, Decimal], ...]] = {}
    warnings: list[str] = []
    for asset, given in (funding or {}).items():
        if asset.upper() not in series:
            raise ConfigError("--funding", "an asset that has --prices", asset)
        file = _file(given)
        rates[asset.upper()] = load_funding(file)
        warnings.extend(funding_gaps(asset.upper(), series[asset.upper()], rates[asset.upper()], file.path))
    spec = parse_exposure(exposure) if isinstance(exposure, str) else exposure
    inventory: dict[str, InventoryPath] = {}
    if spec.kind == "inventory":
        assert spec.path is not None
        inventory = load_inventory(spec.path)
        unknown = sorted(set(inventory) - set(series))
        if unknown:
            raise ConfigError("--exposure", "inventory assets that have --prices", ", ".join(unknown))
    return Dataset(series, rates, spec, inventory, spread_bps, tuple(warnings))


def funding_gaps(
    asset: str, series: AssetSeries, rates: Sequence[tuple[float, Decimal]], path: Path
) -> list[str]:
    """Spans of the price window with no funding rate: before the first rate, after the last one's interval,
    and between two rates more than two intervals apart. The interval is the commonest spacing of the
    rates (8 hours for most venues)."""
    start, end = series.events[0].t_secs, series.events[-1].t_secs
    times = [t for t, _ in rates]
    spacings = sorted(b - a for a, b in pairwise(times) if b > a)
    interval = spacings[len(spacings) // 2] if spacings else 8 * 3600.0
    gaps: list[tuple[float, float]] = []
    inside = [t for t in times if start <= t <= end]
    if not inside:
        gaps.append((start, end))
    else:
        if inside[0] - start > interval:
            gaps.append((start, inside[0]))
        gaps.extend((a, b) for a, b in pairwise(inside) if b - a > 2 * interval)
        if end - inside[-1] > interval:
            gaps.append((inside[-1], end))

    def utc(t: float) -> str:
        return f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M}"

    return [f"{asset}: no funding rate from {utc(a)} to {utc(b)} UTC in {path.name} (funding is not counted "
            f"there)" for a, b in gaps]
