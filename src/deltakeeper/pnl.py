"""PnL attribution of the hedge, per asset and period, from the journal alone (`deltakeeper journal pnl`).

Every figure is in USD and comes from the journal's rows: fills, funding payments, orders (for the
decision's reference price) and decisions (for prices). Nothing is asked of the exchange.

Columns (CSV and JSON, in this order; JSON money as decimal strings, counts as numbers):

| column | meaning |
|---|---|
| `period` | `all` with `--by asset`; the UTC day (`YYYY-MM-DD`) with `--by day` |
| `asset` | the base coin of the hedge instrument (`SOL` for `SOL/USDT:USDT`); `TOTAL` on the last row |
| `fills` | fills in the period |
| `traded_usd` | their notional, `notional_usd` of the fill rows |
| `position_coin` | the open hedge position at the end of the period, in coins (inverse: face / mark) |
| `mark_price_usd` | the price it and the exposure are marked at (see "Marking") |
| `realised_pnl_usd` | trading PnL realised by closing fills, against the position's average entry |
| `marked_pnl_usd` | the change of the open position's unrealised PnL over the period |
| `hedge_pnl_usd` | `realised_pnl_usd + marked_pnl_usd`: the hedge's trading PnL at the prices it really got |
| `slippage_usd` | fill price against the decision's reference price, positive when worse (a cost) |
| `market_pnl_usd` | `hedge_pnl_usd + slippage_usd`: what the hedge would have made at the reference prices |
| `fees_usd` | trading fees paid (negative for rebates) |
| `funding_paid_usd` | funding payments paid, as a positive number |
| `funding_received_usd` | funding payments received |
| `hedging_cost_usd` | the net cost of staying hedged: `fees + funding_paid - funding_received + slippage` |
| `total_usd` | `hedge_pnl - fees - funding_paid + funding_received` = `market_pnl - hedging_cost` |
| `unpriced_rows` | fees or payments in a coin with no known price, counted as 0 (normally 0) |
| `exposure_coin` | the exposure being hedged at the end of the period, in coins (see "Exposure") |
| `exposure_pnl_usd` | the change of that exposure's value over the period: what the hedge offsets |
| `net_pnl_usd` | `exposure_pnl_usd + total_usd`: the hedged holding's result, hedge and costs included |

In the last two lines `fees` stands for `fees_usd`, and so on.

How the numbers reconcile: on every row `hedge_pnl_usd = realised_pnl_usd + marked_pnl_usd`,
`market_pnl_usd = hedge_pnl_usd + slippage_usd` and `total_usd = market_pnl_usd - hedging_cost_usd`, exactly;
`fees_usd` is the sum of the period's fill fees and `funding_received_usd - funding_paid_usd` the sum of its
payments' `amount` (in USD); the `TOTAL` row is the sum of the rows above it, and with `--by day` the days
add up to the same totals as `--by asset`.

The net cost of staying hedged is what hedging took from the account besides the market move the hedge
was there to offset: fees, funding paid less funding received, and slippage against the price the decision
saw. `market_pnl_usd` is the part that offsets the hedged holding's own move (a short hedge loses when the
coin rises and the holding gains); the bot's result is the holding's PnL plus `total_usd`: `net_pnl_usd`.

Exposure: a decision's `delta_coin` is the delta of everything held, hedge included; the exposure being
hedged is that less the hedge position of the journal's fills before the decision (a hedge opened before
the journal's first fill counts as exposure). It is held from one decision to the next, and valued at the
same prices as the hedge (decisions' and fills' prices, the position marked as in "Marking"): over each
step between two known prices it gains `exposure_coin x (price - previous price)`. So with a full hedge
`exposure_pnl_usd + hedge_pnl_usd` is near zero, and `net_pnl_usd` is what the costs and the residual
delta left. Decisions without a `delta_coin` leave the exposure unknown (0).

Units and assumptions:

- Money in a stablecoin (USDT, USDC, USD, ...) counts as USD. A fee in a coin is converted at that fill's
  price when the coin is the fill's base, else at the coin's nearest known price in time; a funding payment
  in a coin at the coin's nearest known price (decisions' `price_usd` and fill prices, before or after).
  A fee or payment with no currency is in the instrument's settle currency.
- Sizes come from `notional_usd` of the fill rows, never from `amount_contracts` (whose meaning depends on
  the contract size): a linear fill (spot, or a ccxt symbol `BASE/QUOTE:SETTLE` with SETTLE not BASE) trades
  `notional_usd / price` coins; an inverse fill (SETTLE is BASE, e.g. `BTC/USD:BTC`) trades `notional_usd`
  of USD face (contracts x face value), i.e. `notional_usd / price` coins at its price. On the simulator's
  linear markets the contract size is 1, so this is `amount_contracts` coins.
- Linear PnL is in USD: the hedge PnL is the cash of the fills (`notional_usd` received on sells, paid on
  buys) plus the open position marked at the mark price. Inverse PnL is in coin (REFERENCE 1.2): a long of
  face N from entry S0 earns N (1/S0 - 1/S1) coins; realised coin PnL is converted at the closing fill's
  price, unrealised at the mark price. Average entries: arithmetic in price for linear, harmonic for inverse.
- Marking: the open position of an asset is marked at the last price the journal knows before the period's
  end, the later of the latest decision's `price_usd` for that asset and the latest fill price of the
  asset's instruments (a fill wins a tie). With `--since`, the position held at that time (from every earlier
  fill) is marked at the last price before it, so a period's PnL is only what happened within it.
- Slippage is counted for fills whose order (by client order id) has a reference price: for a buy,
  `notional_usd / price x (price - reference)`, for a sell `notional_usd / price x (reference - price)`.
  Fills of orders the journal has no reference price for (adopted orders) add no slippage.
- Assets are the base of the hedge instrument; a proxy (beta) hedge is reported under the asset it trades.
- Values derived by division (average entries, coins from notionals, inverse PnL, slippage) are rounded to
  1e-10 USD or coin; fees, funding and linear cash are exact.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from itertools import pairwise
from typing import Any, Literal

from deltakeeper.domain.usd import to_usd

Row = Mapping[str, Any]
By = Literal["asset", "day"]

PNL_COLUMNS = [
    "period", "asset", "fills", "traded_usd", "position_coin", "mark_price_usd", "realised_pnl_usd",
    "marked_pnl_usd", "hedge_pnl_usd", "slippage_usd", "market_pnl_usd", "fees_usd", "funding_paid_usd",
    "funding_received_usd", "hedging_cost_usd", "total_usd", "unpriced_rows", "exposure_coin",
    "exposure_pnl_usd", "net_pnl_usd",
]
SUMMED_COLUMNS = [
    "fills", "traded_usd", "realised_pnl_usd", "marked_pnl_usd", "hedge_pnl_usd", "slippage_usd",
    "market_pnl_usd", "fees_usd", "funding_paid_usd", "funding_received_usd", "hedging_cost_usd", "total_usd",
    "unpriced_rows", "exposure_pnl_usd", "net_pnl_usd",
]
TOTAL_ASSET = "TOTAL"
ALL_PERIOD = "all"
QUANTUM = Decimal("1e-10")
ZERO = Decimal(0)
_PRECISION = 60


# -- parsing the journal's rows -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Market:
    """What a ccxt unified symbol says: `BTC/USDT:USDT` linear, `BTC/USD:BTC` inverse, `BTC/USDT` spot."""

    base: str
    settle: str
    inverse: bool


def market_of(symbol: str) -> Market:
    pair, _, settle_part = symbol.partition(":")
    base, _, quote = pair.partition("/")
    base = base.upper()
    settle = settle_part.split("-")[0].upper() if settle_part else quote.upper()
    return Market(base=base, settle=settle, inverse=bool(settle_part) and settle == base)


def _dec(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _ts(value: Any) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _q(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM)


@dataclass(frozen=True, slots=True)
class _Fill:
    ts: datetime
    symbol: str
    market: Market
    sign: int  # +1 buy, -1 sell
    price: Decimal
    notional_usd: Decimal
    fee: Decimal
    fee_currency: str
    reference_price: Decimal | None


@dataclass(frozen=True, slots=True)
class _Payment:
    ts: datetime
    asset: str
    amount: Decimal
    currency: str


def _fills(rows: Iterable[Row], references: Mapping[str, Decimal]) -> list[_Fill]:
    out = []
    for row in rows:
        market = market_of(row["symbol"])
        side = str(row["side"]).lower()
        if side not in ("buy", "sell"):
            raise ValueError(f"fill {row.get('trade_id')}: side {row['side']!r} is neither buy nor sell")
        client_order_id = row.get("client_order_id")
        out.append(_Fill(
            ts=_ts(row["ts"]),
            symbol=row["symbol"],
            market=market,
            sign=1 if side == "buy" else -1,
            price=_dec(row["price"]),
            notional_usd=abs(_dec(row["notional_usd"])),
            fee=_dec(row["fee"]),
            fee_currency=(row.get("fee_currency") or market.settle).upper(),
            reference_price=references.get(client_order_id) if client_order_id else None,
        ))
    out.sort(key=lambda f: f.ts)
    return out


def _payments(rows: Iterable[Row]) -> list[_Payment]:
    out = []
    for row in rows:
        market = market_of(row["symbol"])
        out.append(_Payment(ts=_ts(row["ts"]), asset=market.base, amount=_dec(row["amount"]),
                            currency=(row.get("currency") or market.settle).upper()))
    return out


# -- prices ---------------------------------------------------------------------------------------------


class _Prices:
    """Every price the journal knows per asset, in time order: decisions' `price_usd` and fill prices."""

    def __init__(self, decisions: Iterable[Row], fills: Iterable[_Fill]) -> None:
        points: dict[str, list[tuple[datetime, int, Decimal]]] = defaultdict(list)
        for row in decisions:
            price = row.get("price_usd")
            if price is not None and _dec(price) > 0:
                points[str(row["asset"]).upper()].append((_ts(row["ts"]), 0, _dec(price)))
        for fill in fills:
            if fill.price > 0:
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
class _Position:
    """One instrument's hedge position. Linear: `size` in coins, PnL from cash; inverse: `size` in USD
    face, PnL in coin converted at the time."""

    inverse: bool
    size: Decimal = ZERO
    entry: Decimal = ZERO
    cash_usd: Decimal = ZERO  # linear: notional received on sells less paid on buys
    realised_usd: Decimal = ZERO

    def apply(self, fill: _Fill) -> None:
        price = fill.price
        if price <= 0:
            raise ValueError(f"fill of {fill.symbol} at {fill.ts.isoformat()} has no price")
        if self.inverse:
            change = fill.sign * fill.notional_usd
        else:
            change = _q(fill.sign * fill.notional_usd / price)
            self.cash_usd -= fill.sign * fill.notional_usd
        if self.size == 0 or (self.size > 0) == (change > 0):
            self._add(change, price)
            return
        closed = min(abs(change), abs(self.size))
        direction = 1 if self.size > 0 else -1
        if self.inverse:
            coin_pnl = direction * closed * (1 / self.entry - 1 / price)
            self.realised_usd += _q(coin_pnl * price)
        else:
            self.realised_usd += _q(direction * closed * (price - self.entry))
        self.size += change
        if self.size == 0:
            self.entry = ZERO
        elif (self.size > 0) != (direction > 0):  # flipped: the rest opens at this price
            self.entry = price

    def _add(self, change: Decimal, price: Decimal) -> None:
        old, new = abs(self.size), abs(change)
        if old == 0:
            self.entry = price
        elif self.inverse:
            self.entry = _q((old + new) / (old / self.entry + new / price))
        else:
            self.entry = _q((old * self.entry + new * price) / (old + new))
        self.size += change

    def pnl_usd(self, mark: Decimal | None) -> Decimal:
        """Hedge PnL since the first fill: realised plus the open position marked at `mark`."""
        if self.inverse:
            if self.size == 0 or mark is None:
                return self.realised_usd
            return self.realised_usd + _q(self.size * (mark / self.entry - 1))
        if self.size == 0 or mark is None:  # a fill's own price is known, so mark is None only when flat
            return self.cash_usd
        return self.cash_usd + self.size * mark

    def coins(self, mark: Decimal | None) -> Decimal:
        if not self.inverse:
            return self.size
        if self.size == 0 or mark is None:
            return ZERO
        return _q(self.size / mark)


