"""A hedge chosen by carry in the backtest (`DK_ASSETS__SOL__HEDGE=carry`): the replay drives the live
decision cycle, whose choice (`app.hedge_choice`) takes the perpetual or the nearest quarterly whenever the
asset holds no hedge, from the perpetual's funding rate (the data's, last settled) and the quarterly's
price (the simulator's 8 % a year contango over the bundled SOL history's closes)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from importlib import resources
from pathlib import Path

import pytest

from deltakeeper.backtest import BacktestSettings, load_dataset
from deltakeeper.backtest.hedges import FundingPer8h
from deltakeeper.backtest.replay import ACCOUNT, Replay
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.policy import RebalanceTo
from deltakeeper.sim.feeds import BUNDLED_EXCERPT

START = datetime(2026, 1, 5, tzinfo=UTC)
PERP, MAR = "SOL/USDT:USDT", "SOL/USDT:USDT-260327"
HELD_SOL = D(1000)
PAYS_SHORTS = D("0.0005")
"""Funding per 8 hours that a short perpetual receives: 55 % a year, far above the quarterly's carry."""
CHARGES_SHORTS = D("-0.0002")
"""A short perpetual pays it: the quarterly's contango (8 % a year, about 0.00007 per 8 hours) wins."""


def day(n: float) -> datetime:
    return START + timedelta(days=n)


def funding_file(path: Path, rate_from: list[tuple[float, D]]) -> Path:
    """Rates every 8 hours from a day before the prices: `rate_from` lists (day, rate from that day on)."""
    rows = ["timestamp,rate"]
    t = day(-1)
    while t <= day(61):
        rate = [r for d, r in rate_from if day(d) <= t][-1]
        rows.append(f"{t.isoformat()},{rate}")
        t += timedelta(hours=8)
    path.write_text("\n".join(rows) + "\n")
    return path


def inventory_file(path: Path, held_from: list[tuple[float, D]]) -> Path:
    rows = ["timestamp,asset,quantity"] + [f"{day(d).isoformat()},SOL,{q}" for d, q in held_from]
    path.write_text("\n".join(rows) + "\n")
    return path


def carry(tmp_path: Path, rates: list[tuple[float, D]], held: list[tuple[float, D]]) -> Replay:
    with resources.as_file(resources.files("deltakeeper.sim") / "data" / BUNDLED_EXCERPT) as bundled:
        data = load_dataset({"SOL": bundled}, {"SOL": funding_file(tmp_path / "funding.csv", rates)},
                            f"inventory={inventory_file(tmp_path / 'held.csv', held)}", 1.0)
    cfg = replace(BacktestSettings(), hedges={"SOL": "carry"}, rebalance_to=RebalanceTo.TARGET)
    return Replay(data, "band", cfg)


def opened(replay: Replay) -> list[tuple[str, datetime]]:
    """Each order that opened a hedge from flat: its market and time."""
    held: dict[str, D] = {}
    out = []
    for fill in replay.fills:
        if not any(held.values()):
            out.append((fill.symbol, fill.ts))
        held[fill.symbol] = held.get(fill.symbol, D(0)) + fill.amount_contracts * fill.side.sign
    return sorted(set(out), key=lambda row: row[1])


def test_the_hedge_follows_the_funding_each_time_it_is_opened(tmp_path: Path) -> None:
    # Funding charges a short perpetual, then pays it, then charges it again; the holdings go flat in
    # between, so the hedge is closed and opened afresh by carry each time.
    replay = carry(tmp_path, [(-1, CHARGES_SHORTS), (20, PAYS_SHORTS), (40, CHARGES_SHORTS)],
                   [(0, HELD_SOL), (15, D(0)), (25, HELD_SOL), (35, D(0)), (45, HELD_SOL)])
    result = replay.run()
    sol = result["assets"]["SOL"]

    assert [symbol for symbol, _ in opened(replay)] == [MAR, PERP, MAR]
    assert [ts.date() for _, ts in opened(replay)] == [day(0).date(), day(25).date(), day(45).date()]
    assert sol["hedge"] == "carry" and result["settings"]["DK_ASSETS__SOL__HEDGE"] == "carry"
    assert sol["orders_by_market"] == {MAR: 3, PERP: 2}  # each opened, and the first two closed
    assert [(p.symbol, p.contracts) for p in replay.engine.positions(ACCOUNT)] == [(MAR, -HELD_SOL)]
    assert sol["funding_usd"] > 0  # received on the perpetual only, while funding paid shorts
    assert sol["decisions"]["inside_band"] > 0 and "denied" not in sol["decisions"]


def test_a_quarterly_held_throughout_pays_no_funding(tmp_path: Path) -> None:
    replay = carry(tmp_path, [(-1, CHARGES_SHORTS)], [(0, HELD_SOL)])
    sol = replay.run()["assets"]["SOL"]

    assert sol["orders_by_market"] == {MAR: 1}
    assert sol["funding_usd"] == 0
    assert sol["initial_hedge"]["trades"] == 1 and sol["trades"] == 0  # the opening hedge, on the quarterly


def test_carry_without_funding_rates_is_refused(tmp_path: Path) -> None:
    with resources.as_file(resources.files("deltakeeper.sim") / "data" / BUNDLED_EXCERPT) as bundled:
        data = load_dataset({"SOL": bundled}, None, "static:100000", 1.0)
    with pytest.raises(ConfigError, match="--funding"):
        Replay(data, "band", replace(BacktestSettings(), hedges={"SOL": "carry"}))


def test_each_funding_rate_is_scaled_to_8_hours_by_its_own_interval() -> None:
    hour = 3600.0
    # 8-hourly funding, then 4-hourly from 16h on: a 4h rate is half its 8h equivalent
    rates = ((0.0, D("0.0001")), (8 * hour, D("0.0002")), (16 * hour, D("0.0003")),
             (20 * hour, D("0.0001")), (24 * hour, D("0.00015")))
    funding = FundingPer8h(rates)
    assert funding.at(-1) is None
    assert funding.at(0) == D("0.0001")  # the first: by its gap to the next, 8 hours
    assert funding.at(12 * hour) == D("0.0002")
    assert funding.at(16 * hour) == D("0.0003")  # 8 hours after the previous: not rescaled by the switch
    assert funding.at(21 * hour) == D("0.0002")
    assert funding.at(30 * hour) == D("0.0003")
