"""Secrets kept out of what the bot shows (issue 11, item 13): URLs with their credentials masked, and the
log processor that masks the known secret values in every line."""

from __future__ import annotations

import pytest

from deltakeeper.redact import Redactor, alert_url_secrets, redact_url, url_credentials


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://bot:pw-1@db:5432/dk", "postgresql://bot:****@db:5432/dk"),
        ("postgresql://:pw-1@db/dk", "postgresql://:****@db/dk"),
        ("redis://bot:p@ss@host/0", "redis://bot:****@host/0"),
        ("http://h/x?password=pw-1&user=bot", "http://h/x?password=****&user=bot"),
        ("http://h/x?a=1&Token=pw-1#top", "http://h/x?a=1&Token=****#top"),
        ("http://h/x?apikey=pw-1;api_secret=pw-2", "http://h/x?apikey=****;api_secret=****"),
        ("json://h/x?sig=pw-1&signature=pw-2&auth=pw-3", "json://h/x?sig=****&signature=****&auth=****"),
        ("postgresql://bot@db/dk", "postgresql://bot@db/dk"),
        ("sqlite+aiosqlite:///data/dk.db", "sqlite+aiosqlite:///data/dk.db"),
        ("http://127.0.0.1:9464", "http://127.0.0.1:9464"),
    ],
)
def test_redact_url_masks_passwords_and_secret_parameters(url, shown):
    assert redact_url(url) == shown


def test_redact_url_masks_every_url_in_a_text():
    text = "failed json://a:pw-1@h/x, then mailto://b:pw-2@smtp.example.com?to=c ok"
    assert redact_url(text) == "failed json://a:****@h/x, then mailto://b:****@smtp.example.com?to=c ok"


def test_url_credentials_are_the_password_and_the_secret_query_values():
    assert url_credentials("postgresql://bot:pw-1@db/dk?sslmode=require&password=pw-2") == ["pw-1", "pw-2"]
    assert url_credentials("postgresql://bot@db/dk") == []
    assert url_credentials("http://[::1") == []


def test_alert_url_secrets_hold_the_url_and_its_token_parts():
    url = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100200300"
    assert alert_url_secrets(url) == [url, "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"]
    discord = "discord://1234567890123456789/abcdefghijklmnopqrstuvwxyz0123456789"
    assert "abcdefghijklmnopqrstuvwxyz0123456789" in alert_url_secrets(discord)
    assert "hooks.slack.example.com" not in alert_url_secrets("json://hooks.slack.example.com/hook")


def test_redactor_masks_known_secrets_in_every_string_of_an_event():
    redactor = Redactor(["key-abc-123", "sec"])  # too short to mask
    event = {
        "event": "GET /v5/order key-abc-123",
        "headers": {"X-BAPI-API-KEY": "key-abc-123", "n": 3},
        "exception": [{"exc_value": "boom key-abc-123 at postgresql://u:pw-9@h/db", "frames": [{"line": 1}]}],
        "error": ValueError("key-abc-123"),
        "flag": True,
        "none": None,
        "secs": 1.5,
    }
    assert redactor(None, "info", event) == {
        "event": "GET /v5/order ****",
        "headers": {"X-BAPI-API-KEY": "****", "n": 3},
        "exception": [{"exc_value": "boom **** at postgresql://u:****@h/db", "frames": [{"line": 1}]}],
        "error": "****",
        "flag": True,
        "none": None,
        "secs": 1.5,
    }
    assert redactor.text("a sec b") == "a sec b"


def test_redactor_masks_the_longer_of_two_overlapping_secrets_whole():
    assert Redactor(["abcd", "abcdefgh"]).text("x abcdefgh y") == "x **** y"
