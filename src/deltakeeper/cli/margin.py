"""`deltakeeper margin`: the margin report (`domain.margin_report`) of a portfolio file or the live account.

The portfolio file is that of `deltakeeper delta` (a ccxt-shaped snapshot) with these optional keys besides:
`timestamp` (ms; needed only by dated futures and options), `leverage_tiers` (`{symbol: [{floor, cap,
mmr}]}`, or ccxt `fetch_leverage_tiers` entries `{minNotional, maxNotional, maintenanceMarginRate}`) and
`portfolio_margin` (`{"include_spot": true, "params": {ASSET: {field: value}}}`, fields of
`domain.portfolio_margin.PortfolioMarginParams`).

Without `--portfolio`, the command reports on the live account the DK_ settings configure, as `deltakeeper
run` reaches it (DK_EXCHANGE, DK_EXCHANGE_URL, the keys): the adapter reads it into the same document
(`CcxtExchange.portfolio_document`: ccxt's positions with the exchange's margin figures, their markets and
leverage tiers, the wallet balances, each held asset's mark price, the time).
"""

from __future__ import annotations

import asyncio
import dataclasses
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deltakeeper.cli.args import read_json_file
from deltakeeper.domain.errors import ConfigError, ExchangeUnavailable
from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.margin_legs import TierTables
from deltakeeper.domain.margin_report import MarginBook
from deltakeeper.domain.margin_report import margin_report as report_of
from deltakeeper.domain.margin_tiers import MarginTier, cumulative_amounts_usd
from deltakeeper.domain.portfolio_margin import PortfolioMarginParams

if TYPE_CHECKING:
    from deltakeeper.config import Settings


class MarginFormat(str, Enum):
    table = "table"
    json = "json"


def margin_report(doc: object) -> dict[str, Any]:
    """The margin report of a portfolio file (module notes). Raises ConfigError on bad input."""
    from deltakeeper.adapters.portfolio_file import portfolio_from_json, portfolio_time

    portfolio = portfolio_from_json(doc)
    assert isinstance(doc, dict)
    as_of = portfolio_time(doc)
    tiers = _tier_tables(doc, portfolio.instruments)
    include_spot, params = _pm_settings(doc)
    return report_of(MarginBook(
        portfolio.instruments, portfolio.balances, portfolio.positions, portfolio.prices,
        as_of, tiers, include_spot, params,
    ))


def _config(where: str, expected: str, got: object = None) -> ConfigError:
    return ConfigError(where, expected, got)


def _tier_tables(doc: dict[str, Any], instruments: dict[str, Instrument]) -> TierTables:
    from deltakeeper.adapters.ccxt_markets import tier_from_ccxt
    from deltakeeper.adapters.ccxt_parse import MalformedPayload

    section = doc.get("leverage_tiers", {})
    if not isinstance(section, dict):
        raise _config("leverage_tiers", "a JSON object {symbol: [{floor, cap, mmr}]}", section)
    tables: dict[str, tuple[MarginTier, ...]] = {}
    for symbol, entries in section.items():
        where = f"leverage_tiers.{symbol}"
        if symbol not in instruments:
            raise _config(where, "a symbol listed in markets", symbol)
        if not isinstance(entries, list) or not entries:
            raise _config(where, "a list of tiers {floor, cap, mmr}", entries)
        tiers = []
        for i, entry in enumerate(entries):
            at = f"{where}[{i}]"
            if not isinstance(entry, dict):
                raise _config(at, "a tier {floor, cap, mmr}", entry)
            ccxt_entry = {ccxt_key: _given(entry, key, ccxt_key) for key, ccxt_key in (
                ("floor", "minNotional"), ("cap", "maxNotional"), ("mmr", "maintenanceMarginRate"))}
            try:
                tiers.append(tier_from_ccxt(ccxt_entry))
            except MalformedPayload:
                raise _config(at, "floor (or minNotional) and mmr (or maintenanceMarginRate) in [0, 1)",
                              entry) from None
        try:
            cumulative_amounts_usd(tiers)
        except ValueError as exc:
            raise _config(where, f"contiguous ascending tiers ({exc})") from None
        tables[symbol] = tuple(tiers)
    return tables


