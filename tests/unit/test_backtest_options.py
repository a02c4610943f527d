"""An options book in the backtest (issue 6): short coin-settled calls hedged with the perpetual on a
synthetic path. The book's delta is recomputed here from the Black-76 greeks, independently of the
backtest's own figures, after every hedge fill."""

import math
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest

from deltakeeper.backtest import BacktestSettings, load_dataset
from deltakeeper.backtest.data import parse_exposure
from deltakeeper.backtest.replay import Replay as _Replay
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.greeks import black76_price_usd, greeks
from deltakeeper.domain.policy import Band, BandUnit, RebalanceTo
from deltakeeper.domain.risk import RiskLimits

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CALLS = -10
VOL = 0.6
BAND_COIN = D("0.2")
BARS = 300
NO_LIMITS = RiskLimits(max_order_usd=D(10**8), max_daily_traded_usd=D(10**10), max_position_usd=D(10**9),
                       stale_secs=15.0, price_collar_bps=D(100))
"""Unwinding the hedge of ten calls settled in the money is one order."""


def write_random_walk(path: Path, seed: int, start: float = 60_000.0, move: float = 0.002) -> Path:
    """One-minute bars of a seeded random walk: log moves of `move` standard deviation a bar."""
    rng = random.Random(seed)
    lines = ["timestamp,open,high,low,close,volume"]
    price = start
    for minute in range(BARS):
        ts = int((T0 + timedelta(minutes=minute)).timestamp() * 1000)
        lines.append(f"{ts},{price:.1f},{price:.1f},{price:.1f},{price:.1f},1")
        price *= math.exp(rng.gauss(0.0, move))
    path.write_text("\n".join(lines) + "\n")
    return path


def calls_value_usd(mid: D, strike: D, expiry: datetime, at: datetime) -> float:
    years = (expiry - at).total_seconds() / (365 * 86_400)
    return CALLS * black76_price_usd(float(mid), float(strike), years, VOL, True)


@pytest.mark.parametrize("days", ["30", "0.1"])  # the second expires after 144 of the 300 minutes
def test_short_calls_hedged_with_the_perp_are_within_the_band_after_every_hedge_fill(tmp_path, days):
    prices = write_random_walk(tmp_path / "BTCUSDT_1m.csv", seed=7)
    settings = BacktestSettings(default_band=Band(BandUnit.COIN, BAND_COIN), rebalance_to=RebalanceTo.EDGE,
                                spread_bps=2.0, option_vol=VOL, limits=NO_LIMITS)
    data = load_dataset({"BTC": prices}, None, f"calls:{CALLS}:100:{days}", settings.spread_bps)
    replay = _Replay(data, "band", settings)
    result = replay.run()

    events = data.series["BTC"].events
    mids = {e.ts: e.quote.mark for e in events}
    first = events[0]
    book = result["assets"]["BTC"]["options"]
    strike, expiry = book["strike_usd"], book["expiry"]
    assert abs(strike - first.quote.mark) <= D("0.05")  # 100 % of the first price, to the price tick
    assert expiry == first.ts + timedelta(days=float(days))
    assert result["option_vol"] == VOL

    def book_delta(hedge_coin: D, at: datetime) -> float:
        """The hedge plus the calls' price-adjusted delta and their value in coin (REFERENCE 1.3)."""
        years = (expiry - at).total_seconds() / (365 * 86_400)
        if years <= 0:  # settled
            return float(hedge_coin)
        g = greeks(float(mids[at]), float(strike), years, VOL, True)
        return float(hedge_coin) + CALLS * (g.delta_adj + g.premium_coin)

    hedge = D(0)
    after_fills: dict[datetime, D] = {}
    for fill in replay.fills:
        hedge += fill.amount_contracts * fill.side.sign  # the BTC perp: one coin a contract
        after_fills[fill.ts] = hedge
    assert len(after_fills) >= 6, "the path must move the calls' delta out of the band several times"
    for at, hedge_coin in after_fills.items():
        assert abs(book_delta(hedge_coin, at)) <= float(BAND_COIN) + 1e-9, at
    assert result["trades"] == len(after_fills) - 1  # all but the opening hedge

    # The exposure PnL is the calls' change of value, to the payoff at the first mid at or after expiry.
    settle = next((e for e in events if e.ts >= expiry), None)
    end = settle or events[-1]
    start_value = calls_value_usd(first.quote.mark, strike, expiry, first.ts)
    end_value = calls_value_usd(end.quote.mark, strike, expiry, end.ts)
    if settle is not None:
        assert end_value == pytest.approx(CALLS * max(float(settle.quote.mark - strike), 0.0))
    asset = result["assets"]["BTC"]
    assert float(asset["exposure_pnl_usd"]) == pytest.approx(end_value - start_value, abs=1e-6)
    assert book["settled"] is (settle is not None)
    assert float(book["final_value_usd"]) == pytest.approx(end_value, abs=1e-6)
    # Not the delta x move sum: the calls' convexity is in it.
    previous = None
    moves = 0.0
    for event in events:
        if previous is not None and (settle is None or previous.ts < settle.ts):
            moves += book_delta(D(0), previous.ts) * float(event.quote.mark - previous.quote.mark)
        previous = event
    assert abs(moves - (end_value - start_value)) > 1.0
    if settle is not None:  # no delta left after expiry: the hedge was traded back inside the band
        assert abs(asset["final_hedge_coin"]) <= BAND_COIN


def test_calls_spec_parses_with_defaults_and_refuses_nonsense():
    spec = parse_exposure("calls:-10")
    assert (spec.kind, spec.calls, spec.strike_pct, spec.expiry_days) == ("calls", D(-10), D(110), D(30))
    assert str(parse_exposure("calls:2.5:95:7")) == "calls:2.5:95:7"
    for bad in ("calls", "calls:0", "calls:x", "calls:-1:0", "calls:-1:100:-3", "calls:1:2:3:4"):
        with pytest.raises(ConfigError, match="--exposure"):
            parse_exposure(bad)
