"""The HTTP server (DESIGN.md 2): probes, Prometheus metrics, a read-only JSON API, the control endpoints
and a dashboard page. The probes, the metrics and the (data-free) page answer anyone; with a token set,
everything else needs `Authorization: Bearer <token>`.

Against other web pages in the operator's browser: without a token only the Host names of this machine
(and DK_HTTP_ALLOWED_HOSTS) are served, which defeats DNS rebinding; a control request (POST) needs the
token (unless DK_HTTP_ALLOW_UNAUTHENTICATED_CONTROL), a JSON body, and no Origin but the server's own, which
no cross-site form or `text/plain` fetch can forge."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import structlog
from aiohttp import web
from yarl import URL

from deltakeeper.domain.errors import ConfigError
from deltakeeper.output import plain

log = structlog.get_logger("deltakeeper.http")

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/"})
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
JournalApi = Callable[[str, dict[str, str]], Awaitable[tuple[list[dict[str, Any]], dict[str, str] | None]]]
"""(view: fills|funding|orders|decisions, query parameters) -> (one page of rows, the query parameters of
the next page or None on the last). Raises ValueError or ConfigError on a bad parameter."""
LOOPBACK_NAMES = frozenset({"localhost"})


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
    POST /api/halt|resume|cancel-all. Without `control` or `journal_api` those endpoints do not exist."""

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
        self._runner: web.AppRunner | None = None

    async def start(self) -> int:
        """Serve in the background; returns the bound port (a free one when `port` is 0)."""
        check_bind(self.host, self.token)
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/", self._dashboard)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/api/status", self._status)
        if self.journal_api is not None:
            app.router.add_get("/api/journal/{view:fills|funding|orders|decisions}", self._journal)
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
        if self.token and request.path not in OPEN_PATHS and not _bearer_matches(request, self.token):
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

    async def _dashboard(self, _request: web.Request) -> web.Response:
        return web.Response(text=DASHBOARD_HTML, content_type="text/html")

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


# -- the dashboard ------------------------------------------------------------------------------

DASHBOARD_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>deltakeeper</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
canvas { width: 100%; max-width: 960px; height: 260px; border: 1px solid #ddd; display: block; }
.legend { margin: 0.3em 0 1.5em; } .legend span { margin-right: 1.2em; }
</style>
</head>
<body>
<h1>deltakeeper</h1>
<p id="status">loading…</p>
<div id="assets"></div>
<h2>Cumulative fees and funding</h2>
<canvas id="costs" height="260"></canvas>
<p class="legend">
  <span style="color:#c0392b">■ fees paid</span><span style="color:#2471a3">■ funding (received +)</span>
</p>
<script>
// Query parameters of this page (e.g. ?since=7d) are passed to the journal API; a token is taken from
// the address's fragment (#token=...) once and kept for the tab.
const token = new URLSearchParams(location.hash.slice(1)).get("token") || sessionStorage.getItem("dk_token");
if (token) {
  sessionStorage.setItem("dk_token", token);
  history.replaceState(null, "", location.pathname + location.search);
}

// Every page of a journal view: each answer's `Link: <...>; rel="next"` names the next page.
async function load(view) {
  const rows = [];
  let url = new URL(`api/journal/${view}${location.search}`, location.href);
  while (url) {
    const response = await fetch(url, {headers: token ? {Authorization: `Bearer ${token}`} : {}});
    if (!response.ok) throw new Error(`${view}: HTTP ${response.status}`);
    rows.push(...await response.json());
    const next = /<([^>]*)>\\s*;\\s*rel="next"/.exec(response.headers.get("Link") || "");
    url = next ? new URL(next[1], url) : null;
  }
  return rows;
}

function extent(values) {
  return values.reduce(([lo, hi], v) => [Math.min(lo, v), Math.max(hi, v)], [Infinity, -Infinity]);
}

// series: [{color, dash, points: [[ms, value], ...]}]; markers: [[ms, value, color], ...]
function draw(canvas, series, markers) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width = canvas.clientWidth, h = canvas.height;
  const all = series.flatMap(s => s.points).concat(markers);
  canvas.dataset.points = all.length;
  if (!all.length) return;
  const [t0, t1] = extent(all.map(p => p[0])), [v0, v1] = extent(all.map(p => p[1]));
  const x = t => 70 + (w - 80) * (t - t0) / ((t1 - t0) || 1);
  const y = v => h - 25 - (h - 40) * (v - v0) / ((v1 - v0) || 1);
  ctx.fillStyle = "#666";
  ctx.fillText(v1.toPrecision(4), 4, y(v1) + 4);
  ctx.fillText(v0.toPrecision(4), 4, y(v0) + 4);
  ctx.fillText(new Date(t0).toISOString().slice(0, 16), 70, h - 6);
  ctx.fillText(new Date(t1).toISOString().slice(0, 16), w - 110, h - 6);
  for (const s of series) {
    ctx.strokeStyle = s.color; ctx.setLineDash(s.dash || []); ctx.beginPath();
    s.points.forEach(([t, v], i) => i ? ctx.lineTo(x(t), y(v)) : ctx.moveTo(x(t), y(v)));
    ctx.stroke();
    if (s.points.length === 1) {  // a lone point draws no line: show it as a dot
      const [[t, v]] = s.points;
      ctx.fillStyle = s.color; ctx.beginPath(); ctx.arc(x(t), y(v), 3, 0, 2 * Math.PI); ctx.fill();
    }
  }
  ctx.setLineDash([]);
  for (const [t, v, color] of markers) {
    ctx.fillStyle = color; ctx.beginPath(); ctx.arc(x(t), y(v), 4, 0, 2 * Math.PI); ctx.fill();
  }
}

