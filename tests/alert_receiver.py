"""A local HTTP endpoint for apprise's `json://` alerts: it records each post, and answers with a scripted
number of failures first (`failures_left`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Receiver:
    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    hits: int = 0
    failures_left: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.failures_left:
            self.failures_left -= 1
            return web.Response(status=500)
        self.received.append(await request.json())
        return web.Response(text="ok")

    def events(self) -> list[str]:
        """The alert events received, in order (titles are `deltakeeper <level>: <event>`)."""
        return [r["title"].split(": ", 1)[1] for r in self.received]

    def messages(self, event: str) -> list[str]:
        return [r["message"] for r in self.received if r["title"].endswith(f": {event}")]


@asynccontextmanager
async def alert_receiver() -> AsyncIterator[Receiver]:
    """A Receiver listening on loopback; its `url` is the apprise URL to post to."""
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"json://127.0.0.1:{runner.addresses[0][1]}/hook"
    try:
        yield receiver
    finally:
        await runner.cleanup()