def _given(entry: dict[str, Any], key: str, other_key: str) -> Any:
    """The entry's `key`, else its `other_key` (a tier's short name, else ccxt's)."""
    value = entry.get(key)
    return entry.get(other_key) if value is None or value == "" else value


def _pm_settings(doc: dict[str, Any]) -> tuple[bool, dict[str, PortfolioMarginParams]]:
    section = doc.get("portfolio_margin", {})
    if not isinstance(section, dict):
        raise _config("portfolio_margin", "a JSON object {include_spot, params}", section)
    include_spot = section.get("include_spot", True)
    if not isinstance(include_spot, bool):
        raise _config("portfolio_margin.include_spot", "true or false", include_spot)
    raw_params = section.get("params", {})
    if not isinstance(raw_params, dict):
        raise _config("portfolio_margin.params", "a JSON object {ASSET: {field: value}}", raw_params)
    fields = {f.name: f for f in dataclasses.fields(PortfolioMarginParams)}
    params: dict[str, PortfolioMarginParams] = {}
    for asset, overrides in raw_params.items():
        where = f"portfolio_margin.params.{asset}"
        if not isinstance(overrides, dict):
            raise _config(where, "a JSON object of PortfolioMarginParams fields", overrides)
        values: dict[str, Any] = {}
        for name, value in overrides.items():
            if name not in fields or name == "include_spot":
                names = ", ".join(n for n in fields if n != "include_spot")
                raise _config(f"{where}.{name}", f"one of {names}")
            try:
                if name == "extended_moves":
                    values[name] = tuple(float(v) for v in value)
                elif isinstance(value, bool) or not isinstance(value, int | float):
                    raise TypeError
                else:
                    values[name] = float(value)
            except (TypeError, ValueError):
                expected = "a number (extended_moves: a list of numbers)"
                raise _config(f"{where}.{name}", expected, value) from None
        params[str(asset).upper()] = PortfolioMarginParams(**values)
    return include_spot, params


# The command

SETTLE_COLUMNS = ["settle", "pm_initial", "pm_maintenance", "standard_initial", "standard_maintenance",
                  "capital_freed", "pm_headroom", "standard_headroom"]
POSITION_COLUMNS = ["symbol", "size_coin", "liquidation_price", "liquidation_move",
                    "source", "estimate_liquidation_price", "exchange_liquidation_price", "estimate_im",
                    "exchange_im", "estimate_mm", "exchange_mm", "disagree"]
GROUP_COLUMNS = ["asset", "settle", "worst_loss", "roll_shock", "initial", "maintenance", "equity",
                 "to_margin_call_up", "to_margin_call_down"]


