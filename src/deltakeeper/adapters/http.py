"""The HTTP server (DESIGN.md 2): probes, Prometheus metrics, a read-only JSON API, the control endpoints
and the operator's console (static files under `web/`, which read the JSON API). The probes, the metrics
and the (data-free) console files answer anyone; with a token set, everything else needs
`Authorization: Bearer <token>`.

Against other web pages in the operator's browser: without a token only the Host names of this machine
(and DK_HTTP_ALLOWED_HOSTS) are served, which defeats DNS rebinding; a control request (POST) needs the
token (unless DK_HTTP_ALLOW_UNAUTHENTICATED_CONTROL), a JSON body, and no Origin but the server's own, which
no cross-site form or `text/plain` fetch can forge."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog
from aiohttp import web
from yarl import URL

from deltakeeper.domain.errors import ConfigError
from deltakeeper.jsonable import plain

log = structlog.get_logger("deltakeeper.http")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/"})
WEB_DIR = Path(__file__).parent / "web"
"""The console's page, script, style and vendored chart library, served under /static/ (open, data-free)."""
STATIC_PREFIX = "/static/"
HTTP_STOP_SECS = 3.0
"""At a stop, requests still being answered get this long before their connections close."""
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Alive = Callable[[], bool]
Status = Callable[[], Mapping[str, Any]]
Metrics = Callable[[], Awaitable[str]]
"""() -> the Prometheus text of one scrape (`adapters.metrics.BotMetrics.render`)."""
Ready = Callable[[], Awaitable[tuple[bool, Mapping[str, Any]]]]
"""() -> (ready, details): the details go into the /readyz answer beside `ready`."""
Control = Callable[[str, str, str], Awaitable[Mapping[str, Any]]]
"""(action: halt|resume|cancel-all, reason, by) -> result."""
JournalApi = Callable[[str, dict[str, str]], Awaitable[tuple[Sequence[Any], dict[str, str] | None]]]
"""(view: fills|funding|orders|decisions, query parameters) -> (one page of rows, the query parameters of
the next page or None on the last); the rows are typed (`domain.journal_rows`), sent as `jsonable.plain`
makes them. Raises ValueError or ConfigError on a bad parameter."""
LOOPBACK_NAMES = frozenset({"localhost"})


