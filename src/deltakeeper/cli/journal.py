"""`deltakeeper journal fills|funding|orders|decisions|pnl`: the journal, for people.

Mounted by the command line with `app.add_typer(journal_app, name="journal")`.

The views take filters (`--asset`, `--symbol`, `--side` where the view has one, `--since`, `--until`) and
page their table output (`--limit N --page P`, oldest first; `--limit 0` shows every row). CSV and JSON list
every matching row, with the columns of `JOURNAL_COLUMNS` in that order (kept stable: the README documents
them). `pnl` attributes the hedge's PnL per asset or per day (see `deltakeeper.domain.pnl`).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from deltakeeper.cli.args import Format
from deltakeeper.domain.durations import parse_time
from deltakeeper.domain.journal_rows import JournalQuery, row_dict

if TYPE_CHECKING:
    from deltakeeper.config import Settings
    from deltakeeper.ports import JournalReader

T = TypeVar("T")
journal_app = typer.Typer(no_args_is_help=True, help="Read the trade journal.")

JOURNAL_COLUMNS = {
    "fills": ["ts", "symbol", "side", "amount_contracts", "price", "fee", "fee_currency", "notional_usd",
              "is_maker", "kind", "trade_id", "exchange_order_id", "client_order_id", "recorded_at"],
    "funding": ["ts", "symbol", "amount", "currency", "rate", "position_contracts", "payment_id",
                "recorded_at"],
    "orders": ["created_ts", "updated_ts", "symbol", "asset", "side", "order_type", "amount_contracts",
               "price", "reference_price", "reduce_only", "status", "filled_contracts", "average_price",
               "reject_reason", "client_order_id", "exchange_order_id", "decision_id", "recorded_at"],
    "decisions": ["ts", "asset", "delta_coin", "delta_usd", "target_coin", "band_coin", "price_usd",
                  "reason", "trading_state", "symbol", "side", "amount_contracts", "est_cost_usd", "detail",
                  "decision_id", "recorded_at"],
}
TABLE_PRIORITY = {
    "fills": ["ts", "symbol", "side", "amount_contracts", "price", "fee", "fee_currency", "notional_usd"],
    "funding": ["ts", "symbol", "amount", "currency", "rate", "position_contracts"],
    "orders": ["created_ts", "symbol", "side", "amount_contracts", "status", "filled_contracts",
               "average_price", "price", "reference_price", "order_type", "reject_reason", "updated_ts"],
    "decisions": ["ts", "asset", "reason", "delta_coin", "target_coin", "band_coin", "side",
                  "amount_contracts", "price_usd", "symbol", "detail"],
}
"""On a terminal too narrow for every column, the columns kept first (then the rest in table order)."""
DEFAULT_PAGE_ROWS = 50


class SideChoice(str, Enum):
    buy = "buy"
    sell = "sell"


class ByChoice(str, Enum):
    asset = "asset"
    day = "day"


SinceOpt = Annotated[str | None, typer.Option("--since", help="From: 7d, 12h ago or an ISO time.")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="To (exclusive): 7d, 12h ago or an ISO time.")]
FormatOpt = Annotated[Format, typer.Option("--format")]
AssetOpt = Annotated[str | None, typer.Option("--asset", help="Only this asset, e.g. SOL.")]
SymbolOpt = Annotated[str | None, typer.Option("--symbol", help="Only this instrument, e.g. SOL/USDT:USDT.")]
SideOpt = Annotated[SideChoice | None, typer.Option("--side", help="Only buys or sells.")]
LimitOpt = Annotated[int, typer.Option("--limit", min=0, help="Table rows per page; 0 for every row.")]
PageOpt = Annotated[int, typer.Option("--page", min=1, help="Table page, from 1 (oldest rows first).")]


def _settings() -> Settings:
    from deltakeeper.config import load_settings

    return load_settings()


def _time_window(since: str | None, until: str | None) -> tuple[datetime | None, datetime | None]:

    now = datetime.now(UTC)
    return (parse_time(since, "--since", now) if since is not None else None,
            parse_time(until, "--until", now) if until is not None else None)


def readable_database(settings: Settings) -> str:
    """The journal's database URL, once it is known to hold the journal at the newest schema revision.

    A read never creates anything: a missing SQLite file or a database without the journal's schema (a
    wrong DK_DATA_DIR or DK_DATABASE_URL) is bad settings (exit 2); a schema at another revision is
    refused too (exit 1: `deltakeeper db upgrade` brings it up to date). Messages name the database, its
    password redacted."""
    from deltakeeper.adapters.journal.migrate import schema_revisions, sqlite_file
    from deltakeeper.cli.args import fail
    from deltakeeper.config import redact_url
    from deltakeeper.domain.errors import DeltakeeperError

    url = settings.database
    variable = "DK_DATABASE_URL" if settings.database_url else "DK_DATA_DIR"
    shown = redact_url(url)
    database_file = sqlite_file(url)
    if database_file is not None and not database_file.is_file():
        fail(variable, "a journal to read (`deltakeeper run` or `deltakeeper db upgrade` makes one)",
             f"{shown}: no such file")
    current, head = asyncio.run(schema_revisions(url))
    if not current:
        fail(variable, "a journal to read (`deltakeeper db upgrade` makes its schema)",
             f"{shown}: no journal schema")
    if current != head:
        raise DeltakeeperError(
            f"the journal at {shown} is at schema revision {', '.join(sorted(current))}, not "
            f"{', '.join(sorted(head))}: run `deltakeeper db upgrade`")
    return url


async def with_reader(database_url: str, read: Callable[[JournalReader], Awaitable[T]]) -> T:
    """`read(reader)` over the journal at `database_url`, its connection closed after."""
    from deltakeeper.adapters.journal import open_reader

    reader: JournalReader = open_reader(database_url)
    try:
        return await read(reader)
    finally:
        await reader.close()


async def read_journal_views(database_url: str, views: dict[str, JournalQuery]
                             ) -> dict[str, list[dict[str, Any]]]:
    """Several views (`app.console.JOURNAL_READS`) through one connection to the journal: {view: query} ->
    {view: rows as dicts}, for the output and the PnL attribution."""
    from deltakeeper.app.console import JOURNAL_READS

    async def read(reader: JournalReader) -> dict[str, list[dict[str, Any]]]:
        return {view: [row_dict(row) for row in await JOURNAL_READS[view](reader, query)]
                for view, query in views.items()}

    return await with_reader(database_url, read)


def _journal_view(view: str, fmt: Format, since: str | None, until: str | None, limit: int, page: int,
                  **filters: Any) -> None:
    from deltakeeper.cli.output import print_table, to_csv, to_json

    start, end = _time_window(since, until)
    query = JournalQuery(start, end, **{k: v.value if isinstance(v, Enum) else v for k, v in filters.items()})
    database = readable_database(_settings())
    columns = JOURNAL_COLUMNS[view]
    if fmt is not Format.table or limit == 0:
        rows = asyncio.run(read_journal_views(database, {view: query}))[view]
        if fmt is Format.json:
            print(to_json([{c: row.get(c) for c in columns} for row in rows]))
        elif fmt is Format.csv:
            sys.stdout.write(to_csv(rows, columns))
        else:
            print_table(rows, columns, title=f"{view} ({len(rows)})", priority=TABLE_PRIORITY[view])
        return
    offset = (page - 1) * limit
    paged = replace(query, limit=limit + 1, offset=offset)
    rows = asyncio.run(read_journal_views(database, {view: paged}))[view]
    more, rows = len(rows) > limit, rows[:limit]
    print_table(rows, columns, title=page_title(view, page, offset, len(rows), more),
                priority=TABLE_PRIORITY[view])


def page_title(view: str, page: int, offset: int, shown: int, more: bool) -> str:
    """`fills: rows 51-100, page 2 (more: --page 3)`; `fills: no rows on page 4`."""
    if not shown:
        return f"{view}: no rows" if page == 1 else f"{view}: no rows on page {page}"
    more_text = f" (more: --page {page + 1})" if more else " (last page)" if page > 1 else ""
    return f"{view}: rows {offset + 1}-{offset + shown}, page {page}{more_text}"


@journal_app.command("fills")
def journal_fills(
    since: SinceOpt = None,
    until: UntilOpt = None,
    asset: AssetOpt = None,
    symbol: SymbolOpt = None,
    side: SideOpt = None,
    fmt: FormatOpt = Format.table,
    limit: LimitOpt = DEFAULT_PAGE_ROWS,
    page: PageOpt = 1,
) -> None:
    """Every fill, with the exchange's trade and order ids and ours."""
    _journal_view("fills", fmt, since, until, limit, page, asset=asset, symbol=symbol, side=side)


