"""The command line: `deltakeeper run|journal|delta|config|db|healthcheck|sim-exchange`.

Results go to stdout, logs to stderr. Exit codes: 0 success, 2 bad settings or input, 1 anything else.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from deltakeeper.domain.errors import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Delta-neutral rebalancing bot.")
journal_app = typer.Typer(no_args_is_help=True, help="Read the trade journal.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(journal_app, name="journal")
app.add_typer(db_app, name="db")

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_UNIT_SECS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class ShortFormat(str, Enum):
    table = "table"
    json = "json"


def fail(variable: str, expected: str, got: object = None) -> NoReturn:
    raise ConfigError(variable, expected, got)


def parse_duration_secs(text: str, name: str) -> float:
    match = _DURATION.match(text.strip())
    if not match:
        fail(name, "a duration such as 30s, 5m, 2h or 7d", text)
    return float(match.group(1)) * _UNIT_SECS[match.group(2) or "s"]


def parse_time(text: str | None, name: str, now: datetime) -> datetime | None:
    """`7d` (that long ago) or an ISO-8601 time (UTC when it names no zone)."""
    if text is None:
        return None
    if _DURATION.match(text.strip()):
        return now - timedelta(seconds=parse_duration_secs(text, name))
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        fail(name, "a duration such as 7d or an ISO-8601 time", text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _settings():  # type: ignore[no-untyped-def]
    from deltakeeper.config import load_settings

    return load_settings()


@app.command()
def run(
    for_: Annotated[str | None, typer.Option("--for", help="Stop after this long, e.g. 30s or 2h.")] = None,
) -> None:
    """Run the service: stream, decide, hedge, journal. SIGINT/SIGTERM stop it cleanly."""
    from deltakeeper.bootstrap import run_service
    from deltakeeper.logging import configure_logging

    duration_secs = parse_duration_secs(for_, "--for") if for_ else None
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(run_service(settings, duration_secs))


@app.command()
def config(fmt: Annotated[ShortFormat, typer.Option("--format")] = ShortFormat.table) -> None:
    """Print the effective settings, secrets redacted."""
    from deltakeeper.config import effective_settings
    from deltakeeper.output import print_table, to_json

    values = effective_settings(_settings())
    if fmt is ShortFormat.json:
        print(to_json(values))
    else:
        rows = [{"variable": k, "value": "" if v is None else v} for k, v in values.items()]
        print_table(rows, ["variable", "value"])


@app.command()
def delta(
    portfolio: Annotated[Path, typer.Option("--portfolio", help="JSON file of a portfolio")],
    fmt: Annotated[ShortFormat, typer.Option("--format")] = ShortFormat.table,
) -> None:
    """Compute per-asset delta of a portfolio file, offline."""
    from deltakeeper.adapters.ccxt_parse import portfolio_from_json
    from deltakeeper.domain.exposure import asset_deltas
    from deltakeeper.output import print_table, to_json

    try:
        doc = json.loads(portfolio.read_text())
    except OSError:
        fail("--portfolio", "a readable JSON file", str(portfolio))
    except json.JSONDecodeError as exc:
        fail("--portfolio", f"valid JSON ({exc.msg} at line {exc.lineno})", str(portfolio))
    instruments, balances, positions, prices, external = portfolio_from_json(doc)
    try:
        deltas = asset_deltas(instruments, balances, positions, prices, external)
    except KeyError as exc:
        fail("--portfolio", f"a complete portfolio: {exc.args[0]}")
    assets = {a: {"delta_coin": d.delta_coin, "delta_usd": d.delta_usd} for a, d in deltas.items()}
    if fmt is ShortFormat.json:
        print(to_json({"assets": assets}))
    else:
        print_table([{"asset": a, **v} for a, v in assets.items()], ["asset", "delta_coin", "delta_usd"])


JOURNAL_COLUMNS = {
    "fills": ["ts", "symbol", "side", "amount_contracts", "price", "fee", "fee_currency", "notional_usd",
              "is_maker", "trade_id", "exchange_order_id", "client_order_id", "recorded_at"],
    "funding": ["ts", "symbol", "amount", "currency", "rate", "position_contracts", "payment_id",
                "recorded_at"],
    "orders": ["created_ts", "updated_ts", "symbol", "asset", "side", "order_type", "amount_contracts",
               "price", "reference_price", "reduce_only", "status", "filled_contracts", "average_price",
               "reject_reason", "client_order_id", "exchange_order_id", "decision_id", "recorded_at"],
    "decisions": ["ts", "asset", "delta_coin", "delta_usd", "target_coin", "band_coin", "price_usd",
                  "reason", "trading_state", "symbol", "side", "amount_contracts", "est_cost_usd", "detail",
                  "decision_id", "recorded_at"],
}


async def _read_journal(database_url: str, view: str, **filters: object) -> list[dict[str, object]]:
    from deltakeeper.adapters.journal import create_journal

    journal = create_journal(database_url)
    try:
        rows: list[dict[str, object]] = await getattr(journal, f"list_{view}")(**filters)
        return rows
    finally:
        await journal.close()


def _journal_view(view: str, since: str | None, until: str | None, fmt: Format) -> None:
    from deltakeeper.adapters.journal import upgrade
    from deltakeeper.output import print_table, to_csv, to_json

    now = datetime.now(UTC)
    settings = _settings()
    filters = {"since": parse_time(since, "--since", now), "until": parse_time(until, "--until", now)}
    upgrade(settings.database)
    rows = asyncio.run(_read_journal(settings.database, view, **filters))
    columns = JOURNAL_COLUMNS[view]
    if fmt is Format.json:
        print(to_json([{c: row.get(c) for c in columns} for row in rows]))
    elif fmt is Format.csv:
        sys.stdout.write(to_csv(rows, columns))
    else:
        print_table(rows, columns, title=f"{view} ({len(rows)})")


SinceOpt = Annotated[str | None, typer.Option("--since", help="7d, 12h or an ISO time")]
UntilOpt = Annotated[str | None, typer.Option("--until", help="7d, 12h or an ISO time")]
FormatOpt = Annotated[Format, typer.Option("--format")]


@journal_app.command("fills")
def journal_fills(since: SinceOpt = None, until: UntilOpt = None, fmt: FormatOpt = Format.table) -> None:
    """Every fill, with the exchange's trade and order ids and ours."""
    _journal_view("fills", since, until, fmt)


