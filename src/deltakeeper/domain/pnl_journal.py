"""The journal's rows as the PnL attribution (`domain.pnl`) reads them: fills and funding payments, every
price the journal knows per asset, the hedge positions walked forward through the fills, and the exposure
being hedged. Values derived by division are rounded to 1e-10 (`rounded`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

from deltakeeper.domain.average_entry import fill_position, realised_pnl

Row = Mapping[str, Any]
QUANTUM = Decimal("1e-10")
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Market:
    """What a ccxt unified symbol says: `BTC/USDT:USDT` linear, `BTC/USD:BTC` inverse, `BTC/USDT` spot."""

    base: str
    settle: str
    inverse: bool
    option: bool = False
    """`BASE/QUOTE:SETTLE-YYMMDD-STRIKE-C` (or `-P`): priced by its premium, not the asset's price."""


def market_of(symbol: str) -> Market:
    pair, _, settle_part = symbol.partition(":")
    base, _, quote = pair.partition("/")
    base = base.upper()
    parts = settle_part.split("-")
    settle = parts[0].upper() if settle_part else quote.upper()
    option = len(parts) == 4 and parts[3].upper() in ("C", "P")
    return Market(base=base, settle=settle, inverse=bool(settle_part) and settle == base and not option,
                  option=option)


