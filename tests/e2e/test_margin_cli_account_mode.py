"""`deltakeeper margin` shows the account's margin mode and the exchange's own maintenance margin ratio
beside the estimate (issue 13): of the live account, `python -m deltakeeper margin` against the Bybit
emulator (in this process, on loopback) set to portfolio margin; of a portfolio file, from its
`account_margin`, or says it was not read."""

from __future__ import annotations

import asyncio
import json
import sys
from decimal import Decimal
from pathlib import Path

from typer.testing import CliRunner

from tests.e2e.cli_helpers import clean_env
from tests.e2e.test_margin_cli import BOOK, command_app
from tests.integration.frozen_emulator import KEY, SECRET, frozen_emulator, sell


async def live_margin(env: dict[str, str], *args: str) -> tuple[int | None, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deltakeeper", "margin", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_live_margin_shows_the_portfolio_margin_mode_and_the_exchange_s_ratio(data_dir: Path) -> None:
    async with frozen_emulator() as server:
        server.venue.margin_mode = "PORTFOLIO_MARGIN"
        sell(server, "linear", "SOLUSDT", "600")
        env = clean_env(data_dir, DK_EXCHANGE="bybit", DK_EXCHANGE_URL=server.url, DK_API_KEY=KEY,
                        DK_API_SECRET=SECRET)
        code, out, err = await live_margin(env, "--format", "json")
        table_code, table, table_err = await live_margin(env)
        wallet = server.venue.wallet_item(KEY)

    assert code == 0, err
    venue = json.loads(out)["account_margin"]
    assert venue["mode"] == "portfolio"
    assert Decimal(venue["maintenance_ratio"]) == Decimal(wallet["accountMMRate"]) > 0
    assert venue["ratio_source"] == "accountMMRate"
    assert table_code == 0, table_err
    ratio = f"{float(wallet['accountMMRate']):.2%}"
    assert (f"account margin (the exchange's): portfolio, maintenance margin {ratio} of equity "
            "(accountMMRate)") in table
    assert "estimate (standard cross margin): USDT " in table


def test_a_portfolio_file_s_account_margin_is_shown_else_it_says_not_read(tmp_path: Path) -> None:
    given = tmp_path / "given.json"
    given.write_text(json.dumps({**BOOK, "account_margin": {"mode": "unified", "maintenance_ratio": "0.04",
                                                            "ratio_source": "accountMMRate"}}))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(BOOK))

    shown = CliRunner().invoke(command_app(), ["margin", "--portfolio", str(given)])
    absent = CliRunner().invoke(command_app(), ["margin", "--portfolio", str(bare), "--format", "json"])

    assert shown.exit_code == 0, shown.output
    assert ("account margin (the exchange's): unified, maintenance margin 4.00% of equity (accountMMRate); "
            "estimate (standard cross margin): USDT ") in shown.stdout
    assert absent.exit_code == 0, absent.output
    assert json.loads(absent.stdout)["account_margin"] is None
