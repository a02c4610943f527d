"""Fills and funding payments through ccxt, read page by page: by Bybit's cursors, by time window
elsewhere (per traded market where ccxt lists them per symbol only: Binance futures, Bitget), and from
Deribit's transaction log."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from deltakeeper.adapters import ccxt_binance, ccxt_bitget
from deltakeeper.adapters.ccxt_base import BYBIT_FILL_EXEC_TYPES, to_ms
from deltakeeper.adapters.ccxt_binance import BINANCE_FUTURES, client_order_id
from deltakeeper.adapters.ccxt_parse import MalformedPayload, quote_from_ticker
from deltakeeper.adapters.ccxt_trades import (
    FillValueUnknown,
    deribit_funding_from_log,
    fill_from_trade,
    funding_from_ccxt,
    is_funding_trade,
)
from deltakeeper.adapters.ccxt_trading import CLIENT_ID_BY_ORDER_ID, CcxtTrading
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.instruments import Kind
from deltakeeper.domain.orders import Fill, FundingPayment
from deltakeeper.domain.policy import price_symbol

log = structlog.get_logger(__name__)

_HISTORY_PAGE_LIMIT = 100
"""Items asked for per page of fills or funding outside Bybit (OKX answers 100 at most, and ignores a
smaller limit when given a start time)."""
_PER_SYMBOL_WINDOW_MS = {**dict.fromkeys(BINANCE_FUTURES, ccxt_binance.HISTORY_WINDOW_MS),
                         "bitget": ccxt_bitget.HISTORY_WINDOW_MS}
"""Exchanges whose fills ccxt lists per symbol only, with the longest window of time each answers for
(its funding too: Binance's across symbols, Bitget's per symbol)."""
_PER_SYMBOL_FUNDING = frozenset({"bitget"})
"""Exchanges whose funding payments ccxt lists per symbol only."""
_HISTORY_PAGES = 50
"""The most pages one read of fills or funding follows outside Bybit; beyond it the read fails
(ExchangeUnavailable) rather than answer part of the history."""


class CcxtHistory(CcxtTrading):
    """The account's fills and funding payments since a time, each once."""

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
        if self.name in _PER_SYMBOL_FUNDING:
            for symbol in self._fill_symbols(perpetuals_only=True):
                raws += await self._history(self._rest.fetch_funding_history, since, {}, symbol)
        else:
            for scope in self._scopes(settle=False, derivatives_only=True):
                raws += await self._history(self._rest.fetch_funding_history, since, scope)
        with self._reading():
            payments = [funding_from_ccxt(raw, await self._instrument(raw.get("symbol")), self.name)
                        for raw in _distinct(raws)]
        return sorted(payments, key=lambda payment: payment.ts)

    def _window_params(self, fetch: Callable[..., Any], start_ms: int,
                       until_ms: int | None) -> dict[str, Any]:
        """A history window's bounds as `fetch` takes them: ccxt's `until` (with `since`), but in the
        exchange's own terms where ccxt sends none: OKX's funding bills `begin` and `end`, Deribit's trades
        `end_timestamp` (which Deribit requires: now, when the window is open)."""
        if self.name == "okx" and _name(fetch) == "fetch_funding_history":
            return {"begin": str(start_ms), **({} if until_ms is None else {"end": str(until_ms)})}
        if self.name == "deribit" and _name(fetch) == "fetch_my_trades":
            return {"end_timestamp": to_ms(self._clock.now()) if until_ms is None else until_ms}
        return {} if until_ms is None else {"until": until_ms}

    async def _deribit_funding(self, since: datetime) -> list[FundingPayment]:
        """Deribit's perpetual funding (ccxt has no `fetchFundingHistory` there): the settlements of its
        transaction log, per settlement currency of its perpetuals, followed by `continuation`."""
        entries: list[dict[str, Any]] = []
        coins = sorted({market["settle"] for market in self._rest.markets.values() if market.get("swap")})
        for coin in coins:
            request: dict[str, Any] = {"currency": coin, "start_timestamp": to_ms(since),
                                       "query": "settlement", "end_timestamp": to_ms(self._clock.now()),
                                       "count": _HISTORY_PAGE_LIMIT}
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
        if self.name in _PER_SYMBOL_WINDOW_MS:  # listed per symbol only
            for symbol in self._fill_symbols():
                raws += await self._history(self._rest.fetch_my_trades, since, {}, symbol)
            return _distinct(raws)
        for scope in self._scopes(settle=False):
            derivatives = self.name == "bybit" and scope.get("type") != "spot"
            for kind in [{"execType": t} for t in BYBIT_FILL_EXEC_TYPES] if derivatives else [{}]:
                params = {**scope, **kind}
                raws += await self._history(self._rest.fetch_my_trades, since, params)
        return raws

    def track_markets(self, symbols: Iterable[str]) -> None:
        """Markets whose fills (and Bitget's funding) are read where the venue lists them per market only:
        the bot's hedge and price markets from the start (its first reconciliation runs before its quote
        streams), besides those quoted, ordered, looked up or held."""
        self._traded_symbols.update(symbols)

    def _fill_symbols(self, perpetuals_only: bool = False) -> list[str]:
        """Where history is listed per symbol only (`_PER_SYMBOL_WINDOW_MS`): the futures markets (or only
        the perpetuals) whose fills and funding are read: those quoted, ordered or looked up through this
        adapter, and those held."""
        symbols = self._traded_symbols | set(self._positions)
        return sorted(s for s in symbols if (i := self._instruments.get(s)) is not None and i.is_derivative
                      and (i.kind is Kind.PERPETUAL or not perpetuals_only))

    async def _history(self, fetch: Callable[..., Awaitable[list[dict[str, Any]]]], since: datetime,
                       params: dict[str, Any], symbol: str | None = None) -> list[dict[str, Any]]:
        """Every item `fetch` lists from `since` on, each once (by id). Bybit: ccxt follows its cursors
        (`_scopes`). Elsewhere by time window, whichever end of a window the exchange answers first (OKX
        the newest, Binance the oldest): a full page covering [first, last] of the window [start, until)
        leaves [start, first] and [last, until) to read, the page's edges read again and deduplicated.
        Binance answers a week at most, Bitget 30 days: their windows are that long. More than
        `_HISTORY_PAGES` pages, or a full page at one instant, is ExchangeUnavailable: the caller's cursor
        stays where it was, no item skipped."""
        if self.name == "bybit":
            return await self._call(fetch, None, to_ms(since), None, params)
        found: dict[str, dict[str, Any]] = {}
        windows: list[tuple[int, int | None]] = [(to_ms(since), None)]
        if (window_ms := _PER_SYMBOL_WINDOW_MS.get(self.name)) is not None:
            windows = history_windows(to_ms(since), to_ms(self._clock.now()), window_ms)
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
            page = await self._call(fetch, symbol, start_ms, _HISTORY_PAGE_LIMIT, {**params, **bounds})
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
        if self.name in CLIENT_ID_BY_ORDER_ID:
            raw = {**raw, "clientOrderId": await self._client_id_by_order(raw)}
        try:
            return fill_from_trade(raw, instrument, self.name)
        except FillValueUnknown as unknown:
            coin_usd = await self._usd_price(unknown.currency)
        return fill_from_trade(raw, instrument, self.name, coin_usd)

    async def _client_id_by_order(self, trade: dict[str, Any]) -> str | None:
        """The client order id of a trade listed without one (`CLIENT_ID_BY_ORDER_ID`): carried by a pushed
        trade, else its order's, looked up by the order id once."""
        order_id = str(trade.get("order") or "")
        found = client_order_id(trade) or self._client_ids.get(order_id)
        if found is None and order_id:
            order = await self._call(self._rest.fetch_order, order_id, trade.get("symbol"))
            found = order.get("clientOrderId")
        self._remember_client_id(order_id, found)
        return found

    async def _usd_price(self, coin: str) -> Decimal:
        """`coin`'s USD price now: the mark of its pricing market's ticker (`price_symbol`), read by REST. A
        coin no market prices is ExchangeUnavailable: the fill waits for a later read, never journaled
        with a notional in another currency."""
        symbol = price_symbol(coin, self._instruments)
        if symbol is None:
            raise ExchangeUnavailable(f"{self.name} lists no market pricing {coin} in USD: a fill's value "
                                      "is unknown")
        ticker = await self._fetch_ticker(symbol)
        with self._reading():
            return quote_from_ticker(ticker, self._clock.now()).mark


