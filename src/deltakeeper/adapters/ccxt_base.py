"""The adapter's ccxt clients and the plumbing every part of it uses: building the clients (rate limiting,
answer and frame checks), the markets, the account's scopes, reads retried while rate limited, and
unreadable answers turned into the domain's errors."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro
import structlog

from deltakeeper.adapters.ccxt_account import check_bybit_account_answer
from deltakeeper.adapters.ccxt_binance import BINANCE_FUTURES, use_futures_errors
from deltakeeper.adapters.ccxt_binance import ccxt_options as binance_ccxt_options
from deltakeeper.adapters.ccxt_markets import instrument_from_market
from deltakeeper.adapters.ccxt_parse import MalformedPayload, error_from_ccxt, retry_after_secs
from deltakeeper.adapters.ccxt_rate_limit import RateLimitPause, RefillingBucket
from deltakeeper.domain.errors import (
    ConfigError,
    ExchangeUnavailable,
)
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import Instrument
from deltakeeper.ports import Clock
from deltakeeper.sim.bybit.client import point_ccxt_at

log = structlog.get_logger(__name__)

T = TypeVar("T")

TRANSPORT_ERRORS = (ccxt.BaseError, OSError, TimeoutError)
"""What a ccxt call raises when the exchange or the network fails (anything else is a bug)."""

_BYBIT_PAGES = {"paginate": True, "paginationCalls": 100}
"""ccxt follows Bybit's cursors through every page of a listing (at most 100 pages) with these params."""
BYBIT_FILL_EXEC_TYPES = ("Trade", "AdlTrade", "BustTrade", "Delivery", "Settle")
"""Bybit's executions that are fills: trades, and the exchange's own closes (ADL, takeover liquidation,
the delivery of an expired future or option, an inverse future's settlement or a delisting). ccxt's
`fetch_my_trades` asks Bybit for `execType` Trade alone."""
_BACKFILL_MARGIN = timedelta(minutes=5)
_CATCH_UP_SECS = 2.0
"""How long after (re)subscribing to its trades the account stream backfills them once more by REST."""
RATE_LIMIT_RETRIES = 3
"""How many times a read refused for the rate limit is asked again (backing off) before it fails."""
REMEMBERED_IDS = 10_000
_RATE_LIMIT_STATUSES = (403, 418, 429)
"""HTTP statuses of rate-limit refusals (Bybit answers its IP limit with 403)."""
_NON_FINITE_TEXTS = frozenset({"NaN", "nan", "Infinity", "-Infinity", "inf", "-inf"})


