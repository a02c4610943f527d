"""Bybit's USDC options in the emulator, through stock ccxt and the adapter (issue 13): ccxt lists them, reads
their greeks from the ticker (Black-76 at the venue's implied vol), buys one and sees the position with its
greeks; the bot's delta of an options book read from the emulator is the venue's published delta times the
size, not its own Black-76 at another vol. The market of `options_emulator` stands still (`frozen_emulator`'s
clock and ticks), so the venue's figures and the test's own Black-76 are taken on the same quote. ccxt's
symbol of an option is the engine's: both date it by its expiry in simulated time."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import ccxt.pro as ccxtpro
import pytest
from structlog.testing import capture_logs
from tests.integration.service_harness import until
from tests.integration.test_ccxt_exchange import first

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.adapters.ccxt_markets import instrument_from_market
from deltakeeper.domain.exposure import asset_deltas, option_delta, years_to_expiry
from deltakeeper.domain.greeks import greeks
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import OrderRequest, OrderType, Side
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.sim.bybit.client import point_ccxt_at
from deltakeeper.sim.bybit.options import Greeks
from deltakeeper.sim.bybit.protocol import fmt
from deltakeeper.sim.bybit.server import HUB, RunningServer, serve
from deltakeeper.sim.clock import WallClock
from deltakeeper.sim.venue_common import to_ms

D = Decimal
KEY, SECRET = "dk-options-key", "dk-options-secret"
HOUR_SECS = 3600
VENUE_IV = 0.45
OTHER_IV = 0.80
"""A vol the bot's own Black-76 could price at (a realised vol, a setting): not the venue's."""
CALL, PUT = "BTC/USD:USDC-{expiry}-60000-C", "BTC/USD:USDC-{expiry}-57000-P"


@asynccontextmanager
async def options_emulator() -> AsyncIterator[RunningServer]:
    """The emulator listing its USDC options at the venue's IV, the market standing still for the hour;
    its one account holds 100,000 USDC besides the default scenario's balances."""
    start = datetime.fromtimestamp(time.time() // HOUR_SECS * HOUR_SECS, UTC)
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=1, seed=7, start=start, tick_secs=HOUR_SECS,
                         scenario=False, option_iv=VENUE_IV)
    server.venue.engine.adjust_balance(KEY, "USDC", D(100_000), start)
    try:
        yield server
    finally:
        await server.close()


@asynccontextmanager
async def ccxt_client(server: RunningServer) -> AsyncIterator[Any]:
    client = ccxtpro.bybit({"apiKey": KEY, "secret": SECRET, "enableRateLimit": False})
    point_ccxt_at(client, server.url)
    try:
        await client.load_markets()
        yield client
    finally:
        await client.close()


def engine_option(server: RunningServer, template: str) -> Instrument:
    """The engine's 30-day option of `template` (the engine names it by the simulated expiry)."""
    expiry = max(i.expiry for i in server.venue.engine.instruments.values() if i.is_option and i.expiry)
    return server.venue.engine.instruments[template.format(expiry=f"{expiry:%y%m%d}")]


def adapter(server: RunningServer) -> CcxtExchange:
    return CcxtExchange("bybit", clock=WallClock(), api_key=KEY, secret=SECRET, base_url=server.url,
                        backoff_initial_secs=0.05, backoff_max_secs=0.5, rng=random.Random(1))


def venue_greeks(server: RunningServer, instrument: Instrument) -> Any:
    """Black-76 at the venue's IV on the option's own quote (its underlying price and time)."""
    quote = server.venue.engine.quote(instrument.symbol)
    assert quote is not None and quote.index is not None and instrument.expiry and instrument.strike
    return greeks(float(quote.index), float(instrument.strike), years_to_expiry(instrument.expiry, quote.ts),
                  VENUE_IV, instrument.is_call)


