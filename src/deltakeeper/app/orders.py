"""One order of a decided hedge (DESIGN.md 6): send it once journaled, settle it by client id, and read
the account again after it. `OrderSender` is the order runner's (`app/order_runner.py`) hand: the runner
owns the orders in flight and carries out a decision's plan, one order after another.

What it never does: take a failed look-up for an answer. An order of unknown outcome stays in flight (its
instrument blocked) until the exchange says it has it or does not; an account that could not be read
again after an order is unknown until a read succeeds. And an order goes out only if what it was sized
from still holds once its journal write has returned (`Basis`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import structlog

from deltakeeper.app.ingest import Ingest
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.trading_state import BackgroundAlerts, Counters, TradingStatus
from deltakeeper.domain.errors import OrderNotSent, OrderOutcomeUnknown, OrderRejected, RateLimited
from deltakeeper.domain.orders import OrderRequest, OrderState, OrderStatus, Quote, Side
from deltakeeper.ports import Clock, Exchange, Journal

log = structlog.get_logger("deltakeeper.rebalance")  # the decision cycle's log: its orders are part of it

RESEND_LIMIT = 3
SETTLE_POLL_SECS = 0.2
DELTA_MOVE_TOLERANCE = Decimal("0.05")
"""An order still goes when its asset's delta moved, during its journal write, by no more than its band or
this fraction of the delta it was sized against."""
READ_BACKOFF_MAX_SECS = 2.0
"""A failed look-up of an order, or read of the account, is asked again after twice the last wait (from
SETTLE_POLL_SECS) up to this, for as long as it takes."""
POSITION_WAIT_TIMEOUTS = 10  # order timeouts before a position from before the fills is taken
REJECT_BACKOFF_SECS = 1.0
REJECT_BACKOFF_MAX_SECS = 60.0
"""After a refused order no new order goes to that instrument for this long, doubling with each refusal
in a row (up to the maximum) and cleared by a fill: an exchange that refuses everything is not hammered."""


@dataclass(frozen=True, slots=True)
class Basis:
    """What an order was sized from: its instrument's quote and when that quote arrived (monotonic
    seconds), the position, and its asset's delta. Checked again after the order's journal write has
    returned, just before it is sent: a write can take long (a frozen database), and an order never goes
    out on what went stale or changed meanwhile."""

    quote: Quote
    received_at: float
    position_contracts: Decimal
    asset: str
    delta_coin: Decimal
    band_coin: Decimal
    """How far the asset's delta may move before the order no longer holds: its decision's band."""


@dataclass(frozen=True, slots=True)
class Ended:
    """How a sent order ended."""

    state: OrderState
    falls_back: bool
    """A post-only order that did not fill whole and was refused (it would have taken) or cancelled by the
    runner's own timeout: the rest goes as a market order. Cancelled by anyone else (the operator, a
    cancel-all or a halt, the exchange), the decision ends there."""
    account_read: bool
    """The account was read again after it; False: that read failed, the account is unknown until a read
    succeeds (`read_account_until_ok`)."""
    sent: bool = True
    """False: the exchange adapter deliberately sent nothing (shadow mode, `OrderNotSent`); journaled
    cancelled with its reason, and the decision ends there."""


class OrderSender:
    """Sends and settles one order at a time per instrument (the order runner sees to that)."""

    def __init__(
        self,
        exchange: Exchange,
        journal: Journal,
        clock: Clock,
        state: MarketState,
        ingest: Ingest,
        trading: TradingStatus,
        counters: Counters,
        alerts: BackgroundAlerts,
        *,
        order_timeout_secs: float,
        post_only_timeout_secs: float,
        stale_secs: float,
        price_collar_bps: Decimal,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.exchange = exchange
        self.journal = journal
        self.clock = clock
        self.state = state
        self.ingest = ingest
        """The account read after each order goes in through it (the only writer of `state`)."""
        self.trading = trading
        self.counters = counters
        self.alerts = alerts
        self.order_timeout_secs = order_timeout_secs
        self.post_only_timeout_secs = post_only_timeout_secs
        self.stale_secs = stale_secs
        self.price_collar_bps = price_collar_bps
        self.monotonic = monotonic
        """The wall clock of back-offs and order timeouts (a backtest's replays time)."""
        self.draining = False
        """Shutting down: no further slice or fallback order."""
        self.observe_tick_to_order_secs: Callable[[float], None] = lambda _secs: None
        """Called as each order request goes out with the seconds since its quote arrived (bootstrap sets
        the metrics' observer)."""
        self._backoff: dict[str, tuple[float, float]] = {}
        """Symbol -> (monotonic time until which no order is sent, the delay that set it)."""

    def backing_off(self, symbol: str) -> bool:
        backoff = self._backoff.get(symbol)
        return backoff is not None and self.monotonic() < backoff[0]

    def filled(self, symbol: str) -> None:
        """A decision on `symbol` filled something: its back-off is over."""
        self._backoff.pop(symbol, None)

    def local_state(self, request: OrderRequest, status: OrderStatus, reason: str) -> OrderState:
        """The state of an order the exchange did not report: not sent, refused, or of unknown outcome."""
        return OrderState(
            client_order_id=request.client_order_id,
            exchange_order_id="",
            symbol=request.symbol,
            side=request.side,
            amount_contracts=request.amount_contracts,
            filled_contracts=Decimal(0),
            status=status,
            ts=self.clock.now(),
            order_type=request.order_type,
            reject_reason=reason,
        )

    def basis(self, symbol: str, asset: str, band_coin: Decimal) -> Basis:
        """What an order on `symbol` for `asset` sized now is sized from."""
        return Basis(self.state.quotes[symbol], self.state.received_at[symbol],
                     self.state.position_contracts(symbol), asset, self._delta_coin(asset), band_coin)

    def _delta_coin(self, asset: str) -> Decimal:
        delta = self.state.deltas().get(asset)
        return delta.delta_coin if delta is not None else Decimal(0)

    async def run(self, request: OrderRequest, basis: Basis) -> Ended | None:
        """Send one journaled order sized from `basis`, unless that no longer holds, and settle it (a
        post-only order is cancelled after its timeout); then read the account again. None when it was not
        sent (journaled cancelled, with the reason) or was refused."""
        try:
            sent = await self._send(request, basis)
        except OrderNotSent as exc:
            log.info("order_not_sent", client_order_id=request.client_order_id, symbol=request.symbol,
                     reason=str(exc))
            self.counters.order_done(OrderStatus.CANCELED)
            withheld = self.local_state(request, OrderStatus.CANCELED, str(exc))
            await self._journal_sent(withheld)
            return Ended(withheld, falls_back=False, account_read=True, sent=False)
        if sent is None:
            return None
        timeout = self.post_only_timeout_secs if request.post_only else None
        state, timed_out = await self._settle(request, sent, timeout)
        self.counters.order_done(state.status)
        if state.status is OrderStatus.CANCELED and not timed_out:
            self._back_off(request.symbol)  # not ours: the next order on it waits a moment
        # A post-only order that would take: refused at once, or (Bybit) accepted and then refused.
        refused = OrderStatus.REJECTED in (sent.status, state.status)
        rest = request.amount_contracts - state.filled_contracts
        falls_back = request.post_only and rest > 0 and (refused or timed_out)
        return Ended(state, falls_back, await self.read_account())

    def _not_sendable(self, request: OrderRequest, basis: Basis) -> str | None:
        """Why the order may not go now that its journal write has returned, or None: shutting down (an
        order refused as rate limited is not sent again), trading halted (or the trader lock lost) since it
        was sized, the quote it was sized from older than the stale limit (as the risk check measures it),
        its touch moved beyond the price collar since, its position changed under it, or its asset's delta
        moved by more than the decision's band or DELTA_MOVE_TOLERANCE of itself (a zero band, the timer's,
        would otherwise drop an hourly hedge on any flicker of the delta)."""
        if self.draining:
            return "not sent: shutting down"
        if self.trading.halted():
            return "halted before it was sent"
        age_secs = self.state.age_secs(basis.quote, basis.received_at, self.clock.speed,
                                       self.clock.now().timestamp())
        if age_secs > self.stale_secs:
            return f"not sent: its quote is {age_secs:.1f} s old (stale after {self.stale_secs:g} s)"
        sized = taking_price(request.side, basis.quote)
        now = taking_price(request.side, self.state.quotes[request.symbol])
        moved_bps = abs(now - sized) / sized * 10_000 if sized > 0 else Decimal("Infinity")
        if moved_bps > self.price_collar_bps:
            return f"not sent: the price moved {moved_bps:.0f} bps since it was sized"
        if self.state.position_contracts(request.symbol) != basis.position_contracts:
            return "not sent: the position changed since it was sized"
        moved_coin = abs(self._delta_coin(basis.asset) - basis.delta_coin)
        tolerance_coin = max(basis.band_coin, abs(basis.delta_coin) * DELTA_MOVE_TOLERANCE)
        if moved_coin > tolerance_coin:
            return (f"not sent: the {basis.asset} delta moved {moved_coin.normalize():f} since it was sized "
                    f"(more than {tolerance_coin.normalize():f})")
        return None

    async def _send(self, request: OrderRequest, basis: Basis) -> OrderState | None:
        """Place the order unless its basis no longer holds (checked again before each resend after a
        rate-limit refusal, once the exchange's pause is over: a halt, a lost lock or a stale quote meanwhile
        stops it)."""
        for attempt in range(RESEND_LIMIT + 1):
            reason = self._not_sendable(request, basis)
            if reason is not None:
                log.warning("order_not_sent", client_order_id=request.client_order_id, symbol=request.symbol,
                            reason=reason)
                self.counters.order_done(OrderStatus.CANCELED)
                await self._journal_sent(self.local_state(request, OrderStatus.CANCELED, reason))
                return None
            try:
                tick_to_order_secs = self.monotonic() - basis.received_at
                state = await self.exchange.place_order(request)
                self.observe_tick_to_order_secs(tick_to_order_secs)  # only for an order sent
                log.info(
                    "order_submitted",
                    client_order_id=request.client_order_id,
                    symbol=request.symbol,
                    side=request.side.value,
                    amount=str(request.amount_contracts),
                )
                await self._journal_sent(state)
                return state
            except RateLimited as exc:
                if attempt == RESEND_LIMIT:
                    await self._fail(request, "rate limited: not sent")
                    return None
                await asyncio.sleep(max(0.5 * 2**attempt, exc.retry_after_secs or 0))
            except OrderRejected as exc:
                if request.post_only:  # it would have taken: the market fallback sends it
                    log.info("post_only_refused", client_order_id=request.client_order_id, reason=str(exc))
                    refused = self.local_state(request, OrderStatus.REJECTED, str(exc))
                    await self._journal_sent(refused)
                    return refused
                await self._fail(request, str(exc))
                return None
            except OrderOutcomeUnknown as exc:
                log.warning("order_outcome_unknown", client_order_id=request.client_order_id, error=str(exc))
                self.alerts.send(
                    "warning",
                    "order_outcome_unknown",
                    f"order {request.client_order_id}: outcome unknown, settling by client id",
                    request.symbol,
                )
                unknown = self.local_state(request, OrderStatus.UNKNOWN, str(exc))
                await self._journal_sent(unknown)
                return unknown
        return None

    async def _journal_sent(self, state: OrderState) -> None:
        """Journal what became of an order. A write that fails (a frozen database) changes nothing of what
        follows (a sent order stays in flight until it is final, a refusal still alerts and backs off), and
        the periodic reconciliation journals what this could not."""
        try:
            await self.journal.update_order(state)
        except Exception as exc:
            log.error("order_journal_failed", client_order_id=state.client_order_id,
                      status=state.status.value, error=str(exc))

    async def _fail(self, request: OrderRequest, reason: str) -> None:
        self.counters.order_done(OrderStatus.REJECTED)
        log.error("order_rejected", client_order_id=request.client_order_id, reason=reason)
        rejected = f"order {request.client_order_id} rejected: {reason}"
        self.alerts.send("error", "order_rejected", rejected, request.symbol)
        self._back_off(request.symbol)
        await self._journal_sent(self.local_state(request, OrderStatus.REJECTED, reason))

    def _back_off(self, symbol: str) -> None:
        previous = self._backoff.get(symbol)
        delay = min(previous[1] * 2, REJECT_BACKOFF_MAX_SECS) if previous else REJECT_BACKOFF_SECS
        self._backoff[symbol] = (self.monotonic() + delay, delay)
        log.warning("order_backoff", symbol=symbol, secs=delay)

    async def _settle(
        self, request: OrderRequest, state: OrderState, timeout_secs: float | None = None
    ) -> tuple[OrderState, bool]:
        """Poll the order by client id until it is final; cancel it if it outlives the timeout (the order
        timeout unless given). Returns its state, and whether it ended cancelled after that cancel of ours.

        A look-up that fails is no answer: it is asked again, backing off, for as long as it takes (the
        order stays in flight, its instrument blocked), with one alert once the order has gone unsettled an
        order timeout past its cancel. So is a cancel that fails, or that finds nothing to cancel while the
        order's outcome is unknown (it may land later): it is sent again with the next look-up until one
        succeeds on an order the exchange knows. Only the exchange answering that it does not know an order of
        unknown outcome, once the request could have landed (the order timeout), ends it as never arrived.
        While stopping (`draining`), an order still not final after its cancel is left, as it stands, to the
        next start's reconciliation, so that a stop does not wait on an unreachable exchange."""
        timeout = self.order_timeout_secs if timeout_secs is None else timeout_secs
        started = self.monotonic()
        deadline = started + timeout
        lost_after = started + self.order_timeout_secs
        alert_after = deadline + self.order_timeout_secs
        canceled = cancel_tried = alerted = False
        wait_secs = SETTLE_POLL_SECS
        while not state.status.is_final:
            await asyncio.sleep(SETTLE_POLL_SECS if self.draining else wait_secs)
            try:
                found = await self.exchange.fetch_order(request.symbol, request.client_order_id)
            except Exception as exc:
                wait_secs = min(wait_secs * 2, READ_BACKOFF_MAX_SECS)
                log.warning("order_lookup_failed", client_order_id=request.client_order_id, error=str(exc),
                            retry_in_secs=wait_secs)
            else:
                wait_secs = SETTLE_POLL_SECS
                if found is not None:
                    state = found
                    await self._journal_sent(state)
                elif state.status is OrderStatus.UNKNOWN and self.monotonic() > lost_after:
                    # The exchange says it does not have it: the request did not arrive.
                    state = self.local_state(request, OrderStatus.REJECTED, "not found on the exchange")
                    await self._journal_sent(state)
            if state.status.is_final:
                break
            now = self.monotonic()
            if not alerted and now > alert_after:
                alerted = True
                log.error("order_unsettled", client_order_id=request.client_order_id,
                          status=state.status.value, secs=round(now - started))
                self.alerts.send(
                    "error",
                    "order_unsettled",
                    f"order {request.client_order_id} on {request.symbol} still {state.status.value} after "
                    f"{now - started:.0f} s: no new order on {request.symbol} until it is final",
                    request.symbol,
                )
            if now > deadline:
                if cancel_tried and self.draining:
                    log.warning("order_left_unsettled", client_order_id=request.client_order_id,
                                status=state.status.value)
                    break
                if not canceled:
                    cancel_tried = True
                    try:
                        await self.exchange.cancel_order(request.symbol, request.client_order_id)
                    except Exception as exc:
                        log.warning("cancel_failed", client_order_id=request.client_order_id, error=str(exc))
                    else:
                        canceled = state.status is not OrderStatus.UNKNOWN
        return state, canceled and state.status is OrderStatus.CANCELED

    async def read_account(self) -> bool:
        """Read the account again; False (logged `account_refresh_failed`) when that failed."""
        try:
            self.ingest.on_account(await self.exchange.fetch_account())
        except Exception as exc:
            log.warning("account_refresh_failed", error=str(exc))
            return False
        return True

    async def read_account_showing(self, symbol: str, before: Decimal, filled: Decimal) -> None:
        """Read the account again until its position in `symbol` is `before` (what the orders were sized
        on) plus `filled` (what they filled, signed): an exchange's position can lag its order's fill, and a
        decision on the position from before the fill hedges again. After reads for the order timeout, a
        position other than `before` is the exchange's answer (something else moved it too): taken, with
        an alert. One still at `before` is read on, backing off (no new order on `symbol`), alerted, and
        taken, alerted again, after POSITION_WAIT_TIMEOUTS order timeouts: what filled may have been closed
        since (a liquidation, an operator), and the hedge is not held back for good."""
        wait_secs, waited_secs, alerted = SETTLE_POLL_SECS, 0.0, False
        expected = before + filled
        while (shown := self.state.position_contracts(symbol)) != expected and not self.draining:
            taken = shown != before or waited_secs >= self.order_timeout_secs * POSITION_WAIT_TIMEOUTS
            if waited_secs >= self.order_timeout_secs and (taken or not alerted):
                alerted = True
                log.error("position_not_updated", symbol=symbol, expected=str(expected), shown=str(shown),
                          taken=taken)
                then = "deciding on what it shows" if taken else f"no new order on {symbol} until it does"
                self.alerts.send("error", "position_not_updated",
                                 f"{symbol}: the account shows a position of {shown} after "
                                 f"{waited_secs:.0f} s, not the {expected} its fills make: {then}", symbol)
                if taken:
                    return
            await asyncio.sleep(wait_secs)
            waited_secs += wait_secs
            await self.read_account()
            wait_secs = min(wait_secs * 2, READ_BACKOFF_MAX_SECS)

    async def read_account_until_ok(self) -> None:
        """Read the account, backing off, until a read succeeds or the bot stops (the next start reads it)."""
        wait_secs = SETTLE_POLL_SECS
        while not self.draining:
            await asyncio.sleep(wait_secs)
            if await self.read_account():
                log.info("account_refreshed")
                return
            wait_secs = min(wait_secs * 2, READ_BACKOFF_MAX_SECS)


def taking_price(side: Side, quote: Quote) -> Decimal:
    """The price an order on `side` takes at: the ask for a buy, the bid for a sell."""
    return quote.ask if side is Side.BUY else quote.bid

