"""The whole loop on the simulated exchange, as a user runs it: `deltakeeper run --for 10s`, then the
journal read back through the CLI."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from tests.e2e.cli_helpers import clean_env, deltakeeper, journals


async def test_run_hedges_every_band_exit_and_journals_orders_fills_and_funding(data_dir, database_url):
    # 7200x: 10 wall seconds are 20 simulated hours, so at least two 8-hourly fundings settle; a recompute
    # every 0.5 wall seconds is one every simulated hour.
    env = clean_env(data_dir, DK_SIM_SPEED="7200", DK_RECOMPUTE_SECS="0.5", DK_DATABASE_URL=database_url,
                    DK_POLICY="band", DK_REBALANCE_TO="target")  # the fixed band: it trades every few minutes
    result = deltakeeper("run", "--for", "10s", env=env, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == ""  # logs go to stderr only
    assert '"event": "rebalance_cycle"' in result.stderr

    decisions, order_rows, fills, funding = journals(env, "decisions", "orders", "fills", "funding")
    orders = {o["client_order_id"]: o for o in order_rows}
    assert decisions and orders and fills and funding

    # Every order reached a final state and carries the exchange's id; every fill belongs to one of them.
    assert {o["status"] for o in orders.values()} <= {"filled"}, orders
    assert all(o["exchange_order_id"] for o in orders.values())
    assert {f["client_order_id"] for f in fills} == set(orders)
    filled_by_order: dict[str, Decimal] = defaultdict(Decimal)
    for fill in fills:
        filled_by_order[fill["client_order_id"]] += Decimal(fill["amount_contracts"])
    for cid, order in orders.items():
        assert (
            filled_by_order[cid] == Decimal(order["amount_contracts"]) == Decimal(order["filled_contracts"])
        )

    # Every time the delta was outside its band, the decision sent a hedge or says why not; after each
    # hedge, the next decision on that asset found the delta back inside the band, up to what the simulated
    # market maker's inventory moved meanwhile (at 7200x, 20 ms of a loaded machine are 2.4 minutes of
    # trading): within twice the band, where a missed or doubled hedge is a whole deviation off.
    by_decision = {o["decision_id"]: o for o in orders.values()}
    sol = [d for d in decisions if d["asset"] == "SOL"]
    outside = [
        d for d in sol if abs(Decimal(d["delta_coin"]) - Decimal(d["target_coin"])) > Decimal(d["band_coin"])
    ]
    assert outside, "the simulated inventory never moved the delta out of its band"
    for decision in outside:
        assert decision["reason"] != "inside_band"
        if decision["reason"] == "rebalance":
            assert decision["decision_id"] in by_decision
    rebalances = [i for i, d in enumerate(sol) if d["reason"] == "rebalance"]
    assert len(rebalances) >= 2
    for index in rebalances:
        after = sol[index + 1] if index + 1 < len(sol) else None
        if after is None:
            continue
        assert _deviation(after) <= 2 * Decimal(after["band_coin"]), (sol[index], after)


def _deviation(decision: dict[str, str]) -> Decimal:
    return abs(Decimal(decision["delta_coin"]) - Decimal(decision["target_coin"]))


def test_run_refuses_a_bad_setting_with_exit_2_and_names_it(data_dir):
    for variable, value in [
        ("DK_EXCHANGE", "notanexchange"),
        ("DK_DATABASE_URL", "mysql://user@host/db"),
        ("DK_MAX_ORDER_USD", "-5"),
    ]:
        result = deltakeeper("run", "--for", "1s", env=clean_env(data_dir, **{variable: value}))
        assert result.returncode == 2, (variable, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and variable in lines[0], result.stderr


def test_run_refuses_a_coin_band_narrower_than_the_hedge_lot_step(data_dir):
    env = clean_env(data_dir, DK_ASSETS__SOL__HEDGE="SOL/USDT:USDT", DK_ASSETS__SOL__BAND_COIN="0.01")
    result = deltakeeper("run", "--for", "5s", env=env)
    assert result.returncode == 2, result.stderr
    assert "DK_ASSETS__SOL__BAND_COIN" in result.stderr.strip().splitlines()[-1]


def test_config_prints_settings_as_json_with_secrets_redacted(data_dir):
    import json

    env = clean_env(data_dir, DK_API_SECRET="hunter2", DK_DATABASE_URL="postgresql://bot:pw@db:5432/dk")
    result = deltakeeper("config", "--format", "json", env=env)
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout)
    assert values["DK_EXCHANGE"] == "sim"
    assert values["DK_API_SECRET"] == "**********"
    assert "pw" not in values["DK_DATABASE_URL"] and "hunter2" not in result.stdout
