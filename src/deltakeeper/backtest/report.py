"""Presenting backtests: table rows, the cost against tracking error plot, and the comparison of the
cost-aware band with the timer at the same tracking error."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from deltakeeper.backtest.settings import SWEEP_GRID
from deltakeeper.domain.errors import ConfigError

_CENT = Decimal("0.01")
TABLE_COLUMNS = ["run", "trades", "traded_notional_usd", "fees_usd", "slippage_usd", "cost_usd",
                 "funding_usd", "hedge_pnl_usd", "tracking_error_usd", "max_abs_delta_usd"]
VS_TIMER_COLUMNS = ["timer_cost_at_same_te_usd", "cost_vs_timer"]


def grid_label(result: Mapping[str, Any]) -> str:
    """The policy and the setting a sweep varies: `timer 1h`, `band 0.5%`, `cost-aware ra=1e-05`."""
    policy = result["policy"]
    used = result["settings"]
    if policy == "timer":
        secs = float(used["DK_TIMER_SECS"])
        return f"timer {secs / 3600:g}h" if secs % 3600 == 0 else f"timer {secs:g}s"
    if policy == "band":
        bands = [v for k, v in used.items() if k.startswith("DK_ASSETS__")]
        return "band " + (f"{used['DK_DEFAULT_BAND_PCT']}%" if not bands else "per asset")
    return f"cost-aware ra={float(used['DK_RISK_AVERSION']):g}"


def _cents(value: Any) -> Any:
    return value.quantize(_CENT) if isinstance(value, Decimal) else value


def table_columns(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The table's columns: with the timer's comparison when `add_timer_comparison` made one."""
    return TABLE_COLUMNS + (VS_TIMER_COLUMNS if any("vs_timer" in r for r in results) else [])


def table_rows(results: Sequence[Mapping[str, Any]], per_asset: bool) -> list[dict[str, Any]]:
    """One row per run (with `per_asset`: one per asset, then the portfolio's), money to the cent."""
    rows = []
    for result in results:
        label = grid_label(result)
        if per_asset:
            for asset, figures in result["assets"].items():
                values = {c: _cents(figures.get(c)) for c in TABLE_COLUMNS[1:]}
                rows.append({"run": f"{label} {asset}", **values})
        row = {"run": f"{label}" + (" portfolio" if per_asset else ""),
               **{c: _cents(result.get(c)) for c in TABLE_COLUMNS[1:]}}
        versus = result.get("vs_timer")
        if versus is not None:
            row["timer_cost_at_same_te_usd"] = f"{versus['timer_cost_usd']:.2f}"
            extrapolated = " (extrapolated)" if versus["how"] != "interpolated" else ""
            row["cost_vs_timer"] = f"{versus['ratio']:.2f}{extrapolated}"
        rows.append(row)
    return rows


def add_timer_comparison(results: Sequence[dict[str, Any]]) -> None:
    """With two or more timer runs among `results`: to every other run, `vs_timer`, the timer's cost at that
    run's tracking error, interpolated along the timer runs' (tracking error, cost) points, linear in
    log-log (`interpolate_cost`), and `ratio` = the run's cost / that (below 1: cheaper than the timer)."""
    timers = [(float(r["tracking_error_usd"]), float(r["cost_usd"]))
              for r in results if r["policy"] == "timer"]
    if len(set(timers)) < 2:
        return
    for result in results:
        if result["policy"] == "timer":
            continue
        timer_cost, how = interpolate_cost(timers, float(result["tracking_error_usd"]))
        cost = float(result["cost_usd"])
        result["vs_timer"] = {"timer_cost_usd": round(timer_cost, 2),
                              "ratio": cost / timer_cost if timer_cost else math.inf, "how": how}


