"""`deltakeeper run` with no settings, as the README's first command: the default policy (the cost-aware band,
to the band's edge) hedges on the simulator at once, on the asset's own band while its risk model warms up,
then on the cube-root band."""

from __future__ import annotations

from decimal import Decimal

from tests.e2e.cli_helpers import clean_env, deltakeeper, journals


def test_default_run_hedges_at_once_and_waits_for_the_risk_model_before_its_cube_root_band(data_dir):
    # the default 600x: 10 wall seconds are 100 simulated minutes; the risk model samples every 30 s quote
    env = clean_env(data_dir, DK_RECOMPUTE_SECS="1")
    result = deltakeeper("run", "--for", "10s", env=env, timeout=90)
    assert result.returncode == 0, result.stderr[-3000:]
    decisions, orders = journals(env, "decisions", "orders")
    trades = [d for d in decisions if d["reason"] == "rebalance"]
    assert trades, "no hedge in the first 10 seconds"
    assert {o["status"] for o in orders} == {"filled"}
    first = trades[0]
    assert first["detail"] == "warming_up returns=0/30 band=own"
    # the default 1 % band of gross exposure, and trading to its edge
    assert Decimal(first["band_coin"]) > 0
    assert abs(Decimal(first["delta_coin"]) - Decimal(first["target_coin"])) > Decimal(first["band_coin"])
    # every decision says it is warming up until the risk model has 30 returns; none after that
    warming = [i for i, d in enumerate(decisions) if d["detail"].startswith("warming_up")]
    assert warming == list(range(len(warming))) and len(warming) < len(decisions)
    banded = [d for d in decisions if "cost_rate=" in d["detail"]]
    assert all("risk_aversion=0.0001" in d["detail"] for d in banded)
