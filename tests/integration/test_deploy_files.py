"""deploy/: the Prometheus scrape config, the compose file's monitoring profile and the Grafana dashboard
parse, and the dashboard only queries metrics (and labels) that `render_metrics` emits; the compose file
and the Kubernetes manifests give a stop the time it may take, probe the right paths, and set only known
settings."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from deltakeeper.adapters.http import OPEN_PATHS
from deltakeeper.adapters.metrics import BotMetrics
from deltakeeper.config import SECRET_FIELDS, Settings
from deltakeeper.stopping import stop_bound_secs

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (apprise depends on it)")

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bdeltakeeper_[a-z_]+\b")
PROMETHEUS_LABELS = {"instance", "job"}
"""Labels Prometheus gives every scraped sample: a legend may name them."""
FULL_SNAPSHOT: dict[str, Any] = {
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
    "journal_write_failures_total": 0,
    "stream_age_secs": {"SOL/USDT:USDT": 0.4},
    "stale_limit_seconds": 15.0,
    "blind": {"account": False, "journal": False},
    "margin_headroom": {"USDT": 0.9},
    "margin_warn_headroom": Decimal("0.35"),
    "margin_critical_headroom": Decimal("0.1"),
    "trading_state": "active",
    "ready": True,
    "standby": False,
}
"""Every key `BotMetrics.render` knows."""


def sample_labels(text: str) -> dict[str, set[str]]:
    """The Prometheus text's sample names (`deltakeeper_` ones), parsed by prometheus_client's parser,
    with the label names of each."""
    from prometheus_client.parser import text_string_to_metric_families

    names: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("deltakeeper_"):
                names.setdefault(sample.name, set()).update(sample.labels)
    return names


def emitted_metrics() -> dict[str, set[str]]:
    """Every sample name the bot's metrics have, with its label names."""
    return sample_labels(BotMetrics().render(FULL_SNAPSHOT))


def used_metrics(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC.findall(expr)}


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((DEPLOY / "grafana" / "deltakeeper-dashboard.json").read_text())
    return doc