def decimal_of(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def utc_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def rounded(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM)


@dataclass(frozen=True, slots=True)
class JournalFill:
    ts: datetime
    symbol: str
    market: Market
    sign: int  # +1 buy, -1 sell
    price: Decimal
    notional_usd: Decimal
    fee: Decimal
    fee_currency: str
    reference_price: Decimal | None
    contracts: Decimal = ZERO
    """`amount_contracts`: counts an option's position (its `notional_usd / contracts` the USD premium per
    contract); not read for futures and spot, sized from `notional_usd / price`."""
    delivery: bool = False
    """The exchange closed the expired contract at its settlement price (the fill row's `kind`): a
    realised PnL event like any closing fill; an option that expired worthless is priced 0."""
    traded: bool = True
    """A fill of kind `trade` (the row's `kind`, `trade` where absent): a liquidation or a delivery is the
    exchange's close, no part of the traded volume."""


@dataclass(frozen=True, slots=True)
class JournalPayment:
    ts: datetime
    asset: str
    amount: Decimal
    currency: str


def journal_fills(rows: Iterable[Row], references: Mapping[str, Decimal]) -> list[JournalFill]:
    out = []
    for row in rows:
        market = market_of(row["symbol"])
        side = str(row["side"]).lower()
        if side not in ("buy", "sell"):
            raise ValueError(f"fill {row.get('trade_id')}: side {row['side']!r} is neither buy nor sell")
        client_order_id = row.get("client_order_id")
        out.append(JournalFill(
            ts=utc_time(row["ts"]),
            symbol=row["symbol"],
            market=market,
            sign=1 if side == "buy" else -1,
            price=decimal_of(row["price"]),
            notional_usd=abs(decimal_of(row["notional_usd"])),
            fee=decimal_of(row["fee"]),
            fee_currency=(row.get("fee_currency") or market.settle).upper(),
            reference_price=references.get(client_order_id) if client_order_id else None,
            contracts=abs(decimal_of(row["amount_contracts"])),
            delivery=row.get("kind") == "delivery",
            traded=row.get("kind", "trade") == "trade",
        ))
    out.sort(key=lambda f: f.ts)
    return out


def journal_payments(rows: Iterable[Row]) -> list[JournalPayment]:
    out = []
    for row in rows:
        market = market_of(row["symbol"])
        out.append(JournalPayment(ts=utc_time(row["ts"]), asset=market.base, amount=decimal_of(row["amount"]),
                            currency=(row.get("currency") or market.settle).upper()))
    return out


# -- prices ---------------------------------------------------------------------------------------------


class PriceHistory:
    """Every price the journal knows per asset, in time order: decisions' `price_usd` and fill prices."""

    def __init__(self, decisions: Iterable[Row], fills: Iterable[JournalFill]) -> None:
        points: dict[str, list[tuple[datetime, int, Decimal]]] = defaultdict(list)
        for row in decisions:
            price = row.get("price_usd")
            if price is not None and decimal_of(price) > 0:
                points[str(row["asset"]).upper()].append((utc_time(row["ts"]), 0, decimal_of(price)))
        for fill in fills:
            if fill.price > 0 and not fill.market.option:  # an option's price is its premium
                points[fill.market.base].append((fill.ts, 1, fill.price))  # a fill wins a tie
        self._times: dict[str, list[datetime]] = {}
        self._prices: dict[str, list[Decimal]] = {}
        for asset, asset_points in points.items():
            asset_points.sort(key=lambda p: (p[0], p[1]))
            self._times[asset] = [p[0] for p in asset_points]
            self._prices[asset] = [p[2] for p in asset_points]

    def times(self, asset: str) -> list[datetime]:
        return self._times.get(asset, [])

    def prices(self, asset: str) -> list[Decimal]:
        return self._prices.get(asset, [])

    def last_before(self, asset: str, end: datetime | None) -> Decimal | None:
        """The last price strictly before `end` (None: the last of all)."""
        prices = self._prices.get(asset)
        if not prices:
            return None
        index = len(prices) if end is None else bisect_left(self._times[asset], end)
        return prices[index - 1] if index else None

    def nearest(self, asset: str, at: datetime) -> Decimal | None:
        times = self._times.get(asset)
        if not times:
            return None
        index = bisect_left(times, at)
        candidates = [i for i in (index - 1, index) if 0 <= i < len(times)]
        best = min(candidates, key=lambda i: abs(times[i] - at))
        return self._prices[asset][best]


# -- positions ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class HedgePosition:
    """One instrument's hedge position. Linear: `size` in coins, PnL from cash; inverse: `size` in USD
    face, PnL in coin converted at the time; option: `size` in contracts at a USD premium per contract (a
    coin premium at the coin's price at the fill, as its `notional_usd`), PnL from cash, an open position
    marked at its last fill's premium (the journal knows no other), no coins of the asset."""

    inverse: bool
    option: bool = False
    size: Decimal = ZERO
    entry: Decimal = ZERO
    cash_usd: Decimal = ZERO  # linear: notional received on sells less paid on buys
    realised_usd: Decimal = ZERO
    last_price_usd: Decimal = ZERO  # option: the USD premium per contract of its last fill

    def apply(self, fill: JournalFill) -> None:
        """Add a fill. A delivery is a fill like any other (its side, its amount) at the settlement price,
        realising the PnL of what it closes: an option that expired worthless at 0. Never `-size`: the
        journal may lack part of the position, and the cash moves by the delivered amount."""
        price = fill.price
        if self.option:
            if fill.contracts <= 0:
                raise ValueError(f"fill of {fill.symbol} at {fill.ts.isoformat()} has no contracts")
            price = self.last_price_usd = fill.notional_usd / fill.contracts
        if price < 0 or (price == 0 and not (self.option and fill.delivery)):
            raise ValueError(f"fill of {fill.symbol} at {fill.ts.isoformat()} has no price")
        if self.option:
            change = fill.sign * fill.contracts
        elif self.inverse:
            change = fill.sign * fill.notional_usd
        else:
            change = rounded(fill.sign * fill.notional_usd / price)
        if not self.inverse:
            self.cash_usd -= fill.sign * fill.notional_usd
        filled = fill_position(self.size, self.entry, change, price, inverse=self.inverse, quantum=QUANTUM)
        if filled.closed:
            pnl = realised_pnl(filled.closed, self.entry, price, inverse=self.inverse)
            self.realised_usd += rounded(pnl * price if self.inverse else pnl)  # inverse: in coin
        self.size, self.entry = filled.size, filled.entry

    def pnl_usd(self, mark: Decimal | None) -> Decimal:
        """Hedge PnL since the first fill: realised plus the open position marked at `mark`."""
        if self.inverse:
            if self.size == 0 or mark is None:
                return self.realised_usd
            return self.realised_usd + rounded(self.size * (mark / self.entry - 1))
        if self.option:
            return self.cash_usd + rounded(self.size * self.last_price_usd)
        if self.size == 0 or mark is None:  # a fill's own price is known, so mark is None only when flat
            return self.cash_usd
        return self.cash_usd + self.size * mark

    def coins(self, mark: Decimal | None) -> Decimal:
        if self.option:
            return ZERO
        if not self.inverse:
            return self.size
        if self.size == 0 or mark is None:
            return ZERO
        return rounded(self.size / mark)


# -- attribution ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class HedgeBook:
    """One asset's positions, walked forward through its fills."""

    fills: list[JournalFill]
    positions: dict[str, HedgePosition] = field(default_factory=dict)
    applied: int = 0

    def advance(self, end: datetime | None) -> None:
        """Apply every fill strictly before `end` (None: all)."""
        while self.applied < len(self.fills) and (end is None or self.fills[self.applied].ts < end):
            fill = self.fills[self.applied]
            position = self.positions.setdefault(fill.symbol, HedgePosition(inverse=fill.market.inverse,
                                                                              option=fill.market.option))
            position.apply(fill)
            self.applied += 1

    def state(self, mark: Decimal | None) -> tuple[Decimal, Decimal, Decimal]:
        """(hedge PnL since the first fill, realised PnL since the first fill, position in coins)."""
        pnl = sum((p.pnl_usd(mark) for p in self.positions.values()), ZERO)
        realised = sum((p.realised_usd for p in self.positions.values()), ZERO)
        coins = sum((p.coins(mark) for p in self.positions.values()), ZERO)
        return rounded(pnl), realised, coins


@dataclass(frozen=True, slots=True)
class Exposure:
    """One asset's exposure being hedged (see "Exposure" in the module's docstring): the holding inferred
    at each decision, and its value change summed over the steps between known prices."""

    decision_times: list[datetime]
    holdings_coin: list[Decimal]
    step_times: list[datetime]
    cumulative_pnl_usd: list[Decimal]

    def coin(self, end: datetime | None) -> Decimal:
        """The exposure at the last decision strictly before `end` (None: the last of all)."""
        index = len(self.decision_times) if end is None else bisect_left(self.decision_times, end)
        return self.holdings_coin[index - 1] if index else ZERO

    def pnl_usd(self, end: datetime | None) -> Decimal:
        """Its value change from the first known price to the last strictly before `end`."""
        index = len(self.step_times) if end is None else bisect_left(self.step_times, end)
        return self.cumulative_pnl_usd[index - 1] if index else ZERO


def exposure_of(asset: str, decisions: Sequence[tuple[datetime, Decimal, Decimal]], fills: list[JournalFill],
              prices: PriceHistory) -> Exposure:
    """From the asset's (time, delta_coin, price_usd) decisions in time order and its hedge fills."""
    book = HedgeBook(fills)
    holdings = []
    for ts, delta_coin, price in decisions:
        book.advance(ts)
        holdings.append(delta_coin - book.state(price)[2])
    decision_times = [ts for ts, _, _ in decisions]
    points = list(zip(prices.times(asset), prices.prices(asset), strict=True))
    steps, cumulative, total = [], [], ZERO
    for (start, start_price), (end, end_price) in pairwise(points):
        held = bisect_right(decision_times, start)
        if held:
            total += rounded(holdings[held - 1] * (end_price - start_price))
        steps.append(end)
        cumulative.append(total)
    return Exposure(decision_times, holdings, steps, cumulative)
