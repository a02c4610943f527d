"""The command line: `deltakeeper run|status|halt|resume|cancel-all|journal|delta|config|db|healthcheck|
sim-exchange|fault-proxy`.

Results go to stdout, logs to stderr. Exit codes: 0 success, 2 bad settings or input, 1 anything else.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from deltakeeper.cli.args import ShortFormat, fail, read_json_file
from deltakeeper.cli.backtest import backtest
from deltakeeper.cli.journal import journal_app
from deltakeeper.cli.margin import margin
from deltakeeper.domain.durations import parse_duration_secs
from deltakeeper.domain.errors import ConfigError

if TYPE_CHECKING:
    from deltakeeper.config import Settings
    from deltakeeper.domain.journal_rows import DecisionRow, SnapshotRow
    from deltakeeper.domain.records import ControlState
    from deltakeeper.ports import JournalReader

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Delta-neutral rebalancing bot.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
app.add_typer(journal_app, name="journal")
app.add_typer(db_app, name="db")
app.command("margin")(margin)
app.command("backtest")(backtest)

def _settings():  # type: ignore[no-untyped-def]
    from deltakeeper.config import load_settings

    return load_settings()


@app.command()
def run(
    for_: Annotated[str | None, typer.Option("--for", help="Stop after this long, e.g. 30s or 2h.")] = None,
) -> None:
    """Run the service: stream, decide, hedge, journal. SIGINT/SIGTERM stop it cleanly."""
    from deltakeeper.bootstrap import run_service
    from deltakeeper.config import secret_values
    from deltakeeper.logging import configure_logging

    duration_secs = parse_duration_secs(for_, "--for") if for_ else None
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format, secret_values(settings))
    asyncio.run(run_service(settings, duration_secs))


@app.command()
def config(fmt: Annotated[ShortFormat, typer.Option("--format")] = ShortFormat.table) -> None:
    """Print the effective settings, secrets redacted."""
    from deltakeeper.cli.output import print_table, to_json
    from deltakeeper.config import effective_settings

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
    from deltakeeper.adapters.portfolio_file import portfolio_from_json, portfolio_time
    from deltakeeper.cli.output import print_table, to_json
    from deltakeeper.domain.exposure import asset_deltas

    doc = read_json_file(portfolio, "--portfolio")
    try:
        deltas = asset_deltas(*portfolio_from_json(doc), as_of=portfolio_time(doc))
    except KeyError as exc:
        fail("--portfolio", f"a complete portfolio: {exc.args[0]}")
    assets = {a: {"delta_coin": d.delta_coin, "delta_usd": d.delta_usd} for a, d in deltas.items()}
    if fmt is ShortFormat.json:
        print(to_json({"assets": assets}))
    else:
        print_table([{"asset": a, **v} for a, v in assets.items()], ["asset", "delta_coin", "delta_usd"])


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the journal's schema to the latest migration."""
    from deltakeeper.adapters.journal.migrate import upgrade
    from deltakeeper.config import redact_url

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database)
    print(f"database upgraded: {redact_url(settings.database)}")


# -- the running bot: status, control, health ------------------------------------------------------

HTTP_TIMEOUT_SECS = 5.0


def _http_port(settings: Settings) -> int | None:
    """The running service's HTTP port: from `$DK_DATA_DIR/http_port` (written while it runs), else
    DK_HTTP_PORT unless that is 0 (a free port, which only the file can tell)."""
    from deltakeeper.bootstrap import http_port_path

    try:
        return int(http_port_path(settings).read_text().strip())
    except (OSError, ValueError):
        return settings.http_port or None


def _http_get(settings: Settings, path: str, port: int) -> tuple[int, Any] | None:
    """(HTTP status, parsed JSON body) from the running service, or None when nothing answers there."""
    import urllib.error
    import urllib.request

    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(settings.http_host, settings.http_host)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    request = urllib.request.Request(f"http://{netloc}{path}")
    token = settings.secret("http_token")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT_SECS) as response:
            code, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read()
    except (OSError, ValueError):
        return None
    try:
        return code, json.loads(raw)
    except ValueError:
        return None


def _who(by: str | None) -> str:
    if by:
        return by
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except Exception:  # no user name in a bare container
        user = "unknown"
    return f"cli {user}@{socket.gethostname()}"


