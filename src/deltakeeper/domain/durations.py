"""Durations and times as people write them (`30s`, `5m`, `2h`, `7d`, `1500ms`, or an ISO-8601 time): the one
parser behind the CLI's flags and the HTTP API's `since`/`until`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from deltakeeper.domain.errors import ConfigError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_UNIT_SECS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration_secs(text: str, name: str) -> float:
    """`30s`, `5m`, `2h`, `7d`, `1500ms` or a bare number of seconds, in seconds; ConfigError naming `name`
    otherwise."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ConfigError(name, "a duration such as 30s, 5m, 2h or 7d", text)
    return float(match.group(1)) * _UNIT_SECS[match.group(2) or "s"]


def parse_time(text: str, name: str, now: datetime) -> datetime:
    """`7d` (that long before `now`) or an ISO-8601 time (UTC when it names no zone); ConfigError naming
    `name` otherwise."""
    if _DURATION.match(text.strip()):
        return now - timedelta(seconds=parse_duration_secs(text, name))
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(name, "a duration such as 7d or an ISO-8601 time", text) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
