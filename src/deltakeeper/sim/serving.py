"""Serve a sim-layer server from the command line until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable


async def serve_until_signal(url: str, close: Callable[[], Awaitable[None]]) -> None:
    """Print `listening on URL` once ready, wait for SIGINT or SIGTERM, then `close`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    print(f"listening on {url}", flush=True)
    try:
        await stop.wait()
    finally:
        await close()