async def test_ccxt_lists_the_usdc_options_with_strike_expiry_and_right() -> None:
    async with options_emulator() as server, ccxt_client(server) as client:
        call = engine_option(server, CALL)
        options = [m for m in client.markets.values() if m["option"]]
        market = client.market(call.symbol)
        instrument = instrument_from_market(market, "bybit", client.precisionMode)

    assert len(options) == sum(i.is_option for i in server.venue.engine.instruments.values()) == 40
    assert (market["id"], market["settle"], market["quote"]) == (server.venue.ids[call.symbol][1], "USDC",
                                                                 "USD")
    assert market["expiry"] == to_ms(call.expiry)  # type: ignore[arg-type]  # the term, in simulated time
    assert (instrument.kind, instrument.strike, instrument.option_type) == (Kind.OPTION, 60_000, "call")
    assert (instrument.settle, instrument.coin_settled, instrument.contract_size) == ("USDC", False, 1)
    assert (instrument.lot_step_contracts, instrument.min_contracts) == (D("0.01"), D("0.01"))


async def test_ticker_greeks_are_black76_at_the_venues_iv_in_bybits_units() -> None:
    async with options_emulator() as server, ccxt_client(server) as client:
        call = engine_option(server, CALL)
        option_greeks = await client.fetch_greeks(call.symbol)
        ticker = await client.fetch_ticker(call.symbol)
        model = venue_greeks(server, call)
        quote = server.venue.engine.quote(call.symbol)

    assert quote is not None
    assert option_greeks["markImpliedVolatility"] == VENUE_IV
    assert option_greeks["underlyingPrice"] == float(quote.index)  # type: ignore[arg-type]
    assert option_greeks["delta"] == pytest.approx(model.delta, abs=1e-8)
    assert option_greeks["gamma"] == pytest.approx(model.gamma_per_usd, abs=1e-8)
    assert option_greeks["vega"] == pytest.approx(model.vega_usd / 100, abs=1e-8)  # USD per vol point
    assert ticker["markPrice"] == pytest.approx(model.price_usd, abs=1e-6)  # the mark is Black-76's USD value
    assert option_greeks["theta"] < 0
    assert option_greeks["bidImpliedVolatility"] < VENUE_IV < option_greeks["askImpliedVolatility"]


async def test_a_bought_call_shows_in_ccxt_positions_with_its_greeks_times_its_size() -> None:
    async with options_emulator() as server, ccxt_client(server) as client:
        call = engine_option(server, CALL)
        symbol = call.symbol
        ask = (await client.fetch_ticker(symbol))["ask"]
        option_greeks = (await client.fetch_greeks(symbol))["info"]
        await client.create_order(symbol, "limit", "buy", 0.5, ask)
        [position] = await client.fetch_positions([symbol])
        [trade] = await client.fetch_my_trades(symbol)
        index = server.venue.engine.quote(call.symbol).index  # type: ignore[union-attr]

    assert (position["symbol"], position["side"], position["contracts"]) == (symbol, "long", 0.5)
    for greek in ("delta", "gamma", "vega", "theta"):
        assert D(position["info"][greek]) == D("0.5") * D(option_greeks[greek])
    assert D(str(trade["price"])) == D(str(ask))
    assert trade["fee"]["currency"] == "USDC"
    assert D(str(trade["fee"]["cost"])) == D("0.0003") * D("0.5") * index  # 0.03% of the underlying's value


async def test_the_bots_delta_of_an_options_book_is_the_venues_delta_times_size_not_its_black76() -> None:
    async with options_emulator() as server:
        call, put = engine_option(server, CALL), engine_option(server, PUT)
        exchange = adapter(server)
        try:
            instruments = await exchange.load_instruments()
            async with ccxt_client(server) as client:
                book = {call.symbol: ("sell", D(3)),
                        put.symbol: ("buy", D(2))}
                published = {symbol: D((await client.fetch_greeks(symbol))["info"]["delta"])
                             for symbol in book}
                for symbol, (side, size) in book.items():
                    ticker = await client.fetch_ticker(symbol)
                    await client.create_order(symbol, "limit", side, float(size),
                                              ticker["bid"] if side == "sell" else ticker["ask"])
            account = await exchange.fetch_account()
        finally:
            await exchange.close()
        btc = server.venue.engine.quote("BTC/USDT:USDT")
        assert btc is not None

    options = {p.symbol: p for p in account.positions if instruments[p.symbol].is_option}
    assert {s: p.contracts for s, p in options.items()} == {s: (-n if side == "sell" else n)
                                                            for s, (side, n) in book.items()}
    assert {s: p.delta for s, p in options.items()} == published
    assert all(p.mark_iv == VENUE_IV for p in options.values())
    venue_delta = sum((p.contracts * published[s] for s, p in options.items()), D(0))
    as_of = WallClock().now()
    bot = asset_deltas(instruments, {}, account.positions, {"BTC": btc.mark}, as_of=as_of)["BTC"]
    assert bot.delta_coin == bot.option_delta_coin == venue_delta
    own = sum((p.contracts * option_delta(instruments[s], replace(p, delta=None, mark_iv=OTHER_IV), btc.mark,
                                          as_of).delta for s, p in options.items()), D(0))
    assert abs(own - venue_delta) > D("0.05")  # Black-76 at another vol is another delta
    assert bot.gamma_coin_per_usd != 0  # the venue's IV gives the book its gamma