class ConsoleApi(Protocol):
    """The console's reads (`app.status.Console`): bounded whatever the journal's size."""

    async def summary(self) -> Mapping[str, Any]: ...

    async def recent(self, view: str, query: Mapping[str, str]) -> list[dict[str, Any]]:
        """Raises ValueError or ConfigError on a bad parameter."""
        ...


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve beyond this machine without a token."""
    if not token and not _is_loopback(host):
        raise ConfigError("DK_HTTP_HOST", "a loopback address unless DK_HTTP_TOKEN is set", host)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HttpServer:
    """Serves the bot's callables: `alive` for /healthz, `ready` for /readyz, `metrics` (Prometheus text,
    see `adapters.metrics`) for /metrics, `status` and `journal_api` for the JSON API, `control` for
    POST /api/halt|resume|cancel-all, `console` for the console's /api/console/summary and
    /api/console/recent/{view}. Without `control`, `journal_api` or `console` those endpoints do not exist."""

    def __init__(
        self,
        host: str,
        port: int,
        token: str | None,
        status: Status,
        metrics: Metrics,
        ready: Ready,
        control: Control | None,
        journal_api: JournalApi | None,
        alive: Alive,
        allowed_hosts: Iterable[str] = (),
        allow_unauthenticated_control: bool = False,
        console: ConsoleApi | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token
        self.status = status
        self.metrics = metrics
        self.ready = ready
        self.control = control
        self.journal_api = journal_api
        self.alive = alive
        self.allowed_hosts = frozenset(h.strip().lower() for h in allowed_hosts if h.strip())
        """Host names served without a token beside the bound address and loopback (DK_HTTP_ALLOWED_HOSTS)."""
        self.allow_unauthenticated_control = allow_unauthenticated_control
        self.console = console
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Serve in the background; returns the bound port (a free one when `port` is 0)."""
        check_bind(self.host, self.token)
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._console_page)
        app.router.add_static(STATIC_PREFIX, WEB_DIR)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/status", self._status)
        if self.journal_api is not None:
            app.router.add_get("/api/journal/{view:fills|funding|orders|decisions}", self._journal)
        if self.console is not None:
            app.router.add_get("/api/console/summary", self._console_summary)
            recent = "/api/console/recent/{view:fills|orders|decisions|funding}"
            app.router.add_get(recent, self._console_recent)
        if self.control is not None:
            app.router.add_post("/api/{action:halt|resume|cancel-all}", self._control)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=HTTP_STOP_SECS)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        port: int = self._runner.addresses[0][1]
        log.info("http_started", host=self.host, port=port, token_required=bool(self.token))
        return port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if not self.token and not self._host_allowed(request.host):
            # 421: this server does not answer for that name (a DNS-rebinding page's, say).
            return _json({"error": f"host {request.host!r} not served: set DK_HTTP_ALLOWED_HOSTS"}, 421)
        open_path = request.path in OPEN_PATHS or request.path.startswith(STATIC_PREFIX)
        if self.token and not open_path and not _bearer_matches(request, self.token):
            return _json({"error": "unauthorized"}, 401, headers={"WWW-Authenticate": "Bearer"})
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return _json({"error": f"cross-origin request from {origin!r} refused"}, 403)
            if not self.token and not self.allow_unauthenticated_control:
                return _json({"error": "control needs DK_HTTP_TOKEN (or DK_HTTP_ALLOW_UNAUTHENTICATED_CONTROL"
                                       "=true)"}, 403)
            if request.content_type != "application/json":
                return _json({"error": "the body must be application/json"}, 415)
        return await handler(request)

    def _host_allowed(self, host_header: str) -> bool:
        try:
            name = (URL(f"http://{host_header}").host or "").lower().rstrip(".")
        except ValueError:
            return False
        return name in {self.host.lower(), *LOOPBACK_NAMES, *self.allowed_hosts} or _is_loopback(name)

    async def _console_page(self, _request: web.Request) -> web.FileResponse:
        return web.FileResponse(WEB_DIR / "index.html")

    async def _console_summary(self, _request: web.Request) -> web.Response:
        assert self.console is not None
        return _json(await self.console.summary())

    async def _console_recent(self, request: web.Request) -> web.Response:
        assert self.console is not None
        try:
            rows = await self.console.recent(request.match_info["view"], dict(request.query))
        except (ValueError, ConfigError) as exc:
            return _json({"error": str(exc)}, 400)
        return web.Response(text=await asyncio.to_thread(_encode, rows), content_type="application/json")

    async def _healthz(self, _request: web.Request) -> web.Response:
        alive = self.alive()
        return _json({"alive": alive}, 200 if alive else 503)

    async def _readyz(self, _request: web.Request) -> web.Response:
        ready, details = await self.ready()
        return _json({"ready": ready, **details}, 200 if ready else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        text = await self.metrics()
        return web.Response(body=text.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def _status(self, _request: web.Request) -> web.Response:
        return _json(self.status())

    async def _journal(self, request: web.Request) -> web.Response:
        assert self.journal_api is not None
        view = request.match_info["view"]
        try:
            rows, next_query = await self.journal_api(view, dict(request.query))
        except (ValueError, ConfigError) as exc:
            return _json({"error": str(exc)}, 400)
        # A page is up to thousands of rows: turned into JSON in a thread, so that the probes still answer.
        body = await asyncio.to_thread(_encode, rows)
        headers = {}
        if next_query is not None:  # relative to this request's URL (the page may sit behind a prefix)
            headers["Link"] = f'<{URL.build(path=view, query=next_query)}>; rel="next"'
        return web.Response(text=body, content_type="application/json", headers=headers)

    async def _control(self, request: web.Request) -> web.Response:
        assert self.control is not None
        try:
            body = await request.json() if request.can_read_body else {}
        except json.JSONDecodeError:
            return _json({"error": "the body must be a JSON object"}, 400)
        if not isinstance(body, dict):
            return _json({"error": "the body must be a JSON object"}, 400)
        reason = body.get("reason", "")
        by = body.get("by", f"http {request.remote}")
        if not isinstance(reason, str) or not isinstance(by, str):
            return _json({"error": "reason and by must be strings"}, 400)
        return _json(await self.control(request.match_info["action"], reason, by))


def _bearer_matches(request: web.Request, token: str) -> bool:
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), token.encode())


def _encode(data: Any) -> str:
    return json.dumps(plain(data))


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=_encode(data), status=status, content_type="application/json", headers=headers)