# -- attribution ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    fills: int = 0
    traded_usd: Decimal = ZERO
    slippage_usd: Decimal = ZERO
    fees_usd: Decimal = ZERO
    funding_paid_usd: Decimal = ZERO
    funding_received_usd: Decimal = ZERO
    unpriced_rows: int = 0
    seen: bool = False


@dataclass(slots=True)
class _Book:
    """One asset's positions, walked forward through its fills."""

    fills: list[_Fill]
    positions: dict[str, _Position] = field(default_factory=dict)
    applied: int = 0

    def advance(self, end: datetime | None) -> None:
        """Apply every fill strictly before `end` (None: all)."""
        while self.applied < len(self.fills) and (end is None or self.fills[self.applied].ts < end):
            fill = self.fills[self.applied]
            position = self.positions.setdefault(fill.symbol, _Position(inverse=fill.market.inverse))
            position.apply(fill)
            self.applied += 1

    def state(self, mark: Decimal | None) -> tuple[Decimal, Decimal, Decimal]:
        """(hedge PnL since the first fill, realised PnL since the first fill, position in coins)."""
        pnl = sum((p.pnl_usd(mark) for p in self.positions.values()), ZERO)
        realised = sum((p.realised_usd for p in self.positions.values()), ZERO)
        coins = sum((p.coins(mark) for p in self.positions.values()), ZERO)
        return _q(pnl), realised, coins


