"""The HTTP server over a real socket, with hand-written fakes behind its ports."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from yarl import URL

from deltakeeper.adapters.http import HttpServer, check_bind
from deltakeeper.adapters.journal import create_journal, upgrade
from deltakeeper.app.console import JOURNAL_PAGE_MAX_ROWS, JOURNAL_PAGE_ROWS, journal_api
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.orders import Fill, Side

TOKEN = "s3cret-token"
METRICS_TEXT = '# TYPE deltakeeper_fills_total counter\ndeltakeeper_fills_total 9.0\n'
"""What the fake metrics callable answers: /metrics passes it through."""


@dataclass
class Fakes:
    """The callables the bot hands to the server."""

    alive: bool = True
    ready: bool = False
    control_calls: list[tuple[str, str, str]] = field(default_factory=list)
    journal_calls: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def is_alive(self) -> bool:
        return self.alive

    def status(self) -> dict[str, Any]:
        return {"trading_state": "active", "assets": {"BTC": {"delta_coin": Decimal("0.50")}}}

    async def metrics(self) -> str:
        return METRICS_TEXT

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        failing = [] if self.ready else ["streams_fresh"]
        checks = {"reconciled": {"ok": True}, "streams_fresh": {"ok": self.ready}}
        return self.ready, {"failing": failing, "checks": checks}

    async def control(self, action: str, reason: str, by: str) -> dict[str, Any]:
        self.control_calls.append((action, reason, by))
        return {"action": action, "trading_state": "halted"}

    async def journal(self, view: str, params: dict[str, str]) -> tuple[list[dict[str, Any]], None]:
        self.journal_calls.append((view, params))
        if params.get("since") == "never":
            raise ConfigError("since", "7d, 12h or an ISO time", "never")
        return [{"ts": datetime(2024, 5, 1, 12, tzinfo=UTC), "fee": Decimal("0.0100"), "view": view}], None


@asynccontextmanager
async def serve(
    fakes: Fakes, token: str | None = TOKEN, with_control_and_journal: bool = True, **options: Any
) -> AsyncIterator[str]:
    server = HttpServer(
        "127.0.0.1",
        0,
        token,
        status=fakes.status,
        metrics=fakes.metrics,
        ready=fakes.readiness,
        control=fakes.control if with_control_and_journal else None,
        journal_api=fakes.journal if with_control_and_journal else None,
        alive=fakes.is_alive,
        **options,
    )
    port = await server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await server.stop()


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        yield session


async def test_healthz_is_200_while_the_loop_is_alive_and_503_when_not(client: aiohttp.ClientSession) -> None:
    fakes = Fakes()
    async with serve(fakes) as url:
        async with client.get(f"{url}/healthz") as response:
            assert (response.status, await response.json()) == (200, {"alive": True})
        fakes.alive = False
        async with client.get(f"{url}/healthz") as response:
            assert (response.status, await response.json()) == (503, {"alive": False})


async def test_readyz_answers_with_its_checks(client: aiohttp.ClientSession) -> None:
    fakes = Fakes()
    async with serve(fakes) as url:
        async with client.get(f"{url}/readyz") as response:
            assert response.status == 503
            assert await response.json() == {
                "ready": False,
                "failing": ["streams_fresh"],
                "checks": {"reconciled": {"ok": True}, "streams_fresh": {"ok": False}},
            }
        fakes.ready = True
        async with client.get(f"{url}/readyz") as response:
            assert response.status == 200
            assert (await response.json())["ready"] is True


async def test_metrics_are_prometheus_text(client: aiohttp.ClientSession) -> None:
    async with serve(Fakes()) as url, client.get(f"{url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        text = await response.text()
    assert text == METRICS_TEXT


async def test_status_and_journal_are_json_with_decimal_strings_and_iso_times(
    client: aiohttp.ClientSession,
) -> None:
    fakes = Fakes()
    async with serve(fakes) as url:
        async with client.get(f"{url}/api/status") as response:
            assert response.status == 200
            status = await response.json()
            assert status == {"trading_state": "active", "assets": {"BTC": {"delta_coin": "0.5"}}}
        for view in ("fills", "funding", "orders", "decisions"):
            async with client.get(f"{url}/api/journal/{view}?since=7d&asset=BTC") as response:
                assert response.status == 200
                assert await response.json() == [{"ts": "2024-05-01T12:00:00Z", "fee": "0.01", "view": view}]
        async with client.get(f"{url}/api/journal/decisions?since=never") as response:
            assert response.status == 400
            assert "since" in (await response.json())["error"]
        async with client.get(f"{url}/api/journal/balances") as response:
            assert response.status == 404
    assert fakes.journal_calls[0] == ("fills", {"since": "7d", "asset": "BTC"})
    assert [view for view, _ in fakes.journal_calls[:4]] == ["fills", "funding", "orders", "decisions"]


async def test_control_endpoints_pass_the_action_the_reason_and_who(client: aiohttp.ClientSession) -> None:
    fakes = Fakes()
    async with serve(fakes) as url:
        async with client.post(f"{url}/api/halt", json={"reason": "maintenance", "by": "ops"}) as response:
            assert response.status == 200
            assert await response.json() == {"action": "halt", "trading_state": "halted"}
        async with client.post(f"{url}/api/cancel-all", json={"reason": "stuck order"}) as response:
            assert response.status == 200
        async with client.post(f"{url}/api/resume", json={}) as response:
            assert response.status == 200
        not_json = {"Content-Type": "application/json"}
        async with client.post(f"{url}/api/halt", data="not json", headers=not_json) as response:
            assert response.status == 400
        async with client.post(f"{url}/api/halt", json={"reason": 3}) as response:
            assert response.status == 400
        async with client.get(f"{url}/api/halt") as response:
            assert response.status == 405
        async with client.post(f"{url}/api/liquidate", json={}) as response:
            assert response.status == 404
    assert fakes.control_calls == [
        ("halt", "maintenance", "ops"),
        ("cancel-all", "stuck order", "http 127.0.0.1"),
        ("resume", "", "http 127.0.0.1"),
    ]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/status"),
        ("GET", "/api/journal/fills"),
        ("POST", "/api/halt"),
        ("POST", "/api/resume"),
        ("POST", "/api/cancel-all"),
        ("GET", "/nowhere"),
    ],
)
async def test_with_a_token_the_api_needs_the_bearer_token(method: str, path: str) -> None:
    fakes = Fakes(ready=True)
    async with serve(fakes) as url, aiohttp.ClientSession() as session:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
            async with session.request(method, f"{url}{path}", headers=headers) as response:
                assert response.status == 401
                assert response.headers["WWW-Authenticate"] == "Bearer"
        good = {"Authorization": f"Bearer {TOKEN}"}
        body = {} if method == "POST" else None
        async with session.request(method, f"{url}{path}", headers=good, json=body) as response:
            assert response.status == (404 if path == "/nowhere" else 200)
    expected_calls = [(path.removeprefix("/api/"), "", "http 127.0.0.1")] if method == "POST" else []
    assert fakes.control_calls == expected_calls


async def test_probes_metrics_and_the_page_answer_anyone() -> None:
    async with serve(Fakes(ready=True)) as url, aiohttp.ClientSession() as session:
        for path in ("/healthz", "/readyz", "/metrics", "/"):
            async with session.get(f"{url}{path}") as response:
                assert response.status == 200, path


async def test_without_a_token_the_api_is_open_on_loopback() -> None:
    async with serve(Fakes(), token=None) as url, aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/status") as response:
            assert response.status == 200


async def test_without_a_token_control_is_refused_unless_the_user_allows_it() -> None:
    fakes = Fakes()
    async with serve(fakes, token=None) as url, aiohttp.ClientSession() as session:
        for action in ("halt", "resume", "cancel-all"):
            async with session.post(f"{url}/api/{action}", json={"reason": "x"}) as response:
                assert response.status == 403
                assert "DK_HTTP_TOKEN" in (await response.json())["error"]
    assert fakes.control_calls == []
    async with (
        serve(fakes, token=None, allow_unauthenticated_control=True) as url,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(f"{url}/api/halt", json={"reason": "x"}) as response:
            assert response.status == 200
    assert fakes.control_calls == [("halt", "x", "http 127.0.0.1")]


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_a_cross_site_text_plain_post_is_refused(token: str | None) -> None:
    """What a page on another site can send without a preflight: a form or `fetch` POST with `text/plain`
    (its body JSON all the same) and the browser's Origin; and a JSON POST from another Origin."""
    fakes = Fakes()
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        serve(fakes, token=token, allow_unauthenticated_control=True) as url,
        aiohttp.ClientSession(headers=auth) as session,
    ):
        cross_site = {"Origin": "https://evil.example", "Content-Type": "text/plain"}
        async with session.post(f"{url}/api/halt", data='{"reason": "csrf"}', headers=cross_site) as response:
            assert response.status == 403
        async with session.post(
            f"{url}/api/halt", json={}, headers={"Origin": "https://evil.example"}
        ) as response:
            assert response.status == 403
        plain_text = {"Origin": url, "Content-Type": "text/plain"}
        async with session.post(
            f"{url}/api/resume", data='{"reason": "csrf"}', headers=plain_text
        ) as response:
            assert response.status == 415
        async with session.post(
            f"{url}/api/resume", json={"reason": "mine"}, headers={"Origin": url}
        ) as response:
            assert response.status == 200
    assert fakes.control_calls == [("resume", "mine", "http 127.0.0.1")]


