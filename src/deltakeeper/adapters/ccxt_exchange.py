"""The Exchange port over ccxt.pro: websocket streams where the exchange has them, REST polling where it
does not, and nothing ccxt-shaped crossing the port (DESIGN.md 2, 6)."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support
import ccxt.pro
import structlog

from deltakeeper.adapters.ccxt_account import (
    balances_from_ccxt,
    check_bybit_account_answer,
    is_open_position,
    position_from_ccxt,
)
from deltakeeper.adapters.ccxt_markets import instrument_from_market, tiers_from_ccxt
from deltakeeper.adapters.ccxt_parse import (
    MalformedPayload,
    bybit_key_can_withdraw,
    error_from_ccxt,
    quote_from_ticker,
    retry_after_secs,
)
from deltakeeper.adapters.ccxt_trades import (
    FillValueUnknown,
    deribit_funding_from_log,
    fill_from_trade,
    funding_from_ccxt,
    is_funding_trade,
    order_from_ccxt,
)
from deltakeeper.adapters.ccxt_venue_margin import fetch_venue_margin
from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.errors import (
    ConfigError,
    DeltakeeperError,
    ExchangeUnavailable,
    OrderOutcomeUnknown,
    OrderRejected,
    RateLimited,
)
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import Instrument, is_stable
from deltakeeper.domain.margin_tiers import MarginTier
from deltakeeper.domain.orders import Fill, FundingPayment, OrderRequest, OrderState, Quote
from deltakeeper.domain.policy import price_symbol
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.venue_margin import VenueMargin
from deltakeeper.ports import AccountEvent, Clock
from deltakeeper.sim.bybit.client import point_ccxt_at

log = structlog.get_logger(__name__)

T = TypeVar("T")

_TRANSPORT_ERRORS = (ccxt.BaseError, OSError, TimeoutError)
"""What a ccxt call raises when the exchange or the network fails (anything else is a bug)."""

_BYBIT_PAGES = {"paginate": True, "paginationCalls": 100}
"""ccxt follows Bybit's cursors through every page of a listing (at most 100 pages) with these params."""
_BYBIT_FILL_EXEC_TYPES = ("Trade", "AdlTrade", "BustTrade", "Settle")
"""Bybit's executions that are fills: trades, and the exchange's own closes (ADL, takeover liquidation,
delisting settlement). ccxt's `fetch_my_trades` asks Bybit for `execType` Trade alone."""
_BACKFILL_MARGIN = timedelta(minutes=5)
_CATCH_UP_SECS = 2.0
"""How long after (re)subscribing to its trades the account stream backfills them once more by REST."""
RATE_LIMIT_RETRIES = 3
"""How many times a read refused for the rate limit is asked again (backing off) before it fails."""
_REMEMBERED_IDS = 10_000
_RATE_LIMIT_STATUSES = (403, 418, 429)
"""HTTP statuses of rate-limit refusals (Bybit answers its IP limit with 403)."""
_NON_FINITE_TEXTS = frozenset({"NaN", "nan", "Infinity", "-Infinity", "inf", "-inf"})
_CLIENT_ID_FETCH_ORDER = frozenset({"binance", "binanceusdm", "binancecoinm", "okx", "bitget"})
"""Exchanges whose ccxt `fetchOrder` looks an order up by `clientOrderId` (ccxt asks for origClientOrderId,
clOrdId, clientOid) and raises OrderNotFound when the exchange has none (`fetch_order`)."""
_ORDER_PAGE_LIMIT = 50
"""The page of open or closed orders `fetch_order` reads where the exchange cannot be asked by client id."""
_HISTORY_PAGE_LIMIT = 100
"""Items asked for per page of fills or funding outside Bybit (OKX answers 100 at most, and ignores a
smaller limit when given a start time)."""
_HISTORY_PAGES = 50
"""The most pages one read of fills or funding follows outside Bybit; beyond it the read fails
(ExchangeUnavailable) rather than answer part of the history."""


_PLACING: ContextVar[bool] = ContextVar("placing", default=False)
"""Set while `place_order` sends: a rate-limit pause refuses the order at once (`RefillingBucket`)."""


