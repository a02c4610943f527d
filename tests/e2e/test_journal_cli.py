"""The journal views' filters and paging, and `journal pnl`, on a journal produced by a simulated run: the
bot runs in a subprocess (`python -m deltakeeper run --for 8s`), the journal commands through their Typer
app. `pnl`'s totals are checked against totals computed here from the raw fills, payments and decisions."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deltakeeper.cli.journal import JOURNAL_COLUMNS, journal_app
from deltakeeper.domain.pnl import PNL_COLUMNS, SUMMED_COLUMNS
from tests.e2e.cli_helpers import clean_env, deltakeeper_on_terminal

D = Decimal
HEDGE = "SOL/USDT:USDT"
Invoke = Callable[..., str]


@pytest.fixture(scope="session")
def journal_dir(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """A data folder whose journal holds 16 simulated hours of hedging SOL (7200x for 8 s): enough for
    buys and sells, and at least one 8-hourly funding payment. Made once per test session: pytest-xdist's
    workers share it through their common temporary folder, the first to come making it under a lock."""
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the session's folder, above each worker's own
    folder = shared / "journal_cli"
    folder.mkdir(exist_ok=True)
    with (folder / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "made").exists():
            run_bot(folder / "data")
            (folder / "made").touch()
    return folder / "data"


def run_bot(data_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DK_")}
    env.update(DK_DATA_DIR=str(data_dir), DK_SIM_SPEED="7200", DK_HTTP_PORT="0",
               DK_ASSETS__SOL__BAND_COIN="5",  # a band narrow enough to trade both ways every hour or so
               DK_POLICY="band", DK_REBALANCE_TO="target")
    result = subprocess.run([sys.executable, "-m", "deltakeeper", "run", "--for", "8s"], env=env,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture
def invoke(journal_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Invoke]:
    """`invoke("fills", "--format", "json")`: stdout of `deltakeeper journal ...` on the run's journal."""
    for name in [name for name in os.environ if name.startswith("DK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("DK_DATA_DIR", str(journal_dir))
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(journal_app, list(args))
        assert result.exit_code == 0, (result.output, result.exception)
        return result.stdout

    yield run


def rows(invoke: Invoke, view: str, *args: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(invoke(view, "--format", "json", *args))
    return out


def ts(row: dict[str, Any], column: str = "ts") -> datetime:
    return datetime.fromisoformat(row[column].replace("Z", "+00:00"))


def test_pnl_totals_match_totals_computed_from_the_raw_fills_payments_and_decisions(invoke: Invoke) -> None:
    fills = rows(invoke, "fills")
    funding = rows(invoke, "funding")
    decisions = rows(invoke, "decisions")
    orders = {o["client_order_id"]: o for o in rows(invoke, "orders")}
    assert {f["side"] for f in fills} == {"buy", "sell"} and funding

    # Independently: linear USDT-margined fills of contract size 1, fees and funding in USDT.
    assert {(f["symbol"], f["fee_currency"]) for f in fills} == {(HEDGE, "USDT")}
    assert {p["currency"] for p in funding} == {"USDT"}
    position, cash, fees, slippage = D(0), D(0), D(0), D(0)
    for f in fills:
        amount, price, sign = D(f["amount_contracts"]), D(f["price"]), 1 if f["side"] == "buy" else -1
        assert D(f["notional_usd"]) == amount * price
        position += sign * amount
        cash -= sign * amount * price
        fees += D(f["fee"])
        slippage += sign * amount * (price - D(orders[f["client_order_id"]]["reference_price"]))
    funding_net = sum((D(p["amount"]) for p in funding), D(0))
    # the mark: the latest price the journal knows, a decision's or a fill's (a fill wins a tie)
    prices = [(ts(d), 0, D(d["price_usd"])) for d in decisions if d["asset"] == "SOL"]
    prices += [(ts(f), 1, D(f["price"])) for f in fills]
    mark = max(prices)[2]
    hedge = cash + position * mark

    report = rows(invoke, "pnl")
    assert [list(r) for r in report] == [PNL_COLUMNS] * 2
    sol, total = report
    assert (sol["period"], sol["asset"], total["period"], total["asset"]) == ("all", "SOL", "all", "TOTAL")
    assert D(total["fees_usd"]) == fees
    assert D(total["funding_received_usd"]) - D(total["funding_paid_usd"]) == funding_net
    assert D(total["funding_received_usd"]) == sum((D(p["amount"]) for p in funding if D(p["amount"]) > 0),
                                                   D(0))
    assert D(total["hedge_pnl_usd"]) == hedge
    assert D(total["slippage_usd"]) == slippage
    assert D(total["total_usd"]) == hedge - fees + funding_net
    assert D(total["hedging_cost_usd"]) == fees - funding_net + slippage
    assert D(total["traded_usd"]) == sum((D(f["notional_usd"]) for f in fills), D(0))
    assert total["fills"] == len(fills) and total["unpriced_rows"] == 0
    assert D(sol["position_coin"]) == position and D(sol["mark_price_usd"]) == mark
    # The exposure being hedged: each decision's delta less the hedge of the fills before it, held until
    # the next decision (the prices between cancel out), the last one until the mark.
    sol_decisions = sorted((d for d in decisions if d["asset"] == "SOL"), key=ts)
    holdings = [D(d["delta_coin"]) - sum((D(f["amount_contracts"]) * (1 if f["side"] == "buy" else -1)
                                          for f in fills if ts(f) < ts(d)), D(0)) for d in sol_decisions]
    path = [D(d["price_usd"]) for d in sol_decisions] + [mark]
    steps = zip(holdings, pairwise(path), strict=True)
    exposure = sum((held * (end - start) for held, (start, end) in steps), D(0))
    assert holdings[0] == D(sol_decisions[0]["delta_coin"]) and holdings[0] > 0  # the simulator's holding
    assert D(sol["exposure_coin"]) == holdings[-1] and D(total["exposure_pnl_usd"]) == exposure
    assert D(total["net_pnl_usd"]) == exposure + D(total["total_usd"])
    for row in report:  # the parts add up
        assert D(row["realised_pnl_usd"]) + D(row["marked_pnl_usd"]) == D(row["hedge_pnl_usd"])
        assert D(row["market_pnl_usd"]) - D(row["hedging_cost_usd"]) == D(row["total_usd"])

    by_day = rows(invoke, "pnl", "--by", "day")
    assert by_day[-1]["asset"] == "TOTAL"
    for column in SUMMED_COLUMNS:
        assert sum(D(str(r[column])) for r in by_day[:-1]) == D(str(total[column])), column

    assert rows(invoke, "pnl", "--asset", "sol") == report
    assert [r["asset"] for r in rows(invoke, "pnl", "--asset", "BTC")] == ["TOTAL"]

    # A window: fees and funding are those within it, the hedge PnL what happened within it.
    middle = sorted(fills, key=ts)[len(fills) // 2]
    since = middle["ts"]
    windowed = rows(invoke, "pnl", "--since", since)[-1]
    assert D(windowed["fees_usd"]) == sum((D(f["fee"]) for f in fills if ts(f) >= ts(middle)), D(0))
    assert windowed["fills"] == len([f for f in fills if ts(f) >= ts(middle)])
    earlier = rows(invoke, "pnl", "--until", since)[-1]
    for column in ("fees_usd", "funding_paid_usd", "funding_received_usd", "slippage_usd", "hedge_pnl_usd",
                   "total_usd", "exposure_pnl_usd", "net_pnl_usd"):
        assert D(earlier[column]) + D(windowed[column]) == D(total[column]), column

    table = invoke("pnl")
    assert "PnL in USD by asset" in table and "TOTAL" in table and "exposure pnl" in table


def test_views_filter_by_asset_instrument_side_and_time(invoke: Invoke) -> None:
    fills = rows(invoke, "fills")
    assert rows(invoke, "fills", "--asset", "SOL") == fills
    assert rows(invoke, "fills", "--symbol", HEDGE) == fills
    assert rows(invoke, "fills", "--asset", "BTC") == []
    assert rows(invoke, "fills", "--symbol", "SOL/USD:SOL") == []

    buys = rows(invoke, "fills", "--side", "buy")
    assert buys and buys == [f for f in fills if f["side"] == "buy"]
    sells = rows(invoke, "fills", "--side", "sell", "--asset", "SOL", "--symbol", HEDGE)
    assert sells and sells == [f for f in fills if f["side"] == "sell"]

    orders = rows(invoke, "orders")
    bought = rows(invoke, "orders", "--side", "buy", "--asset", "SOL")
    assert bought and bought == [o for o in orders if o["side"] == "buy"]
    decisions = rows(invoke, "decisions")
    hedging = rows(invoke, "decisions", "--symbol", HEDGE, "--side", "sell")
    assert hedging and hedging == [d for d in decisions if d["symbol"] == HEDGE and d["side"] == "sell"]
    assert rows(invoke, "funding", "--asset", "SOL") == rows(invoke, "funding")

    ordered = sorted(fills, key=ts)
    since, until = ordered[2]["ts"], ordered[-2]["ts"]
    window = rows(invoke, "fills", "--since", since, "--until", until)
    assert window == [f for f in fills if ts(ordered[2]) <= ts(f) < ts(ordered[-2])]
    assert window and len(window) < len(fills)


def test_csv_and_json_list_every_matching_row_with_the_documented_columns(invoke: Invoke) -> None:
    for view, columns in JOURNAL_COLUMNS.items():
        everything = rows(invoke, view, "--limit", "2")
        assert everything and all(list(row) == columns for row in everything)
        table = list(csv.reader(io.StringIO(invoke(view, "--format", "csv", "--limit", "2", "--page", "3"))))
        assert table[0] == columns
        assert len(table) == len(everything) + 1
        key = columns.index("ts" if "ts" in columns else "created_ts")
        assert [line[key] for line in table[1:]] == [row[columns[key]] for row in everything]

    pnl = list(csv.reader(io.StringIO(invoke("pnl", "--format", "csv"))))
    assert pnl[0] == PNL_COLUMNS and [line[1] for line in pnl[1:]] == ["SOL", "TOTAL"]


def test_table_output_is_paged(invoke: Invoke) -> None:
    fills = rows(invoke, "fills")
    assert len(fills) > 7

    def shown(text: str) -> int:
        return text.count(HEDGE)  # the symbol fits its column: once per row

    first = invoke("fills", "--limit", "3")
    assert "fills: rows 1-3, page 1 (more: --page 2)" in first and shown(first) == 3
    second = invoke("fills", "--limit", "3", "--page", "2")
    assert "fills: rows 4-6, page 2 (more: --page 3)" in second and shown(second) == 3
    assert all(f["client_order_id"] in second for f in fills[3:6])

    last_page = (len(fills) + 2) // 3
    last = invoke("fills", "--limit", "3", "--page", str(last_page))
    on_last = len(fills) - 3 * (last_page - 1)
    assert f"rows {3 * (last_page - 1) + 1}-{len(fills)}, page {last_page} (last page)" in last
    assert shown(last) == on_last
    assert "fills: no rows on page" in invoke("fills", "--limit", "3", "--page", str(last_page + 1))

    everything = invoke("fills", "--limit", "0")
    assert f"fills ({len(fills)})" in everything and shown(everything) == len(fills)
    default = invoke("fills")
    assert shown(default) == min(len(fills), 50)


def test_tables_fit_an_80_column_terminal_and_keep_the_key_values(invoke: Invoke, journal_dir: Path) -> None:
    env = clean_env(journal_dir)
    fill, decision = rows(invoke, "fills")[0], rows(invoke, "decisions")[0]
    expected = {
        ("journal", "fills"): [fill["symbol"], fill["side"], fill["amount_contracts"], fill["price"],
                               ts(fill).strftime("%Y-%m-%d %H:%M:%S"), "not shown at 80 columns:"],
        ("journal", "decisions"): [decision["asset"], decision["reason"], decision["delta_coin"],
                                   decision["band_coin"], ts(decision).strftime("%Y-%m-%d %H:%M:%S")],
        ("journal", "pnl"): ["TOTAL", "exposure", "hedge", "fees", "net"],
        ("status",): ["SOL", "delta", "band"],
    }
    with ThreadPoolExecutor(len(expected)) as pool:
        outputs = pool.map(lambda command: deltakeeper_on_terminal(*command, env=env, columns=80), expected)
    for (command, values), (code, text) in zip(expected.items(), outputs, strict=True):
        assert code == 0, text
        lines = text.splitlines()
        assert max(map(len, lines)) <= 80, "\n".join(line for line in lines if len(line) > 80)
        missing = [value for value in values if value not in text]
        assert not missing, (command, missing, text)
