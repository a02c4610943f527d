"""Binance's request authentication, checked on the wall clock (DESIGN.md 7).

SIGNED endpoints: the `X-MBX-APIKEY` header names the key; `signature`, the last parameter, is the hex
HMAC-SHA256(secret, everything before it: the query string, then the form body). `timestamp` is required
and must lie within [server_time - recvWindow, server_time + 1000 ms); recvWindow defaults to 5000 ms
and may not exceed 60000. USER_STREAM endpoints (the listen key) need the key header alone."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from deltakeeper.sim.binance.protocol import (
    BAD_API_KEY_FORMAT,
    INVALID_SIGNATURE,
    INVALID_TIMESTAMP,
    MANDATORY_PARAM,
    REJECTED_MBX_KEY,
    BinanceError,
)

DEFAULT_RECV_WINDOW_MS = 5000
MAX_RECV_WINDOW_MS = 60_000
FUTURE_TOLERANCE_MS = 1000
_SIGNATURE = "&signature="


def sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def api_key_account(credentials: Mapping[str, str], headers: Mapping[str, str]) -> str:
    """The account of the request's `X-MBX-APIKEY`; raises BinanceError as Binance refuses it."""
    key = headers.get("X-MBX-APIKEY", "")
    if not key:
        raise BinanceError(BAD_API_KEY_FORMAT, "API-key format invalid.", status=401)
    if key not in credentials:
        raise BinanceError(REJECTED_MBX_KEY, "Invalid API-key, IP, or permissions for action.", status=401)
    return key


def check_signed(credentials: Mapping[str, str], headers: Mapping[str, str], query: str, body: str,
                 params: Mapping[str, str], now_ms: int) -> str:
    """The account of a correctly signed request (raw `query` string and form `body`)."""
    key = api_key_account(credentials, headers)
    timestamp = params.get("timestamp", "")
    if not timestamp.isdigit():
        raise BinanceError(MANDATORY_PARAM,
                           "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
    window = params.get("recvWindow", str(DEFAULT_RECV_WINDOW_MS))
    if not window.isdigit() or int(window) > MAX_RECV_WINDOW_MS:
        raise BinanceError(MANDATORY_PARAM, "Param 'recvWindow' must be less than 60000.")
    if not now_ms - int(window) <= int(timestamp) < now_ms + FUTURE_TOLERANCE_MS:
        raise BinanceError(INVALID_TIMESTAMP, "Timestamp for this request is outside of the recvWindow.")
    total = query + body if query and body else query or body
    signed, found, signature = total.rpartition(_SIGNATURE)
    if not found:
        raise BinanceError(MANDATORY_PARAM, "Mandatory parameter 'signature' was not sent, was empty/null, "
                           "or malformed.")
    if "&" in signature or not hmac.compare_digest(sign(credentials[key], signed), signature.lower()):
        raise BinanceError(INVALID_SIGNATURE, "Signature for this request is not valid.")
    return key
