"""The ports between the application and the outside world (DESIGN.md 2)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.journal_rows import (
    ControlEventRow,
    DecisionRow,
    FillRow,
    FundingRow,
    JournalQuery,
    OrderRow,
    SnapshotRow,
)
from deltakeeper.domain.margin_tiers import MarginTier
from deltakeeper.domain.orders import Fill, FundingPayment, OrderRequest, OrderState, Quote
from deltakeeper.domain.records import AccountSnapshot, ControlState, DecisionRecord, OrderRecord
from deltakeeper.domain.venue_margin import VenueMargin

AccountEvent = Fill | FundingPayment | OrderState | AccountSnapshot


class Clock(Protocol):
    speed: float
    """Simulated seconds per wall-clock second: 1 live."""

    def now(self) -> datetime:
        """Timezone-aware UTC time: the wall clock live, the simulated clock on the simulator."""
        ...


class Exchange(Protocol):
    """An exchange account. Adapters translate their wire formats and errors into domain values and
    `deltakeeper.domain.errors`; nothing exchange-specific crosses this port."""

    name: str

    async def load_instruments(self) -> dict[str, Instrument]: ...

    async def fetch_account(self) -> AccountSnapshot: ...

    def quotes(self, symbols: Sequence[str]) -> AsyncIterator[Quote]:
        """Quotes for `symbols` as they change, forever (reconnecting inside the adapter)."""
        ...

    async def fetch_quote(self, symbol: str) -> Quote:
        """The market's quote read now by REST, apart from the stream: what confirms or contradicts a quote
        the price gate holds."""
        ...

    def account_events(self) -> AsyncIterator[AccountEvent]:
        """Fills, funding payments, order updates and account snapshots as they happen."""
        ...

    async def place_order(self, request: OrderRequest) -> OrderState:
        """Raises OrderRejected (definitive), RateLimited (refused, may resend with the same client id)
        or OrderOutcomeUnknown (settle with fetch_order)."""
        ...

    async def cancel_order(self, symbol: str, client_order_id: str) -> None: ...

    async def cancel_all_orders(self, symbol: str | None = None) -> None: ...

    async def fetch_open_orders(self) -> list[OrderState]: ...

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None: ...

    async def fetch_fills(self, since: datetime) -> list[Fill]: ...

    async def fetch_funding_payments(self, since: datetime) -> list[FundingPayment]: ...

    async def fetch_order_book(self, symbol: str, depth: int) -> tuple[list[BookLevel], list[BookLevel]]:
        """(bids, asks), best first, at most `depth` levels each; sizes in coins of the base asset."""
        ...

    async def fetch_leverage_tiers(self, symbols: Sequence[str]) -> dict[str, tuple[MarginTier, ...]]:
        """The exchange's maintenance margin table of each of the futures `symbols` it publishes one for,
        on the USD notional (an inverse contract's USD face), ascending; symbols without are left out."""
        ...

    async def fetch_account_margin(self) -> VenueMargin:
        """The account's margin mode (standard, unified, portfolio) and the exchange's own maintenance
        margin ratio, read now; mode UNKNOWN where the adapter cannot read them on this exchange. Raises
        ExchangeUnavailable (or RateLimited) when the read fails: never a guessed mode."""
        ...

    async def close(self) -> None: ...


class Journal(Protocol):
    """The durable record of everything the bot decided and the exchange did. A call not done within
    DK_JOURNAL_TIMEOUT_SECS raises JournalUnavailable, and keeps nothing of itself."""

    async def record_decision(
        self, decision: DecisionRecord, pending_order: OrderRecord | None = None
    ) -> None:
        """Store a decision, with the order it is about to send (PENDING) in the same transaction."""
        ...

    async def record_order(self, order: OrderRecord) -> None:
        """Insert an order (PENDING, before it is sent) or replace its state by client order id."""
        ...

    async def update_order(self, state: OrderState) -> None:
        """Apply an exchange's view of an order, matched by client order id, else exchange order id.
        Raises ForeignOrder for an order with our client-id prefix that the journal did not create."""
        ...

    async def unknown_client_ids(self, client_order_ids: Collection[str]) -> set[str]:
        """Those of `client_order_ids` that no journaled order carries."""
        ...

    async def record_fills(self, fills: Sequence[Fill]) -> int:
        """Store fills once each (unique on symbol and trade id); returns how many were new."""
        ...

    async def record_funding(self, payments: Sequence[FundingPayment]) -> int:
        """Store payments once each (unique on payment id); returns how many were new."""
        ...

    async def record_snapshot(
        self, ts: datetime, deltas: Mapping[str, AssetDelta], trading_state: str
    ) -> None: ...

    async def open_orders(self) -> list[OrderRecord]:
        """Orders whose final state the journal does not know yet."""
        ...

    async def last_fill_ts(self) -> datetime | None: ...

    async def last_funding_ts(self) -> datetime | None: ...

    async def traded_usd_since(self, since: datetime) -> Decimal: ...

    async def control_state(self) -> ControlState: ...

    async def set_control_state(self, state: ControlState) -> None: ...

    async def close(self) -> None: ...


class JournalReader(Protocol):
    """The journal read back, for people: rows oldest first, selected by a JournalQuery (every row
    without). Reads only: nothing is created or changed."""

    async def fills(self, query: JournalQuery = ...) -> list[FillRow]: ...

    async def funding(self, query: JournalQuery = ...) -> list[FundingRow]: ...

    async def orders(self, query: JournalQuery = ...) -> list[OrderRow]:
        """Ordered by `created_ts`; `since` and `until` select on it."""
        ...

    async def decisions(self, query: JournalQuery = ...) -> list[DecisionRow]: ...

    async def control_events(self, query: JournalQuery = ...) -> list[ControlEventRow]:
        """Halts, resumes and cancel-all requests."""
        ...

    async def latest_snapshots(self) -> list[SnapshotRow]:
        """Per asset its latest snapshot."""
        ...

    async def latest_decisions(self, before: datetime | None = None, asset: str | None = None
                               ) -> list[DecisionRow]:
        """Per asset its latest decision (before `before`, exclusive; only `asset`'s)."""
        ...

    async def control_state(self) -> ControlState: ...

    async def close(self) -> None: ...


class Alerts(Protocol):
    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        """Never raises and never blocks trading: delivery happens in the background. `subject`: the
        asset or market the alert is about (its repeats are counted apart from another's)."""
        ...