@journal_app.command("funding")
def journal_funding(since: SinceOpt = None, until: UntilOpt = None, fmt: FormatOpt = Format.table) -> None:
    """Funding payments (positive = received)."""
    _journal_view("funding", since, until, fmt)


@journal_app.command("orders")
def journal_orders(since: SinceOpt = None, until: UntilOpt = None, fmt: FormatOpt = Format.table) -> None:
    """Every order the bot journaled, with its final state."""
    _journal_view("orders", since, until, fmt)


@journal_app.command("decisions")
def journal_decisions(since: SinceOpt = None, until: UntilOpt = None, fmt: FormatOpt = Format.table) -> None:
    """Every decision: delta, band, chosen size, or why no trade."""
    _journal_view("decisions", since, until, fmt)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the journal's schema to the latest migration."""
    from deltakeeper.adapters.journal.migrate import upgrade
    from deltakeeper.config import redact_url

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database)
    print(f"database upgraded: {redact_url(settings.database)}")


@app.command()
def healthcheck() -> None:
    """Exit 0 while the running service's heartbeat is fresh (the container's HEALTHCHECK)."""
    settings = _settings()
    path = settings.data_dir / "heartbeat"
    max_age_secs = max(3 * settings.recompute_secs, 30.0)
    try:
        age_secs = time.time() - float(path.read_text().strip())
    except (OSError, ValueError):
        print(f"unhealthy: no heartbeat at {path}")
        raise typer.Exit(1) from None
    if age_secs > max_age_secs:
        print(f"unhealthy: heartbeat {age_secs:.0f}s old (limit {max_age_secs:.0f}s)")
        raise typer.Exit(1)
    print(f"healthy: heartbeat {age_secs:.1f}s old")


@app.command("sim-exchange")
def sim_exchange(
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one")] = 9464,
    api_key: Annotated[str, typer.Option("--api-key")] = "dk-sim-key",
    api_secret: Annotated[str, typer.Option("--api-secret")] = "dk-sim-secret",
    allow_withdraw: Annotated[bool, typer.Option(help="Give keys withdrawal rights")] = False,
) -> None:
    """Run the Bybit-v5 emulator: REST and websockets on one port, for ccxt to trade against."""
    from deltakeeper.logging import configure_logging
    from deltakeeper.sim.bybit.cli import run_emulator

    settings = _settings()
    configure_logging(settings.log_level, settings.log_format)
    asyncio.run(run_emulator(settings, host, port, {api_key: api_secret}, allow_withdraw))


def main() -> None:
    try:
        app(standalone_mode=False)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # click's usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