def margin(
    portfolio: Annotated[Path | None, typer.Option("--portfolio", help="JSON file of a portfolio")] = None,
    fmt: Annotated[MarginFormat, typer.Option("--format")] = MarginFormat.table,
) -> None:
    """Margin under portfolio and standard cross margin, the capital portfolio margin frees, and each
    leg's distance to liquidation: of a portfolio file, else of the live account the DK_ settings
    configure (DK_EXCHANGE, DK_EXCHANGE_URL, the keys)."""
    from deltakeeper.app.venue_margin import venue_line
    from deltakeeper.cli.output import plain, print_table, to_json

    doc = live_portfolio() if portfolio is None else read_json_file(portfolio, "--portfolio")
    report = margin_report(doc)
    report["account_margin"] = doc.get("account_margin") if isinstance(doc, dict) else None
    if fmt is MarginFormat.json:
        print(to_json(report))
        return
    data = plain(report)
    rows = []
    for settle in sorted(set(data["portfolio_margin"]) | set(data["standard_margin"])):
        pm = data["portfolio_margin"].get(settle, {})
        sm = data["standard_margin"].get(settle, {})
        rows.append({
            "settle": settle, "pm_initial": pm.get("initial"), "pm_maintenance": pm.get("maintenance"),
            "standard_initial": sm.get("initial"), "standard_maintenance": sm.get("maintenance"),
            "capital_freed": data["capital_freed"].get(settle),
            "pm_headroom": _pct(data["headroom"]["portfolio_margin"].get(settle)),
            "standard_headroom": _pct(data["headroom"]["standard_margin"].get(settle)),
        })
    print(f"as of: {data['as_of'] or 'not given'}; capital freed by portfolio margin: "
          f"{data['capital_freed_usd']} USD")
    print(venue_line(data["account_margin"], data["headroom"]["standard_margin"]))
    print_table(rows, SETTLE_COLUMNS, title="margin by settlement currency")
    print_table([{
        **g, "to_margin_call_up": _pct(g["move_to_margin_call"]["up"]),
        "to_margin_call_down": _pct(g["move_to_margin_call"]["down"]),
    } for g in data["portfolio_margin_groups"]], GROUP_COLUMNS, title="portfolio margin grids")
    print_table([{
        **p, "liquidation_move": _pct(p["liquidation_move"]), "source": p["liquidation_source"],
        "estimate_liquidation_price": p["estimate"]["liquidation_price"],
        "exchange_liquidation_price": p["exchange"].get("liquidation_price"),
        "estimate_im": p["estimate"]["initial_margin"], "exchange_im": p["exchange"].get("initial_margin"),
        "estimate_mm": p["estimate"]["maintenance_margin"],
        "exchange_mm": p["exchange"].get("maintenance_margin"),
        "disagree": ", ".join(p["disagreements"]),
    } for p in data["positions"]], POSITION_COLUMNS, title="positions (liquidation: the leg alone)")
    for note in data["notes"]:
        print(f"note: {note}")


def live_portfolio() -> dict[str, Any]:
    """The live account as a portfolio file, read through the exchange adapter `deltakeeper run` builds
    from the settings. ConfigError for the simulated exchange (its account lives inside `deltakeeper run`);
    ExchangeUnavailable naming the exchange when it cannot be reached."""
    from deltakeeper.config import Mode, load_settings, secret_values
    from deltakeeper.logging import configure_logging

    settings = load_settings()
    if settings.mode is Mode.PAPER:
        raise ConfigError("DK_MODE", "live or shadow, or --portfolio: the paper account lives inside "
                          "`deltakeeper run`", "paper")
    if settings.exchange == "sim":
        raise ConfigError("DK_EXCHANGE", "a ccxt exchange id, or --portfolio: the simulated exchange's "
                          "account lives inside `deltakeeper run`", "sim")
    configure_logging(settings.log_level, settings.log_format, secret_values(settings))
    return asyncio.run(_read_account(settings))


async def _read_account(settings: Settings) -> dict[str, Any]:
    from deltakeeper.adapters.ccxt_exchange import CcxtExchange
    from deltakeeper.app.venue_margin import VenueMarginView, venue_entry
    from deltakeeper.bootstrap import build_exchange
    from deltakeeper.domain.policy import price_symbol

    exchange, clock = build_exchange(settings)
    assert isinstance(exchange, CcxtExchange)
    try:
        doc = await exchange.portfolio_document(price_symbol)
        doc["account_margin"] = venue_entry(await VenueMarginView(exchange, clock).refresh())
        return doc
    except ExchangeUnavailable as exc:
        where = f" at {settings.exchange_url}" if settings.exchange_url else ""
        raise ExchangeUnavailable(f"cannot reach {settings.exchange}{where}: {exc}") from exc
    finally:
        await exchange.close()


def _pct(x: float | None) -> str:
    """A relative move or ratio for a table; `none` where there is none (no move within the range)."""
    return "none" if x is None else f"{x:+.2%}"


__all__ = ["MarginFormat", "live_portfolio", "margin", "margin_report"]
