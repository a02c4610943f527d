"""Benchmark 2: the cost of recomputing the delta and deciding after one tick, for a portfolio of 20 assets
and 100 positions, against the cost of ccxt parsing that tick's websocket message. Target: at most 1.0x.

    python benchmarks/decision_cost.py [--quick] [--rounds 30] [--ticks 2000]

Baseline (ccxt.pro bybit, offline): the recorded Bybit v5 `tickers.BTCUSDT` push
(tests/integration/fixtures/bybit/ws_ticker_linear.json), its prices moved a little on every tick, fed as
the raw frame text to `Client.handle_text_or_binary_message`, the call ccxt.pro makes for each websocket
text frame: JSON decoding, `bybit.handle_message`, `handle_ticker`, `parse_ticker` and the future's
resolution. The markets come from the recorded instruments-info answers (tests/unit/fixtures/ccxt), so
nothing touches the network.

Timed for the bot, per tick, the service's own code from the tick's `Quote` up to the order request, without
the journal's I/O: `MarketState.on_quote` (as `Runner._on_quote`), then what `Hedger.on_quote` runs for each
asset the tick prices: the risk model's sample when the policy uses one (`Hedger._observe_risk`),
`MarketState.deltas()` (incremental: the touched asset only) and the Hedger's decision (`Hedger._decide`, the
synchronous part of `Hedger.evaluate` up to the order request): the `DK_POLICY` object's `decide`, the
decision record, and when it trades the risk check, the trading state, the client order id and the order
request. What `evaluate` does next is not timed: the execution plan (an `async` step that may read the order
book), the journal's records and the log line. A real `Hedger` with `HedgerOptions.policy` set as `DK_POLICY`
sets it: the default band (`FixedBandPolicy`) and `cost-aware` (`CostAwarePolicy`, the risk model fed once per
second of exchange time from the ticks, 100 ms apart). Its exchange, journal and alerts refuse any use, so
nothing else can hide in the figure. Two portfolios of the same shape: one whose touched asset is inside its
band (no trade: the common tick), one whose touched asset is outside it on every tick (the worst case: the
Hedger then has an order in flight and decides nothing more on that instrument until it is done). One more
line times the band's order case with `recompute_deltas()` (everything from scratch, as `deltas()` did before
it was incremental). The adapter's translation of ccxt's ticker into a `Quote` (`quote_from_ticker`) is shown
on its own line: it is part of taking the tick in, not of deciding.

Both sides run in the same process, alternating in rounds; each figure is the median over the rounds of the
mean time per tick. Every round replays the same ticks later in time (their timestamps moved on), so that
the risk model keeps sampling.
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
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from _common import REPO, machine, ratio_line, table

from deltakeeper.adapters.ccxt_parse import quote_from_ticker
from deltakeeper.app.cycle import CycleOptions
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.service import ServiceOptions, build_service
from deltakeeper.domain import risk
from deltakeeper.domain.decide_policies import CostAwarePolicy, FixedBandPolicy, HedgePolicy
from deltakeeper.domain.exposure import AssetDelta, Position, asset_deltas
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.policy import AssetPolicy, Band, BandUnit
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import Exchange, Journal

TICKER_FRAME = REPO / "tests" / "integration" / "fixtures" / "bybit" / "ws_ticker_linear.json"
INSTRUMENTS_INFO = REPO / "tests" / "unit" / "fixtures" / "ccxt"
TARGET_RATIO = 1.0
BASELINE = "ccxt parse (baseline)"
ADAPTER = "adapter: ccxt ticker -> Quote"
TICK_SPACING = timedelta(milliseconds=100)  # the recorded pushes' spacing (Bybit's ticker stream)
LATENCY = timedelta(milliseconds=5)  # the bot's clock reads the tick's time plus this

ASSETS = ["BTC", "ETH", "SOL", "XRP", "DOGE", "ADA", "AVAX", "LINK", "DOT", "TRX",
          "LTC", "BCH", "NEAR", "APT", "ARB", "OP", "SUI", "ATOM", "FIL", "UNI"]
TOUCHED = "BTC"  # the recorded push is BTCUSDT's
EXPIRY = datetime(2030, 6, 28, 8, tzinfo=UTC)
EXTERNAL = {"ETH": Decimal("12.5"), "SOL": Decimal(-300), "LINK": Decimal(900)}
POLICIES: dict[str, HedgePolicy] = {
    "band": FixedBandPolicy(),  # DK_POLICY=band, the default
    # DK_POLICY=cost-aware with the defaults of DK_RISK_AVERSION, DK_MAX_DEVIATION_PCT, DK_SLIPPAGE_BPS
    "cost-aware": CostAwarePolicy(1e-4, Band(BandUnit.PCT, Decimal(10))),
}
BEFORE = "band, outside band, full recompute (before)"


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


@dataclass
class TickClock:
    """`ports.Clock` for the benchmark: the time of the tick being handled, plus the latency."""

    now_: datetime
    speed: float = 1.0

    def now(self) -> datetime:
        return self.now_


class NoIO:
    """The Hedger's exchange, journal and alerts here: none is called while it decides, and any call fails."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the decision benchmark must do no I/O: {name} was called")


