"""Settings and secrets through the real CLI in a subprocess (issue 11, items 13 and 15): a bad value stops
`deltakeeper` with exit code 2 and one line naming the variable; no secret reaches `config`'s output or the
log, at debug level too, with the bot trading on the Bybit emulator over loopback and alerting through
apprise to a local receiver."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from deltakeeper.sim.bybit.server import serve
from tests.alert_receiver import alert_receiver
from tests.e2e.cli_helpers import clean_env, deltakeeper

KEY, SECRET = "dk-leak-key-5f1e2d", "dk-leak-secret-9a8b7c"
HTTP_TOKEN = "dk-leak-http-token-3c4d"
ALERT_PASSWORD, ALERT_TOKEN = "dk-leak-alert-pw-77", "dk-leak-alert-token-88"
TELEGRAM_TOKEN = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"


def refused(result: subprocess.CompletedProcess[str], variable: str) -> str:
    """Exit 2, and stderr one line naming `variable`."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {variable}: expected "), result.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("DK_STALE_SECS", "inf", "a finite number"),
        ("DK_TIMER_SECS", "nan", "a finite number"),
        ("DK_ASSETS__SOL__TARGET", "1e400", "a finite number at most"),
        ("DK_EXTERNAL__SOL", "-1e400", "a finite number at most"),
        ("DK_ALERT_COOLDOWN_SECS", "-5", "greater than or equal to 0"),
        ("DK_ASSETS", "SOL", "a JSON object"),
        ("DK_HTTP_TOKEN", "", "a token that is not empty"),
        ("DK_EXCHNAGE", "bybit", "did you mean DK_EXCHANGE?"),
        ("DK_ASSETS__SOL__BAND_CION", "2", "did you mean DK_ASSETS__SOL__BAND_COIN?"),
        ("DK_API_KEY_FLIE", "/run/secrets/key", "did you mean DK_API_KEY_FILE?"),
    ],
)
def test_a_bad_setting_exits_2_with_one_line_naming_it(
    data_dir: Path, variable: str, value: str, says: str
) -> None:
    line = refused(deltakeeper("config", env=clean_env(data_dir, **{variable: value})), variable)
    assert says in line


def test_run_refuses_a_typo_before_it_starts(data_dir: Path) -> None:
    result = deltakeeper("run", "--for", "1s", env=clean_env(data_dir, DK_STALE_SEC="5"))
    assert "DK_STALE_SECS?" in refused(result, "DK_STALE_SEC")
    assert not data_dir.exists()  # refused before anything was made


def test_run_refuses_a_data_dir_that_cannot_be_a_folder(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    refused(deltakeeper("run", "--for", "1s", env=clean_env(tmp_path / "file" / "data")), "DK_DATA_DIR")


def test_config_shows_no_url_password(data_dir: Path) -> None:
    forms = {
        "DK_DATABASE_URL": "postgresql://:hunter2@db/dk?sslmode=require&password=hunter3",
        "DK_EXCHANGE_URL": "http://proxy:hunter4@127.0.0.1:9464",
        "DK_ALERT_URLS": "json://u:hunter5@127.0.0.1/hook?token=hunter6",
        "DK_API_PASSWORD": "hunter7",
    }
    outputs = {}
    for fmt in ("table", "json"):
        result = deltakeeper("config", "--format", fmt, env=clean_env(data_dir, **forms))
        assert result.returncode == 0, result.stderr
        assert "hunter" not in result.stdout + result.stderr
        outputs[fmt] = result.stdout
    shown = json.loads(outputs["json"])
    assert shown["DK_DATABASE_URL"] == "postgresql://:****@db/dk?sslmode=require&password=****"
    assert shown["DK_EXCHANGE_URL"] == "http://proxy:****@127.0.0.1:9464"


def test_a_mistyped_alert_url_is_refused_without_showing_its_token(data_dir: Path) -> None:
    url = f"tgram//123456789:{TELEGRAM_TOKEN}/-100200300"  # the colon of tgram:// forgotten
    env = clean_env(data_dir, DK_ALERT_URLS=url, DK_LOG_LEVEL="debug")
    result = deltakeeper("run", "--for", "1s", env=env)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "DK_ALERT_URLS" in result.stderr
    assert TELEGRAM_TOKEN not in result.stdout + result.stderr


@pytest.mark.slow
async def test_no_secret_reaches_the_debug_log_of_the_bot_trading_on_the_emulator(data_dir: Path) -> None:
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=60, seed=3)
    try:
        async with alert_receiver() as receiver:
            credentials = f"json://alerts:{ALERT_PASSWORD}@"
            hook = receiver.url.replace("json://", credentials) + f"?token={ALERT_TOKEN}"
            env = clean_env(
                data_dir,
                DK_EXCHANGE="bybit",
                DK_EXCHANGE_URL=server.url,
                DK_API_KEY=KEY,
                DK_API_SECRET=SECRET,
                DK_HTTP_TOKEN=HTTP_TOKEN,
                DK_ALERT_URLS=hook,
                DK_ALERT_LEVEL="info",
                DK_LOG_LEVEL="debug",
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "deltakeeper", "run", "--for", "10s", env=env,  # room for a slow start
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
            stdout, stderr = await asyncio.wait_for(process.communicate(), 90)
    finally:
        await server.close()
    log = stderr.decode()
    assert process.returncode == 0, log[-3000:]
    assert '"event": "service_started"' in log and '"level": "debug"' in log, log[-3000:]
    assert "started" in receiver.events()  # the alert went through apprise, with its credentials
    for secret in (KEY, SECRET, HTTP_TOKEN, ALERT_PASSWORD, ALERT_TOKEN):
        assert secret not in log + stdout.decode(), secret


def test_json_logs_carry_the_traceback_of_an_exception(tmp_path: Path) -> None:
    script = (
        "import structlog\n"
        "from deltakeeper.logging import configure_logging\n"
        "configure_logging('info', 'json', ['key-in-a-traceback'])\n"
        "def fail():\n"
        "    raise ValueError('bad key-in-a-traceback')\n"
        "try:\n"
        "    fail()\n"
        "except ValueError:\n"
        "    structlog.get_logger('t').exception('order_task_failed')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    record = json.loads(result.stderr.strip().splitlines()[-1])
    assert record["event"] == "order_task_failed" and "exc_info" not in record
    exception = record["exception"][0]
    assert exception["exc_type"] == "ValueError" and exception["exc_value"] == "bad ****"
    assert [frame["name"] for frame in exception["frames"]] == ["<module>", "fail"]
    assert "key-in-a-traceback" not in result.stderr
