"""The bot's view of the market and the account, updated from streams and REST."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from deltakeeper.domain.exposure import AssetDelta, asset_deltas
from deltakeeper.domain.instruments import Instrument, is_stable
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.records import AccountSnapshot


@dataclass
class MarketState:
    instruments: dict[str, Instrument]
    external: Mapping[str, Decimal] = field(default_factory=dict)
    price_symbols: dict[str, str] = field(default_factory=dict)
    """Asset -> the instrument whose mark prices it in USD."""
    quotes: dict[str, Quote] = field(default_factory=dict)
    received_at: dict[str, float] = field(default_factory=dict)
    """Symbol -> monotonic wall time of the last quote's arrival."""
    account: AccountSnapshot | None = None

    def on_quote(self, quote: Quote) -> None:
        self.quotes[quote.symbol] = quote
        self.received_at[quote.symbol] = time.monotonic()

    def on_account(self, snapshot: AccountSnapshot) -> bool:
        """Keep only a strictly newer snapshot, so that a late stream event never undoes a refresh."""
        if self.account is not None and snapshot.ts <= self.account.ts:
            return False
        self.account = snapshot
        return True

    def quote_age_secs(self, symbol: str, speed: float, now_ts: float) -> float:
        """Wall seconds since the quote arrived, or since the exchange stamped it (scaled by the
        simulator's speed), whichever is older. Infinite when there is no quote."""
        quote = self.quotes.get(symbol)
        if quote is None:
            return float("inf")
        arrived = time.monotonic() - self.received_at[symbol]
        stamped = (now_ts - quote.ts.timestamp()) / speed
        return max(arrived, stamped)

    def price_usd(self, asset: str) -> Decimal | None:
        symbol = self.price_symbols.get(asset)
        quote = self.quotes.get(symbol) if symbol else None
        return quote.mark if quote else None

    def deltas(self) -> dict[str, AssetDelta]:
        """Per-asset delta of the account plus external holdings, for every asset with a price."""
        if self.account is None:
            return {}
        prices = {asset: p for asset in self.price_symbols if (p := self.price_usd(asset)) is not None}
        balances = {a: q for a, q in self.account.balances.items() if a in prices or is_stable(a)}
        external = {a: q for a, q in self.external.items() if a in prices}
        positions = [p for p in self.account.positions if p.symbol in self.instruments]
        return asset_deltas(self.instruments, balances, positions, prices, external)
