"""Shadow mode (`DK_MODE=shadow`) as an exchange adapter: the real account and market are read through the
wrapped exchange, and nothing is ever sent to it. An order placed here raises `OrderNotSent`: the order
runner journals it cancelled with the reason `shadow mode`, beside the decision that asked for it, and the
decision ends there. Cancels are not sent either (there is nothing of ours to cancel)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

import structlog

from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.errors import OrderNotSent
from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.margin_tiers import MarginTier
from deltakeeper.domain.orders import Fill, FundingPayment, OrderRequest, OrderState, Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.venue_margin import VenueMargin
from deltakeeper.ports import AccountEvent, Exchange

log = structlog.get_logger("deltakeeper.shadow")

NOT_SENT_REASON = "shadow mode"


class ShadowExchange:
    """`ports.Exchange`: reads pass through to `inner`, orders and cancels are never sent."""

    def __init__(self, inner: Exchange) -> None:
        self.inner = inner
        self.name = inner.name

    async def load_instruments(self) -> dict[str, Instrument]:
        return await self.inner.load_instruments()

    async def fetch_account(self) -> AccountSnapshot:
        return await self.inner.fetch_account()

    def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        return self.inner.quotes(symbols)

    async def fetch_quote(self, symbol: str) -> Quote:
        return await self.inner.fetch_quote(symbol)

    def account_events(self) -> AsyncIterator[AccountEvent]:
        return self.inner.account_events()

    async def place_order(self, request: OrderRequest) -> OrderState:
        raise OrderNotSent(NOT_SENT_REASON)

    async def cancel_order(self, symbol: str, client_order_id: str) -> None:
        log.info("cancel_not_sent", symbol=symbol, client_order_id=client_order_id, reason=NOT_SENT_REASON)

    async def cancel_all_orders(self, symbol: str | None = None) -> None:
        log.info("cancel_all_not_sent", symbol=symbol, reason=NOT_SENT_REASON)

    async def fetch_open_orders(self) -> list[OrderState]:
        return await self.inner.fetch_open_orders()

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        return await self.inner.fetch_order(symbol, client_order_id)

    async def fetch_fills(self, since: datetime) -> list[Fill]:
        return await self.inner.fetch_fills(since)

    async def fetch_funding_payments(self, since: datetime) -> list[FundingPayment]:
        return await self.inner.fetch_funding_payments(since)

    async def fetch_order_book(self, symbol: str, depth: int) -> tuple[list[BookLevel], list[BookLevel]]:
        return await self.inner.fetch_order_book(symbol, depth)

    async def fetch_leverage_tiers(self, symbols: Sequence[str]) -> dict[str, tuple[MarginTier, ...]]:
        return await self.inner.fetch_leverage_tiers(symbols)

    async def fetch_account_margin(self) -> VenueMargin:
        return await self.inner.fetch_account_margin()

    async def close(self) -> None:
        await self.inner.close()