class RateLimitPause:
    """The exchange's word on when to ask again (`Retry-After`): every REST request of the adapter's
    clients waits until then (`RefillingBucket`), except an order, which is refused (RateLimited with the
    time still to wait): its sender checks again, after the wait, that the order still holds."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._monotonic = monotonic
        self._resume_at = -math.inf

    def hold(self, secs: float) -> None:
        """No request before `secs` from now (a later hold already set stands)."""
        self._resume_at = max(self._resume_at, self._monotonic() + secs)

    def remaining_secs(self) -> float:
        return max(0.0, self._resume_at - self._monotonic())


class RefillingBucket:
    """ccxt's client-side rate limiter for REST requests, its leaky bucket (`tokenBucket`: the exchange's
    `rateLimit` and each endpoint's cost, as ccxt computes them), refilled by the time elapsed, idle time
    included. ccxt's own bucket refills only while a request waits in its queue, so after any idle time
    the next request still waited out the cost of the one before: 50 ms after a Bybit order, 100 ms
    after a read of cost 5.

    Requests go one at a time in the order they come, each once the bucket is not below zero; its cost is
    then taken (so the bucket may go below zero, as in ccxt), and a burst is spaced at the exchange's
    rate. ccxt calls it as `throttler(cost)` and may set a `loop` attribute on it, which is not used.
    While the exchange's `pause` holds (after a rate-limit refusal), no request goes: a read waits, an order
    is refused at once (never held in the queue, where it would go out on what has changed meanwhile)."""

    def __init__(
        self,
        bucket: Mapping[str, Any],
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        pause: RateLimitPause | None = None,
    ) -> None:
        self.tokens_per_sec = float(bucket["refillRate"]) * 1000
        self.capacity = float(bucket["capacity"])
        self.default_cost = float(bucket["cost"])
        self.tokens = self.capacity
        self._monotonic = monotonic
        self._sleep = sleep
        self._refilled_at = monotonic()
        self._turn = asyncio.Lock()
        self._pause = pause or RateLimitPause(monotonic)

    async def __call__(self, cost: float | None = None) -> None:
        await self._wait_out_pause()  # an order is refused before queueing behind the waiting reads
        async with self._turn:
            await self._wait_out_pause()
            owed = -self._refill()
            if owed > 0:
                await self._sleep(owed / self.tokens_per_sec)
                self._refill()
            self.tokens -= self.default_cost if cost is None else cost

    async def _wait_out_pause(self) -> None:
        while (paused_secs := self._pause.remaining_secs()) > 0:
            if _PLACING.get():
                raise RateLimited(f"rate-limit pause: {paused_secs:.1f} s to go",
                                  retry_after_secs=paused_secs)
            await self._sleep(paused_secs)

    def _refill(self) -> float:
        now = self._monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._refilled_at) * self.tokens_per_sec)
        self._refilled_at = now
        return self.tokens


class CcxtExchange:
    """An exchange account through ccxt.pro (`name` is the ccxt id).

    Streams reconnect with exponential backoff and jitter after errors; a quote stream silent for
    `stale_after_secs` counts as an error and its websocket is reopened. Malformed messages are logged
    and skipped: a websocket frame that carries a non-finite number, is not JSON or makes ccxt fail is
    dropped, and the connection is read on. A rate-limit refusal's `Retry-After` holds every
    REST request of both clients (at most RETRY_AFTER_MAX_SECS). After a reconnect the account stream
    backfills fills and funding by REST from just before the last one it saw (the journal stores each
    once), and re-reads orders and the account.
    """

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
            config_options["watchMyTrades"] = {"execType": [*_BYBIT_FILL_EXEC_TYPES, "Funding"]}

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
            return exchange

        self._rest = build({"apiKey": api_key, "secret": secret, "password": password})
        self._public = build({})
        """Public streams on their own client, so that reopening a stale one leaves the account's alone."""
        self._instruments: dict[str, Instrument] = {}
        self._balances: dict[str, Decimal] = {}
        self._greeks: dict[str, dict[str, Any]] = {}
        """The greeks (ccxt `fetch_greeks`) of each option position, as last read with the account."""
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

    # --- account -----------------------------------------------------------------------------------

    async def fetch_account(self) -> AccountSnapshot:
        balance = await self._call(self._rest.fetch_balance)
        raws = await self._raw_positions()
        self._greeks = await self._option_greeks(raws)
        with self._reading():
            positions = [position_from_ccxt(raw, await self._instrument(raw.get("symbol")), self.name,
                                            self._greeks.get(str(raw.get("symbol"))))
                         for raw in raws]
            balances = balances_from_ccxt(balance, self.name)
        self._balances = dict(balances)
        self._positions = {position.symbol: position for position in positions}
        return AccountSnapshot(balances, tuple(positions), self._clock.now())

    async def _raw_positions(self) -> list[dict[str, Any]]:
        """The open positions as ccxt reports them, over the whole account; an entry without a readable
        size is an unreadable answer (ExchangeUnavailable), never a flat position."""
        raws: list[dict[str, Any]] = []
        if self._rest.has.get("fetchPositions"):
            for scope in self._scopes(settle=True, derivatives_only=True):
                raws += await self._call(self._rest.fetch_positions, None, scope)
        with self._reading():
            return [raw for raw in raws if is_open_position(raw)]

    async def _option_greeks(self, raws: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The greeks of the options among the positions `raws`, where the exchange publishes them: the
        venue's delta where the position itself carries none, and the mark IV and forward of every option
        (its gamma; Black-76's delta where the venue gives none at all)."""
        if not self._rest.has.get("fetchGreeks"):
            return {}
        markets = self._rest.markets or {}
        options = {str(raw.get("symbol")) for raw in raws
                   if (markets.get(raw.get("symbol")) or {}).get("option")}
        return {symbol: await self._call(self._rest.fetch_greeks, symbol) for symbol in sorted(options)}

    async def fetch_leverage_tiers(self, symbols: Sequence[str]) -> dict[str, tuple[MarginTier, ...]]:
        """The tables of the stablecoin-settled futures among `symbols` (ccxt's inverse tiers count coins,
        not the USD face the port's tables count)."""
        linear = [symbol for symbol in symbols if (instrument := self._instruments.get(symbol)) is not None
                  and instrument.is_derivative and not instrument.is_option and instrument.usd_margined]
        raws = await self._raw_leverage_tiers(linear)
        with self._reading():
            return {symbol: tiers_from_ccxt(entries) for symbol, entries in raws.items()}

    async def _raw_leverage_tiers(self, symbols: Sequence[str]) -> dict[str, Any]:
        """ccxt's leverage tiers of the futures `symbols`: market by market where the exchange answers for
        one (Bybit), else all at once; none where it publishes none."""
        has = self._rest.has
        if has.get("fetchMarketLeverageTiers") is True:
            return {symbol: await self._call(self._rest.fetch_market_leverage_tiers, symbol)
                    for symbol in symbols}
        if not symbols or not has.get("fetchLeverageTiers"):
            return {}
        tiers = await self._call(self._rest.fetch_leverage_tiers, list(symbols))
        return {symbol: tiers[symbol] for symbol in symbols if symbol in tiers}

    async def portfolio_document(
        self, price_symbol: Callable[[str, Mapping[str, Instrument]], str | None]
    ) -> dict[str, Any]:
        """The account as a portfolio file of `deltakeeper delta` and `margin` (ccxt-shaped): the open
        positions as ccxt reports them (with the exchange's margin figures) and their markets and leverage
        tiers (none where the exchange refuses them: logged), the wallet balances, each held asset's USD
        price (the mark of `price_symbol(asset)`'s ticker; a coin no market prices is left out of the
        balances) and the time."""
        instruments = await self.load_instruments()
        balance = await self._call(self._rest.fetch_balance)
        positions = await self._raw_positions()
        with self._reading():
            balances = balances_from_ccxt(balance, self.name)
            held = [await self._instrument(raw.get("symbol")) for raw in positions]
        prices: dict[str, Decimal] = {}
        for asset in sorted({*balances, *(i.base for i in held), *(i.settle for i in held)}):
            symbol = None if is_stable(asset) else price_symbol(asset, instruments)
            if symbol is None:
                continue
            ticker = await self._call(self._rest.fetch_ticker, symbol)
            with self._reading():
                prices[asset] = quote_from_ticker(ticker, self._clock.now(), self._clock.speed).mark
        futures = sorted({i.symbol for i in held if not i.is_option})
        try:
            tiers = await self._raw_leverage_tiers(futures)
        except OrderRejected as exc:
            log.warning("leverage_tiers_refused", exchange=self.name, symbols=futures, reason=str(exc))
            tiers = {}
        return {
            "exchange": self.name,
            "timestamp": _ms(self._clock.now()),
            "markets": {i.symbol: self._rest.markets[i.symbol] for i in held},
            "positions": positions,
            "balances": {a: q for a, q in balances.items() if is_stable(a) or a in prices},
            "prices": prices,
            "leverage_tiers": tiers,
        }

    async def fetch_account_margin(self) -> VenueMargin:
        """The venue's own account mode and margin ratio (`adapters.ccxt_venue_margin`)."""
        with self._reading():
            return await fetch_venue_margin(self._rest, self.name, self._call, self._clock.now())

    async def key_can_withdraw(self) -> bool | None:
        """Whether the API key may withdraw, where the exchange tells (Bybit); None where unknown."""
        if self.name != "bybit":
            return None
        answer = await self._call(self._rest.private_get_v5_user_query_api)
        with self._reading():
            return bybit_key_can_withdraw(answer)

    # --- orders ------------------------------------------------------------------------------------

    async def place_order(self, request: OrderRequest) -> OrderState:
        """Sent once, never retried here (DESIGN.md 6): a definite refusal raises OrderRejected or
        RateLimited (at once, with the time to wait, while a rate-limit pause holds); anything after which
        the order may exist raises OrderOutcomeUnknown."""
        params: dict[str, Any] = {"clientOrderId": request.client_order_id}
        if request.reduce_only:
            params["reduceOnly"] = True
        if request.post_only:
            params["postOnly"] = True
        price = None if request.price is None else float(request.price)
        placing = _PLACING.set(True)
        try:
            order = await self._rest.create_order(request.symbol, request.order_type.value,
                                                  request.side.value, float(request.amount_contracts), price,
                                                  params)
        except _TRANSPORT_ERRORS as exc:
            raise error_from_ccxt(exc, placing=True) from exc
        finally:
            _PLACING.reset(placing)
        try:
            return order_from_ccxt(order, self._clock.now(), request)
        except MalformedPayload as exc:
            raise OrderOutcomeUnknown(f"accepted with an unreadable answer: {exc}") from exc

    async def cancel_order(self, symbol: str, client_order_id: str) -> None:
        """Cancel by client order id; an order already final (or unknown) needs nothing."""
        state = await self.fetch_order(symbol, client_order_id)
        if state is None or state.status.is_final:
            return
        try:
            await self._rest.cancel_order(state.exchange_order_id, symbol)
        except ccxt.OrderNotFound:
            return
        except _TRANSPORT_ERRORS as exc:
            raise error_from_ccxt(exc) from exc

    async def cancel_all_orders(self, symbol: str | None = None) -> None:
        if symbol is not None:
            await self._call(self._rest.cancel_all_orders, symbol)
            return
        for scope in self._scopes(settle=True, paged=False):
            await self._call(self._rest.cancel_all_orders, None, scope)

    async def fetch_open_orders(self) -> list[OrderState]:
        raws = await self._raw_open_orders()
        with self._reading():
            return [order_from_ccxt(raw, self._clock.now()) for raw in raws]

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        """The order with this client order id, open or closed; None only when the exchange says it does
        not know it. Asked by client id where the exchange can be (Bybit filters its listings by it;
        `_CLIENT_ID_FETCH_ORDER`), else looked for in one page of open and of closed orders: a full page
        without it may not hold all, which is no answer (ExchangeUnavailable)."""
        has = self._rest.has
        if self.name in _CLIENT_ID_FETCH_ORDER or has.get("fetchOrderWithClientOrderId") is True:
            raw = await self._call(self._order_or_none, client_order_id, symbol)
            with self._reading():
                return None if raw is None else order_from_ccxt(raw, self._clock.now())
        bybit = self.name == "bybit"
        params, limit = ({"orderLinkId": client_order_id}, None) if bybit else ({}, _ORDER_PAGE_LIMIT)
        lookups = [self._rest.fetch_open_orders]
        if has.get("fetchCanceledAndClosedOrders"):
            lookups.append(self._rest.fetch_canceled_and_closed_orders)
        else:
            lookups += [method for name, method in (("fetchClosedOrders", self._rest.fetch_closed_orders),
                                                    ("fetchCanceledOrders", self._rest.fetch_canceled_orders))
                        if has.get(name)]
        for lookup in lookups:
            page = await self._call(lookup, symbol, None, limit, params)
            for raw in page:
                if raw.get("clientOrderId") == client_order_id:
                    with self._reading():
                        return order_from_ccxt(raw, self._clock.now())
            if limit is not None and len(page) >= limit:
                raise ExchangeUnavailable(f"{self.name}: {client_order_id} not in a full page of "
                                          f"{getattr(lookup, '__name__', 'orders')}: outcome unknown")
        return None

    async def _order_or_none(self, client_order_id: str, symbol: str) -> dict[str, Any] | None:
        """ccxt's fetchOrder by client order id; None where the exchange answers that it has no such order."""
        try:
            order: dict[str, Any] = await self._rest.fetch_order_with_client_order_id(client_order_id, symbol)
        except ccxt.OrderNotFound:
            return None
        return order

    async def fetch_order_book(self, symbol: str, depth: int) -> tuple[list[BookLevel], list[BookLevel]]:
        """(bids, asks) best first; ccxt's sizes (contracts for derivatives) turned into coins."""
        instrument = await self._instrument(symbol)
        raw = await self._call(self._rest.fetch_order_book, symbol, depth)
        with self._reading():
            return _book_side(raw, "bids", instrument), _book_side(raw, "asks", instrument)

    async def fetch_quote(self, symbol: str) -> Quote:
        """The ticker by REST (the price gate's confirmation read)."""
        raw = await self._call(self._rest.fetch_ticker, symbol)
        with self._reading():
            return quote_from_ticker(raw, self._clock.now(), self._clock.speed)

    async def _raw_open_orders(self) -> list[dict[str, Any]]:
        raws: list[dict[str, Any]] = []
        for scope in self._scopes(settle=True):
            raws += await self._call(self._rest.fetch_open_orders, None, None, None, scope)
        return raws

    # --- history -----------------------------------------------------------------------------------

    async def fetch_fills(self, since: datetime) -> list[Fill]:
        raws = await self._raw_trades(since)
        with self._reading():
            events = [await self._trade_event(raw) for raw in raws]
        return sorted((event for event in events if isinstance(event, Fill)), key=lambda fill: fill.ts)

    async def fetch_funding_payments(self, since: datetime) -> list[FundingPayment]:
        if self.name == "deribit":
            return await self._deribit_funding(since)
        if not self._rest.has.get("fetchFundingHistory"):
            return []
        raws: list[dict[str, Any]] = []
        for scope in self._scopes(settle=False, derivatives_only=True):
            raws += await self._history(self._rest.fetch_funding_history, since, scope)
        with self._reading():
            payments = [funding_from_ccxt(raw, await self._instrument(raw.get("symbol")), self.name)
                        for raw in raws]
        return sorted(payments, key=lambda payment: payment.ts)

    def _window_params(self, fetch: Callable[..., Any], start_ms: int,
                       until_ms: int | None) -> dict[str, Any]:
        """A history window's bounds as `fetch` takes them: ccxt's `until` (with `since`), but in the
        exchange's own terms where ccxt sends none: OKX's funding bills `begin` and `end`, Deribit's trades
        `end_timestamp` (which Deribit requires: now, when the window is open)."""
        if self.name == "okx" and _name(fetch) == "fetch_funding_history":
            return {"begin": str(start_ms), **({} if until_ms is None else {"end": str(until_ms)})}
        if self.name == "deribit" and _name(fetch) == "fetch_my_trades":
            return {"end_timestamp": _ms(self._clock.now()) if until_ms is None else until_ms}
        return {} if until_ms is None else {"until": until_ms}

    async def _deribit_funding(self, since: datetime) -> list[FundingPayment]:
        """Deribit's perpetual funding (ccxt has no `fetchFundingHistory` there): the settlements of its
        transaction log, per settlement currency of its perpetuals, followed by `continuation`."""
        entries: list[dict[str, Any]] = []
        coins = sorted({market["settle"] for market in self._rest.markets.values() if market.get("swap")})
        for coin in coins:
            request: dict[str, Any] = {"currency": coin, "start_timestamp": _ms(since), "query": "settlement",
                                       "end_timestamp": _ms(self._clock.now()), "count": _HISTORY_PAGE_LIMIT}
            for _ in range(_HISTORY_PAGES):
                answer = await self._call(self._rest.private_get_get_transaction_log, request)
                with self._reading():
                    result = _deribit_log_result(answer)
                entries += result["logs"]
                if result.get("continuation") is None:
                    break
                request = {**request, "continuation": result["continuation"]}
            else:
                log.error("history_page_bound_hit", exchange=self.name, call="get_transaction_log",
                          pages=_HISTORY_PAGES, since=since.isoformat(), read=len(entries))
                raise ExchangeUnavailable(f"{self.name}: the transaction log since {since.isoformat()} "
                                          f"spans more than {_HISTORY_PAGES} pages")
        payments: dict[str, FundingPayment] = {}
        for entry in entries:
            market = self._rest.safe_market(entry.get("instrument_name"))
            if not market.get("swap"):
                continue
            with self._reading():
                payment = deribit_funding_from_log(entry, await self._instrument(market["symbol"]))
            if payment is not None:
                payments[payment.payment_id] = payment
        return sorted(payments.values(), key=lambda payment: payment.ts)

    async def _raw_trades(self, since: datetime) -> list[dict[str, Any]]:
        raws: list[dict[str, Any]] = []
        for scope in self._scopes(settle=False):
            derivatives = self.name == "bybit" and scope.get("type") != "spot"
            for kind in [{"execType": t} for t in _BYBIT_FILL_EXEC_TYPES] if derivatives else [{}]:
                params = {**scope, **kind}
                raws += await self._history(self._rest.fetch_my_trades, since, params)
        return raws

    async def _history(self, fetch: Callable[..., Awaitable[list[dict[str, Any]]]], since: datetime,
                       params: dict[str, Any]) -> list[dict[str, Any]]:
        """Every item `fetch` lists from `since` on, each once (by id). Bybit: ccxt follows its cursors
        (`_scopes`). Elsewhere by time window, whichever end of a window the exchange answers first (OKX
        the newest, Binance the oldest): a full page covering [first, last] of the window [start, until)
        leaves [start, first] and [last, until) to read, the page's edges read again and deduplicated.
        More than `_HISTORY_PAGES` pages, or a full page at one instant, is ExchangeUnavailable: the
        caller's cursor stays where it was, no item skipped."""
        if self.name == "bybit":
            return await self._call(fetch, None, _ms(since), None, params)
        found: dict[str, dict[str, Any]] = {}
        windows: list[tuple[int, int | None]] = [(_ms(since), None)]
        pages = 0
        while windows:
            if pages == _HISTORY_PAGES:
                log.error("history_page_bound_hit", exchange=self.name, call=_name(fetch), pages=pages,
                          since=since.isoformat(), read=len(found))
                raise ExchangeUnavailable(f"{self.name}: {_name(fetch)} since {since.isoformat()} spans "
                                          f"more than {_HISTORY_PAGES} pages")
            pages += 1
            start_ms, until_ms = windows.pop()
            bounds = self._window_params(fetch, start_ms, until_ms)
            page = await self._call(fetch, None, start_ms, _HISTORY_PAGE_LIMIT, {**params, **bounds})
            new = {_history_key(raw): raw for raw in page if _history_key(raw) not in found}
            found.update(new)
            if len(page) < _HISTORY_PAGE_LIMIT:
                continue
            stamps = [stamp for raw in page if isinstance(stamp := raw.get("timestamp"), int)]
            if not new or len(stamps) < len(page):
                raise ExchangeUnavailable(f"{self.name}: a full page of {_name(fetch)} that cannot be "
                                          "paged further (no new item, or no timestamps)")
            first_ms, last_ms = min(stamps), max(stamps)
            windows.append((last_ms, until_ms))
            if first_ms > start_ms:
                windows.append((start_ms, first_ms + 1))
        return sorted(found.values(), key=lambda raw: raw.get("timestamp") or 0)

    async def _trade_event(self, raw: dict[str, Any]) -> Fill | FundingPayment:
        instrument = await self._instrument(raw.get("symbol"))
        if is_funding_trade(raw, self.name):
            return funding_from_ccxt(raw, instrument, self.name)
        try:
            return fill_from_trade(raw, instrument, self.name)
        except FillValueUnknown as unknown:
            coin_usd = await self._usd_price(unknown.currency)
        return fill_from_trade(raw, instrument, self.name, coin_usd)

    async def _usd_price(self, coin: str) -> Decimal:
        """`coin`'s USD price now: the mark of its pricing market's ticker (`price_symbol`), read by REST. A
        coin no market prices is ExchangeUnavailable: the fill waits for a later read, never journaled
        with a notional in another currency."""
        symbol = price_symbol(coin, self._instruments)
        if symbol is None:
            raise ExchangeUnavailable(f"{self.name} lists no market pricing {coin} in USD: a fill's value "
                                      "is unknown")
        ticker = await self._call(self._rest.fetch_ticker, symbol)
        with self._reading():
            return quote_from_ticker(ticker, self._clock.now()).mark

    # --- streams -----------------------------------------------------------------------------------

    def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        """Quotes as they change: one websocket subscription per group of markets the exchange serves on
        one connection (Bybit: spot, linear, inverse), else REST polling. Spot books come from the best
        bid and ask stream where there is one (Bybit's spot tickers carry no book; spot's mark is the
        mid), derivatives from tickers (with mark, index and funding rate)."""
        groups: dict[tuple[str, bool], list[str]] = {}
        for symbol in symbols:
            market = self._public.markets[symbol]
            groups.setdefault((market["type"], bool(market.get("inverse"))), []).append(symbol)
        has, public = self._public.has, self._public
        receivers: list[Callable[[], Awaitable[list[Any]]]] = []
        for (kind, _), group in groups.items():
            if kind == "spot" and has.get("watchBidsAsks"):
                receivers.append(partial(_many, public.watch_bids_asks, group))
            elif has.get("watchTickers"):
                receivers.append(partial(_many, public.watch_tickers, group))
            elif has.get("watchTicker"):
                receivers += [partial(_one, public.watch_ticker, symbol) for symbol in group]
            elif has.get("fetchTickers"):
                receivers.append(self._polled(partial(_many, public.fetch_tickers, group)))
            else:
                receivers += [self._polled(partial(_one, public.fetch_ticker, symbol)) for symbol in group]

        async def to_quote(ticker: dict[str, Any]) -> Quote | None:
            try:
                return quote_from_ticker(ticker, self._clock.now(), self._clock.speed)
            except MalformedPayload as exc:
                log.warning("quote_malformed", exchange=self.name, symbol=ticker.get("symbol"),
                            reason=str(exc))
                return None

        return _merge([self._stream("quotes", receive, to_quote, stale_after_secs=self._stale_after_secs,
                                    on_stale=public.close_ws_clients) for receive in receivers])

    def account_events(self) -> AsyncIterator[AccountEvent]:
        """Order updates, fills, funding payments and account snapshots (wallet balances and positions)."""
        return _merge([self._order_stream(), self._trade_stream(), *self._snapshot_streams()])

    def _order_stream(self) -> AsyncIterator[OrderState]:
        last: dict[str, tuple[Any, ...]] = {}

        async def changed(raw: dict[str, Any]) -> OrderState | None:
            state = order_from_ccxt(raw, self._clock.now())
            key = (state.status, state.filled_contracts)
            if last.get(state.exchange_order_id) == key:
                return None
            last[state.exchange_order_id] = key
            return state

        watching = self._rest.has.get("watchOrders")
        receive = self._rest.watch_orders if watching else self._polled(self._raw_open_orders)
        return self._stream("orders", receive, changed, resync=self.fetch_open_orders)

    def _trade_stream(self) -> AsyncIterator[Fill | FundingPayment]:
        """Fills and funding payments, each once, though pushes, polls and backfills overlap."""
        cursor = [self._clock.now()]
        seen: dict[str, None] = {}

        def new(event: Fill | FundingPayment) -> bool:
            key = event.trade_id if isinstance(event, Fill) else event.payment_id
            if key in seen:
                return False
            seen[key] = None
            if len(seen) > _REMEMBERED_IDS:
                del seen[next(iter(seen))]
            cursor[0] = max(cursor[0], event.ts)
            return True

        async def convert(raw: dict[str, Any]) -> Fill | FundingPayment | None:
            event = await self._trade_event(raw)
            return event if new(event) else None

        async def backfill(start: datetime) -> list[Fill | FundingPayment]:
            since = start - _BACKFILL_MARGIN
            missed: list[Fill | FundingPayment] = [*await self.fetch_fills(since),
                                                   *await self.fetch_funding_payments(since)]
            return [event for event in missed if new(event)]

        if not self._rest.has.get("watchMyTrades"):
            polled = self._polled(lambda: self._raw_trades(cursor[0] - _BACKFILL_MARGIN))
            return self._stream("trades", polled, convert, resync=lambda: backfill(cursor[0]))

        # A backfill runs before each (re)subscription, and another once the subscription has had time to
        # start: what settled between the first backfill and the subscription reaches neither otherwise.
        # The second starts where the first did, not at the cursor: a newer push may have moved the cursor
        # past what the subscription missed.
        fresh = [True]
        subscribed = asyncio.Event()
        resumed_from = [cursor[0]]

        async def resync() -> list[Fill | FundingPayment]:
            fresh[0] = True
            resumed_from[0] = cursor[0]
            return await backfill(cursor[0])

        async def receive() -> Iterable[Any]:
            if fresh[0]:
                fresh[0] = False
                subscribed.set()
            return await self._rest.watch_my_trades()

        async def catch_up() -> AsyncIterator[Fill | FundingPayment]:
            while True:
                await subscribed.wait()
                subscribed.clear()
                await asyncio.sleep(_CATCH_UP_SECS)
                try:
                    missed = await backfill(resumed_from[0])
                except (*_TRANSPORT_ERRORS, DeltakeeperError) as exc:
                    log.warning("stream_error", stream="trades", exchange=self.name, stage="catch_up",
                                error=f"{type(exc).__name__}: {exc}")
                    continue
                for event in missed:
                    yield event

        return _merge([self._stream("trades", receive, convert, resync=resync), catch_up()])

    def _snapshot_streams(self) -> list[AsyncIterator[AccountSnapshot]]:
        """Snapshots of the account: polled by REST, or the last read (`fetch_account`, by any caller) with
        the balance and position pushes since merged in, each push replacing its own part only."""
        has = self._rest.has

        async def fetched() -> list[AccountSnapshot]:
            return [await self.fetch_account()]

        async def same(snapshot: AccountSnapshot) -> AccountSnapshot:
            return snapshot

        if not (has.get("watchBalance") and has.get("watchPositions")):
            return [self._stream("account", self._polled(fetched), same, resync=fetched, resync_first=True)]

        def snapshot() -> AccountSnapshot:
            return AccountSnapshot(dict(self._balances), tuple(self._positions.values()), self._clock.now())

        async def on_balance(balance: dict[str, Any]) -> AccountSnapshot:
            self._balances = balances_from_ccxt(balance, self.name)
            return snapshot()

        async def on_positions(raws: list[dict[str, Any]]) -> AccountSnapshot:
            # An option's pushed row carries the venue's delta; its IV is the one last read (read now for an
            # option not seen before), not its forward, which moved: gamma is then at the asset's price.
            self._greeks.update(await self._option_greeks([raw for raw in raws
                                                           if str(raw.get("symbol")) not in self._greeks]))
            pushed = [position_from_ccxt(raw, await self._instrument(raw.get("symbol")), self.name,
                                         _iv_only(self._greeks.get(str(raw.get("symbol")))))
                      for raw in raws]  # all read before any is taken: a malformed push changes nothing
            for position in pushed:
                if position.contracts:
                    self._positions[position.symbol] = position
                else:
                    self._positions.pop(position.symbol, None)
            return snapshot()

        return [
            self._stream("balance", partial(_one, self._rest.watch_balance), on_balance, resync=fetched,
                         resync_first=True),
            self._stream("positions", partial(_one, self._rest.watch_positions), on_positions,
                         resync=fetched, resync_first=True),
        ]

    async def _stream(
        self,
        name: str,
        receive: Callable[[], Awaitable[Iterable[Any]]],
        convert: Callable[[Any], Awaitable[T | None]],
        *,
        stale_after_secs: float | None = None,
        on_stale: Callable[[], Awaitable[Any]] | None = None,
        resync: Callable[[], Awaitable[Sequence[T]]] | None = None,
        resync_first: bool = False,
    ) -> AsyncIterator[T]:
        """Receive, convert and yield forever. After a failure: back off, resync by REST, receive again."""
        failures = 0
        resync_due = resync_first
        while True:
            if failures:
                await asyncio.sleep(self._backoff_secs(failures))
            if resync is not None and (failures or resync_due):
                try:
                    resynced = await resync()
                except (*_TRANSPORT_ERRORS, DeltakeeperError) as exc:
                    failures += 1
                    self._stream_failed(name, exc, failures, stage="resync")
                    continue
                resync_due = False
                for event in resynced:
                    yield event
            try:
                raws = await asyncio.wait_for(receive(), stale_after_secs)
            except TimeoutError:
                failures += 1
                log.warning("stream_stale", stream=name, exchange=self.name, silent_secs=stale_after_secs,
                            failures=failures)
                if on_stale is not None:
                    await on_stale()
                continue
            except (*_TRANSPORT_ERRORS, DeltakeeperError) as exc:
                failures += 1
                self._stream_failed(name, exc, failures, stage="receive")
                continue
            if failures:
                log.info("stream_resumed", stream=name, exchange=self.name, after_failures=failures)
                failures = 0
            for raw in raws:
                try:
                    converted = await convert(raw)
                except MalformedPayload as exc:
                    log.warning("malformed_message_skipped", stream=name, exchange=self.name, reason=str(exc))
                    continue
                except (*_TRANSPORT_ERRORS, DeltakeeperError) as exc:  # a read it needed (the markets)
                    failures += 1
                    self._stream_failed(name, exc, failures, stage="convert")
                    break
                if converted is not None:
                    yield converted

    def _stream_failed(self, name: str, exc: BaseException, failures: int, stage: str) -> None:
        """Log a failure to be retried; a refused key (ConfigError) ends the stream instead."""
        error = error_from_ccxt(exc)
        if isinstance(error, ConfigError):
            raise error from exc
        log.warning("stream_error", stream=name, exchange=self.name, stage=stage,
                    error=f"{type(exc).__name__}: {exc}", failures=failures)

    def _backoff_secs(self, failures: int) -> float:
        """Exponential in the number of failures in a row, capped, with jitter in [50%, 100%]."""
        delay = min(self._backoff_max_secs, self._backoff_initial_secs * 2 ** (failures - 1))
        return delay * (0.5 + self._rng.random() / 2)

    def _polled(self, fetch: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T]]:
        async def poll() -> T:
            await asyncio.sleep(self._poll_interval_secs)
            return await fetch()

        return poll

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
            except _TRANSPORT_ERRORS as exc:
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


def _book_side(raw: Any, side: str, instrument: Instrument) -> list[BookLevel]:
    try:
        rows = [(Decimal(str(row[0])), Decimal(str(row[1]))) for row in raw[side]]
        return [BookLevel(price, abs(instrument.delta_coin(size, price))) for price, size in rows]
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise MalformedPayload(f"order book {side}", "a list of [price, size]", raw) from exc


def _deribit_log_result(answer: Any) -> dict[str, Any]:
    """The `result` of a Deribit transaction log answer: its `logs` (a list) and `continuation`."""
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, dict) or not isinstance(result.get("logs"), list):
        raise MalformedPayload("result.logs", "a list of transaction log entries", answer)
    return result


