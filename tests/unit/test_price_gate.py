"""The price gate (domain/price_gate.py): absurd ticks are held, a genuine move is accepted once confirmed."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from deltakeeper.domain.price_gate import GateLimits, PriceGate, Sample

PERP = "SOL/USDT:USDT"
SPOT = "SOL/USDT"
LIMITS = GateLimits(jump_pct=D(10), confirm_secs=5.0, source_max_age_secs=15.0, confirm_quotes=3)


def at(price: D | int | str, secs: float, index: D | int | str | None = None) -> Sample:
    p = D(price)
    return Sample(mid=p, mark=p, index=None if index is None else D(index), at_secs=secs)


def gate_at(price: int = 136) -> PriceGate:
    gate = PriceGate(LIMITS)
    assert gate.check(PERP, "SOL", at(price, 0)).accepted
    return gate


@pytest.mark.parametrize("factor", [D(3), D(1000), D("0.001")])
def test_a_single_absurd_tick_is_held_and_the_next_normal_quote_is_accepted(factor: D) -> None:
    gate = gate_at(136)
    spike = gate.check(PERP, "SOL", at(136 * factor, 1))
    assert not spike.accepted and spike.reason == "jump unconfirmed"
    assert spike.last_good == 136
    assert gate.last_good(PERP) == 136
    after = gate.check(PERP, "SOL", at("136.2", 2))
    assert after.accepted and after.reason == "consistent" and after.reference == 136


@pytest.mark.parametrize("factor", [D(3), D(1000), D("0.001")])
def test_absurd_ticks_among_normal_ones_are_never_accepted_however_long_it_goes(factor: D) -> None:
    gate = gate_at(136)
    for step in range(1, 400):
        secs = step * 0.5
        if step % 2:
            assert not gate.check(PERP, "SOL", at(136 * factor, secs)).accepted, step
        else:
            assert gate.check(PERP, "SOL", at(136, secs)).accepted, step
    assert gate.last_good(PERP) == 136


def test_a_genuine_15_pct_gap_is_accepted_after_the_confirmation_time_and_quotes() -> None:
    gate = gate_at(136)
    new = D("156.4")  # +15 %
    verdicts = [gate.check(PERP, "SOL", at(new + D(step) / 10, 10 + step)) for step in range(7)]
    accepted = [v.accepted for v in verdicts]
    # held from 10 s to 14 s (5 s not yet passed), accepted at 15 s: the bound is confirm_secs
    assert accepted == [False, False, False, False, False, True, True]
    assert verdicts[5].reason == "confirmed"
    assert verdicts[5].reference == D("156.8")  # the previous confirming quote, not the tick itself
    assert verdicts[6].reason == "consistent"
    assert gate.last_good(PERP) == D("157.0")


def test_the_confirmation_needs_enough_quotes_as_well_as_the_time() -> None:
    gate = gate_at(136)
    assert not gate.check(PERP, "SOL", at(157, 10)).accepted
    assert not gate.check(PERP, "SOL", at(157, 20)).accepted  # 10 s, but 2 quotes
    assert gate.check(PERP, "SOL", at(157, 21)).accepted


def test_a_normal_quote_in_between_restarts_the_confirmation() -> None:
    gate = gate_at(136)
    assert not gate.check(PERP, "SOL", at(408, 1)).accepted
    assert not gate.check(PERP, "SOL", at(408, 2)).accepted
    assert gate.check(PERP, "SOL", at(136, 3)).accepted
    assert not gate.check(PERP, "SOL", at(408, 7)).accepted
    assert not gate.check(PERP, "SOL", at(408, 8)).accepted  # 3 held since 1 s, but not consecutive


def test_a_quote_whose_mark_or_index_disagrees_with_its_book_is_held_and_never_confirmed() -> None:
    gate = gate_at(136)
    for step in range(20):
        mark_off = Sample(mid=D(136), mark=D(408), index=None, at_secs=1 + step)
        assert gate.check(PERP, "SOL", mark_off).reason == "inconsistent"
    assert gate.check(PERP, "SOL", at(136, 30, index=136_000)).reason == "inconsistent"
    assert gate.check(PERP, "SOL", at(136, 31, index=137)).accepted


def test_a_jump_that_another_market_of_the_asset_agrees_with_is_accepted_at_once() -> None:
    gate = gate_at(136)
    assert gate.check(SPOT, "SOL", at(136, 1)).accepted
    assert not gate.check(SPOT, "SOL", at(157, 2)).accepted
    confirmed = [gate.check(PERP, "SOL", at(157, 2 + step)).accepted for step in range(7)]
    assert confirmed == [False] * 5 + [True, True]  # the spot moved too: it does not hold the perp back
    spot = gate.check(SPOT, "SOL", at("157.1", 9))
    assert spot.accepted and spot.reason == f"agrees_with:{PERP}" and spot.reference == 157


def test_a_quote_that_a_fresh_market_of_the_asset_contradicts_is_held_and_not_confirmed_by_itself() -> None:
    gate = gate_at(136)
    for step in range(30):  # the spot stays at 136 and fresh: the perp at 3x is never taken
        assert gate.check(SPOT, "SOL", at(136, step)).accepted
        assert not gate.check(PERP, "SOL", at(408, step)).accepted
    # with the spot silent past its freshness, persistence alone confirms the perp
    verdicts = [gate.check(PERP, "SOL", at(408, 45 + step)).accepted for step in range(6)]
    assert verdicts[-1]


def test_the_first_quote_of_a_market_is_checked_against_the_other_markets_of_its_asset() -> None:
    gate = PriceGate(LIMITS)
    assert gate.check(SPOT, "SOL", at(136, 0)).accepted
    first = gate.check(PERP, "SOL", at(136_000, 1))
    assert not first.accepted and first.reason == f"disagrees_with:{SPOT} unconfirmed"
    good = gate.check(PERP, "SOL", at("136.3", 2))
    assert good.accepted and good.reason == f"agrees_with:{SPOT}"
    lone = PriceGate(LIMITS).check("ETH/USDT:USDT", "ETH", at(3000, 0))
    assert lone.accepted and lone.reason == "first"  # nothing to compare with


def test_markets_of_other_assets_are_not_compared_and_an_option_only_with_itself() -> None:
    gate = gate_at(136)
    assert gate.check("BTC/USDT:USDT", "BTC", at(60_000, 1)).accepted
    option = "SOL/USDT:USDT-260626-150-C"
    # an option's index is its underlying's: not its price
    assert gate.check(option, None, Sample(D("2.5"), D("2.3"), D(136), 1)).accepted
    assert not gate.check(option, None, at("7.5", 2)).accepted  # 3x its own last good price


def test_a_non_positive_price_is_never_accepted() -> None:
    gate = PriceGate(LIMITS)
    for step in range(10):
        assert not gate.check(PERP, "SOL", at(0, step)).accepted


def test_a_read_that_agrees_with_the_held_level_accepts_the_latest_held_quote_at_once() -> None:
    gate = gate_at(136)
    assert gate.vouch(PERP, D(157)) is None  # nothing held: nothing to confirm
    assert not gate.check(PERP, "SOL", at("156.4", 1)).accepted
    assert not gate.check(PERP, "SOL", at("156.6", 2)).accepted
    assert gate.holding(PERP)
    verdict = gate.vouch(PERP, D("156.5"))
    assert verdict is not None and verdict.accepted and verdict.reason == "read"
    assert verdict.reference == D("156.5") and gate.last_good(PERP) == D("156.6")
    assert not gate.holding(PERP)


def test_a_read_that_contradicts_the_held_level_vetoes_it_until_a_read_agrees() -> None:
    gate = gate_at(136)
    assert not gate.check(PERP, "SOL", at(408, 1)).accepted
    verdict = gate.vouch(PERP, D("136.1"))
    assert verdict is not None and not verdict.accepted and verdict.reason == "read_contradicts"
    for step in range(2, 40):  # however long the stream stays there
        assert gate.check(PERP, "SOL", at(408, step)).reason == "jump vetoed"
    agreeing = gate.vouch(PERP, D(407))
    assert agreeing is not None and agreeing.accepted and gate.last_good(PERP) == 408
