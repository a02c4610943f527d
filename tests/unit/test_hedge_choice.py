"""`HEDGE=carry`: the perpetual or the nearest quarterly, chosen by carry from fresh quotes while no hedge
is held; never a switch of a held hedge, never a default while a quote is stale or missing."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D

from deltakeeper.app.hedge_choice import HedgeChooser
from deltakeeper.app.market_state import MarketState
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.sim.markets import default_instruments, future_instruments

NOW = datetime(2026, 9, 26, 8, tzinfo=UTC)  # 90 days before the December expiry
PERP, DEC = "BTC/USDT:USDT", "BTC/USDT:USDT-261225"
STALE_SECS = 15.0


def chooser(funding: D | None, *, future_age_secs: float = 0, positions: tuple[Position, ...] = (),
            funding_interval_secs: int = 8 * 3600) -> HedgeChooser:
    instruments = {**default_instruments(), **future_instruments(NOW)}
    instruments[PERP] = replace(instruments[PERP], funding_interval_secs=funding_interval_secs)
    state = MarketState(instruments)
    state.on_quote(Quote(PERP, D(59_990), D(60_010), D(60_000), NOW, index=D(60_000), funding_rate=funding))
    state.on_quote(Quote(DEC, D(61_490), D(61_510), D(61_500), NOW - timedelta(seconds=future_age_secs)))
    state.on_account(AccountSnapshot({"BTC": D(1)}, positions, NOW))
    return HedgeChooser(state, {"BTC": PERP}, lambda: NOW, lambda q: (NOW - q.ts).total_seconds(),
                        STALE_SECS, 48 * 3600)


def test_the_perpetual_while_its_funding_beats_the_basis_and_the_quarterly_otherwise() -> None:
    # F 61,500 over S 60,000 for 90 days: break-even funding 0.009259% per 8h
    perp = chooser(D("0.0001")).choose("BTC", PERP)
    assert perp is not None and perp.symbol == PERP
    assert "break-even funding 0.0000925" in perp.note and "perp funding 0.0001/8h" in perp.note
    future = chooser(D("0.00005")).choose("BTC", PERP)
    assert future is not None and future.symbol == DEC and future.note.startswith(f"carry: {DEC}")


def test_an_hourly_funding_rate_is_compared_as_its_8_hour_equivalent() -> None:
    # 0.00002 an hour is 0.00016 per 8h, above the 0.0000926 break-even: the perpetual, though the
    # hourly figure itself is below it
    hourly = chooser(D("0.00002"), funding_interval_secs=3600).choose("BTC", PERP)
    assert hourly is not None and hourly.symbol == PERP and "perp funding 0.00016" in hourly.note
    eight_hourly = chooser(D("0.00002")).choose("BTC", PERP)
    assert eight_hourly is not None and eight_hourly.symbol == DEC


def test_the_choice_waits_while_a_quote_is_stale_or_the_funding_rate_missing() -> None:
    assert chooser(D("0.00005"), future_age_secs=STALE_SECS + 1).choose("BTC", PERP) is None
    assert chooser(None).choose("BTC", PERP) is None


def test_a_held_hedge_is_never_switched() -> None:
    on_perp = (Position(PERP, D("-0.5"), D(60_000), D(60_000)),)
    held = chooser(D("0.00005"), positions=on_perp).choose("BTC", PERP)
    assert held is not None and (held.symbol, held.note) == (PERP, "")
    on_dec = (Position(DEC, D("-0.5"), D(61_500), D(61_500)),)
    on_future = chooser(D("0.0001"), positions=on_dec).choose("BTC", DEC)
    assert on_future is not None and on_future.symbol == DEC


def test_an_asset_not_hedged_by_carry_keeps_its_hedge() -> None:
    kept = chooser(D("0.00005")).choose("ETH", "ETH/USDT:USDT")
    assert kept is not None and kept.symbol == "ETH/USDT:USDT"
