"""/metrics through prometheus_client: the bot wired as `deltakeeper run` wires it, on the simulated
exchange and a real SQLite journal, answers text that prometheus_client's own parser reads, with the process
metrics, the tick-to-order and journal-write histograms observed once an order went out, and every metric
the alert rules and the Grafana dashboard use; a standby answers its process metrics and that it stands
by; each server has its own registry."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import prometheus_client
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from tests.integration.service_harness import RecordingAlerts, journal_for, make_settings, until
from tests.integration.test_deploy_files import alert_rules, dashboard, sample_labels, used_metrics

from deltakeeper.adapters.metrics import BotMetrics
from deltakeeper.bootstrap import build_http_server, build_runner, build_sim_exchange, build_standby_server

HISTOGRAMS = ("deltakeeper_tick_to_order_seconds", "deltakeeper_journal_write_seconds")
PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_start_time_seconds",
                   "python_info")


def samples(text: str) -> dict[str, list[Sample]]:
    """Sample name -> its samples, through prometheus_client's text parser."""
    found: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    [sample] = [s for s in found[name] if all(s.labels.get(k) == v for k, v in labels.items())]
    return sample.value


async def scrape(port: int) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return await response.text()


async def test_the_running_bot_s_metrics_parse_carry_observed_histograms_and_all_the_alerts_use(
    tmp_path: Path,
) -> None:
    settings = make_settings(tmp_path)
    async with journal_for(settings) as journal:
        sim, clock = build_sim_exchange(settings)
        runner = await build_runner(settings, sim, journal, clock, RecordingAlerts())
        server = build_http_server(settings, runner, journal)
        port = await server.start()
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        try:
            await until(lambda: sum(runner.service.counters.orders.values()) > 0, 30, "an order settled")
            text = await scrape(port)
        finally:
            stop.set()
            await asyncio.wait_for(task, 20)
            await server.stop()
            await sim.close()  # type: ignore[attr-defined]

    found = samples(text)
    for name in HISTOGRAMS:
        count = value(found, f"{name}_count")
        assert count > 0, name
        assert value(found, f"{name}_bucket", le="+Inf") == count
        assert value(found, f"{name}_sum") >= 0
    for name in PROCESS_METRICS:
        assert name in found, name
    assert value(found, "deltakeeper_standby") == 0
    assert value(found, "deltakeeper_ready") in (0, 1)
    assert value(found, "deltakeeper_trading_state", state="active") == 1
    assert value(found, "deltakeeper_stale_limit_seconds") == settings.stale_secs
    assert value(found, "deltakeeper_margin_warn_headroom") == float(settings.margin_warn_headroom_pct / 100)
    assert value(found, "deltakeeper_margin_headroom", settle="USDT") > 0  # the hedge is a USDT perp
    assert set(s.labels["what"] for s in found["deltakeeper_blind"]) >= {"account", "journal"}

    # Every metric an alert rule or a dashboard panel uses is there (the rules' `up` is Prometheus's).
    used = used_metrics([rule["expr"] for rule in alert_rules()])
    used |= used_metrics([t["expr"] for panel in dashboard()["panels"] for t in panel["targets"]])
    assert used - set(sample_labels(text)) == set()


async def test_a_standby_answers_its_process_metrics_and_that_it_stands_by(tmp_path: Path) -> None:
    server = build_standby_server(make_settings(tmp_path))
    port = await server.start()
    try:
        found = samples(await scrape(port))
    finally:
        await server.stop()
    assert value(found, "deltakeeper_standby") == 1
    assert value(found, "deltakeeper_ready") == 0
    assert all(name in found for name in PROCESS_METRICS)
    assert "deltakeeper_trading_state" not in found  # it does not trade: no state to report


def test_each_registry_is_its_own_and_none_is_the_library_s_global_one() -> None:
    one, other = BotMetrics(), BotMetrics()
    one.observe_tick_to_order(0.004)
    one.observe_journal_write(0.002)
    assert value(samples(one.render({})), "deltakeeper_tick_to_order_seconds_count") == 1
    assert value(samples(other.render({})), "deltakeeper_tick_to_order_seconds_count") == 0
    assert value(samples(other.render({})), "deltakeeper_journal_write_seconds_count") == 0
    global_names = {s.name for family in prometheus_client.REGISTRY.collect() for s in family.samples}
    assert not any(name.startswith("deltakeeper_") for name in global_names)


SNAPSHOT: dict[str, Any] = {
    "assets": {
        "BTC": {"delta_coin": Decimal("0.25"), "delta_usd": Decimal("16000.5"), "target_coin": Decimal(0),
                "band_coin": Decimal("0.1"), "deviation": 2.5},
        "ETH": {"delta_coin": Decimal("-0.01"), "delta_usd": Decimal(-30), "target_coin": Decimal(0),
                "band_coin": Decimal(1), "deviation": -0.01},
    },
    "orders_total": {"filled": 7, "rejected": 1},
    "fills_total": 9,
    "fees_usd_total": Decimal("12.3400"),
    "funding_usd_total": Decimal("-4.5"),
    "errors_total": 2,
    "journal_write_failures_total": 3,
    "stream_age_secs": {"BTC/USDT:USDT": 0.25, 'weird"sym\\': float("inf")},
    "margin_headroom": {"USDT": 0.25, "BTC": float("-inf")},
    "blind": {"account": True, "journal": False},
    "trading_state": "reduce_only",
    "ready": False,
}


def test_a_snapshot_renders_as_typed_families_the_parser_reads_back() -> None:
    text = BotMetrics().render(SNAPSHOT)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["deltakeeper_orders"].type == "counter"
    assert families["deltakeeper_fills"].type == "counter"
    assert families["deltakeeper_funding_usd_total"].type == "gauge"
    assert families["deltakeeper_fees_usd_total"].type == "gauge"  # a maker rebate lowers it
    assert families["deltakeeper_tick_to_order_seconds"].type == "histogram"
    found = samples(text)
    assert value(found, "deltakeeper_delta_coin", asset="BTC") == 0.25
    assert value(found, "deltakeeper_delta_usd", asset="ETH") == -30
    assert value(found, "deltakeeper_deviation", asset="BTC") == 2.5
    assert value(found, "deltakeeper_orders_total", status="rejected") == 1
    assert value(found, "deltakeeper_fees_usd_total") == 12.34
    assert value(found, "deltakeeper_funding_usd_total") == -4.5
    assert value(found, "deltakeeper_journal_write_failures_total") == 3
    assert value(found, "deltakeeper_stream_age_seconds", symbol='weird"sym\\') == math.inf
    assert value(found, "deltakeeper_margin_headroom", settle="BTC") == -math.inf
    assert value(found, "deltakeeper_blind", what="account") == 1
    assert value(found, "deltakeeper_ready") == 0
    states = {s.labels["state"]: s.value for s in found["deltakeeper_trading_state"]}
    assert states == {"active": 0, "reduce_only": 1, "halted": 0}


def test_an_empty_snapshot_renders_no_bot_family_but_the_histograms() -> None:
    names = set(samples(BotMetrics().render({})))
    suffixes = ("bucket", "count", "sum", "created")
    assert {name for name in names if name.startswith("deltakeeper_")} == {
        f"{histogram}_{suffix}" for histogram in HISTOGRAMS for suffix in suffixes
    }