@journal_app.command("funding")
def journal_funding(
    since: SinceOpt = None,
    until: UntilOpt = None,
    asset: AssetOpt = None,
    symbol: SymbolOpt = None,
    fmt: FormatOpt = Format.table,
    limit: LimitOpt = DEFAULT_PAGE_ROWS,
    page: PageOpt = 1,
) -> None:
    """Funding payments (positive = received)."""
    _journal_view("funding", fmt, since, until, limit, page, asset=asset, symbol=symbol)


@journal_app.command("orders")
def journal_orders(
    since: SinceOpt = None,
    until: UntilOpt = None,
    asset: AssetOpt = None,
    symbol: SymbolOpt = None,
    side: SideOpt = None,
    fmt: FormatOpt = Format.table,
    limit: LimitOpt = DEFAULT_PAGE_ROWS,
    page: PageOpt = 1,
) -> None:
    """Every order the bot journaled, with its final state."""
    _journal_view("orders", fmt, since, until, limit, page, asset=asset, symbol=symbol, side=side)


@journal_app.command("decisions")
def journal_decisions(
    since: SinceOpt = None,
    until: UntilOpt = None,
    asset: AssetOpt = None,
    symbol: Annotated[str | None, typer.Option(
        "--symbol", help="Only decisions that chose an order on this instrument.")] = None,
    side: Annotated[SideChoice | None, typer.Option(
        "--side", help="Only decisions that chose a buy, or a sell.")] = None,
    fmt: FormatOpt = Format.table,
    limit: LimitOpt = DEFAULT_PAGE_ROWS,
    page: PageOpt = 1,
) -> None:
    """Every decision: delta, band, chosen size, or why no trade."""
    _journal_view("decisions", fmt, since, until, limit, page, asset=asset, symbol=symbol, side=side)