@dataclass(frozen=True, slots=True)
class _Exposure:
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


def _exposure(asset: str, decisions: Sequence[tuple[datetime, Decimal, Decimal]], fills: list[_Fill],
              prices: _Prices) -> _Exposure:
    """From the asset's (time, delta_coin, price_usd) decisions in time order and its hedge fills."""
    book = _Book(fills)
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
            total += _q(holdings[held - 1] * (end_price - start_price))
        steps.append(end)
        cumulative.append(total)
    return _Exposure(decision_times, holdings, steps, cumulative)


def _period_of(ts: datetime, by: By) -> str:
    return ts.date().isoformat() if by == "day" else ALL_PERIOD


def _period_end(period: str, until: datetime | None) -> datetime | None:
    if period == ALL_PERIOD:
        return until
    day = datetime.fromisoformat(period).replace(tzinfo=UTC) + timedelta(days=1)
    return day if until is None or day < until else until


def _usd(amount: Decimal, currency: str, price_here: Decimal | None, prices: _Prices, ts: datetime
         ) -> Decimal | None:
    """`domain.usd.to_usd` at the fill's own price (`price_here`) or the coin's nearest to `ts`."""
    return to_usd(amount, currency,
                  lambda coin: price_here if price_here is not None else prices.nearest(coin, ts))


