"""Benchmark 2: the cost of recomputing the delta and deciding after one tick, for a portfolio of 20 assets
and 100 positions, against the cost of ccxt parsing that tick's websocket message. Target: at most 1.0x.

    python benchmarks/decision_cost.py [--quick] [--rounds 30] [--ticks 2000]

Baseline (ccxt.pro bybit, offline): the recorded Bybit v5 `tickers.BTCUSDT` push
(tests/integration/fixtures/bybit/ws_ticker_linear.json), its prices moved a little on every tick, fed as
the raw frame text to `Client.handle_text_or_binary_message`, the call ccxt.pro makes for each websocket
text frame: JSON decoding, `bybit.handle_message`, `handle_ticker`, `parse_ticker` and the future's
resolution. The markets come from the recorded instruments-info answers (tests/unit/fixtures/ccxt), so
nothing touches the network.

Timed for the bot, per tick: recomputing the delta and deciding, from the tick's `Quote` up to the order
request, without the journal's I/O: `MarketState.on_quote`, `MarketState.deltas()` (incremental: the
touched asset only) and the Hedger's decision for the asset the tick prices (the same calls as
`Hedger._decide`): `policy.decide`, the decision record, and when it trades the risk check, the trading
state, the client order id and the order request. Two portfolios of the same shape: one whose touched
asset is inside its band (no trade: the common tick), one whose touched asset is outside it on every tick
(the worst case: the Hedger then has an order in flight and decides nothing more on that instrument until
it is done). A third line times the order case with `recompute_deltas()` (everything from scratch, as
`deltas()` did before it was incremental). The adapter's translation of ccxt's ticker into a `Quote`
(`quote_from_ticker`) is shown on its own line: it is part of taking the tick in, not of deciding.

Both sides run in the same process, alternating in rounds; each figure is the median over the rounds of the
mean time per tick.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from _common import REPO, machine, ratio_line, table

from deltakeeper.adapters.ccxt_parse import quote_from_ticker
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.rebalance import new_decision_id
from deltakeeper.domain import risk
from deltakeeper.domain.exposure import AssetDelta, Position, asset_deltas
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import OrderRequest, OrderType, Quote, client_order_id
from deltakeeper.domain.policy import AssetPolicy, AssetView, Band, BandUnit, decide
from deltakeeper.domain.records import AccountSnapshot, DecisionRecord

TICKER_FRAME = REPO / "tests" / "integration" / "fixtures" / "bybit" / "ws_ticker_linear.json"
INSTRUMENTS_INFO = REPO / "tests" / "unit" / "fixtures" / "ccxt"
TARGET_RATIO = 1.0
BASELINE = "ccxt parse (baseline)"
ADAPTER = "adapter: ccxt ticker -> Quote"

ASSETS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "TRX",
          "LTC", "BCH", "NEAR", "APT", "ARB", "OP", "SUI", "ATOM", "FIL", "UNI"]
TOUCHED = "BTC"  # the recorded push is BTCUSDT's
EXPIRY = datetime(2030, 6, 28, 8, tzinfo=UTC)
EXTERNAL = {"ETH": Decimal("12.5"), "SOL": Decimal(-300), "LINK": Decimal(900)}


# -- the portfolio: 20 assets, 120 markets, 100 positions ----------------------------------------------

def instruments() -> dict[str, Instrument]:
    """Per asset: spot, USDT and USDC linear perpetuals, an inverse perpetual, USDT and inverse futures."""
    result: dict[str, Instrument] = {}
    for asset in ASSETS:
        for instrument in (
            Instrument(f"{asset}/USDT", Kind.SPOT, asset, "USDT", "USDT"),
            Instrument(f"{asset}/USDT:USDT", Kind.PERPETUAL, asset, "USDT", "USDT",
                       lot_step_contracts=Decimal("0.001"), min_notional_usd=Decimal(5),
                       funding_interval_secs=8 * 3600),
            Instrument(f"{asset}/USDC:USDC", Kind.PERPETUAL, asset, "USDC", "USDC",
                       contract_size=Decimal("0.1")),
            Instrument(f"{asset}/USD:{asset}", Kind.PERPETUAL, asset, "USD", asset, inverse=True,
                       contract_size=Decimal(10), lot_step_contracts=Decimal(1)),
            Instrument(f"{asset}/USDT:USDT-300628", Kind.FUTURE, asset, "USDT", "USDT", expiry=EXPIRY),
            Instrument(f"{asset}/USD:{asset}-300628", Kind.FUTURE, asset, "USD", asset, inverse=True,
                       contract_size=Decimal(100), lot_step_contracts=Decimal(1), expiry=EXPIRY),
        ):
            result[instrument.symbol] = instrument
    return result


def price_of(asset: str) -> Decimal:
    if asset == TOUCHED:
        return Decimal("17216.00")
    return Decimal(7 + 13 * ASSETS.index(asset)) + Decimal("0.25")


def account(now: datetime, hedged: bool, markets: dict[str, Instrument]) -> AccountSnapshot:
    """Coins held, and five derivative positions per asset. `hedged`: the USDT perpetual offsets the rest
    (every asset sits inside its band); else it is a token short and every asset is far outside."""
    balances: dict[str, Decimal] = {"USDT": Decimal(2_000_000), "USDC": Decimal(250_000)}
    positions: list[Position] = []
    for i, asset in enumerate(ASSETS):
        price = price_of(asset)
        balances[asset] = Decimal(40 + 3 * i)
        positions += [
            Position(f"{asset}/USDC:USDC", Decimal(25 + i), price * Decimal("0.99"), price),
            Position(f"{asset}/USD:{asset}", Decimal(-(30 + i)), price * Decimal("1.01"), price),
            Position(f"{asset}/USDT:USDT-300628", Decimal("-1.5"), price, price * Decimal("1.002")),
            Position(f"{asset}/USD:{asset}-300628", Decimal(-(5 + i)), price * Decimal("0.98"), price,
                     unrealized_pnl=Decimal("0.0012")),
        ]
    unhedged = asset_deltas(markets, balances, positions, {a: price_of(a) for a in ASSETS}, EXTERNAL)
    for asset in ASSETS:
        hedge = -unhedged[asset].delta_coin.quantize(Decimal("0.001")) if hedged else Decimal(-1)
        positions.append(Position(f"{asset}/USDT:USDT", hedge, price_of(asset), price_of(asset)))
    assert len(positions) == 100
    return AccountSnapshot(balances, tuple(positions), now)


class Bot:
    """The per-tick work of the Hedger, minus the journal: the same calls in the same order."""

    def __init__(self, hedged: bool, full_recompute: bool, now: datetime) -> None:
        self.now = now
        markets = instruments()
        self.state = MarketState(markets, dict(EXTERNAL), {asset: f"{asset}/USDT:USDT" for asset in ASSETS})
        self.state.on_account(account(now, hedged, markets))
        for asset in ASSETS:
            price = price_of(asset)
            self.state.on_quote(quote_from_ticker(
                {"symbol": f"{asset}/USDT:USDT", "bid": str(price - Decimal("0.5")),
                 "ask": str(price + Decimal("0.5")), "markPrice": str(price), "timestamp": None, "info": {}},
                now,
            ))
        band = Band(BandUnit.PCT, Decimal(1)) if hedged else Band(BandUnit.COIN, Decimal("0.5"))
        self.policies = {a: AssetPolicy(a, f"{a}/USDT:USDT", band) for a in ASSETS}
        self.by_symbol = {f"{a}/USDT:USDT": [a] for a in ASSETS}
        self.limits = risk.RiskLimits(
            max_order_usd=Decimal(10_000_000), max_daily_traded_usd=Decimal(10**12),
            max_position_usd=Decimal(10**12), stale_secs=60.0, price_collar_bps=Decimal(500),
        )
        self.trading = risk.StateMachine()
        self.deltas: Callable[[], dict[str, AssetDelta]] = (
            self.state.recompute_deltas if full_recompute else self.state.deltas
        )
        self.orders = 0

    def on_quote(self, quote: Quote) -> None:
        self.state.on_quote(quote)
        for asset in self.by_symbol.get(quote.symbol, ()):
            self.decide(asset, self.deltas())

    def decide(self, asset: str, deltas: dict[str, AssetDelta]) -> tuple[DecisionRecord, OrderRequest | None]:
        state = self.state
        policy = self.policies[asset]
        hedge = state.instruments[policy.hedge_symbol]
        quote = state.quotes[policy.hedge_symbol]
        price = state.price_usd(asset)
        assert price is not None and state.account is not None
        delta = deltas[asset]
        now = self.now
        view = AssetView(asset, delta.delta_coin, delta.gross_coin, price, hedge, quote.mark)
        decision = decide(view, policy)
        decision_id = new_decision_id()
        record = DecisionRecord(
            decision_id, now, asset, delta.delta_coin, delta.delta_usd, decision.target_coin,
            decision.band_coin, decision.price_usd, decision.reason, self.trading.state.value,
        )
        if decision.intent is None:
            return record, None
        intent = decision.intent
        touch = quote.ask if intent.side.sign > 0 else quote.bid
        position = next(
            (p.contracts for p in state.account.positions if p.symbol == hedge.symbol), Decimal(0)
        )
        ctx = risk.RiskContext(
            quote_age_secs=state.quote_age_secs(hedge.symbol, 1.0, now.timestamp()),
            mark_price=quote.mark, position_contracts=position, traded_today_usd=Decimal(0),
            state=self.trading.state,
        )
        outcome = risk.check(replace(intent, reference_price=touch), hedge, ctx, self.limits)
        self.trading = self.trading.observe(frozenset(outcome.notes), now, 300.0)
        if outcome.intent is None:
            return replace(record, reason=",".join(outcome.notes) or "denied"), None
        sent = outcome.intent
        request = OrderRequest(client_order_id(decision_id), sent.symbol, sent.side, sent.amount_contracts,
                               OrderType.MARKET, reduce_only=sent.reduce_only)
        cost = hedge.notional_usd(sent.amount_contracts, touch) * hedge.taker_fee_rate
        self.orders += 1
        return replace(record, symbol=sent.symbol, side=sent.side, amount_contracts=sent.amount_contracts,
                       est_cost_usd=cost), request


# -- ccxt -------------------------------------------------------------------------------------------------

def ccxt_bybit_markets() -> list[dict[str, Any]]:
    """Bybit's markets parsed by ccxt from the recorded instruments-info answers."""
    import ccxt

    answers = {c: json.loads((INSTRUMENTS_INFO / f"bybit_instruments_{c}.json").read_text())
               for c in ("spot", "linear", "inverse")}
    exchange = ccxt.bybit({"options": {"fetchMarkets": {"types": ["spot", "linear", "inverse"]}}})

    def instruments_info(params: dict[str, Any]) -> dict[str, Any]:
        if params.get("status") == "PreLaunch":
            return {"retCode": 0, "result": {"category": params["category"], "list": []}}
        return answers[params["category"]]

    exchange.publicGetV5MarketInstrumentsInfo = instruments_info
    return list(exchange.fetch_markets())


