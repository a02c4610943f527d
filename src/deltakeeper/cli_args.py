"""Arguments shared by the command-line modules: output formats, durations and times."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from deltakeeper.domain.errors import ConfigError

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


def read_json_file(path: Path, flag: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError:
        fail(flag, "a readable JSON file", str(path))
    except json.JSONDecodeError as exc:
        fail(flag, f"valid JSON ({exc.msg} at line {exc.lineno})", str(path))
