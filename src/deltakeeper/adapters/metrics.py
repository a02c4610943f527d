"""Prometheus metrics (`/metrics`, DESIGN.md 2) with prometheus_client: one registry per server (never the
library's global one: services and tests in one process do not share their metrics), holding

- the process's metrics (CPU, memory, open files, start time) and the Python platform's;
- the latency histograms, observed as things happen: tick-to-order (from the arrival of the quote an order
  was sized from to the order request going out) and journal writes;
- the bot's state, read from a snapshot at each scrape (`BotMetrics.render`).

Every name is prefixed `deltakeeper_`; deploy/grafana and deploy/prometheus/alerts.yml use them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from deltakeeper.domain.risk import TradingState
from deltakeeper.domain.venue_margin import AccountMode

PREFIX = "deltakeeper_"
TICK_TO_ORDER_BUCKETS_SECS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
"""An order normally goes out within milliseconds of its quote; seconds mean a slow journal write or a
wait for a newer quote."""
JOURNAL_WRITE_BUCKETS_SECS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

ASSET_GAUGES = {
    "delta_coin": "Portfolio delta in coins.",
    "delta_usd": "Portfolio delta in USD.",
    "target_coin": "Target delta in coins.",
    "band_coin": "Band half-width in coins.",
    "deviation": "Delta minus target, in band half-widths: beyond 1 or -1 is outside the band.",
}
COUNTERS = {
    "fills_total": "Fills journaled.",
    "errors_total": "Errors logged by the service.",
    "journal_write_failures_total": "Journal writes that failed.",
}
GAUGES = {
    "fees_usd_total": "Trading fees paid, in USD (a gauge: maker rebates lower it; fees in a coin without a "
                      "USD price are left out).",
    "funding_usd_total": "Net funding in USD: received positive, paid negative.",
    "ready": "1 while the bot can trade safely now (/readyz answers 200), else 0.",
    "standby": "1 while this process waits for the trader lock (another instance trades), else 0.",
    "stale_limit_seconds": "A stream is stale past this many seconds without a quote (DK_STALE_SECS).",
    "margin_warn_headroom": "The margin headroom below which the bot warns (DK_MARGIN_WARN_HEADROOM_PCT).",
    "margin_critical_headroom": "The margin headroom below which the bot trades reduce-only "
                                "(DK_MARGIN_CRITICAL_HEADROOM_PCT).",
}
LABELLED_GAUGES = {
    # snapshot key: (metric name, label, help)
    "stream_age_secs": ("stream_age_seconds", "symbol", "Seconds since the last quote, per symbol."),
    "margin_headroom": ("margin_headroom", "settle", "Margin headroom (equity - maintenance margin) / "
                        "equity, per settlement currency with derivative positions."),
    "blind": ("blind", "what", "1 while the bot has been without this (the account, a symbol's quotes, "
              "journal writes) for longer than DK_BLIND_ALERT_SECS, else 0."),
}


class BotMetrics:
    """One server's registry. `observe_*` are the observers bootstrap hands to the order path and the
    journal; `render(snapshot)` is the text of one scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._tick_to_order = Histogram(
            f"{PREFIX}tick_to_order_seconds",
            "From the arrival of the quote an order was sized from to the order request being sent.",
            buckets=TICK_TO_ORDER_BUCKETS_SECS,
            registry=self.registry,
        )
        self._journal_write = Histogram(
            f"{PREFIX}journal_write_seconds",
            "How long each journal write took, failed ones included.",
            buckets=JOURNAL_WRITE_BUCKETS_SECS,
            registry=self.registry,
        )
        self._snapshot: Mapping[str, Any] = {}
        self.registry.register(_SnapshotCollector(self))

    def observe_tick_to_order(self, secs: float) -> None:
        self._tick_to_order.observe(secs)

    def observe_journal_write(self, secs: float) -> None:
        self._journal_write.observe(secs)

    def render(self, snapshot: Mapping[str, Any]) -> str:
        """Prometheus text format 0.0.4: the registry's metrics and the families of `snapshot`, whose keys
        are all optional (a family is written only when its key is there):

        - `assets`: {asset: {delta_coin, delta_usd, target_coin, band_coin, deviation}}
        - `orders_total`: {status: count}; `fills_total`, `errors_total`, `journal_write_failures_total`:
          counts; `fees_usd_total`: fees paid (a gauge: rebates lower it); `funding_usd_total`: net
          funding, received positive
        - `stream_age_secs`: {symbol: seconds since the last quote}; `stale_limit_seconds`
        - `margin_headroom`: {settle: fraction}; `margin_warn_headroom`, `margin_critical_headroom`
        - `blind`: {what: bool}; `ready`, `standby`: bool; `trading_state`: active|reduce_only|halted
        - `venue_margin`: {mode: unknown|standard|unified|portfolio, maintenance_ratio (where known)}
        """
        self._snapshot = snapshot
        return generate_latest(self.registry).decode()


class _SnapshotCollector:
    def __init__(self, metrics: BotMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        snapshot = self.metrics._snapshot
        if "assets" in snapshot:
            assets: Mapping[str, Mapping[str, Any]] = snapshot["assets"]
            for key, help_text in ASSET_GAUGES.items():
                family = GaugeMetricFamily(PREFIX + key, help_text, labels=["asset"])
                for asset, values in sorted(assets.items()):
                    if key in values:
                        family.add_metric([asset], float(values[key]))
                yield family
        if "orders_total" in snapshot:
            orders = CounterMetricFamily(
                f"{PREFIX}orders_total", "Orders by final status.", labels=["status"]
            )
            for status, count in sorted(snapshot["orders_total"].items()):
                orders.add_metric([status], count)
            yield orders
        for key, help_text in COUNTERS.items():
            if key in snapshot:
                yield CounterMetricFamily(PREFIX + key, help_text, value=float(snapshot[key]))
        for key, help_text in GAUGES.items():
            if key in snapshot:
                yield GaugeMetricFamily(PREFIX + key, help_text, value=float(snapshot[key]))
        for key, (name, label, help_text) in LABELLED_GAUGES.items():
            if key in snapshot:
                family = GaugeMetricFamily(PREFIX + name, help_text, labels=[label])
                for value, number in sorted(snapshot[key].items()):
                    family.add_metric([value], float(number))
                yield family
        if "trading_state" in snapshot:
            current = snapshot["trading_state"]
            family = GaugeMetricFamily(
                f"{PREFIX}trading_state", "1 for the current trading state, 0 for the others.",
                labels=["state"],
            )
            for state in TradingState:
                family.add_metric([state.value], float(state.value == current))
            yield family
        if "venue_margin" in snapshot:
            yield from _venue_margin(snapshot["venue_margin"])


def _venue_margin(venue: Mapping[str, Any]) -> Iterator[Metric]:
    mode = GaugeMetricFamily(
        f"{PREFIX}account_margin_mode", "1 for the account's margin mode as the exchange reports it "
        "(unknown while it cannot be read), 0 for the others.", labels=["mode"],
    )
    for each in AccountMode:
        mode.add_metric([each.value], float(each.value == venue["mode"]))
    yield mode
    if "maintenance_ratio" in venue:
        yield GaugeMetricFamily(
            f"{PREFIX}venue_maintenance_margin_ratio", "The exchange's own maintenance margin / equity of "
            "the account (1 at liquidation); absent while unknown. Beside it, 1 - margin_headroom is the "
            "bot's estimate per settlement currency.", value=float(venue["maintenance_ratio"]),
        )