async def _write_control(database_url: str, action: str, reason: str, by: str) -> dict[str, Any]:
    from deltakeeper.adapters.journal import create_journal
    from deltakeeper.app import control

    journal = create_journal(database_url)
    try:
        if action == "halt":
            state = await control.halt(journal, reason, by)
        elif action == "resume":
            state = await control.resume(journal, reason, by)
        else:
            ts = await control.request_cancel_all(journal.record_control_event, reason, by)
            return {"action": action, "reason": reason, "by": by, "ts": ts}
        return {"action": action, "halted": state.halted, "reason": state.reason, "by": state.by,
                "ts": state.ts}
    finally:
        await journal.close()


def _control_command(action: str, reason: str, by: str | None, fmt: ShortFormat) -> None:
    from deltakeeper.adapters.journal import upgrade
    from deltakeeper.cli.output import to_json

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database)
    result = asyncio.run(_write_control(settings.database, action, reason, _who(by)))
    if fmt is ShortFormat.json:
        print(to_json(result))
        return
    what = {"halt": "halt", "resume": "resume", "cancel-all": "cancel-all request"}[action]
    why = f": {reason}" if reason else ""
    print(
        f"{what} journaled by {result['by']}{why}; a running bot applies it at its next recompute "
        f"(within DK_RECOMPUTE_SECS={settings.recompute_secs:g}s)"
    )


