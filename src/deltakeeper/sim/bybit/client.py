"""Point an unmodified ccxt/ccxt.pro client at one base URL (the emulator, a proxy)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

_WS_SCHEMES = {"ws": "ws", "wss": "wss"}
_WS_FOR_HTTP = {"http": "ws", "https": "wss"}


def point_ccxt_at(exchange: Any, base_url: str) -> None:
    """Rewrite every URL in `exchange.urls['api']`, however deeply nested, to `base_url`.

    REST URLs become `base_url` plus their own path; websocket URLs keep their path under the websocket
    form of `base_url` (`http` -> `ws`, `https` -> `wss`). Templates such as `{hostname}` disappear
    with the host they were part of.
    """
    base = urlsplit(base_url.rstrip("/"))
    if base.scheme not in _WS_FOR_HTTP or not base.netloc:
        raise ValueError(f"expected an http(s)://host:port base URL, got {base_url!r}")
    ws_scheme = _WS_FOR_HTTP[base.scheme]

    def rewrite(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: rewrite(item) for key, item in value.items()}
        if isinstance(value, list):
            return [rewrite(item) for item in value]
        if not isinstance(value, str) or "://" not in value:
            return value
        parts = urlsplit(value)
        scheme = ws_scheme if parts.scheme in _WS_SCHEMES else base.scheme
        path = base.path + parts.path
        return urlunsplit((scheme, base.netloc, path, parts.query, parts.fragment))

    exchange.urls["api"] = rewrite(exchange.urls["api"])
