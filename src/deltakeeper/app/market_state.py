"""The bot's view of the market and the account, updated from streams and REST."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType

import structlog

from deltakeeper.domain.exposure import AssetDelta, Position, asset_deltas
from deltakeeper.domain.instruments import ZERO, Instrument, Kind, is_stable
from deltakeeper.domain.margin import coin_equity, coin_neutral_delta
from deltakeeper.domain.orders import Quote
from deltakeeper.domain.price_gate import PriceGate, Sample
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import Clock

log = structlog.get_logger("deltakeeper.market_state")


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
    price_symbols: dict[str, str]
    priced_by: dict[str, list[str]]
    """Symbol -> the assets it prices."""
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
    received_at: dict[str, float] = field(default_factory=dict)
    """Symbol -> monotonic wall time of the last quote's arrival."""
    account: AccountSnapshot | None = None
    clock: Clock | None = None
    """The time options are valued at (Black-76's time to expiry): the service's clock. Without one, an
    option position with no published delta raises OptionInputMissing, and options have no gamma."""
    gate: PriceGate = field(default_factory=PriceGate)
    """What a quote must pass to be applied (domain/price_gate.py)."""
    monotonic: Callable[[], float] = time.monotonic
    """The wall clock of quote arrivals (`received_at`, the gate's confirmation time)."""
    references: dict[str, Decimal] = field(default_factory=dict, init=False)
    """Symbol -> the earlier price that vouched for its latest quote (`Verdict.reference`): what the
    price collar compares the touch with."""
    _quotes: dict[str, Quote] = field(default_factory=dict, init=False, repr=False)
    _held: dict[str, Quote] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Symbol -> its latest quote held at a level a read could confirm."""
    _quotes_view: Mapping[str, Quote] = field(init=False, repr=False, compare=False)
    _quoted: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    """Symbols quoted since `deltas()` last looked at the prices."""
    _cache: _Deltas | None = field(default=None, init=False, repr=False, compare=False)
    _positions: tuple[AccountSnapshot, dict[str, Decimal]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self._quotes_view = MappingProxyType(self._quotes)

    @property
    def quotes(self) -> Mapping[str, Quote]:
        """Symbol -> its latest quote. Read-only: quotes come in through `on_quote`, which `deltas()`
        counts on."""
        return self._quotes_view

    def on_quote(self, quote: Quote) -> bool:
        """Apply a quote that the price gate accepts; a held one is logged (`quote_held`) and left out:
        no price, no age, no decision from it. Returns whether it was applied."""
        symbol = quote.symbol
        now = self.monotonic()
        sample = Sample(quote.mid, quote.mark, quote.index, now)
        verdict = self.gate.check(symbol, self._priced_as(symbol), sample)
        if not verdict.accepted:
            log.warning(
                "quote_held", symbol=symbol, reason=verdict.reason, bid=str(quote.bid), ask=str(quote.ask),
                mark=str(quote.mark), index=None if quote.index is None else str(quote.index),
                last_good=None if verdict.last_good is None else str(verdict.last_good),
            )
            if verdict.reason != "inconsistent":
                self._held[symbol] = quote
            return False
        if verdict.reason not in ("consistent", "first"):
            log.info("quote_confirmed", symbol=symbol, reason=verdict.reason, mid=str(quote.mid))
        self._apply(quote, verdict.reference, now)
        return True

    def held(self, symbol: str) -> bool:
        """Whether the market's quotes are held at a level that a read (`on_read`) could confirm."""
        return self.gate.holding(symbol)

    def vouched(self, symbol: str) -> bool:
        """Whether the market has a price its quotes are judged against: a quote accepted, or a read
        (`on_first_read`)."""
        return self.gate.last_good(symbol) is not None

    def on_first_read(self, read: Quote) -> None:
        """An independent read of a market not vouched for yet (`Exchange.fetch_quote`): its first quote
        is judged against it, never accepted on its own mark."""
        self.gate.seed(read.symbol, Sample(read.mid, read.mark, read.index, self.monotonic()))

    def on_read(self, read: Quote) -> bool:
        """An independent read of a market whose quotes are held (`Exchange.fetch_quote`): agreeing with
        the held level, it applies the latest held quote (`quote_confirmed`, returns True); contradicting
        it, the level stays held for good (`quote_contradicted`) until a read agrees."""
        symbol = read.symbol
        verdict = self.gate.vouch(symbol, read.mid)
        if verdict is None:
            return False
        if not verdict.accepted:
            log.warning("quote_contradicted", symbol=symbol, read_mid=str(read.mid),
                        last_good=None if verdict.last_good is None else str(verdict.last_good))
            return False
        quote = self._held.pop(symbol)
        log.info("quote_confirmed", symbol=symbol, reason=verdict.reason, mid=str(quote.mid))
        self._apply(quote, verdict.reference, self.monotonic())
        return True

    def _apply(self, quote: Quote, reference: Decimal, now: float) -> None:
        symbol = quote.symbol
        self._held.pop(symbol, None)
        self._quotes[symbol] = quote
        self._quoted.add(symbol)
        self.received_at[symbol] = now
        self.references[symbol] = reference

    def _priced_as(self, symbol: str) -> str | None:
        """What a market's price is a price of, for the gate to compare markets: `BASE/USD` for every market
        quoted in USD or a stablecoin (spot, perpetual, future), `BASE/QUOTE` for another quote, None for
        an option (its price is a premium) or an unknown market."""
        instrument = self.instruments.get(symbol)
        if instrument is None or instrument.kind is Kind.OPTION:
            return None
        quote = "USD" if is_stable(instrument.quote) else instrument.quote
        return f"{instrument.base}/{quote}"

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
        quote = self._quotes.get(symbol)
        if quote is None:
            return float("inf")
        return self.age_secs(quote, self.received_at[symbol], speed, now_ts)

    def age_secs(self, quote: Quote, received_at: float, speed: float, now_ts: float) -> float:
        """The age of `quote`, which arrived at `received_at` (this state's monotonic clock), by the rule of
        `quote_age_secs`."""
        return max(self.monotonic() - received_at, (now_ts - quote.ts.timestamp()) / speed)

    def price_usd(self, asset: str) -> Decimal | None:
        symbol = self.price_symbols.get(asset)
        quote = self._quotes.get(symbol) if symbol else None
        return quote.mark if quote else None

    def position_contracts(self, symbol: str) -> Decimal:
        """The account's signed position in `symbol` (its first one there), 0 without. Looked up by symbol,
        indexed once per account snapshot (snapshots are replaced, never mutated: `on_account`)."""
        account = self.account
        if account is None:
            return ZERO
        if self._positions is None or self._positions[0] is not account:
            by_symbol: dict[str, Decimal] = {}
            for position in account.positions:
                by_symbol.setdefault(position.symbol, position.contracts)
            self._positions = (account, by_symbol)
        return self._positions[1].get(symbol, ZERO)

    def deltas(self) -> dict[str, AssetDelta]:
        """Per-asset delta of the account plus external holdings, for every asset with a price.

        Incremental: while the account snapshot (replaced, never mutated: `on_account`), the external
        holdings, the instruments, the pricing markets and the set of priced assets stay the same, a new
        price only changes its asset's USD delta, so only the assets whose price object changed (of those
        priced by the markets quoted since the last call) are redone (options' assets always are).
        Anything else changing means a full `recompute_deltas`. Equal to it either way."""
        account = self.account
        if account is None:
            return {}
        cache = self._cache
        if (
            cache is None
            or cache.account is not account
            or cache.instruments is not self.instruments
            or cache.instrument_count != len(self.instruments)
            or cache.price_symbols != self.price_symbols
            or cache.external != self.external
        ):
            return dict(self._full(account, self._prices()).result)
        prices, result = cache.prices, cache.result  # the cache's own: callers get copies
        for symbol in self._quoted:
            price = self._quotes[symbol].mark
            for asset in cache.priced_by.get(symbol, ()):
                if price is prices.get(asset):
                    continue
                if asset not in prices:  # another asset is priced now
                    return dict(self._full(account, self._prices()).result)
                prices[asset] = price
                if asset in result and asset not in cache.volatile:
                    coin, gross = result[asset].delta_coin, result[asset].gross_coin
                    result[asset] = AssetDelta(asset, coin, coin * price, gross)
        self._quoted.clear()
        if cache.volatile:
            legs = cache.volatile
            fresh = asset_deltas(
                self.instruments,
                {a: q for a, q in cache.balances.items() if a.upper() in legs},
                [p for p in cache.positions
                 if self.instruments[p.symbol].base in legs or self.instruments[p.symbol].settle in legs],
                prices,
                {a: q for a, q in cache.external_priced.items() if a.upper() in legs},
                as_of=self._now(), skip_unpriced=True,
            )
            for asset in legs:
                if asset in fresh:
                    result[asset] = fresh[asset]
                else:
                    result.pop(asset, None)
            cache.result = result = {asset: result[asset] for asset in sorted(result)}
        return dict(result)

    def recompute_deltas(self) -> dict[str, AssetDelta]:
        """`deltas()` computed from scratch (and remembered for the next incremental call)."""
        if self.account is None:
            return {}
        return dict(self._full(self.account, self._prices()).result)

    def _now(self) -> datetime | None:
        return self.clock.now() if self.clock is not None else None

    def _prices(self) -> dict[str, Decimal]:
        """`price_usd` of every asset that has one."""
        quotes = self._quotes
        return {
            asset: quote.mark
            for asset, symbol in self.price_symbols.items()
            if symbol and (quote := quotes.get(symbol)) is not None
        }

    def _full(self, account: AccountSnapshot, prices: dict[str, Decimal]) -> _Deltas:
        self._cache = None
        self._quoted.clear()
        balances = {a: q for a, q in account.balances.items() if a in prices or is_stable(a)}
        external = {a: q for a, q in self.external.items() if a in prices}
        positions = [p for p in account.positions if p.symbol in self.instruments]
        result = asset_deltas(
            self.instruments, balances, positions, prices, external, as_of=self._now(), skip_unpriced=True
        )
        volatile: set[str] = set()
        for position in positions:
            instrument = self.instruments[position.symbol]
            if instrument.kind is Kind.OPTION:
                volatile.update((instrument.base, instrument.settle))
        priced_by: dict[str, list[str]] = {}
        for asset, symbol in self.price_symbols.items():
            if symbol:
                priced_by.setdefault(symbol, []).append(asset)
        self._cache = _Deltas(
            account=account, external=dict(self.external), instruments=self.instruments,
            instrument_count=len(self.instruments), price_symbols=dict(self.price_symbols),
            priced_by=priced_by, prices=prices, result=result, balances=balances,
            external_priced=external, positions=positions,
            volatile=frozenset(a for a in volatile if not is_stable(a)),
        )
        return self._cache