def per_option(greeks: Greeks, contracts: Decimal) -> dict[str, str]:
    """A position row whose greeks are one option's (Bybit's docs do not say which the row's are)."""
    return {"delta": fmt(greeks.delta), "gamma": fmt(greeks.gamma), "vega": fmt(greeks.vega),
            "theta": fmt(greeks.theta)}


@pytest.mark.parametrize("row", ["the position's", "one option's"])
async def test_an_option_bought_through_the_adapter_is_pushed_with_the_venues_delta_and_iv(
        row: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if row == "one option's":
        monkeypatch.setattr(Greeks, "times", per_option)
    async with options_emulator() as server:
        put = engine_option(server, PUT)
        exchange = adapter(server)
        try:
            await exchange.load_instruments()
            async with ccxt_client(server) as client:
                symbol = put.symbol
                ticker = await client.fetch_ticker(symbol)
                published = D((await client.fetch_greeks(symbol))["info"]["delta"])
            async with aclosing(exchange.account_events()) as events:
                await first(events, lambda event: isinstance(event, AccountSnapshot))
                hub = server.runner.app[HUB]  # a push before the subscription would be missed
                await until(lambda: any("position" in c.topics for c in hub.connections), 10, "subscription")
                await exchange.place_order(OrderRequest("dkopt1a0", symbol, Side.BUY, D("1.5"),
                                                        OrderType.LIMIT, price=D(str(ticker["ask"]))))
                with capture_logs() as logs:
                    pushed = await first(events, lambda event: isinstance(event, AccountSnapshot)
                                         and any(p.symbol == symbol for p in event.positions))
        finally:
            await exchange.close()

    [position] = [p for p in pushed.positions if p.symbol == symbol]
    assert (position.contracts, position.delta, position.mark_iv) == (D("1.5"), published, VENUE_IV)
    assert published < 0  # a put
    warned = [e["symbol"] for e in logs if e["event"] == "option_row_delta_per_option"]
    assert warned == ([symbol] if row == "one option's" else [])


async def test_an_option_is_listed_until_its_expiry_at_any_speed() -> None:
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=1_000_000, seed=7, tick_secs=86_400,
                         scenario=False, option_iv=VENUE_IV)
    try:
        options = [i for i in server.venue.engine.instruments.values() if i.is_option]
        expiries = sorted({i.expiry for i in options if i.expiry})
        before = {i.expiry for _, i in server.venue.listed("option")}  # at once: 0.6 s to go
        await until(lambda: server.venue.clock.now() > expiries[0], 30, "the first expiry")
        async with ccxt_client(server) as client:
            after = {m["symbol"]: m["id"] for m in client.markets.values() if m["option"]}
    finally:
        await server.close()

    assert before == set(expiries)
    # each option its own ccxt symbol (dated by its expiry in simulated time), the expired ones gone
    assert sorted(after.values()) == sorted(server.venue.ids[i.symbol][1] for i in options
                                            if i.expiry == expiries[1])
    assert len(after) == 20


async def test_each_option_has_its_own_ccxt_symbol_at_an_accelerated_speed() -> None:
    # 7 and 30 simulated days are 17 and 72 wall minutes at 600 times the wall clock: ccxt dates a symbol
    # by the expiry the venue lists, its term in simulated time
    server = await serve("127.0.0.1", 0, {KEY: SECRET}, speed=600, seed=7, scenario=False, option_iv=VENUE_IV)
    try:
        async with ccxt_client(server) as client:
            symbols = {m["symbol"] for m in client.markets.values() if m["option"]}
            ids = {market_id for market_id, markets in client.markets_by_id.items() if markets[0]["option"]}
    finally:
        await server.close()

    assert len(symbols) == len(ids) == 40
