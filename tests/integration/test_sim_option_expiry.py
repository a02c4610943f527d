"""Options expiring in the simulator are cash-settled at their intrinsic value by a delivery fill each (the
premium coin's value per unit of the underlying: 0 for one that expired worthless): the wallet is paid, the
fills are journaled as deliveries (no part of the day's traded notional), and `journal pnl` realises the
options' PnL from them, nothing left open to mark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

from tests.integration.service_harness import journal_for

from deltakeeper.config import Settings
from deltakeeper.domain.orders import Fill, OrderRequest, Quote, Side
from deltakeeper.domain.pnl import attribute
from deltakeeper.sim.engine import SimEngine
from deltakeeper.sim.markets import default_instruments, option_instruments

T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
EXPIRY = T0 + timedelta(days=1)
ACCOUNT = "a"
CALL, PUT = "BTC/USD:USDC-260106-60000-C", "BTC/USD:USDC-260106-60000-P"
COIN_CALL = "BTC/USD:BTC-260106-60000-C"


def flat(symbol: str, price: str, ts: datetime) -> Quote:
    p = D(price)
    return Quote(symbol, p, p, p, ts, index=p)


def engine_with_options() -> SimEngine:
    """USDC-settled (Bybit's) and coin-settled (Deribit's) calls and puts struck at 60,000, expiring a day
    after T0; an account of 10,000 USDC and 1 BTC."""
    instruments = default_instruments()
    for settle in ("USDC", None):
        instruments.update(option_instruments(start=T0, price=60_000, expiry_days=(1,), moneyness=(1.0,),
                                              settle=settle))
    engine = SimEngine(instruments, seed=3)
    engine.walk_depth = False
    engine.open_account(ACCOUNT, {"USDC": D(10_000), "BTC": D(1)})
    return engine


def buy(engine: SimEngine, symbol: str, amount: str, cid: str) -> Fill:
    engine.place_order(ACCOUNT, OrderRequest(cid, symbol, Side.BUY, D(amount)), T0)
    return engine.fills(ACCOUNT)[-1]


async def test_expired_options_settle_at_their_intrinsic_value_by_delivery_fills_journaled_and_realised(
        tmp_path: Path) -> None:
    engine = engine_with_options()
    events: list[object] = []
    engine.subscribe(lambda _account, event: events.append(event))
    engine.on_quote(flat("BTC/USDT:USDT", "60000", T0))
    for symbol, premium in ((CALL, "1500"), (PUT, "1400")):
        engine.on_quote(flat(symbol, premium, T0))
    premium_btc = D("0.025")  # the coin call's quote: its premium in BTC, its underlying's index
    engine.on_quote(Quote(COIN_CALL, premium_btc, premium_btc, premium_btc, T0, index=D(60_000)))
    bought = [buy(engine, CALL, "0.5", "c1"), buy(engine, PUT, "0.5", "c2"),
              buy(engine, COIN_CALL, "0.1", "c3")]
    usdc_after_trades, btc_after_trades = engine.balances(ACCOUNT)["USDC"], engine.balances(ACCOUNT)["BTC"]

    engine.on_quote(flat("BTC/USDT:USDT", "63000", EXPIRY - timedelta(seconds=1)))
    assert len(engine.positions(ACCOUNT)) == 3  # not yet
    events.clear()
    engine.on_quote(flat("BTC/USDT:USDT", "63000", EXPIRY))  # expiry: the index at 63,000

    assert engine.positions(ACCOUNT) == []
    delivered = {e.symbol: e for e in events if isinstance(e, Fill)}
    call, put, coin_call = delivered[CALL], delivered[PUT], delivered[COIN_CALL]
    assert all(f.delivery and not f.traded and f.client_order_id is None and f.fee == 0 and f.ts == EXPIRY
               and f.side is Side.SELL for f in delivered.values())
    assert (call.amount_contracts, call.price, call.notional_usd) == (D("0.5"), D(3000), D(1500))
    assert (put.amount_contracts, put.price, put.notional_usd) == (D("0.5"), 0, 0)  # expired worthless
    coin_payoff = (D(3000) / D(63_000)).quantize(D("1E-8"))  # 3,000 USD in BTC at the index
    assert (coin_call.amount_contracts, coin_call.price) == (D("0.1"), coin_payoff)
    assert coin_call.notional_usd == D("0.1") * coin_payoff * 63_000
    assert engine.balances(ACCOUNT)["USDC"] == usdc_after_trades + D(1500)
    paid_btc = (D("0.1") * coin_payoff).quantize(D("1E-8"))  # to the wallet's satoshi
    assert engine.balances(ACCOUNT)["BTC"] == btc_after_trades + paid_btc

    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'journal.db'}")
    async with journal_for(settings) as journal:
        assert await journal.record_fills(engine.fills(ACCOUNT)) == 6
        traded = await journal.traded_usd_since(T0)
        journaled = await journal.list_fills()
    rows = [r for r in journaled if r["symbol"] in (CALL, PUT)]
    assert traded == sum(f.notional_usd for f in bought)  # the three purchases, no delivery
    assert [(r["symbol"], r["kind"]) for r in rows] == [
        (CALL, "trade"), (PUT, "trade"), (CALL, "delivery"), (PUT, "delivery")]
    decision = {"ts": EXPIRY + timedelta(hours=1), "asset": "BTC", "price_usd": D(63_000),
                "reason": "inside_band", "delta_coin": None}
    [row] = attribute(rows, [], [], [decision])
    # the call: 0.5 x (3,000 - 1,500) = +750; the put: 0.5 x (0 - 1,400) = -700, both closed
    assert row["realised_pnl_usd"] == row["hedge_pnl_usd"] == D(50)
    assert row["marked_pnl_usd"] == 0 and row["position_coin"] == 0
    assert row["fees_usd"] == sum(f.fee for f in bought[:2])
    # the coin-settled call: 0.1 x (its payoff in BTC at 63,000 - 0.025 BTC at 60,000), both in USD
    [row] = attribute([r for r in journaled if r["symbol"] == COIN_CALL], [], [], [decision])
    coin_call_pnl = D("0.1") * (coin_payoff * 63_000 - premium_btc * 60_000)
    assert bought[2].notional_usd == D("0.1") * premium_btc * 60_000
    assert row["realised_pnl_usd"] == row["hedge_pnl_usd"] == coin_call_pnl
    assert row["marked_pnl_usd"] == 0 and row["position_coin"] == 0