# -- coin-neutral assets ----------------------------------------------------------------------------


@dataclass
class CoinNeutralMarketState(MarketState):
    """A MarketState whose `deltas()` are coin-neutral for the assets in `coin_neutral`
    (`DK_ASSETS__<ASSET>__NEUTRAL=coin`, `domain.margin.coin_neutral_delta`): the account's coin equity in
    the asset (wallet, PnL and options' value settled in it) is not exposure. Other assets, and the
    default, are USD-neutral (REFERENCE 1.2)."""

    coin_neutral: frozenset[str] = field(default_factory=frozenset)

    def deltas(self) -> dict[str, AssetDelta]:
        return self._neutral(super().deltas())

    def recompute_deltas(self) -> dict[str, AssetDelta]:
        return self._neutral(super().recompute_deltas())

    def _neutral(self, deltas: dict[str, AssetDelta]) -> dict[str, AssetDelta]:
        account = self.account
        if account is None or not self.coin_neutral:
            return deltas
        positions = [p for p in account.positions if p.symbol in self.instruments]
        prices = self._prices()
        for asset in sorted(self.coin_neutral):
            price = prices.get(asset)
            if price is None:
                continue
            equity = coin_equity(asset, self.instruments, account.balances, positions, prices, self._now())
            delta = deltas.get(asset)
            if delta is None and equity == 0:
                continue
            deltas[asset] = coin_neutral_delta(delta or AssetDelta(asset, ZERO, ZERO, ZERO), equity, price)
        return deltas