def _deribit_log_result(answer: Any) -> dict[str, Any]:
    """The `result` of a Deribit transaction log answer: its `logs` (a list) and `continuation`."""
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, dict) or not isinstance(result.get("logs"), list):
        raise MalformedPayload("result.logs", "a list of transaction log entries", answer)
    return result


def history_windows(start_ms: int, now_ms: int, window_ms: int) -> list[tuple[int, int | None]]:
    """[start, now] as consecutive windows of at most `window_ms`, the newest open-ended, listed newest
    first (the paging reads its list from the end)."""
    windows: list[tuple[int, int | None]] = []
    while now_ms - start_ms > window_ms:
        windows.append((start_ms, start_ms + window_ms))
        start_ms += window_ms
    windows.append((start_ms, None))
    return windows[::-1]


def _distinct(raws: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items listed by several reads (a unified account answers every market's to a per-symbol read) once."""
    return list({_history_key(raw): raw for raw in raws}.values())


def _name(method: Callable[..., Any]) -> str:
    return getattr(method, "__name__", "history")


def _history_key(raw: Mapping[str, Any]) -> str:
    """A listed item's identity across overlapping pages: its id with its market and time (Hyperliquid's
    funding entries share one id), else its whole raw answer."""
    if not raw.get("id"):
        return str(raw.get("info"))
    return f"{raw['id']}|{raw.get('symbol')}|{raw.get('timestamp')}"


