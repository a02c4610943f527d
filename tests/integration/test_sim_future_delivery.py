"""A dated future that expires in the simulator is closed by a delivery fill (as Bybit's `Delivery`
execution): journaled like any fill, it closes the position in `journal pnl`'s attribution, which walks the
fills, instead of leaving the short open and marked at every later price."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D
from pathlib import Path

from tests.integration.service_harness import journal_for
from tests.unit.test_sim_futures import ACCOUNT, BTC_DEC, DEC, engine_with, fut_quote, sell, spot_quote

from deltakeeper.config import Settings
from deltakeeper.domain.pnl import attribute


async def test_a_settled_short_future_is_closed_in_the_journal_pnl_at_its_settlement_price(
        tmp_path: Path) -> None:
    engine = engine_with({"USDT": D(10_000)})
    t = DEC - timedelta(hours=1)
    engine.on_quote(spot_quote("60000", t))
    engine.on_quote(fut_quote(BTC_DEC, "60100", "60110", t, "60000"))
    engine.place_order(ACCOUNT, sell(BTC_DEC, "0.1", "dk1a0"), t)  # short 0.1 at 60,100
    engine.on_quote(spot_quote("58000", DEC))  # settled at 58,000: +210 USD
    month_later = DEC + timedelta(days=30)
    decision = {"ts": month_later, "asset": "BTC", "price_usd": D(70_000), "reason": "inside_band",
                "delta_coin": None}
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'journal.db'}")

    async with journal_for(settings) as journal:
        assert await journal.record_fills(engine.fills(ACCOUNT)) == 2
        fills = await journal.list_fills()
    [row] = attribute(fills, [], [], [decision])

    assert row["asset"] == "BTC"
    assert row["realised_pnl_usd"] == row["hedge_pnl_usd"] == D(210)  # 0.1 x (60,100 - 58,000)
    assert row["marked_pnl_usd"] == 0  # nothing left open to mark at 70,000 (-990 USD)