class Bot:
    """A Hedger over the portfolio, fed one tick at a time as the Runner feeds it, minus the journal."""

    def __init__(self, policy: HedgePolicy, hedged: bool, full_recompute: bool, now: datetime) -> None:
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
        limits = risk.RiskLimits(
            max_order_usd=Decimal(10_000_000), max_daily_traded_usd=Decimal(10**12),
            max_position_usd=Decimal(10**12), stale_secs=60.0, price_collar_bps=Decimal(500),
        )
        self.clock = TickClock(now)
        no_io = NoIO()
        self.cycle = build_service(
            cast(Exchange, no_io), cast(Journal, no_io), self.clock, no_io, self.state,
            {a: AssetPolicy(a, f"{a}/USDT:USDT", band) for a in ASSETS},
            ServiceOptions(limits, 30.0, 300.0, CycleOptions(policy=policy)),
        ).cycle
        self.deltas: Callable[[], dict[str, AssetDelta]] = (
            self.state.recompute_deltas if full_recompute else self.state.deltas
        )
        self.orders = 0

    def on_quote(self, quote: Quote) -> None:
        self.clock.now_ = quote.ts + LATENCY
        self.state.on_quote(quote)
        cycle = self.cycle
        for asset in cycle._by_price_symbol.get(quote.symbol, ()):
            cycle.risk.observe(asset, quote.symbol)
            _, request = cycle._decide(asset, cycle.policies[asset], self.deltas())
            if request is not None:
                self.orders += 1


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

def later(quotes: list[Quote], by: timedelta) -> list[Quote]:
    return [replace(quote, ts=quote.ts + by) for quote in quotes]


def timed(bot: Bot, quotes: list[Quote]) -> float:
    """Microseconds per tick."""
    started = time.perf_counter_ns()
    for quote in quotes:
        bot.on_quote(quote)
    return (time.perf_counter_ns() - started) / len(quotes) / 1000


def timed_call(run: Callable[[], None], count: int) -> float:
    started = time.perf_counter_ns()
    run()
    return (time.perf_counter_ns() - started) / count / 1000


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
        now = datetime.fromtimestamp(tickers[0]["timestamp"] / 1000, UTC) + LATENCY
        quotes = [quote_from_ticker(ticker, now) for ticker in tickers]
        bots: dict[str, Bot] = {}
        for name, policy in POLICIES.items():
            bots[f"{name}, inside band (no trade)"] = Bot(policy, hedged=True, full_recompute=False, now=now)
            bots[f"{name}, outside band (order)"] = Bot(policy, hedged=False, full_recompute=False, now=now)
        bots[BEFORE] = Bot(POLICIES["band"], hedged=False, full_recompute=True, now=now)

        def parse_all() -> None:
            for frame in raw:
                client.handle_text_or_binary_message(frame)

        def translate_all() -> None:
            for ticker in tickers:
                quote_from_ticker(ticker, now)

        samples: dict[str, list[float]] = {BASELINE: [], ADAPTER: [], **{name: [] for name in bots}}
        for name, bot in bots.items():  # warm up, and check that each portfolio decides as intended
            for quote in quotes:
                bot.on_quote(quote)
            expected = 0 if "inside" in name else len(quotes)
            assert bot.orders == expected, f"{name}: {bot.orders} orders/{len(quotes)} ticks, not {expected}"
        parse_all()
        gc.collect()
        for round_ in range(1, rounds + 1):
            samples[BASELINE].append(timed_call(parse_all, len(raw)))
            samples[ADAPTER].append(timed_call(translate_all, len(tickers)))
            replayed = later(quotes, round_ * ticks * TICK_SPACING)
            for name, bot in bots.items():
                samples[name].append(timed(bot, replayed))
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
    target = f"<= {TARGET_RATIO}"
    for name in bots:
        if name != BEFORE:
            ratio = medians[name] / baseline
            print(ratio_line(f"decision {name} / ccxt parse", ratio, target, ratio <= TARGET_RATIO))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