def plot_cost_vs_tracking_error(results: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Cost (fees + slippage) against tracking error, one labelled point per run, one line per policy, on
    one log-log axes."""
    plt = _pyplot("--plot")
    figure, axes = plt.subplots(figsize=(8, 5))
    policies: dict[str, list[Mapping[str, Any]]] = {}
    for result in results:
        policies.setdefault(result["policy"], []).append(result)
    for policy, runs in policies.items():
        runs = sorted(runs, key=lambda r: float(r["tracking_error_usd"]))
        xs = [float(r["tracking_error_usd"]) for r in runs]
        ys = [float(r["cost_usd"]) for r in runs]
        axes.plot(xs, ys, marker="o", label=policy)
        for x, y, run in zip(xs, ys, runs, strict=True):
            axes.annotate(grid_label(run).split(" ", 1)[1], (x, y), textcoords="offset points", xytext=(4, 4),
                          fontsize=8)
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("tracking error (USD, RMS of the delta's deviation; log scale)")
    axes.set_ylabel("cost (USD, fees + slippage; log scale)")
    first = results[0]
    axes.set_title(f"{', '.join(first['assets'])}: {first['exposure']}, {first['start']:%Y-%m-%d} to "
                   f"{first['end']:%Y-%m-%d}")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(title="policy")
    _save(plt, figure, path, "--plot")


def _pyplot(flag: str) -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError(flag, "matplotlib installed (pip install matplotlib)") from None
    return plt


def _save(plt: Any, figure: Any, path: Path, flag: str) -> None:
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:
        raise ConfigError(flag, "a writable PNG path", f"{path}: {exc}") from None
    finally:
        plt.close(figure)


def plot_series(result: Mapping[str, Any], series: Mapping[str, Mapping[str, Sequence[float]]],
                path: Path) -> None:
    """One run over time, a panel per asset: the delta's deviation from target and the band (USD, left
    axis), and the cumulative cost (USD, right axis)."""
    from datetime import UTC, datetime

    plt = _pyplot("--plot-series")
    figure, panels = plt.subplots(len(series), 1, figsize=(10, 3.6 * len(series)), sharex=True, squeeze=False)
    for (asset, points), (axes,) in zip(series.items(), panels, strict=True):
        times = [datetime.fromtimestamp(t, UTC) for t in points["t_secs"]]
        band = points["band_usd"]
        axes.fill_between(times, [-b for b in band], band, step="post", color="tab:green", alpha=0.2,
                          label="band (USD)")
        axes.plot(times, points["deviation_usd"], color="tab:blue", linewidth=0.8,
                  label="delta - target (USD)")
        axes.set_ylabel(f"{asset}: USD")
        axes.grid(True, alpha=0.3)
        cost = axes.twinx()
        cost.plot(times, points["cost_usd"], color="tab:red", linewidth=1.2, label="cumulative cost (USD)")
        cost.set_ylabel("cumulative cost (USD)", color="tab:red")
        lines = axes.get_legend_handles_labels()
        more = cost.get_legend_handles_labels()
        axes.legend(lines[0] + more[0], lines[1] + more[1], loc="upper left", fontsize=8)
    panels[0][0].set_title(f"{grid_label(result)}, {result['exposure']}: cost "
                           f"{float(result['cost_usd']):,.0f} USD, tracking error "
                           f"{float(result['tracking_error_usd']):,.0f} USD")
    figure.autofmt_xdate()
    _save(plt, figure, path, "--plot-series")


def interpolate_cost(points: Sequence[tuple[float, float]], tracking_error: float) -> tuple[float, str]:
    """The cost at `tracking_error` along (tracking error, cost) points, linear in log-log (a band's cost
    goes as a power of its width): ("interpolated" | "extrapolated", from the two nearest points)."""
    ordered = sorted(set(points))
    if len(ordered) < 2:
        raise ValueError("need two points to interpolate")
    logs = all(te > 0 and cost > 0 for te, cost in ordered) and tracking_error > 0

    def f(v: float) -> float:
        return math.log(v) if logs else v

    inside = ordered[0][0] <= tracking_error <= ordered[-1][0]
    if tracking_error <= ordered[0][0]:
        (x0, y0), (x1, y1) = ordered[0], ordered[1]
    elif tracking_error >= ordered[-1][0]:
        (x0, y0), (x1, y1) = ordered[-2], ordered[-1]
    else:
        i = next(k for k in range(1, len(ordered)) if ordered[k][0] >= tracking_error)
        (x0, y0), (x1, y1) = ordered[i - 1], ordered[i]
    if f(x1) == f(x0):
        value = f(y0)
    else:
        value = f(y0) + (f(y1) - f(y0)) * (f(tracking_error) - f(x0)) / (f(x1) - f(x0))
    cost = math.exp(value) if logs else value
    return cost, "interpolated" if inside else "extrapolated"


def compare_at_same_tracking_error(
    runs: Sequence[Mapping[str, Any]], cost_aware_runs: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """For each run (of the timer, or of the fixed band): the cost of the cost-aware band at the same
    tracking error, interpolated along the cost-aware runs, and the ratio cost-aware / run (below 1, the
    cost-aware band is cheaper)."""
    curve = [(float(r["tracking_error_usd"]), float(r["cost_usd"])) for r in cost_aware_runs]
    rows = []
    for run in runs:
        te = float(run["tracking_error_usd"])
        run_cost = float(run["cost_usd"])
        cost, how = interpolate_cost(curve, te)
        rows.append({
            "setting": grid_label(run).split(" ", 1)[1],
            "tracking_error_usd": te,
            "cost_usd": run_cost,
            "cost_aware_cost_usd": cost,
            "ratio": cost / run_cost if run_cost else math.inf,
            "how": how,
        })
    return rows


def sweep_table(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """Markdown: every run's trades, costs and tracking error (the portfolio's, then each asset's)."""
    assets = next(iter(r for runs in results.values() for r in runs))["assets"]
    head = " | ".join(f"{a} TE (USD)" for a in assets)
    lines = [f"| policy | setting | trades | traded (USD) | fees (USD) | slippage (USD) | cost (USD) | "
             f"tracking error (USD) | {head} | max abs delta (USD) |",
             "|---|---|" + "---:|" * (7 + len(assets))]
    for policy in SWEEP_GRID:
        for run in results.get(policy, ()):
            label = grid_label(run).split(" ", 1)[1]
            per_asset = " | ".join(f"{run['assets'][a]['tracking_error_usd']:,.0f}" for a in assets)
            lines.append(
                f"| {policy} | {label} | {run['trades']:,} | {run['traded_notional_usd']:,.0f} | "
                f"{run['fees_usd']:,.0f} | {run['slippage_usd']:,.0f} | {run['cost_usd']:,.0f} | "
                f"{run['tracking_error_usd']:,.0f} | {per_asset} | {run['max_abs_delta_usd']:,.0f} |"
            )
    return "\n".join(lines) + "\n"


def comparison_table(rows: Sequence[Mapping[str, Any]], policy: str) -> str:
    """Markdown of `compare_at_same_tracking_error` rows."""
    lines = [f"| {policy} | tracking error (USD) | {policy} cost (USD) | cost-aware cost at that tracking "
             f"error (USD) | ratio cost-aware / {policy} | |", "|---|---:|---:|---:|---:|---|"]
    for row in rows:
        lines.append(
            f"| {row['setting']} | {row['tracking_error_usd']:,.0f} | {row['cost_usd']:,.0f} | "
            f"{row['cost_aware_cost_usd']:,.0f} | {row['ratio']:.2f} | {row['how']} |"
        )
    return "\n".join(lines) + "\n"
