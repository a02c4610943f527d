"""How a decided hedge becomes orders (DESIGN.md 5 and 6): the execution style and the slicing plan.

- Style `market`: market orders. Style `post-only`: a post-only limit order at the touch (the bid for a
  buy, the ask for a sell) that rests up to `post_only_timeout_secs`; then it is cancelled and the unfilled
  rest goes as a market order (the fallback). A post-only order the exchange refuses (it would take) falls
  back at once. One cancelled by anyone but that timeout (the operator, a cancel-all or a halt, the
  exchange: Bybit accepts a post-only order that would take and cancels it) ends its decision with no
  fallback; the next decision, after a short back-off, sizes and prices afresh.
- Slicing: a hedge larger than `slice_max_usd` (at the touch), or than what the order book takes within
  `slice_max_slippage_bps` of the touch (walked with `domain.costs.walk_book`), is split into the fewest
  slices below both limits, as even as the lot step allows, each at least the instrument's minimum size and
  notional, at most `MAX_SLICES`. The slices go one after another: the next only once the previous is final
  and a newer quote has arrived. Each order, slice or fallback, has its own client order id: the decision
  id and the order's number within the decision (`client_order_id(decision_id, 0, n)`, n = 0, 1, ...).

The planning here is pure (no I/O, no clock); the decision cycle (`app/cycle.py`) plans and journals the
decision, and the order runner (`app/order_runner.py`) sends, settles and journals its orders.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import Enum

from deltakeeper.domain.costs import BookLevel, walk_book
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import OrderRequest, OrderType, Side, client_order_id

MAX_SLICES = 100
"""A hedge is never split into more orders than this: past it, slices are larger than the limits ask."""
BOOK_DEPTH = 50
"""Levels per side fetched to size slices by slippage."""
_BPS = Decimal(10_000)


class ExecutionStyle(str, Enum):
    MARKET = "market"
    POST_ONLY = "post-only"


@dataclass(frozen=True, slots=True)
class ExecutionOptions:
    """`DK_EXECUTION`, `DK_POST_ONLY_TIMEOUT_SECS`, `DK_SLICE_MAX_USD`, `DK_SLICE_MAX_SLIPPAGE_BPS`."""

    style: ExecutionStyle = ExecutionStyle.MARKET
    post_only_timeout_secs: float = 10.0
    slice_max_usd: Decimal = ZERO
    """0: no slicing by size."""
    slice_max_slippage_bps: Decimal = ZERO
    """0: no slicing by the order book."""

    @property
    def needs_book(self) -> bool:
        return self.slice_max_slippage_bps > 0


@dataclass(frozen=True, slots=True)
class ExecutionPlan:
    """The orders one decision sends on one instrument, in order."""

    decision_id: int
    symbol: str
    side: Side
    slices_contracts: tuple[Decimal, ...]
    style: ExecutionStyle
    reduce_only: bool = False
    note: str = ""
    """For the decision journal: how the hedge was split and sent (empty for one market order)."""

    @property
    def total_contracts(self) -> Decimal:
        return sum(self.slices_contracts, ZERO)

    def request(self, order_no: int, amount: Decimal, touch: Decimal | None, *, fallback: bool = False
                ) -> OrderRequest:
        """Order `order_no` of the decision: a post-only limit at `touch` in the post-only style (unless it
        is a market fallback), else a market order."""
        cid = client_order_id(self.decision_id, 0, order_no)
        if self.style is ExecutionStyle.POST_ONLY and not fallback:
            if touch is None:
                raise ValueError("a post-only order needs the touch price")
            return OrderRequest(cid, self.symbol, self.side, amount, OrderType.LIMIT, price=touch,
                                reduce_only=self.reduce_only, post_only=True)
        return OrderRequest(cid, self.symbol, self.side, amount, OrderType.MARKET,
                            reduce_only=self.reduce_only)


def touch_price(side: Side, bid: Decimal, ask: Decimal) -> Decimal:
    """Where a post-only order rests: the bid for a buy, the ask for a sell."""
    return bid if side is Side.BUY else ask


def min_slice_contracts(hedge: Instrument, price: Decimal) -> Decimal:
    """The smallest order the instrument takes at `price`: one lot step, its minimum size, and its minimum
    notional, rounded up to the lot step."""
    step = hedge.lot_step_contracts
    smallest = max(step, hedge.min_contracts)
    if hedge.min_notional_usd > 0:
        per_contract = hedge.notional_usd(Decimal(1), price)
        if per_contract > 0:
            lots = (hedge.min_notional_usd / per_contract / step).to_integral_value(rounding=ROUND_CEILING)
            smallest = max(smallest, lots * step)
    return smallest


def max_contracts_for_usd(hedge: Instrument, price: Decimal, max_usd: Decimal) -> Decimal:
    """The largest size (rounded down to the lot step, possibly 0) whose notional at `price` is at most
    `max_usd`."""
    per_contract = hedge.notional_usd(Decimal(1), price)
    return hedge.round_contracts(max_usd / per_contract, toward_zero=True)


def slippage_bps(levels: Sequence[BookLevel], size_coin: Decimal) -> Decimal | None:
    """How far the average price of taking `size_coin` from `levels` (one side, best first) is from the
    touch, in bps; None when the book cannot fill it."""
    if not levels or size_coin <= 0:
        return None
    avg, filled = walk_book(levels, size_coin)
    if filled < size_coin:
        return None
    touch = levels[0].price
    return abs(avg - touch) / touch * _BPS


def max_contracts_within_slippage(
    hedge: Instrument, levels: Sequence[BookLevel], limit_bps: Decimal, up_to_contracts: Decimal
) -> Decimal:
    """The largest size, in lot steps up to `up_to_contracts`, that walks `levels` (the side the order
    takes: the asks for a buy, best first, sizes in coins) no further than `limit_bps` from the touch on
    average. 0 when not even one lot step does (or the book is empty)."""
    if not levels:
        return ZERO
    step = hedge.lot_step_contracts
    touch = levels[0].price

    def fits(lots: int) -> bool:
        coin = abs(hedge.delta_coin(lots * step, touch))
        walked = slippage_bps(levels, coin)
        return walked is not None and walked <= limit_bps

    lo, hi = 0, int(up_to_contracts / step)
    while lo < hi:  # the largest lot count that fits: slippage only grows with size
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo * step


def split_contracts(total: Decimal, max_slice: Decimal | None, smallest: Decimal, step: Decimal
                    ) -> tuple[Decimal, ...]:
    """`total` contracts (a multiple of `step`) in the fewest slices of at most `max_slice` (None: no
    limit), as even as `step` allows; no slice below `smallest`, and at most MAX_SLICES: those two win over
    `max_slice`."""
    lots = int((total / step).to_integral_value(rounding=ROUND_FLOOR))
    if lots <= 0:
        return ()
    if max_slice is None:
        return (total,)
    smallest_lots = max(1, int((smallest / step).to_integral_value(rounding=ROUND_CEILING)))
    per_slice = max(int((max_slice / step).to_integral_value(rounding=ROUND_FLOOR)), smallest_lots)
    count = -(-lots // per_slice)
    count = max(1, min(count, MAX_SLICES, lots // smallest_lots))
    base, extra = divmod(lots, count)
    return tuple((base + (1 if i < extra else 0)) * step for i in range(count))


def plan_execution(
    decision_id: int,
    hedge: Instrument,
    side: Side,
    amount_contracts: Decimal,
    touch: Decimal,
    options: ExecutionOptions,
    *,
    reduce_only: bool = False,
    book_side: Sequence[BookLevel] | None = None,
) -> ExecutionPlan:
    """Split a checked hedge of `amount_contracts` on `hedge` into its orders. `touch` is the price the
    order takes at (the ask for a buy); `book_side` the levels it would walk, when slicing by slippage
    (None: the book is unknown, slice by size only)."""
    limits: list[Decimal] = []
    notes: list[str] = []
    if options.slice_max_usd > 0:
        limits.append(max_contracts_for_usd(hedge, touch, options.slice_max_usd))
    if options.needs_book:
        if book_side is None:
            notes.append("book=unavailable")
        else:
            limits.append(max_contracts_within_slippage(
                hedge, book_side, options.slice_max_slippage_bps, amount_contracts
            ))
    smallest = min_slice_contracts(hedge, touch)
    max_slice = min(limits) if limits else None
    slices = split_contracts(amount_contracts, max_slice, smallest, hedge.lot_step_contracts)
    if options.style is ExecutionStyle.POST_ONLY:
        notes.insert(0, f"execution=post-only timeout_secs={options.post_only_timeout_secs:g}")
    if len(slices) > 1 or max_slice is not None:
        notes.append(f"slices={len(slices)}")
        if max_slice is not None and slices and max(slices) > max_slice:
            notes.append("slice_limit=unmet")
    return ExecutionPlan(
        decision_id, hedge.symbol, side, slices, options.style, reduce_only, " ".join(notes)
    )
