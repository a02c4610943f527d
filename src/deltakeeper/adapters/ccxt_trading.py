"""The account's state and its orders through ccxt: balances and positions, leverage tiers, the
portfolio document, placing, cancelling and looking orders up, order books and quotes by REST."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import ccxt
import ccxt.async_support
import ccxt.pro
import structlog

from deltakeeper.adapters.ccxt_account import balances_from_ccxt, is_open_position, position_from_ccxt
from deltakeeper.adapters.ccxt_base import REMEMBERED_IDS, TRANSPORT_ERRORS, CcxtBase, to_ms
from deltakeeper.adapters.ccxt_binance import BINANCE_FUTURES, merged_ticker
from deltakeeper.adapters.ccxt_markets import tiers_from_ccxt
from deltakeeper.adapters.ccxt_parse import (
    MalformedPayload,
    bybit_key_can_withdraw,
    error_from_ccxt,
    quote_from_ticker,
)
from deltakeeper.adapters.ccxt_rate_limit import PLACING
from deltakeeper.adapters.ccxt_trades import order_from_ccxt
from deltakeeper.adapters.ccxt_venue_margin import fetch_venue_margin
from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.errors import (
    ExchangeUnavailable,
    OrderOutcomeUnknown,
    OrderRejected,
)
from deltakeeper.domain.instruments import Instrument, is_stable
from deltakeeper.domain.margin_tiers import MarginTier
from deltakeeper.domain.orders import OrderRequest, OrderState, Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.venue_margin import VenueMargin

log = structlog.get_logger(__name__)

_CLIENT_ID_FETCH_ORDER = frozenset({"binance", "binanceusdm", "binancecoinm", "okx", "bitget"})
"""Exchanges whose ccxt `fetchOrder` looks an order up by `clientOrderId` (ccxt asks for origClientOrderId,
clOrdId, clientOid) and raises OrderNotFound when the exchange has none (`fetch_order`)."""
CLIENT_ID_BY_ORDER_ID = BINANCE_FUTURES | {"bitget"}
"""Exchanges whose listed trades carry no client order id: it is looked up by the order id, and kept for
the orders placed or looked up here (`ccxt_binance`, `ccxt_bitget`)."""
_ORDER_PAGE_LIMIT = 50
"""The page of open or closed orders `fetch_order` reads where the exchange cannot be asked by client id."""


class CcxtTrading(CcxtBase):
    """The account's balances, positions and margin tables, and its orders."""

    # --- account -----------------------------------------------------------------------------------

    async def fetch_account(self) -> AccountSnapshot:
        """The account, stamped when read. Reads go one at a time: a read that started earlier (a position
        the exchange had not yet updated after a fill) never answers after, and is never stamped later
        than, a read that started after it."""
        async with self._account_read:
            balance = await self._call(self._rest.fetch_balance)
            raws = await self._raw_positions()
            self._greeks = await self._option_greeks(raws)
            with self._reading():
                positions = [position_from_ccxt(raw, await self._instrument(raw.get("symbol")), self.name,
                                                self._greeks.get(str(raw.get("symbol"))),
                                                self._row_delta_warned)
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
        """The greeks of the options among the positions `raws`, where the exchange publishes them: one
        option's delta (unless its position row carries one documented as the position's), and the mark IV
        and forward of every option (its gamma; Black-76's delta where the venue gives none at all)."""
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
            ticker = await self._fetch_ticker(symbol)
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
            "timestamp": to_ms(self._clock.now()),
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
        self._traded_symbols.add(request.symbol)
        placing = PLACING.set(True)
        try:
            order = await self._rest.create_order(request.symbol, request.order_type.value,
                                                  request.side.value, float(request.amount_contracts), price,
                                                  params)
        except TRANSPORT_ERRORS as exc:
            raise error_from_ccxt(exc, placing=True) from exc
        finally:
            PLACING.reset(placing)
        try:
            state = order_from_ccxt(order, self._clock.now(), request)
        except MalformedPayload as exc:
            raise OrderOutcomeUnknown(f"accepted with an unreadable answer: {exc}") from exc
        self._remember_client_id(state.exchange_order_id, request.client_order_id)
        return state

    async def cancel_order(self, symbol: str, client_order_id: str) -> None:
        """Cancel by client order id; an order already final (or unknown) needs nothing."""
        state = await self.fetch_order(symbol, client_order_id)
        if state is None or state.status.is_final:
            return
        try:
            await self._rest.cancel_order(state.exchange_order_id, symbol)
        except ccxt.OrderNotFound:
            return
        except TRANSPORT_ERRORS as exc:
            raise error_from_ccxt(exc) from exc

    async def cancel_all_orders(self, symbol: str | None = None) -> None:
        if symbol is not None:
            await self._call(self._rest.cancel_all_orders, symbol)
            return
        if self.name in BINANCE_FUTURES:  # Binance cancels all of one symbol's orders only
            for held in sorted({raw["symbol"] for raw in await self._raw_open_orders()}):
                await self._call(self._rest.cancel_all_orders, held)
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
        self._traded_symbols.add(symbol)
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
        self._remember_client_id(order.get("id"), client_order_id)
        return order

    def _remember_client_id(self, exchange_order_id: object, client_order_id: str | None) -> None:
        """Binance, Bitget: keep an order's client id for its trades (`CLIENT_ID_BY_ORDER_ID`), the latest
        ones."""
        if self.name not in CLIENT_ID_BY_ORDER_ID or not exchange_order_id or not client_order_id:
            return
        self._client_ids[str(exchange_order_id)] = client_order_id
        if len(self._client_ids) > REMEMBERED_IDS:
            del self._client_ids[next(iter(self._client_ids))]

    async def fetch_order_book(self, symbol: str, depth: int) -> tuple[list[BookLevel], list[BookLevel]]:
        """(bids, asks) best first; ccxt's sizes (contracts for derivatives) turned into coins."""
        instrument = await self._instrument(symbol)
        raw = await self._call(self._rest.fetch_order_book, symbol, depth)
        with self._reading():
            return _book_side(raw, "bids", instrument), _book_side(raw, "asks", instrument)

    async def fetch_quote(self, symbol: str) -> Quote:
        """The ticker by REST (the price gate's confirmation read)."""
        raw = await self._fetch_ticker(symbol)
        with self._reading():
            return quote_from_ticker(raw, self._clock.now(), self._clock.speed)

    async def _fetch_ticker(self, symbol: str) -> dict[str, Any]:
        """A market's ticker by REST; on Binance futures its book ticker with its mark price merged in."""
        if self.name not in BINANCE_FUTURES:
            ticker: dict[str, Any] = await self._call(self._rest.fetch_ticker, symbol)
            return ticker
        books = await self._call(self._rest.fetch_bids_asks, [symbol])
        mark = await self._call(self._rest.fetch_mark_price, symbol)
        if symbol not in books:
            raise ExchangeUnavailable(f"{self.name} answered no best bid and ask of {symbol}")
        return merged_ticker(books[symbol], mark)

    async def _raw_open_orders(self) -> list[dict[str, Any]]:
        raws: list[dict[str, Any]] = []
        for scope in self._scopes(settle=True):
            raws += await self._call(self._rest.fetch_open_orders, None, None, None, scope)
        return raws


def _book_side(raw: Any, side: str, instrument: Instrument) -> list[BookLevel]:
    try:
        rows = [(Decimal(str(row[0])), Decimal(str(row[1]))) for row in raw[side]]
        return [BookLevel(price, abs(instrument.delta_coin(size, price))) for price, size in rows]
    except (ArithmeticError, LookupError, TypeError, ValueError) as exc:
        raise MalformedPayload(f"order book {side}", "a list of [price, size]", raw) from exc


