"""Bring the journal and the exchange into agreement (DESIGN.md 6): at start and periodically."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from deltakeeper.app.control import OperatorControl, halt
from deltakeeper.domain.errors import ForeignOrder, TraderLockLost
from deltakeeper.domain.orders import Fill, OrderState, OrderStatus, is_ours
from deltakeeper.domain.records import AccountSnapshot, OrderRecord
from deltakeeper.ports import Alerts, Clock, Exchange, Journal

log = structlog.get_logger("deltakeeper.reconcile")

FIRST_BACKFILL = timedelta(days=7)
CURSOR_OVERLAP = timedelta(minutes=10)
LOOK_AGAIN_SECS = 1.0


@dataclass(frozen=True, slots=True)
class Reconciliation:
    orders_settled: int
    orders_canceled: int
    fills_added: int
    funding_added: int
    account: AccountSnapshot
    liquidations: tuple[Fill, ...] = ()
    """The liquidation and auto-deleveraging fills among those added: the exchange closed a position while
    the streams did not tell (the bot was down, or a stream missed it)."""
    foreign_orders: tuple[ForeignOrder, ...] = ()
    """Open orders, and orders of new fills, with our client-id prefix that the journal did not create:
    another trader is on the account. Neither cancelled nor journaled as ours."""


async def reconcile(
    exchange: Exchange, journal: Journal, clock: Clock, landing_secs: float, in_flight: Collection[str] = (),
    holds_lock: Callable[[], bool] = lambda: True,
) -> Reconciliation:
    """Settle every order the journal does not know the end of, by client order id; cancel open orders
    of ours (the next decision re-sizes from scratch), and report those with our prefix the journal did
    not create (`foreign_orders`, left alone; so are the orders of new fills); backfill fills and funding
    since the journal's cursors (the liquidation fills among them one by one, to know which are new); read
    the account. Raises when the exchange cannot be read: trading must not start.

    `in_flight`: the client ids of orders the running bot is still sending or settling (a periodic
    reconciliation that gave up waiting for them): left to it. `landing_secs`: how long after it was
    journaled an order sent just before the bot died may still appear on the exchange (the bot's own wait
    for an order's outcome, DK_ORDER_TIMEOUT_SECS): a request can wait in the network (Bybit refuses one
    older than its receive window, 5 s by default in ccxt) and in the exchange's gateway before it is
    matched. `holds_lock`: whether this process still trades the account (the trader lock): once it is
    lost, the orders are another trader's to cancel, and a cancel of ours raises TraderLockLost."""
    settled = 0
    for order in await journal.open_orders():
        if order.client_order_id in in_flight:
            continue
        found = await _look_up(exchange, clock, order, landing_secs)
        if found is None:
            found = OrderState(
                client_order_id=order.client_order_id,
                exchange_order_id="",
                symbol=order.symbol,
                side=order.side,
                amount_contracts=order.amount_contracts,
                filled_contracts=order.filled_contracts,
                status=OrderStatus.REJECTED,
                ts=clock.now(),
                order_type=order.order_type,
                reject_reason="not found on the exchange: never sent",
            )
        await journal.update_order(found)
        settled += 1
    ours = [o for o in await exchange.fetch_open_orders()
            if is_ours(o.client_order_id) and o.client_order_id not in in_flight]
    foreign = await _foreign(journal, [(str(o.client_order_id), o.symbol) for o in ours])
    canceled = 0
    for open_order in ours:
        cid = str(open_order.client_order_id)
        if cid in foreign:
            continue
        if not holds_lock():
            raise TraderLockLost(f"not cancelling {cid}: the trader lock is lost")
        await exchange.cancel_order(open_order.symbol, cid)
        canceled += 1
        found = await exchange.fetch_order(open_order.symbol, cid)
        await journal.update_order(found or open_order)
    now = clock.now()
    last_fill_ts = await journal.last_fill_ts()
    fills = await exchange.fetch_fills(_since(last_fill_ts, now))
    funding = await exchange.fetch_funding_payments(_since(await journal.last_funding_ts(), now))
    new_fills = [(str(f.client_order_id), f.symbol) for f in fills
                 if is_ours(f.client_order_id) and (last_fill_ts is None or f.ts > last_fill_ts)]
    foreign |= await _foreign(journal, new_fills)
    liquidations = [fill for fill in fills if fill.liquidation and await journal.record_fills([fill])]
    result = Reconciliation(
        orders_settled=settled,
        orders_canceled=canceled,
        fills_added=len(liquidations) + await journal.record_fills([f for f in fills if not f.liquidation]),
        funding_added=await journal.record_funding(funding),
        account=await exchange.fetch_account(),
        liquidations=tuple(liquidations),
        foreign_orders=tuple(foreign.values()),
    )
    log.info(
        "reconciled",
        orders_settled=settled,
        orders_canceled=canceled,
        fills_added=result.fills_added,
        funding_added=result.funding_added,
        liquidations=len(liquidations),
        foreign_orders=sorted(foreign),
    )
    return result


async def _foreign(journal: Journal, orders: list[tuple[str, str]]) -> dict[str, ForeignOrder]:
    """Of (client order id, symbol) with our prefix, those the journal did not create."""
    unknown = await journal.unknown_client_ids({cid for cid, _ in orders})
    return {cid: ForeignOrder(cid, symbol) for cid, symbol in orders if cid in unknown}


async def _look_up(exchange: Exchange, clock: Clock, order: OrderRecord, landing_secs: float
                   ) -> OrderState | None:
    """The exchange's state of a journaled order, by client order id; None only once it cannot arrive any
    more. A request sent just before the bot died can still be on its way (in a queue, in the exchange's
    gateway): until `landing_secs` after the order was journaled, not found means look again."""
    age_secs = (clock.now() - order.created_ts).total_seconds() / clock.speed
    deadline = time.monotonic() + landing_secs - age_secs
    while True:
        found = await exchange.fetch_order(order.symbol, order.client_order_id)
        left_secs = deadline - time.monotonic()
        if found is not None or left_secs <= 0:
            return found
        log.info("order_not_landed_yet", client_order_id=order.client_order_id, wait_secs=round(left_secs, 1))
        await asyncio.sleep(min(LOOK_AGAIN_SECS, left_secs))


async def halt_on_foreign_order(control: OperatorControl, alerts: Alerts, found: ForeignOrder) -> None:
    """Another trader is on the account: alert, and halt trading through the operator's control path
    (journaled: it holds across restarts until someone resumes)."""
    log.error("foreign_order_detected", client_order_id=found.client_order_id, symbol=found.symbol)
    await alerts.send("error", "foreign_order_detected", str(found))
    if not (await control.journal.control_state()).halted:
        reason = f"foreign order {found.client_order_id} on {found.symbol}: another trader on the account"
        await halt(control.journal, reason, "deltakeeper")
    await control.poll()


def _since(cursor: datetime | None, now: datetime) -> datetime:
    return now - FIRST_BACKFILL if cursor is None else cursor - CURSOR_OVERLAP