async def test_without_a_token_only_this_machine_s_host_names_are_served() -> None:
    """A DNS-rebinding page reaches the server under its own name: refused. Loopback names and addresses,
    the bound address and DK_HTTP_ALLOWED_HOSTS are served."""
    async with serve(Fakes(ready=True), token=None, allowed_hosts=["bot.internal"]) as url:
        port = url.rsplit(":", 1)[1]
        async with aiohttp.ClientSession() as session:
            for host, expected in [
                (f"evil.example:{port}", 421),
                ("evil.example", 421),
                (f"127.0.0.1.evil.example:{port}", 421),
                (f"127.0.0.1:{port}", 200),
                (f"localhost:{port}", 200),
                (f"[::1]:{port}", 200),
                (f"BOT.internal:{port}", 200),
            ]:
                for path in ("/api/status", "/readyz"):
                    async with session.get(f"{url}{path}", headers={"Host": host}) as response:
                        assert response.status == expected, (host, path)
    async with serve(Fakes(), token=TOKEN) as url, aiohttp.ClientSession() as session:
        headers = {"Host": "bot.example.com", "Authorization": f"Bearer {TOKEN}"}
        async with session.get(f"{url}/api/status", headers=headers) as response:
            assert response.status == 200  # with a token any name: the token is what a page cannot have


