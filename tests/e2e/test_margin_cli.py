"""`deltakeeper margin --portfolio FILE`: through a Typer app built on the command function, and through the
real `python -m deltakeeper` once cli.py registers the command (`app.command("margin")(margin)`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from deltakeeper.domain.errors import ConfigError
from deltakeeper.margin_report import margin
from tests.e2e.cli_helpers import clean_env, deltakeeper

CLI_SOURCE = Path(__file__).resolve().parents[2] / "src" / "deltakeeper" / "cli.py"
REGISTERED = "margin_report" in CLI_SOURCE.read_text()

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


def test_margin_command_without_a_portfolio_file_says_the_live_view_needs_the_bot() -> None:
    result = CliRunner().invoke(command_app(), ["margin"])

    assert isinstance(result.exception, ConfigError)
    assert result.exception.variable == "--portfolio"
    assert "running bot" in str(result.exception)


def test_margin_command_refuses_a_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")

    result = CliRunner().invoke(command_app(), ["margin", "--portfolio", str(bad)])

    assert isinstance(result.exception, ConfigError)
    assert result.exception.variable == "--portfolio"


@pytest.mark.skipif(not REGISTERED, reason="cli.py does not register the margin command yet")
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
