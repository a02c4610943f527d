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


def table_rows(results: Sequence[Mapping[str, Any]], per_asset: bool) -> list[dict[str, Any]]:
    """One row per run (with `per_asset`: one per asset, then the portfolio's), money to the cent."""
    rows = []
    for result in results:
        label = grid_label(result)
        if per_asset:
            for asset, figures in result["assets"].items():
                values = {c: _cents(figures.get(c)) for c in TABLE_COLUMNS[1:]}
                rows.append({"run": f"{label} {asset}", **values})
        rows.append({"run": f"{label}" + (" portfolio" if per_asset else ""),
                     **{c: _cents(result.get(c)) for c in TABLE_COLUMNS[1:]}})
    return rows


def plot_cost_vs_tracking_error(results: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Cost (fees + slippage) against tracking error, one labelled point per run, one line per policy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--plot", "matplotlib installed (pip install matplotlib)") from None
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
    axes.set_xlabel("tracking error (USD, RMS of the delta's deviation)")
    axes.set_ylabel("cost (USD, fees + slippage)")
    first = results[0]
    axes.set_title(f"{', '.join(first['assets'])}: {first['exposure']}, {first['start']:%Y-%m-%d} to "
                   f"{first['end']:%Y-%m-%d}")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as exc:
        raise ConfigError("--plot", "a writable PNG path", f"{path}: {exc}") from None
    finally:
        plt.close(figure)


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
