"""deploy/: the Prometheus scrape config, the compose file's monitoring profile and the Grafana dashboard
parse, and the dashboard only queries metrics (and labels) that `render_metrics` emits."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from deltakeeper.adapters.http import render_metrics
from deltakeeper.config import Settings

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (apprise depends on it)")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bdeltakeeper_[a-z_]+\b")
SAMPLE = re.compile(r"^(deltakeeper_[a-z_]+)(?:\{(.*)\})? ")


def emitted_metrics() -> dict[str, set[str]]:
    """Every metric family render_metrics writes, with the label names of its samples."""
    snapshot = {
        "assets": {
            "SOL": {
                "delta_coin": Decimal("1.5"),
                "delta_usd": Decimal(200),
                "target_coin": Decimal(0),
                "band_coin": Decimal(1),
                "deviation": 1.5,
            }
        },
        "orders_total": {"filled": 3, "rejected": 1},
        "fills_total": 4,
        "fees_usd_total": Decimal("1.25"),
        "funding_usd_total": Decimal("-0.5"),
        "errors_total": 0,
        "stream_age_secs": {"SOL/USDT:USDT": 0.4},
        "trading_state": "active",
    }
    families: dict[str, set[str]] = {}
    for line in render_metrics(snapshot).splitlines():
        if line.startswith("# TYPE "):
            families.setdefault(line.split()[2], set())
        elif match := SAMPLE.match(line):
            labels = match.group(2) or ""
            families[match.group(1)] |= {part.split("=")[0] for part in labels.split(",") if part}
    return families


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DEPLOY / "grafana" / "deltakeeper-dashboard.json").read_text())
    return doc


def test_every_dashboard_query_uses_metrics_and_labels_the_bot_emits() -> None:
    emitted = emitted_metrics()
    assert {"deltakeeper_delta_coin", "deltakeeper_trading_state", "deltakeeper_stream_age_seconds"} <= set(
        emitted
    )
    doc = dashboard()
    panels = doc["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    used: set[str] = set()
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(METRIC.findall(target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= set(emitted), (panel["title"], names - set(emitted))
            labels = set().union(*(emitted[name] for name in names))
            for label in re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")):
                assert label in labels, (panel["title"], target["legendFormat"])
            for label in re.findall(r"(\w+)=~?\"", target["expr"]):
                assert label in labels, (panel["title"], target["expr"])
            used |= names
    # Every family the bot emits is on the dashboard.
    assert used == set(emitted), set(emitted) - used

    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["asset"]["definition"] == "label_values(deltakeeper_delta_coin, asset)"
    assert any(p.get("repeat") == "asset" for p in panels)


def test_prometheus_scrapes_the_bot_service_on_its_http_port() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "deltakeeper" and job["metrics_path"] == "/metrics"
    assert "authorization" not in job and "bearer_token" not in job  # /metrics is open
    (targets,) = job["static_configs"]
    assert targets["targets"] == [f"deltakeeper:{Settings().http_port}"]


def test_compose_monitoring_profile_runs_prometheus_and_grafana_with_the_files_from_deploy() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "profiles" not in services["deltakeeper"] and "profiles" not in services["postgres"]
    assert services["deltakeeper"]["environment"]["DK_HTTP_HOST"] == "0.0.0.0"
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"]
        for mount in services[name]["volumes"]:
            source = mount.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), mount
        for port in services[name]["ports"]:
            assert port.startswith("127.0.0.1:"), port
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in services["prometheus"]["volumes"]
    assert set(compose["volumes"]) >= {"promdata", "grafanadata"}

    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "deltakeeper.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    dashboard_file = "./grafana/deltakeeper-dashboard.json:"
    mounted = [v for v in services["grafana"]["volumes"] if v.startswith(dashboard_file)]
    assert mounted and mounted[0].split(":")[1].startswith(path + "/")
