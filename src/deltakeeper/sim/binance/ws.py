"""Binance USD-M websockets, at the paths ccxt.pro's binanceusdm opens: `/public/ws/<n>`
(`<symbol>@bookTicker`) and `/market/ws/<n>` (`<symbol>@markPrice` and `@markPrice@1s`), subscribed with
{"method": "SUBSCRIBE", "params": [...], "id": n}; and the user-data stream `/private/ws?listenKey=<key>`
(also `/ws/<key>`), which carries ORDER_TRADE_UPDATE and ACCOUNT_UPDATE events of the key's account.

Market streams push a market's latest state at most every `PUBLIC_PUSH_SECS` of wall time, when it has
changed: Binance pushes the mark price every second of market time, and the simulated market runs faster.
Injected faults (latency, drops, malformed frames, NaN prices, absurd timestamps) apply to pushes, never to
the answers to requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from aiohttp import WSMsgType, web

from deltakeeper.domain.orders import Quote
from deltakeeper.sim.binance import serializers
from deltakeeper.sim.binance.market_data import book_ticker_item
from deltakeeper.sim.binance.venue import BinanceVenue
from deltakeeper.sim.bybit.faults import Faults

PUBLIC_PUSH_SECS = 0.1
ABSURD_TS_MS = 10**20
_CHANNELS = {"public": ("bookTicker",), "market": ("markPrice", "markPrice@1s")}
_PRICE_KEYS = frozenset({"p", "i", "P", "b", "a", "L", "ap", "ep", "bep", "wb", "cw"})
_TIME_KEYS = frozenset({"E", "T"})


class Connection:
    def __init__(self, ws: web.WebSocketResponse, channel: str, account: str | None,
                 transport: asyncio.BaseTransport | None) -> None:
        self.ws = ws
        self.channel = channel
        self.account = account
        self.transport = transport
        self.streams: set[str] = set()
        self.outbox: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()

    def push(self, message: dict[str, Any]) -> None:
        self.outbox.put_nowait((asyncio.get_running_loop().time(), message))

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Hub:
    """Every websocket connection of the Binance dialect, and the pushes to them."""

    def __init__(self, venue: BinanceVenue) -> None:
        self.venue = venue
        self.connections: set[Connection] = set()
        self._dirty: set[str] = set()
        venue.private_listeners.append(self._on_private)
        venue.quote_listeners.append(self._on_quote)

    async def market(self, request: web.Request) -> web.StreamResponse:
        channel = request.match_info["channel"]
        if channel not in _CHANNELS:
            raise web.HTTPNotFound()
        return await self._serve(request, channel, None)

    async def user_data(self, request: web.Request) -> web.StreamResponse:
        listen_key = request.match_info.get("listen_key") or request.query.get("listenKey", "")
        account = self.venue.listener_account(listen_key)
        if account is None:
            return web.json_response({"code": -1125, "msg": "This listenKey does not exist."}, status=400)
        return await self._serve(request, "private", account)

    async def _serve(self, request: web.Request, channel: str, account: str | None) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connection = Connection(ws, channel, account, request.transport)
        self.connections.add(connection)
        sender = asyncio.create_task(self._send_loop(connection))
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await self._on_request(connection, message.data)
        finally:
            self.connections.discard(connection)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        return ws

    def drop_all(self) -> int:
        """Cut every websocket connection, as a network drop does (no close frame)."""
        dropped = list(self.connections)
        for connection in dropped:
            connection.drop()
        return len(dropped)

    async def _send_loop(self, connection: Connection) -> None:
        faults = self.venue.faults
        loop = asyncio.get_running_loop()
        while True:
            queued_at, message = await connection.outbox.get()
            await asyncio.sleep(max(0.0, queued_at + faults.config.latency_ms / 1000 - loop.time()))
            if not await _send(connection, _corrupted(message, faults) or json.dumps(message)):
                return
            if faults.roll(faults.config.ws_drop):
                connection.drop()
                return

    async def _on_request(self, connection: Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict) or not isinstance(request.get("params", []), list):
            await _send(connection, json.dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        method, streams, request_id = request.get("method"), [str(s) for s in request.get("params", [])], \
            request.get("id")
        answer: dict[str, Any] = {"result": None, "id": request_id}
        if method == "LIST_SUBSCRIPTIONS":
            answer["result"] = sorted(connection.streams)
        elif method in ("SUBSCRIBE", "UNSUBSCRIBE") and connection.channel != "private":
            unknown = [s for s in streams if self._stream(connection.channel, s) is None]
            if unknown:
                answer = {"error": {"code": 2, "msg": f"Invalid request: unknown stream {unknown[0]}"},
                          "id": request_id}
            elif method == "SUBSCRIBE":
                connection.streams.update(streams)
            else:
                connection.streams.difference_update(streams)
        else:
            answer = {"error": {"code": 1, "msg": f"Invalid request: unknown method {method}"},
                      "id": request_id}
        await _send(connection, json.dumps(answer))
        if method == "SUBSCRIBE" and "result" in answer:
            for stream in streams:
                self._push_market(connection, stream)

    def _stream(self, channel: str, stream: str) -> tuple[str, str] | None:
        """(Binance symbol, stream kind) of a stream on this channel, or None if unknown."""
        symbol, _, kind = stream.partition("@")
        if kind not in _CHANNELS.get(channel, ()) or symbol.upper() not in self.venue.markets:
            return None
        return symbol.upper(), kind.split("@")[0]

    def _on_private(self, account: str, event: dict[str, Any]) -> None:
        for connection in self.connections:
            if connection.channel == "private" and connection.account == account:
                connection.push(event)

    def _on_quote(self, quote: Quote) -> None:
        self._dirty.add(quote.symbol)

    async def publish(self) -> None:
        """Push the markets quoted since the last round to their subscribers, forever."""
        while True:
            await asyncio.sleep(PUBLIC_PUSH_SECS)
            dirty, self._dirty = {self.venue.ids[s] for s in self._dirty}, set()
            for connection in list(self.connections):
                for stream in list(connection.streams):
                    parsed = self._stream(connection.channel, stream)
                    if parsed and parsed[0] in dirty:
                        self._push_market(connection, stream)

    def _push_market(self, connection: Connection, stream: str) -> None:
        parsed = self._stream(connection.channel, stream)
        if parsed is None:
            return
        symbol, kind = parsed
        venue = self.venue
        if kind == "bookTicker":
            item = book_ticker_item(venue, symbol, stream=True)
            if item is not None:
                connection.push(item)
            return
        instrument = venue.markets[symbol]
        quote = venue.engine.quote(instrument.symbol)
        if quote is not None:
            connection.push(serializers.mark_price_event(symbol, quote, venue.funding_now(instrument),
                                                         venue.stamp_ms(quote.ts)))


async def _send(connection: Connection, text: str) -> bool:
    """False when the connection is gone."""
    if connection.ws.closed:
        return False
    try:
        await connection.ws.send_str(text)
    except ConnectionResetError:
        return False
    return True


def _corrupted(message: dict[str, Any], faults: Faults) -> str | None:
    """The push as an injected fault corrupts it (NaN prices, absurd timestamps, truncated JSON), or None."""
    config = faults.config
    if faults.roll(config.ws_nan_prices):
        return json.dumps(_replaced(message, _PRICE_KEYS, "NaN"))
    if faults.roll(config.ws_absurd_ts):
        return json.dumps(_replaced(message, _TIME_KEYS, ABSURD_TS_MS))
    if faults.roll(config.ws_malformed):
        text = json.dumps(message)
        return text[: len(text) // 2]
    return None


def _replaced(value: Any, keys: frozenset[str], by: object) -> Any:
    if isinstance(value, dict):
        return {key: by if key in keys and not isinstance(item, dict | list) else _replaced(item, keys, by)
                for key, item in value.items()}
    if isinstance(value, list):
        return [_replaced(item, keys, by) for item in value]
    return value
