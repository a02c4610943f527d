"""PnL attribution of the hedge, per asset and period, from the journal alone (`deltakeeper journal pnl`).

Every figure is in USD and comes from the journal's rows: fills, funding payments, orders (for the
decision's reference price) and decisions (for prices). Nothing is asked of the exchange.

Columns (CSV and JSON, in this order; JSON money as decimal strings, counts as numbers):

| column | meaning |
|---|---|
| `period` | `all` with `--by asset`; the UTC day (`YYYY-MM-DD`) with `--by day` |
| `asset` | the base coin of the hedge instrument (`SOL` for `SOL/USDT:USDT`); `TOTAL` on the last row |
| `fills` | trades in the period (fills of kind `trade`: no liquidation or delivery) |
| `traded_usd` | their notional, `notional_usd` of those fill rows |
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
  price when the coin is the fill's base (not an option's fill: its price is a premium), else at the coin's
  nearest known price in time; a funding payment in a coin at the coin's nearest known price (decisions'
  `price_usd` and fill prices, before or after).
  A fee or payment with no currency is in the instrument's settle currency.
- Sizes of spot and futures come from `notional_usd` of the fill rows, never from `amount_contracts` (whose
  meaning depends on the contract size): a linear fill (spot, or a ccxt symbol `BASE/QUOTE:SETTLE` with
  SETTLE not BASE) trades `notional_usd / price` coins; an inverse fill (SETTLE is BASE, e.g. `BTC/USD:BTC`)
  trades `notional_usd` of USD face (contracts x face value), i.e. `notional_usd / price` coins at its
  price. On the simulator's linear markets the contract size is 1, so this is `amount_contracts` coins.
- Options (`BASE/QUOTE:SETTLE-YYMMDD-STRIKE-C|P`) count in contracts (`amount_contracts`) at a USD premium
  per contract of `notional_usd / amount_contracts` (a coin premium at the coin's price at the fill), so
  realised PnL is the premium difference x contracts x contract size in USD; a delivery closes them at
  their intrinsic value. An open option is marked at its last fill's premium and adds nothing to
  `position_coin`.
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

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any, Literal

from deltakeeper.domain.pnl_journal import (
    ZERO,
    HedgeBook,
    JournalFill,
    PriceHistory,
    Row,
    decimal_of,
    exposure_of,
    journal_fills,
    journal_payments,
    rounded,
    utc_time,
)
from deltakeeper.domain.usd import to_usd

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
_PRECISION = 60


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


def _period_of(ts: datetime, by: By) -> str:
    return ts.date().isoformat() if by == "day" else ALL_PERIOD


def _period_end(period: str, until: datetime | None) -> datetime | None:
    if period == ALL_PERIOD:
        return until
    day = datetime.fromisoformat(period).replace(tzinfo=UTC) + timedelta(days=1)
    return day if until is None or day < until else until


def _usd(amount: Decimal, currency: str, price_here: Decimal | None, prices: PriceHistory, ts: datetime
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
        str(row["client_order_id"]): decimal_of(row["reference_price"])
        for row in orders
        if row.get("client_order_id") and row.get("reference_price") is not None
    }
    all_fills = [f for f in journal_fills(fills, references) if before_until(f.ts)]
    payments = [p for p in journal_payments(funding) if in_window(p.ts)]
    prices = PriceHistory([d for d in decisions if before_until(utc_time(d["ts"]))], all_fills)

    buckets: dict[tuple[str, str], _Bucket] = defaultdict(_Bucket)
    for fill in all_fills:
        if not in_window(fill.ts):
            continue
        bucket = buckets[(fill.market.base, _period_of(fill.ts, by))]
        bucket.seen = True
        if fill.traded:  # a liquidation or a delivery is the exchange's close, not our trading
            bucket.fills += 1
            bucket.traded_usd += fill.notional_usd
        here = fill.price if fill.fee_currency == fill.market.base and not fill.market.option else None
        fee = _usd(fill.fee, fill.fee_currency, here, prices, fill.ts)
        if fee is None:
            bucket.unpriced_rows += 1
        else:
            bucket.fees_usd += fee
        if fill.reference_price is not None:
            worse = fill.sign * (fill.price - fill.reference_price)
            bucket.slippage_usd += rounded(fill.notional_usd / fill.price * worse)
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

    fills_by_asset: dict[str, list[JournalFill]] = defaultdict(list)
    for fill in all_fills:
        fills_by_asset[fill.market.base].append(fill)
    deltas_by_asset: dict[str, list[tuple[datetime, Decimal, Decimal]]] = defaultdict(list)
    for row in decisions:
        ts = utc_time(row["ts"])
        if before_until(ts) and row.get("delta_coin") is not None and decimal_of(row["price_usd"]) > 0:
            deltas_by_asset[str(row["asset"]).upper()].append(
                (ts, decimal_of(row["delta_coin"]), decimal_of(row["price_usd"])))
    assets = set(fills_by_asset) | {asset for asset, _ in buckets} | set(deltas_by_asset)

    rows: list[dict[str, Any]] = []
    for asset in sorted(assets):
        book = HedgeBook(fills_by_asset.get(asset, []))
        deltas = sorted(deltas_by_asset.get(asset, []), key=lambda d: d[0])
        exposure = exposure_of(asset, deltas, book.fills, prices)
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
