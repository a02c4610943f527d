"""What both dialects of the emulator serve alike: the control endpoints, the background tasks that move
the market and publish to websockets, and the running server.

Control endpoints (no authentication; answered to loopback clients only, 403 otherwise):
- `GET /sim/faults`: the current fault settings (`FaultConfig` fields) as JSON;
- `POST /sim/faults` with a JSON object of fields to change, e.g. `{"rate_limit": 0.5, "latency_ms": 200}`:
  answers the new settings, or 400 naming a bad field;
- `POST /sim/drop-websockets`: cuts every websocket connection now; answers `{"dropped": n}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any, Protocol, Self

from aiohttp import web

from deltakeeper.sim.bybit.faults import Faults

SHUTDOWN_TIMEOUT_SECS = 2.0
"""How long `close` lets requests in progress finish: an answer hung on purpose (`timeout_after_accept`)
is cut, not awaited for its `hang_ms`."""


class Hub(Protocol):
    def drop_all(self) -> int: ...

    async def publish(self) -> None: ...


def add_controls(app: web.Application, name: str, faults: Faults, hub: Hub,
                 move_market: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Route the control endpoints to `faults` and `hub`, and run `move_market` and the hub's publisher
    while `app` runs (tasks named after `name`)."""

    async def get_faults(request: web.Request) -> web.Response:
        _loopback_only(request)
        return web.json_response(faults.config.as_dict())

    async def set_faults(request: web.Request) -> web.Response:
        _loopback_only(request)
        try:
            changes = json.loads(await request.text() or "{}")
            if not isinstance(changes, dict):
                raise ValueError("expected a JSON object of fault settings")
            faults.config = faults.config.updated(changes)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(faults.config.as_dict())

    async def drop_websockets(request: web.Request) -> web.Response:
        _loopback_only(request)
        return web.json_response({"dropped": hub.drop_all()})

    async def background(_: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(move_market(), name=f"{name}-feed"),
                 asyncio.create_task(hub.publish(), name=f"{name}-publish")]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.router.add_get("/sim/faults", get_faults)
    app.router.add_post("/sim/faults", set_faults)
    app.router.add_post("/sim/drop-websockets", drop_websockets)
    app.cleanup_ctx.append(background)


def _loopback_only(request: web.Request) -> None:
    if request.remote is None or not ip_address(request.remote).is_loopback:
        raise web.HTTPForbidden(text="control endpoints answer loopback clients only")


@dataclass
class RunningServer:
    runner: web.AppRunner
    host: str
    port: int

    @classmethod
    async def start(cls, app: web.Application, host: str, port: int) -> Self:
        """Serve `app` on `host:port` (0 picks a free port, see `port`)."""
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_SECS)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return cls(runner, host, next(address[1] for address in runner.addresses))

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def close(self) -> None:
        await self.runner.cleanup()
