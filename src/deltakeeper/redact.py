"""Keeping secrets out of what the bot shows: a URL's password and secret-looking query parameters masked
wherever URLs are shown, and the known secret values (API key and secret, passwords, the HTTP token, alert
URL credentials) masked in every log line."""

from __future__ import annotations

import re
from collections.abc import Iterable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

MASK = "****"
MIN_SECRET_CHARS = 4
"""Shorter values are not masked in logs: masking every "ab" would garble them and protect little."""
TOKEN_CHARS = 16
"""A part of an alert URL this long (webhook ids and tokens sit in the path) counts as a credential."""

_USERINFO_PASSWORD = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*):[^/?#\s]*@")
_SECRET_PARAMETER = re.compile(
    r"(?P<name>[?&;][^=&;#\s]*(?:pass|pwd|token|key|secret|auth|sig|credential)[^=&;#\s]*=)[^&;#\s]*",
    re.IGNORECASE,
)


def redact_url(text: str) -> str:
    """`text` with every URL's userinfo password and secret-looking query parameters (password, token,
    key, secret, apikey, auth, signature...) masked."""
    if "://" not in text and "=" not in text:
        return text
    text = _USERINFO_PASSWORD.sub(rf"\g<head>:{MASK}@", text)
    return _SECRET_PARAMETER.sub(rf"\g<name>{MASK}", text)


def url_credentials(url: str) -> list[str]:
    """A URL's password and the values of its secret-looking query parameters."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL (a typo): nothing to take apart
        return []
    values = [value for name, value in parse_qsl(parts.query) if _SECRET_PARAMETER.match(f"?{name}=")]
    return [value for value in (password, *values) if value]


def alert_url_secrets(url: str) -> list[str]:
    """What in an alert URL may be a credential: the URL itself, its credentials, and its long parts (a
    webhook's token in the path, a bot token as the host)."""
    rest = url.partition("://")[2] or url
    long_parts = [p for p in re.split(r"[/:@?&=,;#\s]+", rest) if len(p) >= TOKEN_CHARS and "." not in p]
    return [url, *url_credentials(url), *long_parts]


class Redactor:
    """A structlog processor: every string of an event, nested ones and rendered exceptions included,
    with the known secret values and URL credentials masked."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True)
        self._secrets = re.compile("|".join(map(re.escape, values))) if values else None

    def text(self, text: str) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(MASK, text)
        return redact_url(text)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(item) for item in value]
        if value is None or isinstance(value, bool | int | float):
            return value
        return self.text(str(value))

    def __call__(self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> dict[str, Any]:
        return {key: self.value(value) for key, value in event_dict.items()}