async def test_without_control_or_journal_their_endpoints_do_not_exist(client: aiohttp.ClientSession) -> None:
    async with serve(Fakes(), with_control_and_journal=False) as url:
        async with client.post(f"{url}/api/halt", json={}) as response:
            assert response.status == 404
        async with client.get(f"{url}/api/journal/fills") as response:
            assert response.status == 404


async def test_console_page_and_its_files_are_served_from_this_host_without_the_token() -> None:
    async with serve(Fakes()) as url, aiohttp.ClientSession() as anonymous:
        async with anonymous.get(f"{url}/") as response:
            assert response.status == 200
            assert response.content_type == "text/html"
            page = await response.text()
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert assets and all(a.startswith("static/") for a in assets), "nothing may load from another host"
        for asset in assets:
            async with anonymous.get(f"{url}/{asset}") as response:
                assert response.status == 200, asset
                assert len(await response.read()) > 100
        async with anonymous.get(URL(f"{url}/static/%2E%2E/http.py", encoded=True)) as response:
            assert response.status in (403, 404)  # only the files of web/
        async with anonymous.get(f"{url}/api/console/summary") as response:  # no console: no endpoint
            assert response.status == 401


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_binds_without_a_token(host: str) -> None:
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "", "bot.example.com"])
def test_other_addresses_need_a_token(host: str) -> None:
    with pytest.raises(ConfigError) as error:
        check_bind(host, None)
    assert error.value.variable == "DK_HTTP_HOST"
    with pytest.raises(ConfigError):
        check_bind(host, "")
    check_bind(host, TOKEN)


async def test_server_refuses_to_start_on_all_interfaces_without_a_token() -> None:
    fakes = Fakes()
    server = HttpServer(
        "0.0.0.0",
        0,
        None,
        status=fakes.status,
        metrics=fakes.metrics,
        ready=fakes.readiness,
        control=None,
        journal_api=None,
        alive=fakes.is_alive,
    )
    with pytest.raises(ConfigError, match="DK_HTTP_HOST"):
        await server.start()


