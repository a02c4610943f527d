"""MarketState.deltas() is incremental: after each event it must equal a computation from scratch."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from deltakeeper.app.market_state import MarketState
from deltakeeper.domain.exposure import AssetDelta, OptionInputMissing, Position, asset_deltas
from deltakeeper.domain.greeks import greeks
from deltakeeper.domain.instruments import Instrument, Kind, is_stable
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.price_gate import GateLimits, PriceGate
from deltakeeper.domain.records import AccountSnapshot

T0 = datetime(2024, 3, 1, tzinfo=UTC)
ASSETS = ("BTC", "ETH", "SOL", "DOGE")
# Options carry their exchange's delta where the domain knows the field (a published delta needs no clock).
OPTION_POSITION: dict[str, Any] = {"delta": D("0.45")} if "delta" in Position.__dataclass_fields__ else {}
OPTION_INSTRUMENT: dict[str, Any] = (
    {"strike": D(100), "option_type": "call"} if "strike" in Instrument.__dataclass_fields__ else {}
)


def instruments() -> dict[str, Instrument]:
    result = {}
    for asset in ASSETS:
        for instrument in (
            Instrument(f"{asset}/USDT", Kind.SPOT, asset, "USDT", "USDT"),
            Instrument(f"{asset}/USDT:USDT", Kind.PERPETUAL, asset, "USDT", "USDT", contract_size=D("0.1")),
            Instrument(f"{asset}/USD:{asset}", Kind.PERPETUAL, asset, "USD", asset, inverse=True,
                       contract_size=D(10)),
            Instrument(f"{asset}/USDT:USDT-240628", Kind.FUTURE, asset, "USDT", "USDT",
                       expiry=T0 + timedelta(days=120)),
        ):
            result[instrument.symbol] = instrument
    option = Instrument("BTC/USD:BTC-240628-100-C", Kind.OPTION, "BTC", "USD", "BTC",
                        expiry=T0 + timedelta(days=120), **OPTION_INSTRUMENT)
    result[option.symbol] = option
    return result


INSTRUMENTS = instruments()


def open_gate() -> PriceGate:
    """A price gate that lets any jump through: these tests are about the deltas, not the gate."""
    return PriceGate(GateLimits(jump_pct=D(10**9)))

DERIVATIVES = [s for s, i in INSTRUMENTS.items() if i.kind is not Kind.SPOT]


def random_price(rng: random.Random) -> D:
    return D(rng.randint(500, 150_000)) / 100


def random_account(rng: random.Random, ts: datetime) -> AccountSnapshot:
    balances = {asset: D(rng.randint(-500, 5_000)) / 100 for asset in rng.sample(ASSETS, 3)}
    balances["USDT"] = D(rng.randint(0, 10**6))
    positions = []
    for symbol in rng.sample(DERIVATIVES, 6):
        extra = OPTION_POSITION if INSTRUMENTS[symbol].kind is Kind.OPTION else {}
        pnl = None if rng.random() < 0.5 else D(rng.randint(-1000, 1000)) / 1000
        contracts = D(rng.randint(-300, 300))
        positions.append(Position(symbol, contracts, random_price(rng), random_price(rng), pnl, **extra))
    return AccountSnapshot(balances, tuple(positions), ts)


def from_scratch(state: MarketState, as_of: datetime | None = None) -> dict[str, AssetDelta]:
    """What `deltas()` computed before it was incremental: everything, every time."""
    if state.account is None:
        return {}
    prices = {a: p for a in state.price_symbols if (p := state.price_usd(a)) is not None}
    balances = {a: q for a, q in state.account.balances.items() if a in prices or is_stable(a)}
    external = {a: q for a, q in state.external.items() if a in prices}
    positions = [p for p in state.account.positions if p.symbol in state.instruments]
    return asset_deltas(state.instruments, balances, positions, prices, external, as_of=as_of,
                        skip_unpriced=True)


def exactly(deltas: dict[str, AssetDelta]) -> list[tuple[str, str, str, str]]:
    """Keys in order and every Decimal as its string, so that 1.0 and 1.00 differ."""
    return [(a, str(d.delta_coin), str(d.delta_usd), str(d.gross_coin)) for a, d in deltas.items()]


def quote(symbol: str, mark: D, ts: datetime) -> Quote:
    return Quote(symbol, mark - D("0.01"), mark + D("0.01"), mark, ts)


@pytest.mark.parametrize("seed", range(8))
def test_incremental_deltas_equal_a_full_recompute_after_every_event(seed: int) -> None:
    rng = random.Random(seed)
    state = MarketState(
        dict(INSTRUMENTS),
        {"ETH": D("1.5"), "DOGE": D(-200)},
        {asset: f"{asset}/USDT:USDT" for asset in ASSETS[:3]},
        gate=open_gate(),
    )
    ts = T0
    assert state.deltas() == {}
    for step in range(400):
        ts += timedelta(seconds=1)
        event = rng.random()
        if event < 0.6 or step < 5:  # a tick, mostly on a pricing market, sometimes on another one
            symbol = rng.choice([*state.price_symbols.values(), *DERIVATIVES[:3]])
            state.on_quote(quote(symbol, random_price(rng), ts))
        elif event < 0.7:  # the same price again, as a new quote
            symbol = rng.choice(list(state.price_symbols.values()))
            old = state.quotes.get(symbol)
            if old is not None:
                state.on_quote(replace(old, mark=D(str(old.mark)), ts=ts))
        elif event < 0.85:
            state.on_account(random_account(rng, ts))
        elif event < 0.9:  # a stale snapshot is refused and must change nothing
            state.on_account(random_account(rng, ts - timedelta(days=1)))
        elif event < 0.95:  # DOGE gets (or loses) its pricing market
            if "DOGE" in state.price_symbols:
                del state.price_symbols["DOGE"]
            else:
                state.price_symbols["DOGE"] = "DOGE/USDT:USDT"
        else:  # the declared external holdings change
            state.external = {"ETH": D(rng.randint(0, 500)) / 100, "SOL": D(rng.randint(-50, 50))}
        # an asset with exposure but no price is left out both ways
        assert exactly(state.deltas()) == exactly(from_scratch(state)), f"step {step}"


def test_a_tick_redoes_only_the_usd_delta_of_the_asset_it_prices() -> None:
    state = MarketState(dict(INSTRUMENTS), {}, {"BTC": "BTC/USDT:USDT", "ETH": "ETH/USDT:USDT"},
                        gate=open_gate())
    state.on_account(AccountSnapshot(
        {"BTC": D(2), "ETH": D(10), "USDT": D(1000)},
        (Position("BTC/USD:BTC", D(-100), D(50_000), D(50_000)),),
        T0,
    ))
    state.on_quote(quote("BTC/USDT:USDT", D(50_000), T0))
    state.on_quote(quote("ETH/USDT:USDT", D(3_000), T0))
    before = state.deltas()

    state.on_quote(quote("BTC/USDT:USDT", D(60_000), T0 + timedelta(seconds=1)))
    after = state.deltas()

    assert after["ETH"] is before["ETH"]
    assert after["BTC"].delta_coin == before["BTC"].delta_coin == D(2) - D(1000) / D(50_000)
    assert after["BTC"].delta_usd == after["BTC"].delta_coin * D(60_000)
    assert exactly(after) == exactly(state.recompute_deltas())


def test_position_contracts_is_the_first_position_in_the_symbol_of_the_current_snapshot() -> None:
    rng = random.Random(11)
    state = MarketState(dict(INSTRUMENTS))
    assert state.position_contracts(DERIVATIVES[0]) == 0
    for step in range(200):
        ts = T0 + timedelta(seconds=step)
        snapshot = random_account(rng, ts)
        if rng.random() < 0.3:  # the same symbol twice: the first one counts
            snapshot = replace(snapshot, positions=(*snapshot.positions, *snapshot.positions))
        state.on_account(snapshot)
        for symbol in DERIVATIVES:
            first = next((p.contracts for p in snapshot.positions if p.symbol == symbol), D(0))
            assert state.position_contracts(symbol) == first, f"step {step} {symbol}"


def test_deltas_returns_a_copy_the_caller_may_change() -> None:
    state = MarketState(dict(INSTRUMENTS), {}, {"BTC": "BTC/USDT:USDT"})
    state.on_account(AccountSnapshot({"BTC": D(1)}, (), T0))
    state.on_quote(quote("BTC/USDT:USDT", D(50_000), T0))
    state.deltas().clear()
    assert list(state.deltas()) == ["BTC"]


class SteppingClock:
    speed = 1.0

    def __init__(self, now: datetime) -> None:
        self.t = now

    def now(self) -> datetime:
        return self.t


def test_an_option_without_a_published_delta_is_valued_by_black76_at_the_clocks_time() -> None:
    call = Instrument("BTC/USD:BTC-240331-60000-C", Kind.OPTION, "BTC", "USD", "BTC",
                      expiry=T0 + timedelta(days=30), strike=D(60_000), option_type="call")
    calls = Position(call.symbol, D(-10), D(0), D(0), mark_iv=0.60)  # no delta, no mark: Black-76
    perp = Position("BTC/USDT:USDT", D(50), D(60_000), D(60_000))  # 0.1 BTC a contract
    clock = SteppingClock(T0)
    state = MarketState({**INSTRUMENTS, call.symbol: call}, {"ETH": D(3)},
                        {"BTC": "BTC/USDT:USDT", "ETH": "ETH/USDT:USDT"}, clock=clock)
    state.on_account(AccountSnapshot({"BTC": D(1), "USDT": D(10_000)}, (calls, perp), T0))
    rng = random.Random(5)
    for step in range(40):
        clock.t = T0 + timedelta(hours=6 * step)
        symbol = rng.choice(["BTC/USDT:USDT", "ETH/USDT:USDT"])
        state.on_quote(quote(symbol, D(rng.randint(5_500_000, 6_500_000)) / 100, clock.t))
        price = state.price_usd("BTC")
        if price is None or state.price_usd("ETH") is None:
            continue
        deltas = state.deltas()

        years = (30 - step / 4) / 365
        g = greeks(float(price), 60_000.0, years, 0.60, True)
        # the wallet, the perp, and the calls' adjusted delta plus their value in coin (REFERENCE 1.3)
        expected = 1 + 50 * 0.1 - 10 * (g.delta_adj + g.premium_coin)
        assert float(deltas["BTC"].delta_coin) == pytest.approx(expected, abs=1e-9), step
        assert deltas["BTC"].gamma_coin_per_usd == pytest.approx(-10 * g.gamma_per_usd, rel=1e-12)
        assert deltas["ETH"].delta_coin == D(3) and deltas["ETH"].gamma_coin_per_usd == 0.0
        full = from_scratch(state, clock.t)
        assert exactly(deltas) == exactly(full), step
        assert deltas["BTC"].gamma_coin_per_usd == full["BTC"].gamma_coin_per_usd

    without_clock = MarketState(state.instruments, {}, {"BTC": "BTC/USDT:USDT"})
    without_clock.on_account(state.account)  # type: ignore[arg-type]
    without_clock.on_quote(quote("BTC/USDT:USDT", D(60_000), T0))
    with pytest.raises(OptionInputMissing, match="the time"):
        without_clock.deltas()


def test_snapshots_of_one_instant_are_kept_in_the_order_the_simulator_took_them() -> None:
    """At full speed the simulated clock stands still between ticks: the fill of an order and the snapshot
    after it share the time of the snapshot the decision saw. The later one must replace it (else the
    next decision sees the account before the fill and sends the same order again), and a snapshot taken
    earlier, delivered late, must not undo it."""
    from deltakeeper.domain.orders import OrderRequest, Side
    from deltakeeper.sim.engine import SimEngine
    from deltakeeper.sim.markets import default_instruments

    engine = SimEngine(default_instruments(), seed=1)
    engine.open_account("acct", {"USDT": D(100_000)})
    quote = Quote("SOL/USDT:USDT", D(100), D("100.1"), D("100.05"), T0)
    engine.on_quote(quote)
    events: list[object] = []
    engine.subscribe(lambda _account, event: events.append(event))
    state = MarketState(dict(engine.instruments), {}, {"SOL": "SOL/USDT:USDT"})
    state.on_quote(quote)
    before = engine.snapshot("acct", T0)
    assert state.on_account(before)

    engine.place_order("acct", OrderRequest("c1", "SOL/USDT:USDT", Side.BUY, D(3)), T0)
    after_fill = [e for e in events if isinstance(e, AccountSnapshot)][-1]
    assert after_fill.ts == before.ts
    assert state.on_account(after_fill)
    assert state.deltas()["SOL"].delta_coin == D(3)
    assert not state.on_account(before)
    assert state.deltas()["SOL"].delta_coin == D(3)
    assert not state.on_account(replace(after_fill, seq=0))  # an exchange without an order: time decides


def test_a_held_quote_is_not_applied_and_is_logged_and_a_confirmed_move_is() -> None:
    from structlog.testing import capture_logs

    wall = [0.0]
    state = MarketState(dict(INSTRUMENTS), {}, {"SOL": "SOL/USDT:USDT"}, monotonic=lambda: wall[0],
                        gate=PriceGate(GateLimits(jump_pct=D(10), confirm_secs=5.0)))
    perp, spot = "SOL/USDT:USDT", "SOL/USDT"
    with capture_logs() as logs:
        assert state.on_quote(quote(spot, D(136), T0))
        assert not state.on_quote(quote(perp, D(136_000), T0))  # a first quote the spot contradicts
        assert state.on_quote(quote(perp, D("136.1"), T0))
        wall[0] = 1.0
        assert not state.on_quote(quote(perp, D(408), T0 + timedelta(seconds=1)))
        assert state.price_usd("SOL") == D("136.1") and state.received_at[perp] == 0.0
        assert state.references[perp] == D(136)  # the spot's price vouched for the perp's first quote
        for step in range(7):  # both markets gap +15 %, and stay there
            wall[0] = 2.0 + step
            ts = T0 + timedelta(seconds=2 + step)
            state.on_quote(quote(spot, D("156.4"), ts))
            state.on_quote(quote(perp, D("156.5"), ts))
    assert state.price_usd("SOL") == D("156.5") and state.quotes[spot].mark == D("156.4")
    held = [e for e in logs if e["event"] == "quote_held"]
    assert held[0]["symbol"] == perp and held[0]["reason"] == f"disagrees_with:{spot} unconfirmed"
    assert held[1]["mark"] == "408" and held[1]["last_good"] == "136.10"
    assert {e["reason"] for e in logs if e["event"] == "quote_confirmed"} >= {"confirmed"}


def test_markets_are_compared_by_what_their_price_is_a_price_of() -> None:
    eth_btc = Instrument("ETH/BTC", Kind.SPOT, "ETH", "BTC", "BTC")
    state = MarketState({**INSTRUMENTS, eth_btc.symbol: eth_btc}, {}, {"ETH": "ETH/USDT:USDT"})
    assert state.on_quote(quote("ETH/USDT:USDT", D(3000), T0))
    assert state.on_quote(quote("ETH/USD:ETH", D("3001"), T0))  # USD and USDT: one price
    assert not state.on_quote(quote("ETH/USDT", D(9000), T0))
    assert state.on_quote(quote("ETH/BTC", D("0.05"), T0))  # ETH in BTC: not comparable with USD


def test_a_read_confirms_the_latest_held_quote_or_contradicts_it() -> None:
    from structlog.testing import capture_logs

    perp = "SOL/USDT:USDT"
    state = MarketState(dict(INSTRUMENTS), {}, {"SOL": perp})
    with capture_logs() as logs:
        assert state.on_quote(quote(perp, D(136), T0))
        assert not state.on_read(quote(perp, D(136), T0))  # nothing held
        assert not state.on_quote(quote(perp, D(408), T0)) and state.held(perp)
        assert not state.on_read(quote(perp, D("136.2"), T0))
        assert state.price_usd("SOL") == D(136) and state.held(perp)
        assert not state.on_quote(quote(perp, D("156.4"), T0)) and state.held(perp)  # a new level
        assert state.on_read(quote(perp, D("156.3"), T0))
    assert state.price_usd("SOL") == D("156.4") and state.references[perp] == D("156.3")
    assert not state.held(perp)
    assert [e["event"] for e in logs] == ["quote_held", "quote_contradicted", "quote_held", "quote_confirmed"]
