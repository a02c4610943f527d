"""Bybit v5 websockets: `/v5/public/{spot,linear,inverse,option}` (tickers.*, orderbook.N.*) and `/v5/private`
(auth, then order, execution, position, wallet), with Bybit's ping/pong and operation answers
(https://bybit-exchange.github.io/docs/v5/ws/connect).

Public topics start with a snapshot and then carry deltas (spot and option tickers are always snapshots),
pushed at most every `PUBLIC_PUSH_SECS` of wall time per market, the latest state only, as Bybit throttles
its streams. Private topics carry the engine's events for the authenticated key. Injected faults (latency,
drops, malformed frames, NaN amounts, absurd timestamps) apply to topic pushes, never to operation answers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web

from deltakeeper.domain.orders import Quote
from deltakeeper.sim.bybit.auth import check_ws
from deltakeeper.sim.bybit.faults import Faults
from deltakeeper.sim.bybit.protocol import CATEGORIES, OPTION, SPOT, BybitError
from deltakeeper.sim.bybit.rest_call import wall_ms
from deltakeeper.sim.bybit.rest_market import book_item, ticker_item
from deltakeeper.sim.bybit.venue import BybitVenue

PUBLIC_PUSH_SECS = 0.1
PRIVATE = "private"
PRIVATE_TOPICS = ("order", "execution", "position", "wallet")
ABSURD_TS_MS = 10**20
"""The timestamp of a push corrupted by `ws_absurd_ts`: beyond any date."""
BOOK_DEPTHS = {SPOT: (1, 50, 200, 1000), "linear": (1, 50, 200, 500), "inverse": (1, 50, 200, 500),
               OPTION: (25, 100)}


class Connection:
    def __init__(
        self, ws: web.WebSocketResponse, channel: str, transport: asyncio.BaseTransport | None
    ) -> None:
        self.ws = ws
        self.transport = transport
        self.channel = channel
        self.conn_id = uuid.uuid4().hex
        self.account: str | None = None
        self.topics: set[str] = set()
        self.outbox: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        """(time queued on the event loop's clock, message)"""
        self.tickers: dict[str, dict[str, Any]] = {}
        self.books: dict[str, tuple[dict[str, str], dict[str, str]]] = {}

    def push(self, message: dict[str, Any]) -> None:
        self.outbox.put_nowait((asyncio.get_running_loop().time(), message))

    def drop(self) -> None:
        if self.transport is not None:
            self.transport.close()


class Hub:
    """Every websocket connection of the emulator, and the pushes to them."""

    def __init__(self, venue: BybitVenue) -> None:
        self.venue = venue
        self.connections: set[Connection] = set()
        self._dirty: set[str] = set()
        self.corrupted_pushes = 0
        """Topic pushes sent corrupted by an injected fault."""
        venue.private_listeners.append(self._on_private)
        venue.quote_listeners.append(self._on_quote)

    # connections

    async def handle(self, request: web.Request) -> web.StreamResponse:
        channel = request.match_info.get("channel", PRIVATE)
        if channel not in (*CATEGORIES, PRIVATE):
            raise web.HTTPNotFound()
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        connection = Connection(ws, channel, request.transport)
        self.connections.add(connection)
        sender = asyncio.create_task(self._send_loop(connection))
        try:
            async for message in ws:
                if message.type is WSMsgType.TEXT:
                    await self._on_message(connection, message.data)
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
        """Send queued pushes in order, each `latency_ms` after it was queued."""
        faults = self.venue.faults
        loop = asyncio.get_running_loop()
        while True:
            queued_at, message = await connection.outbox.get()
            config = faults.config
            await asyncio.sleep(max(0.0, queued_at + config.latency_ms / 1000 - loop.time()))
            corrupted = _corrupted(message, faults)
            if corrupted is not None:
                self.corrupted_pushes += 1
            if not await self._send(connection, corrupted or json.dumps(message)):
                return
            if faults.roll(config.ws_drop):
                connection.drop()
                return

    @staticmethod
    async def _send(connection: Connection, text: str) -> bool:
        """False when the connection is gone."""
        if connection.ws.closed:
            return False
        try:
            await connection.ws.send_str(text)
        except ConnectionResetError:
            return False
        return True

    async def _reply(self, connection: Connection, answer: dict[str, Any]) -> None:
        await self._send(connection, json.dumps(answer))

    # operations

    async def _on_message(self, connection: Connection, text: str) -> None:
        try:
            request = json.loads(text)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            await self._reply(connection, {"success": False, "ret_msg": "error:request parse error",
                                           "conn_id": connection.conn_id})
            return
        op, req_id, args = request.get("op"), request.get("req_id"), request.get("args")
        topics = [str(topic) for topic in args] if isinstance(args, list) else []
        answer: dict[str, Any] = {"success": True, "ret_msg": "", "conn_id": connection.conn_id, "op": op}
        if req_id is not None:
            answer["req_id"] = req_id
        if op == "ping" and connection.channel == PRIVATE:
            answer = {"op": "pong", "args": [str(wall_ms())], "conn_id": connection.conn_id}
            if req_id is not None:
                answer["req_id"] = req_id
        elif op == "ping":
            answer["ret_msg"] = "pong"
        elif op == "auth" and connection.channel == PRIVATE:
            try:
                connection.account = check_ws(self.venue.credentials, args, wall_ms())
            except BybitError as exc:
                answer.update(success=False, ret_msg=exc.ret_msg)
        elif op in ("subscribe", "unsubscribe"):
            problem = self._check_topics(connection, topics)
            if problem:
                answer.update(success=False, ret_msg=problem)
            elif op == "subscribe":
                connection.topics.update(topics)
                if connection.channel == SPOT:
                    answer["ret_msg"] = "subscribe"
            else:
                connection.topics.difference_update(topics)
                for topic in topics:
                    connection.tickers.pop(topic, None)
                    connection.books.pop(topic, None)
        else:
            answer.update(success=False, ret_msg=f"error:invalid op {op}")
        await self._reply(connection, answer)
        if op == "subscribe" and answer["success"]:
            for topic in topics:
                self._push_public(connection, topic)

    def _check_topics(self, connection: Connection, topics: list[str]) -> str | None:
        if connection.channel == PRIVATE:
            if connection.account is None:
                return "Request not authorized"
            unknown = [t for t in topics if t.split(".")[0] not in PRIVATE_TOPICS
                       or t.count(".") > 1 or ("." in t and t.split(".")[1] not in CATEGORIES)]
        else:
            unknown = [t for t in topics if self._public_topic(connection.channel, t) is None]
        return f"error:handler not found,topic:{unknown[0]}" if unknown else None

    def _public_topic(self, channel: str, topic: str) -> tuple[str, int, str] | None:
        """(kind, depth, ccxt symbol) of a public topic on this channel, or None if unknown."""
        parts = topic.split(".")
        if len(parts) == 2 and parts[0] == "tickers":
            kind, depth, symbol = "tickers", 0, parts[1]
        elif len(parts) == 3 and parts[0] == "orderbook" and parts[1].isdigit():
            kind, depth, symbol = "orderbook", int(parts[1]), parts[2]
            if depth not in BOOK_DEPTHS[channel]:
                return None
        else:
            return None
        instrument = self.venue.markets.get((channel, symbol))
        return (kind, depth, instrument.symbol) if instrument else None

    # pushes

    def _on_private(self, account: str, topic: str, data: list[dict[str, Any]]) -> None:
        now_ms = self.venue.now_ms()
        for connection in self.connections:
            if connection.account != account:
                continue
            for subscribed in connection.topics:
                name, _, category = subscribed.partition(".")
                if name != topic:
                    continue
                items = [item for item in data if not category or item.get("category") == category]
                if items:
                    connection.push({"id": uuid.uuid4().hex, "topic": topic, "creationTime": now_ms,
                                     "data": items})

    def _on_quote(self, quote: Quote) -> None:
        self._dirty.add(quote.symbol)

    async def publish(self) -> None:
        """Push the markets quoted since the last round to their public subscribers, forever."""
        while True:
            await asyncio.sleep(PUBLIC_PUSH_SECS)
            dirty, self._dirty = self._dirty, set()
            for connection in list(self.connections):
                if connection.channel == PRIVATE:
                    continue
                for topic in list(connection.topics):
                    parsed = self._public_topic(connection.channel, topic)
                    if parsed and parsed[2] in dirty:
                        self._push_public(connection, topic)

    def _push_public(self, connection: Connection, topic: str) -> None:
        parsed = self._public_topic(connection.channel, topic)
        if parsed is None:
            return
        kind, depth, ccxt_symbol = parsed
        category, symbol = self.venue.ids[ccxt_symbol]
        instrument = self.venue.engine.instruments[ccxt_symbol]
        quote = self.venue.engine.quote(ccxt_symbol)
        if quote is None:
            return
        ts = self.venue.stamp_ms(quote.ts)
        update = self.venue.book_updates[ccxt_symbol]
        if kind == "tickers":
            data = ticker_item(self.venue, category, symbol, instrument, stream=True)
            assert data is not None
            previous = connection.tickers.get(topic)
            connection.tickers[topic] = data
            message_type = "snapshot"
            if previous is not None and category not in (SPOT, OPTION):
                message_type = "delta"
                data = {key: value for key, value in data.items() if previous.get(key) != value}
                if not data:
                    return
                data["symbol"] = symbol
            connection.push({"topic": topic, "type": message_type, "data": data, "cs": update, "ts": ts})
            return
        book = book_item(self.venue, symbol, instrument, depth)
        bids, asks = dict(book["b"]), dict(book["a"])
        previous_book = connection.books.get(topic)
        connection.books[topic] = (bids, asks)
        if previous_book is None:
            message_type, b, a = "snapshot", book["b"], book["a"]
        else:
            message_type = "delta"
            b, a = _levels_delta(previous_book[0], bids), _levels_delta(previous_book[1], asks)
            if not b and not a:
                return
        connection.push({"topic": topic, "type": message_type, "ts": ts,
                         "data": {"s": symbol, "b": b, "a": a, "u": update, "seq": update}, "cts": ts})


def _levels_delta(before: dict[str, str], after: dict[str, str]) -> list[list[str]]:
    """Changed and new levels with their size, removed levels with size "0"."""
    changed = [[price, size] for price, size in after.items() if before.get(price) != size]
    removed = [[price, "0"] for price in before if price not in after]
    return changed + removed


def _corrupted(message: dict[str, Any], faults: Faults) -> str | None:
    """The push as an injected fault corrupts it (NaN amounts, absurd timestamps, truncated JSON), or None
    when none does."""
    config = faults.config
    if faults.roll(config.ws_nan_prices):
        return json.dumps(_replaced(message, _is_amount, "NaN"))
    if faults.roll(config.ws_absurd_ts):
        return json.dumps(_replaced(message, _is_time, ABSURD_TS_MS))
    if faults.roll(config.ws_malformed):
        text = json.dumps(message)
        return text[: len(text) // 2]
    return None


def _is_amount(key: str) -> bool:
    return "price" in key.lower() or "balance" in key.lower()


def _is_time(key: str) -> bool:
    return key == "ts" or key.endswith("Time")


def _replaced(value: Any, corrupt: Callable[[str], bool], by: object) -> Any:
    """A copy of a push with the value of every key `corrupt` picks (at any depth) replaced `by`."""
    if isinstance(value, dict):
        return {key: by if corrupt(key) and not isinstance(item, dict | list)
                else _replaced(item, corrupt, by) for key, item in value.items()}
    if isinstance(value, list):
        return [_replaced(item, corrupt, by) for item in value]
    return value
