"""Bybit v5 authentication, checked on the wall clock (DESIGN.md 7).

REST: `X-BAPI-SIGN` = hex HMAC-SHA256(secret, timestamp + api_key + recv_window + payload), where the
payload is the raw query string of a GET and the raw body of a POST; the timestamp must lie within
[server_time - recv_window, server_time + 1000 ms). Websocket: `{"op": "auth", "args": [key, expires,
signature]}` with signature = hex HMAC-SHA256(secret, "GET/realtime" + expires) and expires in the future.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from deltakeeper.sim.bybit.protocol import (
    INVALID_API_KEY,
    PARAM_ERROR,
    SIGNATURE_ERROR,
    TIMESTAMP_OUTSIDE_RECV_WINDOW,
    BybitError,
)

DEFAULT_RECV_WINDOW_MS = 5000
FUTURE_TOLERANCE_MS = 1000


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def check_rest(
    credentials: Mapping[str, str], headers: Mapping[str, str], payload: str, now_ms: int
) -> str:
    """The API key of a correctly signed request; raises BybitError with Bybit's code otherwise."""
    key = headers.get("X-BAPI-API-KEY", "")
    timestamp = headers.get("X-BAPI-TIMESTAMP", "")
    signature = headers.get("X-BAPI-SIGN", "")
    recv_window = headers.get("X-BAPI-RECV-WINDOW", str(DEFAULT_RECV_WINDOW_MS))
    if not key or not timestamp or not signature:
        raise BybitError(
            PARAM_ERROR,
            f"empty value: apiTimestamp[{timestamp}] apiKey[{key}] apiSignature[{signature}]: "
            "openapi sign params error!",
        )
    secret = credentials.get(key)
    if secret is None:
        raise BybitError(INVALID_API_KEY, "API key is invalid.")
    if not timestamp.isdigit() or not recv_window.isdigit():
        raise BybitError(PARAM_ERROR, "invalid X-BAPI-TIMESTAMP or X-BAPI-RECV-WINDOW")
    ts_ms, window_ms = int(timestamp), int(recv_window)
    if not now_ms - window_ms <= ts_ms < now_ms + FUTURE_TOLERANCE_MS:
        raise BybitError(
            TIMESTAMP_OUTSIDE_RECV_WINDOW,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts_ms}],server_timestamp[{now_ms}],recv_window[{window_ms}]",
        )
    origin = timestamp + key + recv_window + payload
    if not hmac.compare_digest(sign(secret, origin), signature.lower()):
        raise BybitError(SIGNATURE_ERROR, f"error sign! origin_string[{origin}]")
    return key


def check_ws(credentials: Mapping[str, str], args: object, now_ms: int) -> str:
    """The API key of a valid websocket `auth` operation; raises BybitError otherwise."""
    if not isinstance(args, list) or len(args) != 3:
        raise BybitError(PARAM_ERROR, "Params Error")
    key, expires, signature = (str(arg) for arg in args)
    secret = credentials.get(key)
    if secret is None or not expires.isdigit() or int(expires) <= now_ms:
        raise BybitError(PARAM_ERROR, "Params Error")
    if not hmac.compare_digest(sign(secret, f"GET/realtime{expires}"), signature.lower()):
        raise BybitError(SIGNATURE_ERROR, "Params Error")
    return key