async def test_journal_pages_have_a_default_and_a_maximum_size_and_link_the_next_page(tmp_path: Path) -> None:
    """On a real SQLite journal of 1,234 fills: pages of JOURNAL_PAGE_ROWS by default, each naming the
    next in a `Link` header (relative, with `since` pinned to the time it meant), none after the last."""
    database = f"sqlite:///{tmp_path / 'journal.db'}"
    await asyncio.to_thread(upgrade, database)
    journal = create_journal(database)
    start = datetime.now(UTC) - timedelta(hours=5)
    total = 1234
    await journal.record_fills(
        [
            Fill(
                f"t{i:05d}",
                f"x{i}",
                f"dk{i}",
                "BTC/USDT:USDT",
                Side.BUY,
                Decimal(1),
                Decimal(100),
                Decimal("0.01"),
                "USDT",
                start + timedelta(seconds=i),
                Decimal(100),
            )
            for i in range(total)
        ]
    )
    fakes = Fakes()
    server = HttpServer(
        "127.0.0.1",
        0,
        None,
        status=fakes.status,
        metrics=fakes.metrics,
        ready=fakes.readiness,
        control=None,
        journal_api=journal_api(journal),
        alive=fakes.is_alive,
    )
    port = await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            url: Any = aiohttp.client.URL(f"http://127.0.0.1:{port}/api/journal/fills?since=1d")
            pages: list[list[dict[str, Any]]] = []
            links: list[str] = []
            while url is not None:
                async with session.get(url) as response:
                    assert response.status == 200
                    pages.append(await response.json())
                    link = response.headers.get("Link")
                if link is None:
                    url = None
                else:
                    links.append(link)
                    match = re.fullmatch(r'<([^>]+)>; rel="next"', link)
                    assert match, link
                    url = response.url.join(aiohttp.client.URL(match.group(1)))
            assert [len(page) for page in pages] == [
                JOURNAL_PAGE_ROWS,
                JOURNAL_PAGE_ROWS,
                total - 2 * JOURNAL_PAGE_ROWS,
            ]
            assert [row["trade_id"] for page in pages for row in page] == [f"t{i:05d}" for i in range(total)]
            assert links[0].startswith("<fills?since=20")  # the window `1d` pinned to a time
            assert "offset=500" in links[0] and "offset=1000" in links[1]

            async with session.get(
                f"http://127.0.0.1:{port}/api/journal/fills?limit={JOURNAL_PAGE_MAX_ROWS}"
            ) as response:
                assert response.status == 200 and "Link" not in response.headers
                assert len(await response.json()) == total
            for limit in (JOURNAL_PAGE_MAX_ROWS + 1, 0):
                async with session.get(
                    f"http://127.0.0.1:{port}/api/journal/fills?limit={limit}"
                ) as response:
                    assert response.status == 400
                    assert "limit" in (await response.json())["error"]
    finally:
        await server.stop()
        await journal.close()


class SlowToEncode(dict[str, Any]):
    """A journal row whose conversion to JSON says it has begun, then waits (at most 5 s) until /healthz has
    been answered: encoded on the event loop, it would hold /healthz back until it is done."""

    encoding = threading.Event()
    healthz_answered = threading.Event()

    def items(self) -> Any:
        self.encoding.set()
        self.healthz_answered.wait(5)
        return super().items()


async def test_healthz_answers_while_a_big_journal_page_is_being_encoded() -> None:
    fakes = Fakes()
    SlowToEncode.encoding.clear()
    SlowToEncode.healthz_answered.clear()

    async def big_page(view: str, params: dict[str, str]) -> tuple[list[dict[str, Any]], None]:
        rows = [{"ts": datetime(2024, 5, 1, tzinfo=UTC), "n": n} for n in range(1, 5000)]
        return [*rows, SlowToEncode(n=5000)], None

    server = HttpServer(
        "127.0.0.1",
        0,
        TOKEN,
        status=fakes.status,
        metrics=fakes.metrics,
        ready=fakes.readiness,
        control=None,
        journal_api=big_page,
        alive=fakes.is_alive,
    )
    port = await server.start()
    done: list[str] = []
    try:
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:

            async def journal_page() -> None:
                async with session.get(f"http://127.0.0.1:{port}/api/journal/fills") as response:
                    assert len(await response.json()) == 5000
                done.append("journal")

            async def healthz() -> None:
                await asyncio.to_thread(SlowToEncode.encoding.wait, 5)  # the page is being encoded
                async with session.get(f"http://127.0.0.1:{port}/healthz") as response:
                    assert response.status == 200
                done.append("healthz")
                SlowToEncode.healthz_answered.set()

            await asyncio.gather(journal_page(), healthz())
    finally:
        SlowToEncode.healthz_answered.set()
        await server.stop()
    assert done == ["healthz", "journal"]