// A running total as a step line from 0 at `start` to its last value at `end` (times in ms).
function cumulative(rows, field, start, end) {
  let sum = 0;
  const points = [[start, 0]];
  for (const [t, v] of rows.map(r => [Date.parse(r.ts), Number(r[field])]).sort((a, b) => a[0] - b[0])) {
    points.push([t, sum], [t, sum += v]);
  }
  points.push([Math.max(end, points[points.length - 1][0]), sum]);
  return points;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

async function render() {
  const status = document.getElementById("status");
  try {
    const [decisions, fills, funding] = await Promise.all(["decisions", "fills", "funding"].map(load));
    const byAsset = {};
    for (const d of decisions) (byAsset[d.asset] ||= []).push(d);
    const container = document.getElementById("assets");
    container.replaceChildren();
    for (const [asset, rows] of Object.entries(byAsset).sort()) {
      rows.sort((a, b) => Date.parse(a.ts) - Date.parse(b.ts));
      const at = (r, v) => [Date.parse(r.ts), v];
      const heading = document.createElement("h2");
      heading.textContent = `${asset}: delta against its band (coins)`;
      const canvas = document.createElement("canvas");
      canvas.id = `delta-${asset}`; canvas.height = 260;
      const legend = document.createElement("p");
      legend.className = "legend";
      legend.innerHTML = '<span style="color:#222">■ delta</span>'
                       + '<span style="color:#888">■ target ± band</span>'
                       + '<span style="color:#1e8449">● buy</span><span style="color:#c0392b">● sell</span>';
      container.append(heading, canvas, legend);
      const target = r => Number(r.target_coin), band = r => Number(r.band_coin);
      draw(canvas, [
        {color: "#888", dash: [4, 4], points: rows.map(r => at(r, target(r) + band(r)))},
        {color: "#888", dash: [4, 4], points: rows.map(r => at(r, target(r) - band(r)))},
        {color: "#bbb", points: rows.map(r => at(r, target(r)))},
        {color: "#222", points: rows.map(r => at(r, Number(r.delta_coin)))},
      ], rows.filter(r => r.side).map(r => [Date.parse(r.ts), Number(r.delta_coin),
                                            r.side === "buy" ? "#1e8449" : "#c0392b"]));
    }
    const times = [...decisions, ...fills, ...funding].map(r => Date.parse(r.ts));
    const [start, end] = extent(times);
    draw(document.getElementById("costs"), times.length ? [
      {color: "#c0392b", points: cumulative(fills, "fee", start, end)},
      {color: "#2471a3", points: cumulative(funding, "amount", start, end)},
    ] : [], []);
    status.textContent = `${plural(decisions.length, "decision")}, ${plural(fills.length, "fill")}, ` +
                         `${plural(funding.length, "funding payment")}; ` +
                         `updated ${new Date().toISOString().slice(0, 19)}Z`;
  } catch (error) {
    status.textContent = `could not load the journal: ${error.message}`;
  }
}

render();
setInterval(render, 30000);
</script>
</body>
</html>
"""