def test_every_dashboard_query_uses_metrics_and_labels_the_bot_emits() -> None:
    emitted = emitted_metrics()
    assert {"deltakeeper_delta_coin", "deltakeeper_trading_state", "deltakeeper_stream_age_seconds",
            "deltakeeper_margin_headroom", "deltakeeper_tick_to_order_seconds_bucket",
            "deltakeeper_journal_write_seconds_bucket"} <= set(emitted)
    doc = dashboard()
    panels = doc["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = used_metrics([target["expr"]])
            assert names, (panel["title"], target["expr"])
            assert names <= set(emitted), (panel["title"], names - set(emitted))
            labels = set().union(*(emitted[name] for name in names))
            for label in re.findall(r"\{\{(\w+)\}\}", target.get("legendFormat", "")):
                assert label in labels | PROMETHEUS_LABELS, (panel["title"], target["legendFormat"])
            for label in re.findall(r"(\w+)=~?\"", target["expr"]):
                assert label in labels, (panel["title"], target["expr"])
    [margin] = [p for p in panels if p["title"] == "Margin headroom"]
    assert used_metrics([t["expr"] for t in margin["targets"]]) == {
        "deltakeeper_margin_headroom",
        "deltakeeper_margin_warn_headroom",
        "deltakeeper_margin_critical_headroom",
    }
    assert margin["fieldConfig"]["defaults"]["unit"] == "percentunit"

    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["asset"]["definition"] == "label_values(deltakeeper_delta_coin, asset)"
    assert any(p.get("repeat") == "asset" for p in panels)


def test_every_metric_the_bot_emits_is_on_the_dashboard_or_in_an_alert_rule() -> None:
    """A histogram counts as used through any of its samples; `_created` (the histograms' creation time)
    is for Prometheus alone."""
    used = used_metrics([t["expr"] for p in dashboard()["panels"] for t in p["targets"]])
    used |= used_metrics([rule["expr"] for rule in alert_rules()])
    families = {re.sub(r"_(bucket|sum|count|created)$", "", name) for name in emitted_metrics()}
    assert families - {re.sub(r"_(bucket|sum|count)$", "", name) for name in used} == set()


def test_alert_rules_are_well_formed_and_use_only_what_the_bot_emits() -> None:
    """Structurally here (each rule: alert, expr, for, a severity label, a summary); where promtool is
    installed (Debian's `prometheus` package has it) also `promtool check rules`, `check config`, and
    `test rules` on deploy/prometheus/alerts_test.yml (a trader and its never-ready standby alert nothing;
    a trader in trouble alerts each rule with its labels and text)."""
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(set(names)) == len(names)
    assert {
        "DeltakeeperDown", "DeltakeeperNotReady", "DeltakeeperHalted", "DeltakeeperReduceOnly",
        "DeltakeeperMarginHeadroomLow", "DeltakeeperStaleStream", "DeltakeeperBlind",
        "DeltakeeperJournalWriteFailures", "DeltakeeperOrderRejects",
    } <= set(names)
    for rule in rules:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
    emitted = emitted_metrics()
    used = used_metrics([rule["expr"] for rule in rules])
    assert used and used <= set(emitted), used - set(emitted)
    for rule in rules:
        labels = set().union(*(emitted[name] for name in used_metrics([rule["expr"]])))
        for label in re.findall(r"\{\{ \$labels\.(\w+) \}\}", str(rule["annotations"])):
            assert label in labels | PROMETHEUS_LABELS, (rule["alert"], label)
        for label in re.findall(r"(\w+)=~?\"", rule["expr"]):
            assert label in labels | PROMETHEUS_LABELS, (rule["alert"], label)
    # The bot not answering is Prometheus's own `up` of the scrape job.
    assert any(re.search(r'\bup\{job="deltakeeper"\} == 0', rule["expr"]) for rule in rules)

    promtool = shutil.which("promtool")
    if promtool is not None:
        for command in (["check", "rules", "prometheus/alerts.yml"], ["check", "config", "prometheus.yml"],
                        ["test", "rules", "prometheus/alerts_test.yml"]):
            result = subprocess.run([promtool, *command], cwd=DEPLOY, capture_output=True, text=True,
                                    timeout=60)
            assert result.returncode == 0, result.stdout + result.stderr


def test_prometheus_scrapes_the_bot_service_on_its_http_port_and_loads_the_alert_rules() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    assert config["rule_files"] == ["prometheus/alerts.yml"]  # relative to prometheus.yml
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
    prometheus_volumes = services["prometheus"]["volumes"]
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus_volumes
    assert "./prometheus/alerts.yml:/etc/prometheus/prometheus/alerts.yml:ro" in prometheus_volumes
    assert set(compose["volumes"]) >= {"promdata", "grafanadata"}

    provisioning = DEPLOY / "grafana" / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((provisioning / "dashboards" / "deltakeeper.yml").read_text())
    path = providers["providers"][0]["options"]["path"]
    dashboard_file = "./grafana/deltakeeper-dashboard.json:"
    mounted = [v for v in services["grafana"]["volumes"] if v.startswith(dashboard_file)]
    assert mounted and mounted[0].split(":")[1].startswith(path + "/")


# -- stopping, and the Kubernetes manifests ----------------------------------------------------------

KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.30.0"


def kubernetes_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = [*kustomization["resources"], "secret.example.yaml"]
    return [doc for name in files for doc in yaml.safe_load_all((KUBERNETES / name).read_text())]


def known_variable(name: str) -> bool:
    """A DK_ variable `load_settings` reads: a setting, a secret's `_FILE`, a per-asset or external one."""
    field = name.removeprefix("DK_").lower()
    if field.endswith("_file") and field.removesuffix("_file") in SECRET_FIELDS:
        return True
    head, _, rest = field.partition("__")
    if rest:
        return head in ("assets", "external")
    return field in Settings.model_fields and field not in ("assets", "external")


def settings_of(environment: dict[str, str]) -> Settings:
    """The settings of a deployment's environment, as far as they are literal (secrets are not needed)."""
    values = {
        name.removeprefix("DK_").lower(): value
        for name, value in environment.items()
        if "$" not in value and not name.endswith("_FILE") and "__" not in name
    }
    return Settings(**values)


def deployment() -> dict[str, Any]:
    [doc] = [d for d in kubernetes_documents() if d["kind"] == "Deployment"]
    return doc


def test_every_kubernetes_manifest_validates_against_the_kubernetes_schema() -> None:
    """kubernetes-validate's bundled OpenAPI schemas, offline, strict (no unknown field)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = kubernetes_documents()
    assert {d["kind"] for d in docs} == {"Deployment", "Service", "Secret", "PodDisruptionBudget"}
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    broken = {**deployment(), "spec": {**deployment()["spec"], "replicas": "one"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_the_deployment_runs_a_trader_and_a_standby_rolled_without_a_deadlock_on_the_lock() -> None:
    """Two replicas: the trader lock lets one trade, the other waits (never ready). Any maxUnavailable
    below all of them would wait for a new pod to be ready while the old trader, kept as the one
    available pod, holds the lock: the old pods must all go at once, and no extra pod is needed."""
    spec = deployment()["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "100%"}
    }
    anti_affinity = spec["template"]["spec"]["affinity"]["podAntiAffinity"]
    [term] = anti_affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"


def test_the_disruption_budget_takes_one_pod_at_a_time_and_the_standby_freely() -> None:
    [budget] = [d for d in kubernetes_documents() if d["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["selector"]["matchLabels"] == deployment()["spec"]["selector"]["matchLabels"]
    assert budget["spec"]["maxUnavailable"] == 1 and "minAvailable" not in budget["spec"]
    # The standby is never ready (not "healthy" to Kubernetes): always evictable.
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_the_manifests_need_postgresql_the_lock_of_sqlite_is_per_pod() -> None:
    [secret] = [d for d in kubernetes_documents() if d["kind"] == "Secret"]
    assert secret["stringData"]["database_url"].startswith("postgresql://")
    assert "PostgreSQL is required" in (KUBERNETES / "deployment.yaml").read_text()


def test_the_deployment_grace_covers_the_stop_bound_and_probes_the_health_and_readiness_paths() -> None:
    doc = deployment()
    pod = doc["spec"]["template"]["spec"]
    [container] = pod["containers"]
    environment = {e["name"]: e["value"] for e in container["env"] if "value" in e}  # not valueFrom
    settings = settings_of(environment)
    assert pod["terminationGracePeriodSeconds"] >= stop_bound_secs(settings)

    assert settings.http_host == "0.0.0.0" and "DK_HTTP_TOKEN_FILE" in environment  # no token: no bind
    [port] = container["ports"]
    assert port["containerPort"] == settings.http_port
    probes = {
        kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert {kind: probe["path"] for kind, probe in probes.items()} == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    assert {probe["port"] for probe in probes.values()} == {port["name"]}
    assert "/healthz" in OPEN_PATHS and "/readyz" in OPEN_PATHS  # the probes carry no token

    security = pod["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_deployment_reads_its_secrets_from_the_secret_and_sets_only_known_settings() -> None:
    docs = kubernetes_documents()
    [secret] = [d for d in docs if d["kind"] == "Secret"]
    pod = deployment()["spec"]["template"]["spec"]
    [container] = pod["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert [name for name in env if not known_variable(name)] == []
    reference = env["DK_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert reference["name"] == secret["metadata"]["name"] and reference["key"] in secret["stringData"]

    [volume] = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    [mount] = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    files = {f"{mount['mountPath']}/{item['path']}" for item in volume["secret"]["items"]}
    assert {item["key"] for item in volume["secret"]["items"]} <= set(secret["stringData"])
    secret_files = {name: e["value"] for name, e in env.items() if name.endswith("_FILE")}
    assert set(secret_files) == {"DK_API_KEY_FILE", "DK_API_SECRET_FILE", "DK_HTTP_TOKEN_FILE"}
    assert set(secret_files.values()) <= files

    [service] = [d for d in docs if d["kind"] == "Service"]
    assert service["spec"]["selector"] == deployment()["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_compose_gives_the_bot_a_stop_grace_covering_the_stop_bound_and_sets_only_known_settings() -> None:
    service = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["deltakeeper"]
    environment: dict[str, str] = service["environment"]
    assert [name for name in environment if not known_variable(name)] == []
    grace = re.fullmatch(r"(\d+)(s|m)", service["stop_grace_period"])
    assert grace, service["stop_grace_period"]
    grace_secs = int(grace.group(1)) * {"s": 1, "m": 60}[grace.group(2)]
    assert grace_secs >= stop_bound_secs(settings_of(environment))
