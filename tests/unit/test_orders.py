import itertools
import re
from decimal import Decimal as D

import pytest

from deltakeeper.domain.orders import Side, client_order_id, is_ours, to_base36

ALNUM = re.compile(r"[A-Za-z0-9]+")


def test_to_base36_uses_digits_then_lowercase_letters():
    assert to_base36(0) == "0"
    assert to_base36(9) == "9"
    assert to_base36(10) == "a"
    assert to_base36(35) == "z"
    assert to_base36(36) == "10"
    assert to_base36(1_295) == "zz"


def test_to_base36_round_trips_through_int():
    around_powers = [36**k + d for k in range(1, 13) for d in (-1, 0, 1)]
    for number in (0, 1, 37, 123_456_789, 2**63 - 1, 7_000_000_000_000_000, *range(3000), *around_powers):
        digits = to_base36(number)
        assert int(digits, 36) == number
        assert digits == "0" or not digits.startswith("0")


def test_to_base36_rejects_negative_numbers():
    with pytest.raises(ValueError):
        to_base36(-1)


def test_client_order_id_starts_with_dk_and_is_letters_and_digits():
    cid = client_order_id(123_456)
    assert cid.startswith("dk")
    assert ALNUM.fullmatch(cid)
    assert cid == "dk" + to_base36(123_456) + "a" + "0"


def test_client_order_id_fits_32_chars_for_large_ids_and_slices():
    # decision ids are milliseconds x 4096 + a sequence: far below 2**63
    for decision_id in (2**63 - 1, 2**64 - 1, 7_123_456_789_012_345):
        for leg, slice_no in ((0, 0), (25, 999_999), (3, 10**9)):
            cid = client_order_id(decision_id, leg, slice_no)
            assert len(cid) <= 32
            assert ALNUM.fullmatch(cid)


def test_client_order_id_refuses_an_id_over_32_chars():
    with pytest.raises(ValueError, match="too long"):
        client_order_id(36**40)


@pytest.mark.parametrize(("leg", "slice_no"), [(-1, 0), (26, 0), (0, -1)])
def test_client_order_id_rejects_legs_and_slices_it_cannot_encode(leg, slice_no):
    with pytest.raises(ValueError):
        client_order_id(1, leg, slice_no)


def test_client_order_id_is_unique_per_decision_leg_and_slice():
    decisions = [*range(400), *range(7_000_000_000_000_000, 7_000_000_000_000_050)]
    seen: dict[str, tuple[int, int, int]] = {}
    for key in itertools.product(decisions, range(3), (0, 1, 9, 10, 35, 36, 360, 371, 1_000)):
        cid = client_order_id(*key)
        assert cid not in seen, (cid, key, seen[cid])
        seen[cid] = key


def test_client_order_id_does_not_collide_across_decisions_ending_in_a_letter():
    # decision 46 is "1a" in base 36: "1a" + leg a + slice 0 must differ from decision 1, leg a, slice "a0"
    assert client_order_id(46, 0, 0) != client_order_id(1, 0, 360)
    assert client_order_id(10, 0, 0) != client_order_id(0, 0, 10 * 36 + 0)


def test_client_order_id_differs_by_leg_and_by_slice():
    ids = {client_order_id(42, leg, slice_no) for leg in range(26) for slice_no in range(5)}
    assert len(ids) == 26 * 5


def test_is_ours_recognises_our_prefix_only():
    assert is_ours(client_order_id(99, 1, 2))
    assert not is_ours(None)
    assert not is_ours("")
    assert not is_ours("web-123")
    assert not is_ours("x-dk123")


def test_side_for_signed_buys_positive_and_sells_negative_amounts():
    assert Side.for_signed(D("0.001")) is Side.BUY
    assert Side.for_signed(D("-3")) is Side.SELL
    assert Side.BUY.sign == 1
    assert Side.SELL.sign == -1