ReasonOpt = Annotated[str, typer.Option("--reason", help="Why: journaled and alerted.")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who (default: cli user@host).")]
ShortFormatOpt = Annotated[ShortFormat, typer.Option("--format")]


@app.command()
def halt(reason: ReasonOpt = "", by: ByOpt = None, fmt: ShortFormatOpt = ShortFormat.table) -> None:
    """Halt trading: no new orders, every open order canceled. Holds across restarts until `resume`."""
    _control_command("halt", reason, by, fmt)


@app.command()
def resume(reason: ReasonOpt = "", by: ByOpt = None, fmt: ShortFormatOpt = ShortFormat.table) -> None:
    """Let a halted bot trade again."""
    _control_command("resume", reason, by, fmt)


@app.command("cancel-all")
def cancel_all(reason: ReasonOpt = "", by: ByOpt = None, fmt: ShortFormatOpt = ShortFormat.table) -> None:
    """Have the running bot cancel every open order of the account (it keeps trading)."""
    _control_command("cancel-all", reason, by, fmt)


async def _journal_status(database_url: str) -> dict[str, Any]:
    """The bot's last known state from the journal: the latest snapshot and decision per asset, and
    the operator's control state."""
    from deltakeeper.cli.journal import with_reader

    async def read(reader: JournalReader) -> tuple[ControlState, list[SnapshotRow], list[DecisionRow]]:
        return await reader.control_state(), await reader.latest_snapshots(), await reader.latest_decisions()

    control, latest_snapshots, latest_decisions = await with_reader(database_url, read)
    snapshot_by_asset = {row.asset: row for row in latest_snapshots}
    decision_by_asset = {row.asset: row for row in latest_decisions}
    assets: dict[str, Any] = {}
    for asset in sorted(set(snapshot_by_asset) | set(decision_by_asset)):
        snap, decision = snapshot_by_asset.get(asset), decision_by_asset.get(asset)
        delta = snap.delta_coin if snap is not None else decision.delta_coin  # type: ignore[union-attr]
        target = decision.target_coin if decision is not None else None
        band = decision.band_coin if decision is not None else None
        assets[asset] = {
            "delta_coin": delta,
            "delta_usd": snap.delta_usd if snap is not None else decision.delta_usd,  # type: ignore[union-attr]
            "target_coin": target,
            "band_coin": band,
            "deviation": float((delta - target) / band) if target is not None and band else None,
            "price_usd": decision.price_usd if decision is not None else None,
            "hedge_symbol": decision.symbol if decision is not None else None,
            "snapshot_ts": snap.ts if snap is not None else None,
            "last_decision": None if decision is None else {
                "reason": decision.reason, "detail": decision.detail, "ts": decision.ts,
                "decision_id": decision.decision_id,
            },
        }
    last_state = max(latest_snapshots, key=lambda row: row.id).trading_state if latest_snapshots else None
    return {
        "trading": {"state": last_state, "cause": control.reason if control.halted else ""},
        "control": {"halted": control.halted, "reason": control.reason, "by": control.by, "ts": control.ts},
        "assets": assets,
    }


STATUS_COLUMNS = ["asset", "delta_coin", "target_coin", "band_coin", "deviation", "hedge_symbol",
                  "position_contracts", "reason", "decided_ts"]


@app.command()
def status(fmt: ShortFormatOpt = ShortFormat.table) -> None:
    """The bot's state at a glance: per asset the delta, target, band and last decision; the trading
    state, stream freshness. From the running bot's HTTP API, else from the journal."""
    from deltakeeper.cli.journal import readable_database
    from deltakeeper.cli.output import plain, print_table, to_json

    settings = _settings()
    port = _http_port(settings)
    answer = _http_get(settings, "/api/status", port) if port else None
    if answer is not None and answer[0] == 401:
        fail("DK_HTTP_TOKEN", "the running bot's HTTP token", "refused")
    if answer is not None and answer[0] == 200 and isinstance(answer[1], dict) and "trading" in answer[1]:
        doc: dict[str, Any] = {"source": "http", "port": port, **answer[1]}
    else:
        doc = {"source": "journal", **asyncio.run(_journal_status(readable_database(settings)))}
    if fmt is ShortFormat.json:
        print(to_json(doc))
        return
    data = plain(doc)
    running = doc["source"] == "http"
    print(f"source: {f'the bot on port {port}' if running else 'the journal (no bot answers)'}")
    trading = data["trading"]
    cause = f" ({trading['cause']})" if trading["cause"] else ""
    print(f"trading: {trading['state'] or 'unknown'}{cause}")
    control = data["control"]
    if control and control["halted"]:
        print(f"halted by {control['by'] or 'the operator'} at {control['ts']}: {control['reason']}")
    if running:
        print(f"reconciled: {data['reconciled']}; orders in flight: {len(data['in_flight'])}")
    rows = []
    for asset, view in data["assets"].items():
        decision = view.get("last_decision") or {}
        rows.append({"asset": asset, **view, "reason": decision.get("reason"),
                     "decided_ts": decision.get("ts")})
    print_table(rows, STATUS_COLUMNS, title="assets")
    if running:
        streams = [{"symbol": s, "age_secs": v["age_secs"]} for s, v in data["streams"].items()]
        print_table(streams, ["symbol", "age_secs"], title="streams (seconds since the last quote)")


@app.command()
def healthcheck() -> None:
    """Exit 0 while the running service is alive (the container's HEALTHCHECK): its `/healthz` when its
    HTTP server is on, else its heartbeat file."""
    from deltakeeper.app.status import heartbeat_max_age_secs
    from deltakeeper.bootstrap import http_port_path

    settings = _settings()
    if http_port_path(settings).exists():
        port = _http_port(settings)
        answer = _http_get(settings, "/healthz", port) if port else None
        if answer is not None:
            if answer[0] == 200:
                print(f"healthy: /healthz on port {port}")
                return
            print(f"unhealthy: /healthz on port {port} answered {answer[0]}")
            raise typer.Exit(1)
    path = settings.data_dir / "heartbeat"
    max_age_secs = heartbeat_max_age_secs(settings.recompute_secs)
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
    option_iv: Annotated[float | None, typer.Option(
        "--option-iv", min=0.01, max=5.0, help="Also list USDC options on BTC and ETH, at this IV (0.55)",
    )] = None,
    dialect: Annotated[str, typer.Option(help="Wire protocol: bybit (v5), binance (USD-M)")] = "bybit",
) -> None:
    """Run the exchange emulator: REST and websockets on one port, for ccxt to trade against."""
    from deltakeeper.cli.sim_exchange import DIALECTS, run_emulator
    from deltakeeper.config import secret_values
    from deltakeeper.logging import configure_logging

    if dialect not in DIALECTS:
        raise typer.BadParameter(f"expected one of {', '.join(DIALECTS)}", param_hint="--dialect")
    settings = _settings()
    configure_logging(settings.log_level, settings.log_format, secret_values(settings))
    asyncio.run(run_emulator(settings, host, port, {api_key: api_secret}, allow_withdraw, option_iv, dialect))


@app.command("fault-proxy")
def fault_proxy(
    upstream: Annotated[str, typer.Option(help="The exchange's base URL, http://HOST:PORT")],
    host: Annotated[str, typer.Option(help="Address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port; 0 picks a free one")] = 9465,
    seed: Annotated[int, typer.Option(help="Seed of the faults drawn")] = 1,
) -> None:
    """Run a fault-injecting proxy for an exchange's REST and websockets; faults via /proxy/faults."""
    from deltakeeper.sim.fault_proxy import run_proxy

    asyncio.run(run_proxy(upstream, host, port, seed))


def main() -> None:
    try:
        # Without standalone mode a command's `typer.Exit(code)` comes back as the return value.
        code = app(standalone_mode=False)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        sys.exit(130)
    except typer.exceptions.TyperException as exc:  # usage errors: they show themselves, exit 2
        show = getattr(exc, "show", None)
        if show is not None:
            show()
        sys.exit(getattr(exc, "exit_code", 2))
    except Exception as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