def frames(count: int) -> list[str]:
    """The recorded push, its prices and timestamps moved by a few ticks each time, as raw frame text."""
    recorded = json.loads(TICKER_FRAME.read_text())
    result = []
    for i in range(count):
        message = copy.deepcopy(recorded)
        step = Decimal("0.5") * ((i * 7) % 41 - 20)
        data = message["data"]
        for key in ("lastPrice", "markPrice", "bid1Price", "ask1Price"):
            data[key] = str(Decimal(data[key]) + step)
        message["ts"] += i * 100
        result.append(json.dumps(message, separators=(",", ":")))
    return result


# -- the run ----------------------------------------------------------------------------------------------

def feed(bot: Bot, quotes: list[Quote]) -> None:
    for quote in quotes:
        bot.on_quote(quote)


def timed(run: Callable[[], None], count: int) -> float:
    started = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - started) / count / 1000  # microseconds per tick


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny run (the smoke test's)")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--ticks", type=int, default=2000, help="ticks per round")
    args = parser.parse_args()
    rounds, ticks = (3, 200) if args.quick else (args.rounds, args.ticks)

    import ccxt.pro
    from ccxt.async_support.base.ws.client import Client

    exchange = ccxt.pro.bybit()
    try:
        exchange.set_markets(ccxt_bybit_markets())
        client = Client(
            "wss://stream.bybit.com/v5/public/linear", exchange.handle_message, None, None, None, {}
        )
        raw = frames(ticks)
        tickers = []
        for frame in raw:  # the parsed ticker of each frame: what the bot starts from
            client.handle_text_or_binary_message(frame)
            tickers.append(copy.deepcopy(exchange.tickers["BTC/USDT:USDT"]))
        now = datetime.fromtimestamp(tickers[0]["timestamp"] / 1000, UTC) + timedelta(milliseconds=5)
        quotes = [quote_from_ticker(ticker, now) for ticker in tickers]
        bots = {
            "decide, inside band (no trade)": Bot(hedged=True, full_recompute=False, now=now),
            "decide, outside band (order)": Bot(hedged=False, full_recompute=False, now=now),
            "same, full recompute (before)": Bot(hedged=False, full_recompute=True, now=now),
        }

        def parse_all() -> None:
            for frame in raw:
                client.handle_text_or_binary_message(frame)

        def translate_all() -> None:
            for ticker in tickers:
                quote_from_ticker(ticker, now)

        samples: dict[str, list[float]] = {BASELINE: [], ADAPTER: [], **{name: [] for name in bots}}
        for name, bot in bots.items():  # warm up, and check that each portfolio decides as intended
            for quote in quotes[:50]:
                bot.on_quote(quote)
            trades = bot.orders > 0
            assert trades == ("inside" not in name), f"{name}: the portfolio does not decide as intended"
        parse_all()
        gc.collect()
        for _ in range(rounds):
            samples[BASELINE].append(timed(parse_all, len(raw)))
            samples[ADAPTER].append(timed(translate_all, len(tickers)))
            for name, bot in bots.items():
                samples[name].append(timed(partial(feed, bot, quotes), len(quotes)))
    finally:
        await exchange.close()

    medians = {name: statistics.median(values) for name, values in samples.items()}
    baseline = medians[BASELINE]
    print("benchmark 2: decision cost per tick, 20 assets, 100 positions (microseconds)")
    print(machine())
    print(f"{rounds} rounds x {ticks} ticks; median of the rounds' mean per tick (min in brackets)")
    print()
    print(table(
        ["per tick", "us", "min us", "vs ccxt parse"],
        [[name, f"{medians[name]:.1f}", f"{min(values):.1f}", f"{medians[name] / baseline:.2f}x"]
         for name, values in samples.items()],
    ))
    print()
    worst = medians["decide, outside band (order)"] / baseline
    common = medians["decide, inside band (no trade)"] / baseline
    target = f"<= {TARGET_RATIO}"
    print(ratio_line("decision (inside band) / ccxt parse", common, target, common <= TARGET_RATIO))
    print(ratio_line("decision (outside band, order) / ccxt parse", worst, target, worst <= TARGET_RATIO))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
