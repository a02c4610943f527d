"""A fault-injecting proxy for an exchange's REST and websocket API on one port (the Bybit-v5 emulator, or
anything ccxt is pointed at with `DK_EXCHANGE_URL`): requests and frames pass through unchanged, except the
faults switched on, each drawn from the proxy's own seeded generator (the same seed and the same traffic
inject the same faults) and counted by kind.

REST faults (probabilities per request, on the paths starting with one of `rest_paths`, all if empty):
- `rest_drop`: the connection is closed before the request is forwarded (the exchange never sees it);
- `rest_drop_after`: the request is forwarded and handled, its answer lost (the connection is closed);
- `rest_5xx`: HTTP 503, not forwarded;
- `rest_429`: HTTP 429 with `Retry-After: retry_after_secs`, not forwarded;
- `rest_hang` / `rest_hang_after`: no answer (before / after forwarding) for `hang_secs`, then the connection
  is closed: the client gives up first;
- `rest_delay`: the answer waits `delay_ms` more;
- `rest_malformed`: a JSON answer carrying `result.list` is sent back with retCode 0 and no `result`, or with
  a `result.list` that is not a list (each half the time);
- `rest_absurd`: the prices in `/v5/market/tickers` answers are multiplied by one of `absurd_factors`.

Websocket faults (probabilities per pushed frame from the exchange that carries a `topic` whose name starts
with one of `ws_topics`, all if empty; operation answers such as auth and subscribe pass unchanged):
- `ws_drop`: both connections are cut, as a network drop (no close frame to the client);
- `ws_corrupt`: the frame is sent corrupted: invalid JSON, a NaN price, a timestamp of 1e20 or truncated
  (in turn, from the generator);
- `ws_absurd`: a ticker frame's prices are multiplied by one of `absurd_factors`; each injected price is
  kept in `absurd_log` with its wall time (`absurd_log_limit` of them);
- `ws_duplicate`: an `order` or `execution` frame is sent twice;
- `ws_delay`: the frame waits `delay_ms` more (the frames after it wait behind it).

Switching: `FaultProxy.set_faults(**changes)` or `POST /proxy/faults` with a JSON object of changes
(`{"ws_corrupt": 0.2, "for_secs": 10}`: `for_secs` reverts the whole setting to what it was after that
many seconds, a scheduled fault; `{"path": "/v5/order/create", "rest_drop_after": 1}` gives the REST paths
starting with `path` settings of their own); `GET /proxy/faults` the settings, `GET /proxy/counts` the counts
(`injected` by kind, and `rest_forwarded`, `ws_frames_forwarded`), `POST /proxy/drop-websockets` cuts every
websocket now. The control paths answer loopback clients only. The settings and the rewrites of frames
are in `proxy_faults`. Part of the simulation layer: it imports nothing of the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import WSMsgType, web

from deltakeeper.sim.proxy_faults import (
    CORRUPTIONS,
    PRIVATE_ORDER_TOPICS,
    AbsurdPrice,
    ProxyFaults,
    corrupt_frame,
    scale_prices,
)
from deltakeeper.sim.serving import serve_until_signal

CONTROL_PREFIX = "/proxy/"
HOP_HEADERS = frozenset(
    {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
     "upgrade", "proxy-connection", "te", "trailer"}
)
NOT_FORWARDED = HOP_HEADERS | {"accept-encoding"}
"""Request headers not passed upstream: answers come back uncompressed, so that faults can rewrite them."""


class FaultProxy:
    """The proxy as a library: `start` binds it (port 0 picks a free one) and answers its `url`; `close`
    stops it. The counts are in `injected` (a Counter by fault kind)."""

    def __init__(self, upstream: str, *, seed: int = 1, faults: ProxyFaults = ProxyFaults(),
                 absurd_log_limit: int = 100_000, wall_clock: Callable[[], float] = time.time) -> None:
        parts = urlsplit(upstream.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"expected an http(s)://host:port upstream, got {upstream!r}")
        self.upstream = f"{parts.scheme}://{parts.netloc}"
        self.upstream_ws = f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}"
        self.faults = faults
        self.path_faults: dict[str, ProxyFaults] = {}
        self.injected: Counter[str] = Counter()
        self.forwarded: Counter[str] = Counter()
        self.absurd_log: deque[AbsurdPrice] = deque(maxlen=absurd_log_limit)
        self._rng = random.Random(seed)
        self._wall = wall_clock
        self._revert: asyncio.TimerHandle | None = None
        self._sockets: set[tuple[web.WebSocketResponse, aiohttp.ClientWebSocketResponse, Any]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    # switching and counts

    def set_faults(self, for_secs: float | None = None, path: str | None = None, **changes: Any
                   ) -> ProxyFaults:
        """Apply `changes` (fields of `ProxyFaults`) to the settings of every path, or with `path` to those of
        the REST paths starting with it (which then follow these alone, the longest such prefix winning;
        they start from no faults). With `for_secs`, the whole setting before this call comes back after that
        many seconds. The settings changed."""
        before = (self.faults, dict(self.path_faults))
        if path is None:
            self.faults = changed = self.faults.updated(changes)
        else:
            self.path_faults[path] = changed = self.path_faults.get(path, ProxyFaults()).updated(changes)
        if self._revert is not None:
            self._revert.cancel()
            self._revert = None
        if for_secs is not None:
            self._revert = asyncio.get_running_loop().call_later(for_secs, self._restore, *before)
        return changed

    def clear_faults(self) -> None:
        """Every fault off, every setting back to its default."""
        self._restore(ProxyFaults(), {})

    def _restore(self, faults: ProxyFaults, path_faults: dict[str, ProxyFaults]) -> None:
        self.faults, self.path_faults = faults, path_faults
        if self._revert is not None:
            self._revert.cancel()
        self._revert = None

    def faults_for(self, path: str) -> ProxyFaults:
        """The settings that apply to a REST request for `path`."""
        prefixes = [prefix for prefix in self.path_faults if path.startswith(prefix)]
        return self.path_faults[max(prefixes, key=len)] if prefixes else self.faults

    def settings(self) -> dict[str, Any]:
        return {**self.faults.as_dict(),
                "by_path": {path: faults.as_dict() for path, faults in self.path_faults.items()}}

    def counts(self) -> dict[str, Any]:
        return {"injected": dict(self.injected), "rest_forwarded": self.forwarded["rest"],
                "ws_frames_forwarded": self.forwarded["ws"]}

    def drop_websockets(self) -> int:
        dropped = list(self._sockets)
        for client_ws, upstream_ws, transport in dropped:
            self._cut(client_ws, upstream_ws, transport)
        return len(dropped)

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    # lifecycle

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = next(address[1] for address in self._runner.addresses)
        self.url = f"http://{host}:{bound}"
        return self.url

    async def close(self) -> None:
        if self._revert is not None:
            self._revert.cancel()
        self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    # requests

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await self._control(request)
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        return await self._rest(request)

    async def _control(self, request: web.Request) -> web.Response:
        if request.remote is None or not ip_address(request.remote).is_loopback:
            raise web.HTTPForbidden(text="control endpoints answer loopback clients only")
        action = (request.method, request.path.removeprefix(CONTROL_PREFIX))
        if action == ("GET", "faults"):
            return web.json_response(self.settings())
        if action == ("GET", "counts"):
            return web.json_response(self.counts())
        if action == ("POST", "drop-websockets"):
            return web.json_response({"dropped": self.drop_websockets()})
        if action == ("POST", "faults"):
            try:
                changes = json.loads(await request.text() or "{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object of fault settings")
                for_secs = changes.pop("for_secs", None)
                if for_secs is not None and (isinstance(for_secs, bool)
                                             or not isinstance(for_secs, int | float)
                                             or not 0 < for_secs < math.inf):
                    raise ValueError("for_secs must be a positive number")
                path = changes.pop("path", None)
                if path is not None and not isinstance(path, str):
                    raise ValueError("path must be a string")
                self.set_faults(for_secs, path, **changes)
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
            return web.json_response(self.settings())
        raise web.HTTPNotFound()

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        faults = self.faults_for(request.path)
        body = await request.read()
        targeted = not faults.rest_paths or request.path.startswith(faults.rest_paths)
        if targeted:
            if self._roll(faults.rest_drop):
                return self._fault("rest_drop", self._close_connection(request))
            if self._roll(faults.rest_5xx):
                self.injected["rest_5xx"] += 1
                return web.Response(text="503 Service Temporarily Unavailable", status=503)
            if self._roll(faults.rest_429):
                self.injected["rest_429"] += 1
                return web.Response(text="429 Too Many Requests", status=429,
                                    headers={"Retry-After": str(faults.retry_after_secs)})
            if self._roll(faults.rest_hang):
                self.injected["rest_hang"] += 1
                return await self._hang(request, faults.hang_secs)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED}
        assert self._session is not None
        try:
            async with self._session.request(request.method, self.upstream + request.rel_url.raw_path_qs,
                                             headers=headers, data=body or None) as upstream:
                payload = await upstream.read()
                status, answer_headers = upstream.status, upstream.headers
        except aiohttp.ClientError as exc:
            return web.Response(text=f"502 Bad Gateway: {exc}", status=502)
        self.forwarded["rest"] += 1
        if targeted:
            if self._roll(faults.rest_drop_after):
                return self._fault("rest_drop_after", self._close_connection(request))
            if self._roll(faults.rest_hang_after):
                self.injected["rest_hang_after"] += 1
                return await self._hang(request, faults.hang_secs)
            if self._roll(faults.rest_delay):
                self.injected["rest_delay"] += 1
                await asyncio.sleep(faults.delay_ms / 1000)
            payload = self._rest_answer_faults(request.path, payload, faults)
        out_headers = {k: v for k, v in answer_headers.items() if k.lower() not in HOP_HEADERS}
        return web.Response(body=payload, status=status, headers=out_headers)

    def _rest_answer_faults(self, path: str, payload: bytes, faults: ProxyFaults) -> bytes:
        if not (faults.rest_malformed or faults.rest_absurd):
            return payload
        try:
            answer = json.loads(payload)
        except ValueError:
            return payload
        result = answer.get("result") if isinstance(answer, dict) else None
        if not isinstance(result, dict) or not isinstance(result.get("list"), list):
            return payload
        listed: list[Any] = result["list"]
        if self._roll(faults.rest_malformed):
            if self._rng.random() < 0.5:
                self.injected["rest_malformed_no_result"] += 1
                del answer["result"]
            else:
                self.injected["rest_malformed_list"] += 1
                result["list"] = {"0": listed[0]} if listed else "none"
            return json.dumps(answer).encode()
        if path == "/v5/market/tickers" and self._roll(faults.rest_absurd):
            factor = self._rng.choice(faults.absurd_factors)
            for item in listed:
                if isinstance(item, dict):
                    scale_prices(item, factor)
            self.injected["rest_absurd"] += 1
            return json.dumps(answer).encode()
        return payload

    def _fault(self, kind: str, response: web.StreamResponse) -> web.StreamResponse:
        self.injected[kind] += 1
        return response

    @staticmethod
    def _close_connection(request: web.Request) -> web.StreamResponse:
        """Close the client's connection with no answer; the returned response is never sent."""
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=499)

    async def _hang(self, request: web.Request, hang_secs: float) -> web.StreamResponse:
        """Answer nothing for `hang_secs` (or until the client closes), then close the connection."""
        deadline = asyncio.get_running_loop().time() + hang_secs
        while asyncio.get_running_loop().time() < deadline:
            if request.transport is None or request.transport.is_closing():
                break
            await asyncio.sleep(0.1)
        return self._close_connection(request)

    # websockets

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_HEADERS and not k.lower().startswith("sec-websocket")}
        try:
            upstream_ws = await self._session.ws_connect(self.upstream_ws + request.rel_url.raw_path_qs,
                                                         headers=headers, autoping=True)
        except aiohttp.ClientError:
            return web.Response(text="502 Bad Gateway", status=502)
        client_ws = web.WebSocketResponse(autoping=True)
        await client_ws.prepare(request)
        entry = (client_ws, upstream_ws, request.transport)
        self._sockets.add(entry)
        outbound = asyncio.create_task(self._client_to_upstream(client_ws, upstream_ws))
        try:
            async for message in upstream_ws:
                if message.type is not WSMsgType.TEXT:
                    continue
                if not await self._push(message.data, client_ws):
                    self._cut(client_ws, upstream_ws, request.transport)
                    break
        finally:
            self._sockets.discard(entry)
            outbound.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await outbound
            await upstream_ws.close()
            if not client_ws.closed:
                with contextlib.suppress(ConnectionError, RuntimeError):
                    await client_ws.close()
        return client_ws

    @staticmethod
    async def _client_to_upstream(client_ws: web.WebSocketResponse,
                                  upstream_ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(ConnectionError):
            async for message in client_ws:
                if message.type is WSMsgType.TEXT and not upstream_ws.closed:
                    await upstream_ws.send_str(message.data)
        await upstream_ws.close()

    @staticmethod
    def _cut(client_ws: web.WebSocketResponse, upstream_ws: aiohttp.ClientWebSocketResponse,
             transport: Any) -> None:
        """A network drop: the client's connection closed with no close frame, the upstream one closed."""
        if transport is not None:
            transport.close()
        asyncio.get_running_loop().create_task(upstream_ws.close())

    async def _push(self, text: str, client_ws: web.WebSocketResponse) -> bool:
        """Forward one frame from upstream with the faults drawn for it; False to drop the connection."""
        faults = self.faults
        try:
            frame = json.loads(text)
        except ValueError:
            frame = None
        topic = frame.get("topic") if isinstance(frame, dict) else None
        if not isinstance(topic, str) or (faults.ws_topics and not topic.startswith(faults.ws_topics)):
            return await self._send(client_ws, text)
        assert isinstance(frame, dict)
        if self._roll(faults.ws_drop):
            self.injected["ws_drop"] += 1
            return False
        if self._roll(faults.ws_delay):
            self.injected["ws_delay"] += 1
            await asyncio.sleep(faults.delay_ms / 1000)
        if self._roll(faults.ws_corrupt):
            kind = self._rng.choice(CORRUPTIONS)
            self.injected[f"ws_corrupt_{kind}"] += 1
            return await self._send(client_ws, corrupt_frame(kind, frame, text))
        if topic.startswith("tickers.") and self._roll(faults.ws_absurd):
            factor = self._rng.choice(faults.absurd_factors)
            data = frame.get("data")
            if isinstance(data, dict):
                for key, price in scale_prices(data, factor):
                    self.absurd_log.append(AbsurdPrice(self._wall(), topic.removeprefix("tickers."), key,
                                                       price, factor))
            self.injected["ws_absurd"] += 1
            return await self._send(client_ws, json.dumps(frame))
        if topic.split(".")[0] in PRIVATE_ORDER_TOPICS and self._roll(faults.ws_duplicate):
            self.injected["ws_duplicate"] += 1
            if not await self._send(client_ws, text):
                return False
        return await self._send(client_ws, text)


    async def _send(self, client_ws: web.WebSocketResponse, text: str) -> bool:
        if client_ws.closed:
            return False
        try:
            await client_ws.send_str(text)
        except (ConnectionError, RuntimeError):
            return False
        self.forwarded["ws"] += 1
        return True


async def run_proxy(upstream: str, host: str, port: int, seed: int) -> None:
    """Serve until SIGINT or SIGTERM; print `listening on http://HOST:PORT` once ready."""
    proxy = FaultProxy(upstream, seed=seed)
    await serve_until_signal(await proxy.start(host, port), proxy.close)
