"""`deltakeeper backtest`: the command. Settings are the live bot's `DK_` variables; flags override them.
Results go to stdout (a table, or JSON with money as decimal strings); bad input raises ConfigError."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from deltakeeper.backtest.data import parse_file_specs
from deltakeeper.backtest.run import load_dataset, run_dataset, sweep_dataset
from deltakeeper.backtest.settings import POLICIES, BacktestSettings
from deltakeeper.domain.durations import parse_duration_secs
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.policy import Band, BandUnit, RebalanceTo


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def _number(text: str, flag: str, expected: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ConfigError(flag, expected, text) from None
    if not value.is_finite():
        raise ConfigError(flag, expected, text)
    return value


def apply_overrides(
    settings: BacktestSettings,
    *,
    rebalance_to: str | None = None,
    band_pct: str | None = None,
    timer: str | None = None,
    risk_aversion: str | None = None,
    max_deviation_pct: str | None = None,
    slippage_bps: str | None = None,
    spread_bps: str | None = None,
    skip_horizon: str | None = None,
    option_vol: str | None = None,
) -> BacktestSettings:
    """The flags on top of the settings from the environment."""
    changes: dict[str, Any] = {}
    if rebalance_to is not None:
        if rebalance_to not in ("edge", "target"):
            raise ConfigError("--rebalance-to", "edge or target", rebalance_to)
        changes["rebalance_to"] = RebalanceTo(rebalance_to)
    if band_pct is not None:
        pct = _number(band_pct, "--band-pct", "a percentage in (0, 100]")
        if not 0 < pct <= 100:
            raise ConfigError("--band-pct", "a percentage in (0, 100]", band_pct)
        changes["default_band"] = Band(BandUnit.PCT, pct)
        changes["asset_bands"] = {}
    if timer is not None:
        secs = parse_duration_secs(timer, "--timer")
        if secs <= 0:
            raise ConfigError("--timer", "a positive duration", timer)
        changes["timer_secs"] = secs
    if risk_aversion is not None:
        ra = _number(risk_aversion, "--risk-aversion", "a positive number per USD, such as 1e-4")
        if ra <= 0:
            raise ConfigError("--risk-aversion", "a positive number per USD, such as 1e-4", risk_aversion)
        changes["risk_aversion_per_usd"] = float(ra)
    if max_deviation_pct is not None:
        pct = _number(max_deviation_pct, "--max-deviation-pct", "a percentage in (0, 100]")
        if not 0 < pct <= 100:
            raise ConfigError("--max-deviation-pct", "a percentage in (0, 100]", max_deviation_pct)
        changes["max_deviation_pct"] = pct
    if slippage_bps is not None:
        bps = _number(slippage_bps, "--slippage-bps", "a non-negative number of bps")
        if bps < 0:
            raise ConfigError("--slippage-bps", "a non-negative number of bps", slippage_bps)
        changes["slippage_bps"] = bps
    if spread_bps is not None:
        bps = _number(spread_bps, "--spread-bps", "a non-negative number of bps")
        if bps < 0:
            raise ConfigError("--spread-bps", "a non-negative number of bps", spread_bps)
        changes["spread_bps"] = float(bps)
    if skip_horizon is not None:
        changes["skip_horizon_secs"] = parse_duration_secs(skip_horizon, "--skip-horizon")
    if option_vol is not None:
        vol = _number(option_vol, "--option-vol", "a positive annualised volatility (0.6 = 60%)")
        if vol <= 0:
            raise ConfigError("--option-vol", "a positive annualised volatility (0.6 = 60%)", option_vol)
        changes["option_vol"] = float(vol)
    return replace(settings, **changes)


def backtest(
    prices: Annotated[list[str] | None, typer.Option(
        "--prices", metavar="[ASSET=]FILE[:OPTIONS]",
        help="Price bars (CSV or Parquet: timestamp and close columns; ms or ISO times), one per asset: "
             "ASSET=FILE, or the asset from the file name (BTCUSDT_5m.csv is BTC). OPTIONS, separated by "
             "commas: close=COLUMN, time=COLUMN, tz=ZONE (of times without one), and COLUMN=VALUE to keep "
             "only those rows, e.g. BTC=all.csv:exchange=bybit,pair=BTCUSDT. Known files (OKX hourly, the "
             "multi-exchange 8h CSV) are recognised by their columns. Repeatable.")
    ] = None,
    funding: Annotated[list[str] | None, typer.Option(
        "--funding", metavar="[ASSET=]FILE[:OPTIONS]",
        help="Funding rates (CSV or Parquet of timestamp and rate), settled at their timestamps; the same "
             "OPTIONS as --prices with rate=COLUMN for close=, and every=HOURS to keep only the rates on "
             "that UTC grid. A span of the prices without rates is reported (stderr and `warnings`). "
             "Repeatable.")] = None,
    exposure: Annotated[str, typer.Option(
        "--exposure", help="static[:USD] (DK_EXTERNAL__<ASSET> coins, else worth USD per asset), lp[:USD] "
                           "(a x*y=k pool per asset, 1000000 USD by default), inventory=FILE "
                           "(CSV of timestamp,asset,quantity) or calls:N[:STRIKE_PCT[:DAYS]] (N coin-settled "
                           "calls per asset, + long, e.g. calls:-10; strike 110 % of the first price and "
                           "expiry 30 days after it by default; Black-76 at --option-vol).")] = "static",
    policy: Annotated[str | None, typer.Option(
        "--policy", help="timer, band or cost-aware, or several separated by commas (timer,cost-aware); "
                         "default: DK_POLICY.")] = None,
    sweep: Annotated[bool, typer.Option(
        "--sweep", help="Run each policy's fixed grid: timer 1h/4h/8h/24h, band 0.5/1/2/5/10 % of gross, "
                        "cost-aware risk aversion 1e-6/1e-5/1e-4/1e-3 per USD. With the timer among the "
                        "policies, every other run shows the timer's cost at its tracking error.")] = False,
    fmt: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE.png",
        help="Draw cost (fees + slippage) against tracking error, a curve per policy.")] = None,
    plot_series: Annotated[Path | None, typer.Option(
        "--plot-series", metavar="FILE.png",
        help="Draw one run over time: each asset's delta off target and band (USD), and the cumulative "
             "cost.")] = None,
    rebalance_to: Annotated[str | None, typer.Option(
        "--rebalance-to", help="edge or target (overrides DK_REBALANCE_TO).")] = None,
    band_pct: Annotated[str | None, typer.Option(
        "--band-pct", help="Every asset's band, percent of gross exposure (overrides DK_*BAND*).")] = None,
    timer: Annotated[str | None, typer.Option(
        "--timer", help="Timer interval: 3600, 90m, 4h, 1d (overrides DK_TIMER_SECS).")] = None,
    risk_aversion: Annotated[str | None, typer.Option(
        "--risk-aversion", help="Per USD (overrides DK_RISK_AVERSION).")] = None,
    max_deviation_pct: Annotated[str | None, typer.Option(
        "--max-deviation-pct", help="Cost-aware hard maximum deviation, percent of gross "
                                    "(overrides DK_MAX_DEVIATION_PCT).")] = None,
    slippage_bps: Annotated[str | None, typer.Option(
        "--slippage-bps", help="Slippage estimate in the cost rate (overrides DK_SLIPPAGE_BPS).")] = None,
    spread_bps: Annotated[str | None, typer.Option(
        "--spread-bps",
        help="Quoted spread around each close, bps (overrides DK_BACKTEST_SPREAD_BPS).")] = None,
    skip_horizon: Annotated[str | None, typer.Option(
        "--skip-horizon", help="Fixed band's skip rule horizon, 0 = off (overrides DK_SKIP_HORIZON_SECS).")
    ] = None,
    option_vol: Annotated[str | None, typer.Option(
        "--option-vol", help="Implied volatility of --exposure calls (default 0.6 = 60%).")] = None,
) -> None:
    """Replay price history through the decision code and the simulated exchange: cost against tracking
    error for a policy's settings."""
    from deltakeeper.cli.output import print_table, to_json

    if not prices:
        raise ConfigError("--prices", "at least one price file, as ASSET=FILE or FILE")
    price_files = parse_file_specs(prices, "--prices")
    funding_files = parse_file_specs(funding or [], "--funding")
    unknown = sorted(set(funding_files) - set(price_files))
    if unknown:
        raise ConfigError("--funding", "assets that have --prices", ", ".join(unknown))
    from deltakeeper.config import load_settings

    live = load_settings()
    names = [n.strip() for n in (policy if policy is not None else str(live.policy)).split(",")]
    for name in names:
        if name not in POLICIES:
            raise ConfigError("--policy", "timer, band or cost-aware (several separated by commas)", name)
    if len(set(names)) != len(names):
        raise ConfigError("--policy", "each policy once", policy)
    settings = apply_overrides(
        BacktestSettings.from_settings(live), rebalance_to=rebalance_to, band_pct=band_pct, timer=timer,
        risk_aversion=risk_aversion, max_deviation_pct=max_deviation_pct, slippage_bps=slippage_bps,
        spread_bps=spread_bps, skip_horizon=skip_horizon, option_vol=option_vol,
    )
    settings.validate()
    for flag, path in (("--plot", plot), ("--plot-series", plot_series)):
        if path is not None and path.suffix.lower() != ".png":
            raise ConfigError(flag, "a file name ending in .png", str(path))
    if plot_series is not None and (sweep or len(names) > 1):
        raise ConfigError("--plot-series", "one run: one policy, without --sweep", str(plot_series))
    data = load_dataset(price_files, funding_files, exposure, settings.spread_bps)
    for warning in data.warnings:
        typer.echo(f"warning: {warning}", err=True)
    results = []
    for name in names:
        if sweep:
            results.extend(sweep_dataset(data, name, settings))
        else:
            results.append(run_dataset(data, name, settings, series=plot_series is not None))
    if plot_series is not None:
        from deltakeeper.backtest.report import plot_series as draw_series

        draw_series(results[0], results[0].pop("series"), plot_series)
    if plot is not None:
        from deltakeeper.backtest.report import plot_cost_vs_tracking_error

        plot_cost_vs_tracking_error(results, plot)
    from deltakeeper.backtest.report import add_timer_comparison

    add_timer_comparison(results)
    many = len(results) > 1
    if fmt is OutputFormat.json:
        print(to_json(results if many else results[0]))
    else:
        from deltakeeper.backtest.report import table_columns, table_rows

        first = results[0]
        title = (f"{', '.join(names)} on {', '.join(first['assets'])}, {first['exposure']}, "
                 f"{first['start']:%Y-%m-%d %H:%M} to {first['end']:%Y-%m-%d %H:%M} UTC, "
                 f"{first['price_events']} price events")
        print_table(table_rows(results, per_asset=not many), table_columns(results), title=title)
