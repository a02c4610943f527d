"""The one parser of durations and times (domain.durations), behind both the CLI's flags and the HTTP API's
`since`/`until`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from deltakeeper.app import console
from deltakeeper.cli import journal as journal_cli
from deltakeeper.domain.durations import parse_duration_secs, parse_time
from deltakeeper.domain.errors import ConfigError

NOW = datetime(2026, 3, 4, 12, tzinfo=UTC)


def test_durations_in_every_unit_and_bare_seconds() -> None:
    assert [parse_duration_secs(t, "--for") for t in ("1500ms", "30", "30s", " 5m ", "1.5h", "7d")] == [
        1.5, 30, 30, 300, 5400, 7 * 86400]
    with pytest.raises(ConfigError, match="--for"):
        parse_duration_secs("5 weeks", "--for")


def test_times_are_a_duration_before_now_or_iso_8601_utc_when_zoneless() -> None:
    assert parse_time("2h", "since", NOW) == NOW - timedelta(hours=2)
    assert parse_time("2026-03-01T00:00:00Z", "since", NOW) == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_time("2026-03-01 06:00", "since", NOW) == datetime(2026, 3, 1, 6, tzinfo=UTC)
    with pytest.raises(ConfigError, match="until"):
        parse_time("yesterday", "until", NOW)


def test_the_cli_and_the_http_api_read_times_with_the_same_parser() -> None:
    assert journal_cli.parse_time is console.parse_time is parse_time
    assert console.parse_filters({"since": "1d"}, NOW) == {"since": NOW - timedelta(days=1)}