@journal_app.command("pnl")
def journal_pnl(
    since: SinceOpt = None,
    until: UntilOpt = None,
    asset: AssetOpt = None,
    by: Annotated[ByChoice, typer.Option("--by", help="One row per asset, or per UTC day and asset.")
                  ] = ByChoice.asset,
    fmt: FormatOpt = Format.table,
) -> None:
    """PnL attribution in USD: the exposure being hedged beside the hedge's trading PnL (realised and
    marked), fees, funding paid and received, slippage against the decision's price, the net cost of
    staying hedged, and the net of it all. The last row is the total."""
    from deltakeeper.cli.output import print_table, to_csv, to_json
    from deltakeeper.domain.pnl import PNL_COLUMNS, attribute, total_row

    start, end = _time_window(since, until)
    database = readable_database(_settings())
    # Every fill up to `until`, also those before `since`: they make the position held at `since`.
    history = JournalQuery(until=end, asset=asset)
    in_window = replace(history, since=start)
    views = asyncio.run(read_journal_views(database, {
        "fills": history, "funding": in_window, "orders": JournalQuery(until=end), "decisions": in_window,
    }))
    before_since = asyncio.run(_decisions_just_before(database, start, asset)) if start is not None else []
    rows = attribute(views["fills"], views["funding"], views["orders"], before_since + views["decisions"],
                     by.value, since=start, until=end)
    rows.append(total_row(rows))
    if fmt is Format.json:
        print(to_json([{c: row.get(c) for c in PNL_COLUMNS} for row in rows]))
    elif fmt is Format.csv:
        sys.stdout.write(to_csv(rows, PNL_COLUMNS))
    else:
        window = f"{_when(start, 'the first row')} to {_when(end, 'the last')}"
        shown = [{header: _cents(row[column]) if column.endswith("_usd") and column != "mark_price_usd"
                  else row[column] for header, column in PNL_TABLE_COLUMNS.items()} for row in rows]
        print_table(shown, list(PNL_TABLE_COLUMNS), priority=PNL_TABLE_PRIORITY,
                    title=f"PnL in USD by {by.value}, {window} (to the cent; CSV and JSON are exact)")


PNL_TABLE_COLUMNS = {
    "period": "period", "asset": "asset", "fills": "fills", "exposure coin": "exposure_coin",
    "hedge coin": "position_coin", "mark": "mark_price_usd", "exposure pnl": "exposure_pnl_usd",
    "hedge pnl": "hedge_pnl_usd", "realised": "realised_pnl_usd", "marked": "marked_pnl_usd",
    "slippage": "slippage_usd", "fees": "fees_usd", "funding paid": "funding_paid_usd",
    "funding received": "funding_received_usd", "cost of hedging": "hedging_cost_usd",
    "hedge total": "total_usd", "net": "net_pnl_usd",
}
"""The table's headers and the columns they show (the table leaves out traded, market PnL, unpriced)."""
PNL_TABLE_PRIORITY = ["asset", "period", "exposure pnl", "hedge pnl", "fees", "net", "funding paid",
                      "funding received", "hedge total", "cost of hedging", "exposure coin", "hedge coin",
                      "mark", "slippage", "fills", "realised", "marked"]
"""On a terminal too narrow for every column, the columns kept first."""


def _cents(value: Any) -> Any:
    """USD to the cent, `-0.00` as `0.00`."""
    if value is None:
        return None
    text = f"{value:.2f}"
    return "0.00" if text == "-0.00" else text


def _when(value: datetime | None, otherwise: str) -> str:
    return value.isoformat().replace("+00:00", "Z") if value is not None else otherwise


async def _decisions_just_before(database_url: str, since: datetime, asset: str | None
                                 ) -> list[dict[str, Any]]:
    """Per asset the last decision before `since` (its price marks the position held at `since`, its delta
    gives the exposure held then), without reading every older decision."""
    rows = await with_reader(database_url, lambda reader: reader.latest_decisions(before=since, asset=asset))
    return [row_dict(row) for row in rows]
