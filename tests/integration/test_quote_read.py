"""`Exchange.fetch_quote`, the price gate's confirmation read, through real ccxt against the Bybit emulator:
a ticker by REST for spot, linear and inverse markets, and a failed read is an error, never a quote."""

from __future__ import annotations

from decimal import Decimal

import pytest
from tests.integration.test_ccxt_exchange import set_faults

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.sim.bybit.server import RunningServer

pytestmark = pytest.mark.timeout(90)


async def test_a_quote_is_read_by_rest_for_spot_linear_and_inverse(exchange: CcxtExchange) -> None:
    reads = {s: await exchange.fetch_quote(s) for s in ("BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC")}
    for symbol, read in reads.items():
        assert read.symbol == symbol and 0 < read.bid <= read.ask
        assert read.bid <= read.mark * Decimal("1.01") and read.mark <= read.ask * Decimal("1.01")
    spot, perp = reads["BTC/USDT"].mid, reads["BTC/USDT:USDT"].mid
    assert abs(perp / spot - 1) < Decimal("0.01")  # one market, one price


async def test_a_failed_read_is_an_error_not_a_quote(emulator: RunningServer, exchange: CcxtExchange) -> None:
    await set_faults(emulator, server_error=1)
    with pytest.raises(ExchangeUnavailable):
        await exchange.fetch_quote("BTC/USDT:USDT")
