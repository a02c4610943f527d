"""The HTTP server over a real socket, with hand-written fakes behind its ports."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from deltakeeper.adapters.http import HttpServer, check_bind, render_metrics
from deltakeeper.domain.errors import ConfigError

TOKEN = "s3cret-token"
SAMPLE = re.compile(
    r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?P<labels>[a-zA-Z_]\w*="(?:[^"\\]|\\.)*"'
    r'(?:,[a-zA-Z_]\w*="(?:[^"\\]|\\.)*")*)\})? (?P<value>-?[0-9.]+(?:e[+-]?[0-9]+)?|[+-]Inf|NaN)$'
)
SNAPSHOT: dict[str, Any] = {
    "assets": {
        "BTC": {
            "delta_coin": Decimal("0.25"),
            "delta_usd": Decimal("16000.5"),
            "target_coin": Decimal("0"),
            "band_coin": Decimal("0.1"),
            "deviation": 2.5,
        },
        "ETH": {
            "delta_coin": Decimal("-0.01"),
            "delta_usd": Decimal("-30"),
            "target_coin": Decimal("0"),
            "band_coin": Decimal("1"),
            "deviation": -0.01,
        },
    },
    "orders_total": {"filled": 7, "rejected": 1},
    "fills_total": 9,
    "fees_usd_total": Decimal("12.3400"),
    "funding_usd_total": Decimal("-4.5"),
    "errors_total": 2,
    "stream_age_secs": {"BTC/USDT:USDT": 0.25, 'weird"sym\\': float("inf")},
    "trading_state": "reduce_only",
}


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

    def metrics(self) -> str:
        return render_metrics(SNAPSHOT)

    async def readiness(self) -> tuple[bool, dict[str, Any]]:
        failing = [] if self.ready else ["streams_fresh"]
        checks = {"reconciled": {"ok": True}, "streams_fresh": {"ok": self.ready}}
        return self.ready, {"failing": failing, "checks": checks}

    async def control(self, action: str, reason: str, by: str) -> dict[str, Any]:
        self.control_calls.append((action, reason, by))
        return {"action": action, "trading_state": "halted"}

    async def journal(self, view: str, params: dict[str, str]) -> list[dict[str, Any]]:
        self.journal_calls.append((view, params))
        if params.get("since") == "never":
            raise ConfigError("since", "7d, 12h or an ISO time", "never")
        return [{"ts": datetime(2024, 5, 1, 12, tzinfo=UTC), "fee": Decimal("0.0100"), "view": view}]


@asynccontextmanager
async def serve(
    fakes: Fakes, token: str | None = TOKEN, with_control_and_journal: bool = True
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
    assert text == render_metrics(SNAPSHOT)


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
        async with client.post(f"{url}/api/resume") as response:
            assert response.status == 200
        async with client.post(f"{url}/api/halt", data="not json") as response:
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
        async with session.request(method, f"{url}{path}", headers=good) as response:
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


async def test_without_control_or_journal_their_endpoints_do_not_exist(client: aiohttp.ClientSession) -> None:
    async with serve(Fakes(), with_control_and_journal=False) as url:
        async with client.post(f"{url}/api/halt", json={}) as response:
            assert response.status == 404
        async with client.get(f"{url}/api/journal/fills") as response:
            assert response.status == 404


async def test_dashboard_is_one_self_contained_page(client: aiohttp.ClientSession) -> None:
    async with serve(Fakes()) as url, client.get(f"{url}/") as response:
        assert response.status == 200
        assert response.content_type == "text/html"
        page = await response.text()
    assert "<canvas" in page and "api/journal/${view}" in page
    assert not re.search(r"(src|href)=\"?(https?:)?//", page), "nothing may load from another host"


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


def test_rendered_metrics_parse_and_carry_every_family() -> None:
    text = render_metrics(SNAPSHOT)
    samples: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) deltakeeper_\w+ \S", line), line
            continue
        match = SAMPLE.match(line)
        assert match, line
        assert match["name"].startswith("deltakeeper_")
        samples[line.rsplit(" ", 1)[0]] = match["value"]

    assert samples['deltakeeper_delta_coin{asset="BTC"}'] == "0.25"
    assert samples['deltakeeper_delta_usd{asset="ETH"}'] == "-30"
    assert samples['deltakeeper_band_coin{asset="BTC"}'] == "0.1"
    assert samples['deltakeeper_deviation{asset="BTC"}'] == "2.5"
    assert samples['deltakeeper_orders_total{status="filled"}'] == "7.0"
    assert samples["deltakeeper_fees_usd_total"] == "12.3400"
    assert samples["deltakeeper_funding_usd_total"] == "-4.5"
    assert samples['deltakeeper_stream_age_seconds{symbol="weird\\"sym\\\\"}'] == "+Inf"
    assert [k for k, v in samples.items() if k.startswith("deltakeeper_trading_state") and v == "1.0"] == [
        'deltakeeper_trading_state{state="reduce_only"}'
    ]
    assert "# TYPE deltakeeper_fills_total counter" in text
    assert "# TYPE deltakeeper_funding_usd_total gauge" in text


def test_an_empty_snapshot_renders_zeros_and_no_per_asset_samples() -> None:
    lines = [line for line in render_metrics({}).splitlines() if not line.startswith("#")]
    assert "deltakeeper_fills_total 0.0" in lines
    assert not any(line.startswith("deltakeeper_delta_coin") for line in lines)
