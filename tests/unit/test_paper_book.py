"""The venue's book as the Exchange port gives it (sizes in coins), back in contracts for the paper engine."""

from __future__ import annotations

from decimal import Decimal

import pytest

from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.errors import OrderRejected
from deltakeeper.sim.markets import default_instruments
from deltakeeper.sim.paper import book_contracts

MARKETS = default_instruments()


def test_an_inverse_level_comes_back_as_its_whole_contracts() -> None:
    inverse = MARKETS["SOL/USD:SOL"]  # 1 USD a contract: 1 contract at 136.57 is 0.0073222... SOL
    price = Decimal("136.57")
    levels = [BookLevel(price, inverse.delta_coin(Decimal(1), price)),  # x 136.57 = 0.99999...
              BookLevel(price + 1, inverse.delta_coin(Decimal(500), price + 1))]
    assert book_contracts(inverse, levels) == [(price, Decimal(1)), (price + 1, Decimal(500))]


def test_a_linear_level_is_its_coins_over_the_contract_size_and_an_empty_one_is_dropped() -> None:
    linear = MARKETS["SOL/USDT:USDT"]  # lot step 0.1
    levels = [BookLevel(Decimal("100"), Decimal("12.3")), BookLevel(Decimal("99.9"), Decimal("0.01"))]
    assert book_contracts(linear, levels) == [(Decimal("100"), Decimal("12.3"))]


@pytest.mark.parametrize("level", [
    BookLevel(Decimal("NaN"), Decimal(1)),
    BookLevel(Decimal(1), Decimal("Inf")),
    BookLevel(Decimal(0), Decimal(1)),
])
def test_a_book_with_a_non_finite_or_non_positive_price_is_refused(level: BookLevel) -> None:
    with pytest.raises(OrderRejected, match="live book"):
        book_contracts(MARKETS["SOL/USDT:USDT"], [level])
