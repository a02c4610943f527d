"""`deltakeeper margin`: of a portfolio file, through a Typer app built on the command function and through
the real `python -m deltakeeper`; and of the live account, `python -m deltakeeper margin` configured by DK_
settings against the Bybit emulator (in this process, on loopback), checked against the emulator's own
state."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deltakeeper.cli.margin import margin
from deltakeeper.domain.errors import ConfigError
from tests.e2e.cli_helpers import clean_env, deltakeeper
from tests.integration.frozen_emulator import (
    KEY,
    LINEAR,
    SECRET,
    engine_position,
    frozen_emulator,
    sell,
    short_liquidation_price,
    wallet,
)

D = Decimal

BOOK = {
    "markets": {"BTC/USDT:USDT": {"type": "swap", "base": "BTC", "quote": "USDT", "settle": "USDT",
                                  "linear": True, "contractSize": 1}},
    "positions": [{"symbol": "BTC/USDT:USDT", "contracts": 100, "side": "short", "markPrice": 60_000,
                   "entryPrice": 60_000, "leverage": 5, "marginMode": "isolated", "info": {}}],
    "balances": {"BTC": 100, "USDT": 1_200_000},
    "prices": {"BTC": 60_000},
}


def command_app() -> typer.Typer:
    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)  # a group, so the command is called by name as in `deltakeeper margin`
    app.command("margin")(margin)
    return app


@pytest.fixture
def portfolio_file(tmp_path: Path) -> Path:
    path = tmp_path / "portfolio.json"
    path.write_text(json.dumps(BOOK))
    return path


def check_hedged_book(report: dict[str, Any]) -> None:
    assert report["portfolio_margin"] == {"USDT": {"initial": "60000", "maintenance": "48000"}}
    assert report["standard_margin"] == {"USDT": {"initial": "1200000", "maintenance": "133700"}}
    assert report["capital_freed"] == {"USDT": "1140000"}
    (leg,) = report["positions"]
    assert leg["symbol"] == "BTC/USDT:USDT"
    assert leg["liquidation_move"] == pytest.approx(0.1734, abs=1e-4)
    assert leg["liquidation_price"].startswith("70402.92")


def test_margin_command_prints_the_report_as_json(portfolio_file: Path) -> None:
    args = ["margin", "--portfolio", str(portfolio_file), "--format", "json"]
    result = CliRunner().invoke(command_app(), args)

    assert result.exit_code == 0, result.output
    check_hedged_book(json.loads(result.stdout))


def test_margin_command_prints_tables_by_default(portfolio_file: Path) -> None:
    result = CliRunner().invoke(command_app(), ["margin", "--portfolio", str(portfolio_file)])

    assert result.exit_code == 0, result.output
    assert "margin by settlement currency" in result.stdout
    assert "BTC/USDT:USDT" in result.stdout
    assert "+17.34%" in result.stdout


def test_margin_command_without_a_portfolio_file_refuses_the_simulated_exchange(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DK_EXCHANGE", "sim")

    result = CliRunner().invoke(command_app(), ["margin"])

    assert isinstance(result.exception, ConfigError)
    assert result.exception.variable == "DK_EXCHANGE"
    assert "--portfolio" in str(result.exception)


def test_margin_command_refuses_a_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")

    result = CliRunner().invoke(command_app(), ["margin", "--portfolio", str(bad)])

    assert isinstance(result.exception, ConfigError)
    assert result.exception.variable == "--portfolio"


def test_deltakeeper_margin_runs_as_a_command(portfolio_file: Path, data_dir: Path, tmp_path: Path) -> None:
    env = clean_env(data_dir)

    result = deltakeeper("margin", "--portfolio", str(portfolio_file), "--format", "json", env=env)
    bad_file = tmp_path / "broken.json"
    bad_file.write_text(json.dumps({**BOOK, "timestamp": "soon"}))
    bad = deltakeeper("margin", "--portfolio", str(bad_file), "--format", "json", env=env)

    assert result.returncode == 0, result.stderr
    check_hedged_book(json.loads(result.stdout))
    assert bad.returncode == 2
    assert "timestamp" in bad.stderr and bad.stdout == ""


async def margin_of_the_live_account(env: dict[str, str]) -> tuple[int | None, str, str]:
    """`python -m deltakeeper margin --format json` in a subprocess, awaited so that the emulator serving it
    in this process keeps answering."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deltakeeper", "margin", "--format", "json", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_live_margin_shows_the_exchange_figures_beside_the_estimate(data_dir: Path) -> None:
    async with frozen_emulator() as server:
        sell(server, "linear", "SOLUSDT", "600")
        env = clean_env(data_dir, DK_EXCHANGE="bybit", DK_EXCHANGE_URL=server.url, DK_API_KEY=KEY,
                        DK_API_SECRET=SECRET)
        code, out, err = await margin_of_the_live_account(env)
        held = engine_position(server, LINEAR)
        usdt, sol = wallet(server, "USDT"), wallet(server, "SOL")

    assert code == 0, err
    report = json.loads(out)
    short, mark = D(600), held.mark_price
    # Standard cross margin: the short perp's notional at 10x; MM at the emulator's first risk tier, 0.5%.
    standard = report["standard_margin"]["USDT"]
    assert D(standard["initial"]) == short * mark / 10
    assert D(standard["maintenance"]) == short * mark * D("0.005")
    # Portfolio margin: SOL's grid at the perp's mark holds the 1,000 SOL of spot and the 600 short: the net
    # 400 SOL lose 16% at the worst move; the perpetual's roll shock is 1% of its notional; MM is 80% of IM.
    assert sol == 1000
    pm_initial = (sol - short) * mark * D("0.16") + short * mark * D("0.01")
    pm = report["portfolio_margin"]["USDT"]
    assert abs(D(pm["initial"]) / pm_initial - 1) < D("1e-9")
    assert abs(D(pm["maintenance"]) / (pm_initial * D("0.8")) - 1) < D("1e-9")
    # The leg: the exchange's liquidation price (the emulator's engine's) leads, the estimate beside it.
    (leg,) = report["positions"]
    assert leg["symbol"] == LINEAR and leg["liquidation_source"] == "exchange"
    assert held.liquidation_price is not None
    assert D(leg["liquidation_price"]) == D(leg["exchange"]["liquidation_price"]) == held.liquidation_price
    assert leg["liquidation_move"] == pytest.approx(float(held.liquidation_price / mark - 1), abs=1e-12)
    expected = short_liquidation_price(usdt, short, held.entry_price, D("0.005"))
    assert abs(D(leg["estimate"]["liquidation_price"]) / expected - 1) < D("1e-6")
    assert D(leg["exchange"]["initial_margin"]) == held.initial_margin
    assert D(leg["exchange"]["maintenance_margin"]) == held.maintenance_margin == D(standard["maintenance"])
    assert leg["disagreements"] == []
    # The exchange's risk limits were used: no note falls back on the default table.
    assert not any("default tier table" in note for note in report["notes"])


def test_deltakeeper_margin_says_when_the_exchange_cannot_be_reached(data_dir: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"  # closed again before the command runs
    env = clean_env(data_dir, DK_EXCHANGE="bybit", DK_EXCHANGE_URL=url, DK_API_KEY=KEY, DK_API_SECRET=SECRET)

    result = deltakeeper("margin", "--format", "json", env=env)

    assert result.returncode == 1
    assert f"error: cannot reach bybit at {url}" in result.stderr
    assert result.stdout == ""