def _name(method: Callable[..., Any]) -> str:
    return getattr(method, "__name__", "history")


def _history_key(raw: Mapping[str, Any]) -> str:
    """A listed item's identity across overlapping pages: its id, else its whole raw answer."""
    return str(raw.get("id") or raw.get("info"))


def _iv_only(greeks: Mapping[str, Any] | None) -> dict[str, Any] | None:
    return None if greeks is None else {"markImpliedVolatility": greeks.get("markImpliedVolatility")}


def _ms(ts: datetime) -> int:
    return int(ts.timestamp() * 1000)


async def _many(fetch: Callable[..., Awaitable[Mapping[str, Any]]], *args: Any) -> list[Any]:
    """The values of a ccxt answer keyed by symbol (tickers)."""
    return list((await fetch(*args)).values())


async def _one(fetch: Callable[..., Awaitable[Any]], *args: Any) -> list[Any]:
    return [await fetch(*args)]


class _StreamFailed:
    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _merge(streams: Sequence[AsyncIterator[T]]) -> AsyncIterator[T]:
    """Items from all `streams` as they come; a stream that dies of a bug ends the merge with its error."""
    queue: asyncio.Queue[T | _StreamFailed] = asyncio.Queue()

    async def pump(stream: AsyncIterator[T]) -> None:
        try:
            async for item in stream:
                await queue.put(item)
        except Exception as exc:
            await queue.put(_StreamFailed(exc))

    tasks = [asyncio.create_task(pump(stream)) for stream in streams]
    try:
        while True:
            item = await queue.get()
            if isinstance(item, _StreamFailed):
                raise item.error
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