class CcxtBase:
    """An exchange account's ccxt clients (`name` is the ccxt id), its markets and the plumbing of reads."""

    def __init__(
        self,
        exchange_id: str,
        *,
        clock: Clock,
        api_key: str | None = None,
        secret: str | None = None,
        password: str | None = None,
        base_url: str | None = None,
        sandbox: bool = False,
        stale_after_secs: float = 30.0,
        poll_interval_secs: float = 2.0,
        backoff_initial_secs: float = 0.5,
        backoff_max_secs: float = 30.0,
        request_timeout_secs: float = 10.0,
        rng: random.Random | None = None,
        ccxt_config: Mapping[str, Any] | None = None,
    ) -> None:
        exchange_class = getattr(ccxt.pro, exchange_id, None) or getattr(ccxt.async_support, exchange_id,
                                                                         None)
        if exchange_id not in ccxt.exchanges or exchange_class is None:
            raise ConfigError("DK_EXCHANGE", "sim or a ccxt exchange id", exchange_id)
        self.name = exchange_id
        self._clock = clock
        self._stale_after_secs = stale_after_secs
        self._poll_interval_secs = poll_interval_secs
        self._backoff_initial_secs = backoff_initial_secs
        self._backoff_max_secs = backoff_max_secs
        self._rng = rng or random.Random()
        self._pause = RateLimitPause()
        config_options: dict[str, Any] = {"warnOnFetchOpenOrdersWithoutSymbol": False}
        if exchange_id == "bybit":
            # Bybit pushes funding settlements as executions: let them through to the account stream.
            config_options["watchMyTrades"] = {"execType": [*BYBIT_FILL_EXEC_TYPES, "Funding"]}
        binance = exchange_id in BINANCE_FUTURES
        if binance:
            config_options.update(binance_ccxt_options())

        def build(credentials: dict[str, str | None]) -> Any:
            config = {
                **{key: value for key, value in credentials.items() if value},
                "enableRateLimit": True,
                "timeout": int(request_timeout_secs * 1000),
                "options": config_options,
            }
            exchange = exchange_class(ccxt.Exchange.deep_extend(config, dict(ccxt_config or {})))
            if exchange.tokenBucket["algorithm"] == "leakyBucket":
                exchange.throttler = RefillingBucket(exchange.tokenBucket, pause=self._pause)
            exchange.handle_errors = self._checking_answers(exchange.handle_errors)
            exchange.handle_message = self._checking_frames(exchange.handle_message)
            exchange.client = self._guarding_frames(exchange.client)
            if sandbox:
                exchange.set_sandbox_mode(True)
            if base_url:
                point_ccxt_at(exchange, base_url)
                if binance:
                    use_futures_errors(exchange)
            return exchange

        self._rest = build({"apiKey": api_key, "secret": secret, "password": password})
        self._public = build({})
        """Public streams on their own client, so that reopening a stale one leaves the account's alone."""
        self._instruments: dict[str, Instrument] = {}
        self._account_read = asyncio.Lock()
        """Held by an account read (`fetch_account`): reads go one at a time."""
        self._traded_symbols: set[str] = set()
        """Binance: the markets whose fills are read (`_fill_symbols`): those quoted, ordered or held."""
        self._funding_settled = asyncio.Event()
        """Binance: set by a balance push of a funding settlement, whose payments are then read by REST."""
        self._client_ids: dict[str, str] = {}
        """Binance: client order ids by exchange order id, for its trades, which carry none."""
        self._balances: dict[str, Decimal] = {}
        self._greeks: dict[str, dict[str, Any]] = {}
        """The greeks (ccxt `fetch_greeks`) of each option position, as last read with the account."""
        self._row_delta_warned: set[str] = set()
        """The options whose position row's delta was found to be one option's (logged once each)."""
        self._positions: dict[str, Position] = {}
        """The account as last read or pushed: a read sets both, a balance or position push its own part,
        so that a push's snapshot never brings back what a later read has replaced (`_snapshot_streams`)."""

    # --- markets -----------------------------------------------------------------------------------

    async def load_instruments(self) -> dict[str, Instrument]:
        return await self._load_instruments(reload=False)

    async def reload_instruments(self) -> dict[str, Instrument]:
        """Reload the markets (funding intervals change, markets are delisted)."""
        return await self._load_instruments(reload=True)

    async def _load_instruments(self, reload: bool) -> dict[str, Instrument]:
        markets = await self._call(self._rest.load_markets, reload)
        self._public.set_markets(self._rest.markets, self._rest.currencies)
        instruments: dict[str, Instrument] = {}
        for symbol, market in markets.items():
            try:
                instruments[symbol] = instrument_from_market(market, self.name, self._rest.precisionMode)
            except MalformedPayload as exc:
                log.warning("market_skipped", exchange=self.name, symbol=symbol, reason=str(exc))
        self._instruments = instruments
        return dict(instruments)

    # --- plumbing ----------------------------------------------------------------------------------

    def _checking_answers(self, handle_errors: Callable[..., Any]) -> Callable[..., Any]:
        """ccxt's check of each REST answer (status, headers, body), then ours: a rate-limit refusal's wait
        is held for every request; a Bybit account answer not shaped as Bybit sends it is a bad response
        (ccxt would read it as an empty account)."""

        def check(code: int, reason: str, url: str, method: str, headers: Mapping[str, Any], body: str,
                  answer: Any, *request: Any) -> Any:
            try:
                checked = handle_errors(code, reason, url, method, headers, body, answer, *request)
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection):
                self._hold_requests(headers)
                raise
            if code in _RATE_LIMIT_STATUSES:
                self._hold_requests(headers)
            elif code == 200 and self.name == "bybit":
                try:
                    check_bybit_account_answer(urlsplit(url).path, answer)
                except MalformedPayload as exc:
                    raise ccxt.BadResponse(f"{self.name} {exc}") from exc
            return checked

        return check

    def _hold_requests(self, headers: Mapping[str, Any] | None) -> None:
        """Hold every request for the wait a rate-limit refusal names (none named: the usual backoff)."""
        wait_secs = retry_after_secs(headers or {}, self._clock.now())
        if wait_secs:
            self._pause.hold(wait_secs)
            log.info("rate_limit_pause", exchange=self.name, wait_secs=round(wait_secs, 3))

    def _checking_frames(self, handle_message: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
        """ccxt's handling of a decoded websocket frame, skipping a frame that carries a non-finite number
        before ccxt merges it into what it keeps (a ticker's fields, the order book, the balance)."""

        def handle(client: Any, frame: Any) -> Any:
            if _has_non_finite(frame):
                log.warning("ws_frame_skipped", exchange=self.name, reason="a non-finite number")
                return None
            return handle_message(client, frame)

        return handle

    def _guarding_frames(self, client_of: Callable[[str], Any]) -> Callable[[str], Any]:
        """ccxt's websocket client of a url, reading on past a frame it fails on: ccxt stops reading a
        connection whose frame raised (invalid JSON, a handler's error), and its stream then stays silent
        until the stale timer (quotes) or for ever (the account's streams)."""

        def guarded(url: str) -> Any:
            client = client_of(url)
            if getattr(client, "_frames_guarded", False):
                return client
            handle = client.handle_text_or_binary_message

            def handle_frame(data: Any) -> None:
                try:
                    handle(data)
                except Exception as exc:
                    log.warning("ws_frame_skipped", exchange=self.name, url=url,
                                reason=f"{type(exc).__name__}: {str(exc)[:200]}")

            client.handle_text_or_binary_message = handle_frame
            client._frames_guarded = True
            return client

        return guarded

    async def _instrument(self, symbol: object) -> Instrument:
        """The instrument of `symbol`, reloading the markets once for a symbol not seen before."""
        if not isinstance(symbol, str):
            raise MalformedPayload("symbol", "a market symbol", symbol)
        if symbol not in self._instruments:
            await self.reload_instruments()
        if symbol not in self._instruments:
            raise MalformedPayload("symbol", f"one of {self.name}'s markets", symbol)
        return self._instruments[symbol]

    def _scopes(self, settle: bool, derivatives_only: bool = False,
                paged: bool = True) -> list[dict[str, Any]]:
        """The parameters that cover the whole account for a call without a symbol. Bybit answers per
        category (spot, linear, inverse) and, for orders and positions, per settle coin; its listings
        are followed page by page. Elsewhere one call, one page (ccxt's default size)."""
        if self.name != "bybit":
            return [{}]
        pages = _BYBIT_PAGES if paged else {}
        scopes: list[dict[str, Any]] = [] if derivatives_only else [{"type": "spot", **pages}]
        if any(market["type"] == "option" for market in self._rest.markets.values()):
            scopes.append({"type": "option", **pages})
        seen: set[tuple[str, str]] = set()
        for market in self._rest.markets.values():
            if market["type"] not in ("swap", "future"):
                continue
            category = "inverse" if market.get("inverse") else "linear"
            key = (category, market["settleId"] if settle else "")
            if key not in seen:
                seen.add(key)
                scopes.append({"subType": category, **({"settleCoin": key[1]} if settle else {}), **pages})
        return scopes

    async def _call(self, method: Callable[..., Awaitable[T]], *args: Any) -> T:
        """A read (or a cancel-all, which may be repeated): asked again, backing off, while the exchange
        refuses it for the rate limit (a definite refusal: nothing was done), at most RATE_LIMIT_RETRIES
        times. Order placement never comes through here (DESIGN.md 6)."""
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                return await method(*args)
            except (ccxt.RateLimitExceeded, ccxt.DDoSProtection) as exc:
                if attempt == RATE_LIMIT_RETRIES:
                    raise error_from_ccxt(exc) from exc
                log.info("rate_limited_retry", exchange=self.name, call=getattr(method, "__name__", "?"),
                         attempt=attempt + 1)
                await asyncio.sleep(self._backoff_secs(attempt + 1))
            except TRANSPORT_ERRORS as exc:
                raise error_from_ccxt(exc) from exc
        raise AssertionError("unreachable")

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """An unreadable REST answer is the exchange failing: ExchangeUnavailable."""
        try:
            yield
        except MalformedPayload as exc:
            raise ExchangeUnavailable(f"{self.name} sent an unreadable answer: {exc}") from exc

    async def close(self) -> None:
        await self._public.close()
        await self._rest.close()


    def _backoff_secs(self, failures: int) -> float:
        """Exponential in the number of failures in a row, capped, with jitter in [50%, 100%]."""
        delay = min(self._backoff_max_secs, self._backoff_initial_secs * 2 ** (failures - 1))
        return delay * (0.5 + self._rng.random() / 2)


def _has_non_finite(value: Any) -> bool:
    """Whether a decoded frame holds NaN or an infinity, as a number or as a numeric text, at any depth."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, str):
        return value in _NON_FINITE_TEXTS
    if isinstance(value, dict):
        return any(_has_non_finite(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(item) for item in value)
    return False



def to_ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)

