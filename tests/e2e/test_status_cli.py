"""`deltakeeper status`, `halt`, `resume` against a running bot, from a second process, as an operator
uses them: the bot in one subprocess, the commands in others."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.e2e.cli_helpers import clean_env, deltakeeper, journal


def status(env: dict[str, str]) -> dict[str, Any]:
    result = deltakeeper("status", "--format", "json", env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def wait_for(condition: Callable[[], bool], timeout_secs: float, what: str) -> None:
    deadline = time.monotonic() + timeout_secs
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_secs}s waiting for {what}")
        time.sleep(0.3)


def test_status_halt_and_resume_work_on_a_running_bot_from_another_process(data_dir: Path) -> None:
    env = clean_env(
        data_dir,
        DK_SIM_SPEED="1200",
        DK_RECOMPUTE_SECS="1",
        DK_ASSETS__SOL__HEDGE="SOL/USDT:USDT",
        DK_ASSETS__SOL__BAND_COIN="1",  # a narrow band: the bot trades every second or two
        DK_POLICY="band",
        DK_REBALANCE_TO="target",
    )
    bot = subprocess.Popen(
        [sys.executable, "-m", "deltakeeper", "run", "--for", "120s"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port_file = data_dir / "http_port"
        wait_for(port_file.exists, 15, "the bot's HTTP server")
        wait_for(lambda: bool(journal("orders", env)), 15, "the bot's first hedge")

        running = status(env)
        assert running["source"] == "http"
        assert running["trading"]["state"] == "active" and running["reconciled"] is True
        assert running["assets"]["SOL"]["hedge_symbol"] == "SOL/USDT:USDT"
        assert running["assets"]["SOL"]["band_coin"] == "1"

        halt = deltakeeper("halt", "--reason", "test", "--by", "e2e", env=env)
        assert halt.returncode == 0, halt.stderr
        wait_for(lambda: status(env)["trading"]["state"] == "halted", 8, "the bot to halt")
        halted = status(env)
        assert halted["trading"]["cause"] == "test"
        assert halted["control"]["halted"] is True and halted["control"]["by"] == "e2e"

        # Nothing goes to the exchange while halted: every order journaled from now on (if a decision
        # was already under way) is canceled before it is sent.
        known = {o["client_order_id"] for o in journal("orders", env)}
        time.sleep(3)
        new = [o for o in journal("orders", env) if o["client_order_id"] not in known]
        unsent = [o for o in new if o["reject_reason"] == "halted before it was sent"]
        assert unsent == new and not [o for o in new if o["exchange_order_id"]], new

        resume = deltakeeper("resume", "--by", "e2e", env=env)
        assert resume.returncode == 0, resume.stderr
        wait_for(lambda: status(env)["trading"]["state"] == "active", 8, "the bot to resume")

        port = int(port_file.read_text())
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
        assert 'deltakeeper_delta_coin{asset="SOL"}' in metrics
        assert 'deltakeeper_trading_state{state="active"} 1' in metrics

        bot.send_signal(signal.SIGTERM)  # a clean stop, as `docker stop` sends it
        _, stderr = bot.communicate(timeout=40)
    finally:
        if bot.poll() is None:
            bot.kill()
            bot.communicate()
    assert bot.returncode == 0, stderr[-3000:]
    assert '"event": "halted"' in stderr and '"event": "resumed"' in stderr
    assert not port_file.exists()

    stopped = status(env)
    assert stopped["source"] == "journal"
    assert "SOL" in stopped["assets"]
    assert stopped["control"] == {"halted": False, "reason": "", "by": "e2e", "ts": stopped["control"]["ts"]}


class _Probe(http.server.BaseHTTPRequestHandler):
    """Answers /healthz with the status the test sets on the server."""

    def do_GET(self) -> None:
        status: int = self.server.healthz_status  # type: ignore[attr-defined]
        body = json.dumps({"alive": status == 200}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


def test_healthcheck_exits_1_when_unhealthy_and_0_when_healthy(data_dir: Path) -> None:
    env = clean_env(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    heartbeat = data_dir / "heartbeat"

    missing = deltakeeper("healthcheck", env=env)
    assert (missing.returncode, missing.stdout.split(":")[0]) == (1, "unhealthy"), missing
    heartbeat.write_text(f"{time.time() - 3600:.3f}\n")
    stale = deltakeeper("healthcheck", env=env)
    assert (stale.returncode, stale.stdout.split(":")[0]) == (1, "unhealthy"), stale
    heartbeat.write_text(f"{time.time():.3f}\n")
    fresh = deltakeeper("healthcheck", env=env)
    assert (fresh.returncode, fresh.stdout.split(":")[0]) == (0, "healthy"), fresh

    # A running bot's HTTP server is asked first: its /healthz answer decides.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Probe)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        (data_dir / "http_port").write_text(f"{server.server_address[1]}\n")
        server.healthz_status = 503  # type: ignore[attr-defined]
        down = deltakeeper("healthcheck", env=env)
        assert (down.returncode, down.stdout.split(":")[0]) == (1, "unhealthy"), down
        server.healthz_status = 200  # type: ignore[attr-defined]
        up = deltakeeper("healthcheck", env=env)
        assert (up.returncode, up.stdout.split(":")[0]) == (0, "healthy"), up
    finally:
        server.shutdown()
        server.server_close()
