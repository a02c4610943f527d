"""The bot's view of the market and the account, updated from streams and REST."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from deltakeeper.domain.exposure import AssetDelta, Position, asset_deltas
from deltakeeper.domain.instruments import Instrument, Kind, is_stable
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import Clock


@dataclass
class _Deltas:
    """The last full computation of `MarketState.deltas` and what it was computed from.

    Only the account (its balances and positions, with their own marks), the external holdings and the
    set of priced assets decide an asset's delta in coins and its gross exposure; prices only turn coins
    into USD. The exception is options, whose delta comes from the price of their underlying and the time
    (Black-76, when the exchange published no delta) and whose gamma does: an asset with an option leg is
    `volatile`, recomputed every time."""

    account: AccountSnapshot
    external: dict[str, Decimal]
    instruments: dict[str, Instrument]
    instrument_count: int
    prices: dict[str, Decimal]
    result: dict[str, AssetDelta]
    balances: dict[str, Decimal]
    external_priced: dict[str, Decimal]
    positions: list[Position]
    volatile: frozenset[str]


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
    clock: Clock | None = None
    """The time options are valued at (Black-76's time to expiry): the Hedger's clock. Without one, an
    option position with no published delta raises OptionInputMissing, and options have no gamma."""
    _cache: _Deltas | None = field(default=None, init=False, repr=False, compare=False)

    def on_quote(self, quote: Quote) -> None:
        self.quotes[quote.symbol] = quote
        self.received_at[quote.symbol] = time.monotonic()

    def on_account(self, snapshot: AccountSnapshot) -> bool:
        """Keep only a strictly newer snapshot (by time, then by the exchange's `seq`), so that a late
        stream event never undoes a refresh."""
        if self.account is not None and (snapshot.ts, snapshot.seq) <= (self.account.ts, self.account.seq):
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
        """Per-asset delta of the account plus external holdings, for every asset with a price.

        Incremental: while the account snapshot (replaced, never mutated: `on_account`), the external
        holdings, the instruments and the set of priced assets stay the same, a new price only changes
        its asset's USD delta, so only the assets whose price object changed are redone (options' assets
        always are). Anything else changing means a full `recompute_deltas`. Equal to it either way."""
        account = self.account
        if account is None:
            return {}
        prices = self._prices()
        cache = self._cache
        if (
            cache is None
            or cache.account is not account
            or cache.instruments is not self.instruments
            or cache.instrument_count != len(self.instruments)
            or len(cache.prices) != len(prices)
            or cache.external != self.external
        ):
            return dict(self._full(account, prices).result)
        old_prices = cache.prices
        changed = [asset for asset, price in prices.items() if price is not old_prices.get(asset)]
        if any(asset not in old_prices for asset in changed):  # another asset is priced now
            return dict(self._full(account, prices).result)
        if not changed and not cache.volatile:
            return dict(cache.result)
        result = dict(cache.result)
        for asset in changed:
            if asset in result and asset not in cache.volatile:
                coin, gross = result[asset].delta_coin, result[asset].gross_coin
                result[asset] = AssetDelta(asset, coin, coin * prices[asset], gross)
        if cache.volatile:
            legs = cache.volatile
            fresh = asset_deltas(
                self.instruments,
                {a: q for a, q in cache.balances.items() if a.upper() in legs},
                [p for p in cache.positions
                 if self.instruments[p.symbol].base in legs or self.instruments[p.symbol].settle in legs],
                prices,
                {a: q for a, q in cache.external_priced.items() if a.upper() in legs},
                as_of=self._now(),
            )
            for asset in legs:
                if asset in fresh:
                    result[asset] = fresh[asset]
                else:
                    result.pop(asset, None)
            result = {asset: result[asset] for asset in sorted(result)}
        cache.prices = prices
        cache.result = result
        return dict(result)

    def recompute_deltas(self) -> dict[str, AssetDelta]:
        """`deltas()` computed from scratch (and remembered for the next incremental call)."""
        if self.account is None:
            return {}
        return dict(self._full(self.account, self._prices()).result)

    def _now(self) -> datetime | None:
        return self.clock.now() if self.clock is not None else None

    def _prices(self) -> dict[str, Decimal]:
        """`price_usd` of every asset that has one (inlined: this runs on every tick)."""
        quotes = self.quotes
        prices = {}
        for asset, symbol in self.price_symbols.items():
            quote = quotes.get(symbol) if symbol else None
            if quote is not None:
                prices[asset] = quote.mark
        return prices

    def _full(self, account: AccountSnapshot, prices: dict[str, Decimal]) -> _Deltas:
        self._cache = None
        balances = {a: q for a, q in account.balances.items() if a in prices or is_stable(a)}
        external = {a: q for a, q in self.external.items() if a in prices}
        positions = [p for p in account.positions if p.symbol in self.instruments]
        result = asset_deltas(self.instruments, balances, positions, prices, external, as_of=self._now())
        volatile: set[str] = set()
        for position in positions:
            instrument = self.instruments[position.symbol]
            if instrument.kind is Kind.OPTION:
                volatile.update((instrument.base, instrument.settle))
        self._cache = _Deltas(
            account=account, external=dict(self.external), instruments=self.instruments,
            instrument_count=len(self.instruments), prices=prices, result=result, balances=balances,
            external_priced=external, positions=positions,
            volatile=frozenset(a for a in volatile if not is_stable(a)),
        )
        return self._cache