def attribute(
    fills: Sequence[Row],
    funding: Sequence[Row],
    orders: Sequence[Row],
    decisions: Sequence[Row],
    by: By = "asset",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """PnL attribution rows, one per asset (`by="asset"`) or per UTC day and asset (`by="day"`), sorted by
    period then asset, without the total (see `total_row`).

    The rows are the journal's, as `SqlJournal.list_*` return them (or their JSON: decimal strings and ISO
    times are accepted). Give every fill up to `until`, also those before `since`: they make the position
    held at `since`. Fills, payments and decisions at or after `until` are ignored; fees, funding and
    slippage are attributed when their time is in [since, until). See the module's docstring for the
    meaning of every column.
    """
    if by not in ("asset", "day"):
        raise ValueError(f"by must be 'asset' or 'day', not {by!r}")
    with localcontext() as context:
        context.prec = _PRECISION
        return _attribute(fills, funding, orders, decisions, by, since, until)


def _attribute(fills: Sequence[Row], funding: Sequence[Row], orders: Sequence[Row],
               decisions: Sequence[Row], by: By, since: datetime | None, until: datetime | None
               ) -> list[dict[str, Any]]:
    def before_until(ts: datetime) -> bool:
        return until is None or ts < until

    def in_window(ts: datetime) -> bool:
        return before_until(ts) and (since is None or ts >= since)

    references = {
        str(row["client_order_id"]): _dec(row["reference_price"])
        for row in orders
        if row.get("client_order_id") and row.get("reference_price") is not None
    }
    all_fills = [f for f in _fills(fills, references) if before_until(f.ts)]
    payments = [p for p in _payments(funding) if in_window(p.ts)]
    prices = _Prices([d for d in decisions if before_until(_ts(d["ts"]))], all_fills)

    buckets: dict[tuple[str, str], _Bucket] = defaultdict(_Bucket)
    for fill in all_fills:
        if not in_window(fill.ts):
            continue
        bucket = buckets[(fill.market.base, _period_of(fill.ts, by))]
        bucket.seen = True
        bucket.fills += 1
        bucket.traded_usd += fill.notional_usd
        here = fill.price if fill.fee_currency == fill.market.base else None
        fee = _usd(fill.fee, fill.fee_currency, here, prices, fill.ts)
        if fee is None:
            bucket.unpriced_rows += 1
        else:
            bucket.fees_usd += fee
        if fill.reference_price is not None:
            worse = fill.sign * (fill.price - fill.reference_price)
            bucket.slippage_usd += _q(fill.notional_usd / fill.price * worse)
    for payment in payments:
        bucket = buckets[(payment.asset, _period_of(payment.ts, by))]
        bucket.seen = True
        amount = _usd(payment.amount, payment.currency, None, prices, payment.ts)
        if amount is None:
            bucket.unpriced_rows += 1
        elif amount >= 0:
            bucket.funding_received_usd += amount
        else:
            bucket.funding_paid_usd -= amount

    fills_by_asset: dict[str, list[_Fill]] = defaultdict(list)
    for fill in all_fills:
        fills_by_asset[fill.market.base].append(fill)
    deltas_by_asset: dict[str, list[tuple[datetime, Decimal, Decimal]]] = defaultdict(list)
    for row in decisions:
        ts = _ts(row["ts"])
        if before_until(ts) and row.get("delta_coin") is not None and _dec(row["price_usd"]) > 0:
            deltas_by_asset[str(row["asset"]).upper()].append(
                (ts, _dec(row["delta_coin"]), _dec(row["price_usd"])))
    assets = set(fills_by_asset) | {asset for asset, _ in buckets} | set(deltas_by_asset)

    rows: list[dict[str, Any]] = []
    for asset in sorted(assets):
        book = _Book(fills_by_asset.get(asset, []))
        deltas = sorted(deltas_by_asset.get(asset, []), key=lambda d: d[0])
        exposure = _exposure(asset, deltas, book.fills, prices)
        periods = {period for a, period in buckets if a == asset}
        if book.fills or deltas:  # an open position or a holding earns or loses whenever the price moves
            periods |= {_period_of(ts, by) for ts in prices.times(asset) if in_window(ts)}
            if by == "asset":
                periods.add(ALL_PERIOD)
        pnl_before, realised_before, exposure_before = ZERO, ZERO, ZERO
        if since is not None:
            book.advance(since)
            pnl_before, realised_before, _ = book.state(prices.last_before(asset, since))
            exposure_before = exposure.pnl_usd(since)
        for period in sorted(periods):
            end = _period_end(period, until)
            book.advance(end)
            mark = prices.last_before(asset, end)
            pnl, realised, coins = book.state(mark)
            exposure_pnl, exposure_coin = exposure.pnl_usd(end), exposure.coin(end)
            bucket = buckets.get((asset, period), _Bucket())
            hedge, held = pnl - pnl_before, exposure_pnl - exposure_before
            if bucket.seen or hedge or coins or held or exposure_coin:
                rows.append(_row(period, asset, bucket, hedge, realised - realised_before, coins,
                                 mark if coins or exposure_coin else None, exposure_coin, held))
            pnl_before, realised_before, exposure_before = pnl, realised, exposure_pnl
    rows.sort(key=lambda row: (row["period"], row["asset"]))
    return rows


def _row(period: str, asset: str, bucket: _Bucket, hedge: Decimal, realised: Decimal, coins: Decimal,
         mark: Decimal | None, exposure_coin: Decimal, exposure_pnl: Decimal) -> dict[str, Any]:
    fees, paid, received, slippage = (bucket.fees_usd, bucket.funding_paid_usd, bucket.funding_received_usd,
                                      bucket.slippage_usd)
    return {
        "period": period,
        "asset": asset,
        "fills": bucket.fills,
        "traded_usd": bucket.traded_usd,
        "position_coin": coins,
        "mark_price_usd": mark,
        "realised_pnl_usd": realised,
        "marked_pnl_usd": hedge - realised,
        "hedge_pnl_usd": hedge,
        "slippage_usd": slippage,
        "market_pnl_usd": hedge + slippage,
        "fees_usd": fees,
        "funding_paid_usd": paid,
        "funding_received_usd": received,
        "hedging_cost_usd": fees + paid - received + slippage,
        "total_usd": hedge - fees - paid + received,
        "unpriced_rows": bucket.unpriced_rows,
        "exposure_coin": exposure_coin,
        "exposure_pnl_usd": exposure_pnl,
        "net_pnl_usd": exposure_pnl + hedge - fees - paid + received,
    }


def total_row(rows: Sequence[Row]) -> dict[str, Any]:
    """The sum of `rows` (period `all`, asset `TOTAL`); position and mark are per asset, so empty."""
    total: dict[str, Any] = {column: None for column in PNL_COLUMNS}
    total.update(period=ALL_PERIOD, asset=TOTAL_ASSET)
    for column in SUMMED_COLUMNS:
        start: Any = 0 if column in ("fills", "unpriced_rows") else ZERO
        total[column] = sum((row[column] for row in rows), start)
    return total
