"""The order path of the decision cycle on an exchange and a journal that misbehave (issue 11): a failed
look-up is no answer, nothing is sent on what changed while its journal write blocked, the market fallback
follows only the bot's own timeout cancel, and a failed re-read of the account after a fill is no failed
order.

The ports are hand-written fakes; the decision cycle, the order runner and the risk check are real."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from deltakeeper.adapters.journal.lock import TraderLock
from deltakeeper.adapters.shadow import ShadowExchange
from deltakeeper.app.control import OperatorControl
from deltakeeper.app.cycle import CycleOptions
from deltakeeper.app.execution import ExecutionOptions, ExecutionStyle
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.runner import Runner
from deltakeeper.app.service import ServiceOptions, build_service
from deltakeeper.domain import risk
from deltakeeper.domain.decide_policies import FixedBandPolicy, HedgePolicy, TimerPolicy
from deltakeeper.domain.errors import (
    ExchangeUnavailable,
    JournalUnavailable,
    OrderOutcomeUnknown,
    OrderRejected,
    RateLimited,
)
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import Instrument, Kind
from deltakeeper.domain.journal_rows import ControlEventRow, JournalQuery
from deltakeeper.domain.orders import (
    Fill,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    client_order_id,
)
from deltakeeper.domain.policy import AssetPolicy, Band, BandUnit
from deltakeeper.domain.records import AccountSnapshot, ControlState, DecisionRecord, OrderRecord
from deltakeeper.ports import AccountEvent

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
SOL = "SOL/USDT:USDT"
PERP = Instrument(SOL, Kind.PERPETUAL, "SOL", "USDT", "USDT", lot_step_contracts=D("0.1"),
                  min_contracts=D("0.1"))
HELD_SOL = D(1000)
"""The account holds 1,000 SOL and no hedge: the bot sells 1,000 contracts of the perpetual."""
STALE_SECS = 10.0
COLLAR_BPS = D(100)
ORDER_TIMEOUT_SECS = 0.2


class Clock:
    """The injected clock: stands still unless a test moves it."""

    speed = 1.0

    def __init__(self) -> None:
        self.t = T0

    def now(self) -> datetime:
        return self.t

    def advance(self, secs: float) -> None:
        self.t += timedelta(seconds=secs)


class Exchange:
    """The exchange port: market orders fill whole at the touch at once, limit orders rest. Faults are
    switched by the test."""

    name = "fake"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.placed: list[OrderRequest] = []
        self.orders: dict[str, OrderState] = {}
        self.position = D(0)
        self.reads = 0
        self.outcome_unknown = 0
        """The next this many placements are accepted, and their answer is lost."""
        self.lookups_failing = 0
        """The next this many order look-ups (and the cancels meanwhile) fail."""
        self.account_reads_failing = 0
        """The next this many account reads fail."""
        self.rate_limited = 0
        """The next this many placements are refused as rate limited (they never reach the book)."""
        self.rejecting = 0
        """The next this many placements are refused for good (OrderRejected)."""
        self.cancels_failing = 0
        """The next this many cancels fail."""
        self.reads_lagging = 0
        """The next this many account reads still report the position from before the last fill (an
        exchange whose position endpoint lags its order endpoint)."""
        self.reported_position = D(0)
        """The position as the lagging reads report it."""
        self.moved_elsewhere = D(0)
        """Contracts traded on the account by someone else, in every read from now on."""
        self.refused: list[OrderRequest] = []

    async def place_order(self, request: OrderRequest) -> OrderState:
        if self.rate_limited:
            self.rate_limited -= 1
            self.refused.append(request)
            raise RateLimited("429 Too Many Requests")
        if self.rejecting:
            self.rejecting -= 1
            self.refused.append(request)
            raise OrderRejected("insufficient balance")
        self.placed.append(request)
        if request.order_type is OrderType.MARKET:
            price = D("100.01") if request.side is Side.BUY else D("99.99")
            state = self._state(request, request.amount_contracts, OrderStatus.FILLED, price)
            self.position += request.amount_contracts * request.side.sign
        else:
            state = self._state(request, D(0), OrderStatus.OPEN, None)
        self.orders[request.client_order_id] = state
        if self.outcome_unknown:
            self.outcome_unknown -= 1
            raise OrderOutcomeUnknown("request timed out")
        return state

    def _state(self, request: OrderRequest, filled: D, status: OrderStatus, price: D | None) -> OrderState:
        return OrderState(request.client_order_id, f"x{len(self.placed)}", request.symbol, request.side,
                          request.amount_contracts, filled, status, self.clock.now(), price,
                          request.order_type, request.price)

    async def fetch_order(self, symbol: str, client_order_id: str) -> OrderState | None:
        if self.lookups_failing:
            self.lookups_failing -= 1
            raise ExchangeUnavailable("503 Service Temporarily Unavailable")
        return self.orders.get(client_order_id)

    async def cancel_order(self, symbol: str, client_order_id: str) -> None:
        if self.lookups_failing or self.cancels_failing:
            self.cancels_failing = max(self.cancels_failing - 1, 0)
            raise ExchangeUnavailable("503 Service Temporarily Unavailable")
        state = self.orders.get(client_order_id)
        if state is not None and not state.status.is_final:
            self.orders[client_order_id] = replace(state, status=OrderStatus.CANCELED)

    async def cancel_all_orders(self, symbol: str | None = None) -> None:
        for cid, state in list(self.orders.items()):
            if not state.status.is_final:
                self.orders[cid] = replace(state, status=OrderStatus.CANCELED)

    async def fetch_account(self) -> AccountSnapshot:
        if self.account_reads_failing:
            self.account_reads_failing -= 1
            raise ExchangeUnavailable("503 Service Temporarily Unavailable")
        self.reads += 1
        if self.reads_lagging:
            self.reads_lagging -= 1
        else:
            self.reported_position = self.position + self.moved_elsewhere
        # after any snapshot a test made
        return account(self.reported_position, self.clock.now(), seq=1000 + self.reads)

    async def fetch_fills(self, since: datetime) -> list[Fill]:
        return []


def account(position: D, ts: datetime = T0, seq: int = 0, held: D = HELD_SOL) -> AccountSnapshot:
    positions = (Position(SOL, position, D(100), D(100)),) if position else ()
    return AccountSnapshot({"SOL": held, "USDT": D(100_000)}, positions, ts, seq)


class Journal:
    """The journal port: what it was told. `on_write` runs inside the decision's (pending order's) write:
    a write that blocks while the world moves on."""

    def __init__(self) -> None:
        self.decisions: list[tuple[DecisionRecord, OrderRecord | None]] = []
        self.orders: dict[str, list[OrderState | OrderRecord]] = {}
        self.on_write: Callable[[], Awaitable[None]] | None = None
        self.on_order_write: Callable[[], Awaitable[None]] | None = None
        self.updates_failing = False

    async def record_decision(self, decision: DecisionRecord, pending: OrderRecord | None = None) -> None:
        if pending is not None and self.on_write is not None:
            await self.on_write()
        self.decisions.append((decision, pending))
        if pending is not None:
            self.orders.setdefault(pending.client_order_id, []).append(pending)

    async def record_order(self, order: OrderRecord) -> None:
        if self.on_order_write is not None:
            await self.on_order_write()
        self.orders.setdefault(order.client_order_id, []).append(order)

    async def update_order(self, state: OrderState) -> None:
        if self.updates_failing:
            raise TimeoutError("journal write took longer than 5 s")
        self.orders.setdefault(state.client_order_id or "", []).append(state)

    async def record_fills(self, fills: object) -> int:
        return 0

    def last(self, client_order_id: str) -> OrderState | OrderRecord:
        return self.orders[client_order_id][-1]

    def sent_decisions(self) -> list[DecisionRecord]:
        return [d for d, pending in self.decisions if pending is not None]


class Alerts:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send(self, level: str, event: str, message: str, subject: str = "") -> None:
        self.sent.append((level, event, message))

    def events(self) -> list[str]:
        return [event for _, event, _ in self.sent]


class Bot:
    def __init__(self, execution: ExecutionOptions | None = None, policy: HedgePolicy | None = None,
                 shadow: bool = False) -> None:
        self.clock = Clock()
        self.exchange = Exchange(self.clock)
        self.journal = Journal()
        self.alerts = Alerts()
        self.state = MarketState({SOL: PERP}, {}, {"SOL": SOL}, clock=self.clock)
        limits = risk.RiskLimits(D(10**9), D(10**12), D(10**12), STALE_SECS, COLLAR_BPS)
        cycle = CycleOptions(execution=execution or ExecutionOptions(), policy=policy or FixedBandPolicy())
        options = ServiceOptions(limits, ORDER_TIMEOUT_SECS, 300.0, cycle)
        policies = {"SOL": AssetPolicy("SOL", SOL, Band(BandUnit.COIN, D(1)))}
        exchange = ShadowExchange(self.exchange) if shadow else self.exchange  # type: ignore[arg-type]
        self.service = build_service(exchange, self.journal, self.clock,  # type: ignore[arg-type]
                                     self.alerts, self.state, policies, options)
        self.state.on_account(account(D(0)))

    async def quote(self, mid: D = D(100)) -> None:
        """A fresh quote: the decision cycle decides on it."""
        self.service.ingest.on_quote(Quote(SOL, mid - D("0.01"), mid + D("0.01"), mid, self.clock.now()))
        await self.service.cycle.on_quote(SOL)

    async def until(self, condition: Callable[[], bool], what: str, timeout_secs: float = 5) -> None:
        deadline = time.monotonic() + timeout_secs
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)

    async def idle(self) -> None:
        """Every order task has ended (and the alerts they spawned are sent)."""
        orders = self.service.orders
        await self.until(lambda: not orders.in_flight, "nothing in flight")
        while orders.tasks:
            await asyncio.gather(*orders.tasks)
        await orders.sender.alerts.flush()


# -- item 1: an order of unknown outcome whose look-ups fail ---------------------------------------------


async def test_an_unknown_order_whose_look_ups_fail_stays_in_flight_until_answered_and_goes_once() -> None:
    bot = Bot()
    bot.exchange.outcome_unknown = 1  # accepted (and filled), but the answer is lost
    bot.exchange.lookups_failing = 2  # then 503s, well past the order timeout
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the hedge to be sent")
    cid = bot.exchange.placed[0].client_order_id

    while cid in bot.service.orders.in_flight.values():  # quotes keep coming while the order is unsettled
        assert bot.journal.last(cid).status is not OrderStatus.REJECTED
        await bot.quote()
        await bot.service.cycle.evaluate_all()
        await asyncio.sleep(0.05)
    await bot.idle()

    assert [r.amount_contracts for r in bot.exchange.placed] == [HELD_SOL]  # sent once, never again
    assert len(bot.journal.sent_decisions()) == 1  # no second decision on SOL while it was unsettled
    assert bot.journal.last(cid).status is OrderStatus.FILLED
    assert bot.state.position_contracts(SOL) == -HELD_SOL
    assert bot.alerts.events().count("order_unsettled") == 1
    assert "order_failed" not in bot.alerts.events()


async def test_only_the_exchange_saying_not_found_ends_an_unknown_order_as_never_arrived() -> None:
    bot = Bot()
    bot.exchange.outcome_unknown = 1
    bot.exchange.lookups_failing = 2
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the hedge to be sent")
    cid = bot.exchange.placed[0].client_order_id
    del bot.exchange.orders[cid]  # it did not arrive after all
    bot.exchange.position = D(0)
    await bot.until(lambda: bot.journal.last(cid).status is OrderStatus.REJECTED, "the order to be settled")
    assert bot.journal.last(cid).reject_reason == "not found on the exchange"


# -- item 6: a journal write that blocks ------------------------------------------------------------------


async def stale_by_now(bot: Bot) -> None:
    bot.clock.advance(STALE_SECS + 1)


async def halted_meanwhile(bot: Bot) -> None:
    bot.service.trading.halt("operator")


async def holdings_changed(bot: Bot) -> None:
    bot.state.on_account(account(D(0), bot.clock.now(), seq=99, held=D(400)))


async def position_changed(bot: Bot) -> None:
    bot.state.on_account(account(D(-600), bot.clock.now(), seq=99))


async def holdings_moved_within_the_band(bot: Bot) -> None:
    bot.state.on_account(account(D(0), bot.clock.now(), seq=99, held=HELD_SOL + D("0.5")))


async def price_moved(bot: Bot) -> None:
    mid = D(103)  # 300 bps: beyond the 100 bps collar
    bot.state.on_quote(Quote(SOL, mid - D("0.01"), mid + D("0.01"), mid, bot.clock.now()))


async def lock_lost_meanwhile(bot: Bot) -> None:
    lock = TraderLock(lambda: asyncio.sleep(0))
    bot.service.trading.holds_lock = lock.held  # as bootstrap wires it
    lock.lose("the lock's database session ended")


@pytest.mark.parametrize(("meanwhile", "reason"), [
    (stale_by_now, "not sent: its quote is 11.0 s old (stale after 10 s)"),
    (halted_meanwhile, "halted before it was sent"),
    (lock_lost_meanwhile, "halted before it was sent"),
    (holdings_changed, "not sent: the SOL delta moved 600 since it was sized (more than 50)"),
    (position_changed, "not sent: the position changed since it was sized"),
    (price_moved, "not sent: the price moved 300 bps since it was sized"),
])
async def test_an_order_whose_basis_went_stale_or_changed_during_its_journal_write_is_not_sent(
    meanwhile: Callable[[Bot], Awaitable[None]], reason: str
) -> None:
    bot = Bot()

    async def slow_write() -> None:
        bot.journal.on_write = None  # only this write blocks
        await meanwhile(bot)

    bot.journal.on_write = slow_write
    await bot.quote()
    await bot.idle()

    [(first, pending)] = bot.journal.decisions[:1]
    assert pending is not None and first.amount_contracts == HELD_SOL
    cid = pending.client_order_id
    assert cid not in {r.client_order_id for r in bot.exchange.placed}
    ended = bot.journal.last(cid)
    assert (ended.status, ended.reject_reason) == (OrderStatus.CANCELED, reason)


async def test_an_order_whose_delta_moved_within_its_band_during_its_journal_write_is_sent() -> None:
    bot = Bot()

    async def slow_write() -> None:
        bot.journal.on_write = None
        await holdings_moved_within_the_band(bot)

    bot.journal.on_write = slow_write
    await bot.quote()
    await bot.idle()
    assert [r.amount_contracts for r in bot.exchange.placed] == [HELD_SOL]


async def test_a_timer_order_whose_delta_moved_a_hair_during_its_journal_write_is_sent() -> None:
    bot = Bot(policy=TimerPolicy(3600))  # a zero band, hourly

    async def slow_write() -> None:
        bot.journal.on_write = None
        bot.state.on_account(account(D(0), bot.clock.now(), seq=99, held=HELD_SOL + D("0.001")))

    bot.journal.on_write = slow_write
    await bot.quote()
    await bot.idle()
    assert [r.amount_contracts for r in bot.exchange.placed] == [HELD_SOL]  # not dropped for an hour


async def test_after_a_stale_write_the_next_cycle_decides_afresh_on_a_new_quote() -> None:
    bot = Bot()

    async def slow_write() -> None:
        bot.journal.on_write = None
        await stale_by_now(bot)

    bot.journal.on_write = slow_write
    await bot.quote()
    await bot.idle()
    assert bot.exchange.placed == []
    assert bot.service.decisions.last["SOL"].reason == "stale_price"  # the next cycle: no order on it

    await bot.quote()
    await bot.idle()
    assert [r.amount_contracts for r in bot.exchange.placed] == [HELD_SOL]


async def test_an_order_whose_journal_write_fails_is_not_sent() -> None:
    bot = Bot()

    async def failing_write() -> None:
        raise TimeoutError("journal write took longer than 5 s")

    bot.journal.on_write = failing_write
    await bot.quote()  # the failure is logged with the quote (`quote_failed`), the quote stream goes on
    await bot.idle()
    assert bot.exchange.placed == [] and not bot.service.orders.in_flight
    assert bot.service.counters.errors == 1


async def test_a_slice_whose_journal_write_fails_is_not_sent() -> None:
    bot = Bot(ExecutionOptions(slice_max_usd=D(60_000)))  # two slices of 500 SOL

    async def failing_write() -> None:
        raise TimeoutError("journal write took longer than 5 s")

    bot.journal.on_order_write = failing_write
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the first slice")
    await bot.quote()  # the newer quote the second slice waits for
    await bot.idle()
    second_slice = client_order_id(bot.journal.decisions[0][0].decision_id, 0, 1)
    assert second_slice not in {r.client_order_id for r in bot.exchange.placed}
    assert "order_failed" in bot.alerts.events()
    # the next decision, on the account read after the first slice, sells what is left: never more
    assert sum(r.amount_contracts for r in bot.exchange.placed) == HELD_SOL


async def test_a_sent_order_whose_journal_updates_fail_is_settled_on_and_its_instrument_held() -> None:
    bot = Bot(ExecutionOptions(ExecutionStyle.POST_ONLY, post_only_timeout_secs=30))
    bot.journal.updates_failing = True  # the database froze after the order's pending write
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the post-only order")
    [limit] = bot.exchange.placed
    for _ in range(10):
        await bot.quote()
        await asyncio.sleep(0.05)
    assert bot.exchange.placed == [limit]  # no second order while the first rests
    assert bot.service.orders.in_flight == {SOL: limit.client_order_id}
    assert "order_failed" not in bot.alerts.events()

    bot.journal.updates_failing = False
    await bot.exchange.cancel_all_orders()
    await bot.idle()
    assert bot.journal.last(limit.client_order_id).status is OrderStatus.CANCELED


# -- item 11: cancel-all on a resting post-only order; a failed re-read after a fill ----------------------


async def test_a_post_only_order_cancelled_by_cancel_all_ends_its_decision_without_a_fallback() -> None:
    bot = Bot(ExecutionOptions(ExecutionStyle.POST_ONLY, post_only_timeout_secs=30))
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the post-only order")
    [limit] = bot.exchange.placed
    assert limit.post_only

    await bot.exchange.cancel_all_orders()  # what `deltakeeper cancel-all` has the running bot do
    await bot.idle()

    assert bot.exchange.placed == [limit]  # no market fallback
    assert bot.journal.last(limit.client_order_id).status is OrderStatus.CANCELED
    assert bot.service.orders.sender.backing_off(SOL)  # the next order on SOL waits a moment


async def test_a_post_only_order_cancelled_by_a_halt_sends_nothing_more() -> None:
    bot = Bot(ExecutionOptions(ExecutionStyle.POST_ONLY, post_only_timeout_secs=30))
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the post-only order")
    bot.service.trading.halt("operator")  # as OperatorControl applies a halt
    await bot.exchange.cancel_all_orders()
    await bot.idle()
    await bot.quote()
    await bot.idle()
    assert [r.post_only for r in bot.exchange.placed] == [True]


async def test_a_post_only_order_cancelled_by_its_own_timeout_falls_back_to_market() -> None:
    bot = Bot(ExecutionOptions(ExecutionStyle.POST_ONLY, post_only_timeout_secs=0.1))
    await bot.quote()
    await bot.idle()
    limit, fallback = bot.exchange.placed
    assert limit.post_only and fallback.order_type is OrderType.MARKET
    assert fallback.amount_contracts == HELD_SOL


async def test_a_post_only_order_the_exchange_accepts_and_then_refuses_falls_back_to_market() -> None:
    bot = Bot(ExecutionOptions(ExecutionStyle.POST_ONLY, post_only_timeout_secs=30))
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the post-only order")
    [limit] = bot.exchange.placed
    state = bot.exchange.orders[limit.client_order_id]  # it would take: Bybit cancels it at once
    bot.exchange.orders[limit.client_order_id] = replace(state, status=OrderStatus.REJECTED)
    await bot.idle()

    _, fallback = bot.exchange.placed
    assert fallback.order_type is OrderType.MARKET and fallback.amount_contracts == HELD_SOL


async def test_an_order_refused_as_rate_limited_is_not_resent_once_trading_is_halted() -> None:
    bot = Bot()
    bot.exchange.rate_limited = 1
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.refused), "the rate-limited placement")
    bot.service.trading.halt("trader lock lost")  # during the resend's back-off
    await bot.idle()

    [refused] = bot.exchange.refused
    assert bot.exchange.placed == []
    assert bot.journal.last(refused.client_order_id).status is OrderStatus.CANCELED


async def test_a_failed_account_read_after_a_fill_reports_the_fill_and_holds_the_instrument() -> None:
    bot = Bot()
    bot.exchange.account_reads_failing = 3
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the hedge")
    cid = bot.exchange.placed[0].client_order_id
    await bot.until(lambda: "rebalance_completed" in bot.alerts.events(), "the fill's report")

    while bot.exchange.account_reads_failing:  # quotes keep coming while the account is unknown
        assert SOL in bot.service.orders.in_flight
        await bot.quote()
        await asyncio.sleep(0.05)
    await bot.idle()

    assert [r.amount_contracts for r in bot.exchange.placed] == [HELD_SOL]  # never hedged twice
    assert bot.journal.last(cid).status is OrderStatus.FILLED
    assert "order_failed" not in bot.alerts.events()
    [completed] = [m for _, e, m in bot.alerts.sent if e == "rebalance_completed"]
    assert "delta 1000 -> ? SOL" in completed  # not the pre-fill account's delta
    assert bot.state.position_contracts(SOL) == -HELD_SOL  # released by the read that succeeded
    assert len(bot.journal.sent_decisions()) == 1


async def test_an_account_read_that_lags_the_fill_is_read_again_before_the_next_decision() -> None:
    bot = Bot()
    bot.exchange.reads_lagging = 2  # the reads just after the fill still show no hedge
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the hedge")
    await bot.idle()

    assert [r.amount_contracts for r in bot.exchange.placed] == [HELD_SOL]  # never hedged twice
    assert bot.exchange.reads == 3  # read until the position showed the fill
    assert bot.state.position_contracts(SOL) == -HELD_SOL
    [after] = [d for d, pending in bot.journal.decisions if pending is None]  # the decision after the order
    assert after.reason == "inside_band" and after.delta_coin == 0


async def test_a_position_moved_by_something_else_too_is_taken_after_the_order_timeout() -> None:
    bot = Bot()
    bot.exchange.moved_elsewhere = D(-3)  # the operator sold 3 more meanwhile
    await bot.quote()
    await bot.until(lambda: bool(bot.exchange.placed), "the hedge")
    await bot.idle()

    assert "position_not_updated" in bot.alerts.events()
    assert [(r.side, r.amount_contracts) for r in bot.exchange.placed] == [(Side.SELL, HELD_SOL),
                                                                          (Side.BUY, D(3))]
    assert bot.state.position_contracts(SOL) == -HELD_SOL


async def test_a_fill_closed_again_by_something_else_frees_the_market_after_ten_order_timeouts() -> None:
    bot = Bot()
    bot.exchange.moved_elsewhere = HELD_SOL  # an operator bought the hedge back: the position reads 0 again
    await bot.quote()
    await bot.until(lambda: len(bot.exchange.placed) > 1, "the hedge sent again", timeout_secs=10)
    await bot.idle()

    notes = [m for _, e, m in bot.alerts.sent if e == "position_not_updated"]
    assert "until it does" in notes[0] and "deciding on what it shows" in notes[1]
    assert [r.amount_contracts for r in bot.exchange.placed] == [HELD_SOL, HELD_SOL]  # not held back for good


async def test_a_post_only_order_whose_cancel_fails_is_cancelled_again_and_falls_back_to_market() -> None:
    bot = Bot(ExecutionOptions(ExecutionStyle.POST_ONLY, post_only_timeout_secs=0.1))
    bot.exchange.cancels_failing = 1  # the cancel after its timeout gets a 503
    await bot.quote()
    await bot.idle()

    limit, fallback = bot.exchange.placed  # never left resting, its instrument blocked for good
    assert bot.journal.last(limit.client_order_id).status is OrderStatus.CANCELED
    assert fallback.order_type is OrderType.MARKET and fallback.amount_contracts == HELD_SOL


# -- review: a refusal the journal cannot record; the decision after an order; a lost trader lock -----------


async def test_a_refused_order_whose_journal_write_fails_is_still_alerted_and_backed_off() -> None:
    bot = Bot()
    bot.exchange.rejecting = 1
    bot.journal.updates_failing = True  # the database froze after the order's pending write
    await bot.quote()
    await bot.idle()

    assert len(bot.exchange.refused) == 1 and bot.exchange.placed == []
    assert "order_rejected" in bot.alerts.events() and "order_failed" not in bot.alerts.events()
    assert bot.service.orders.sender.backing_off(SOL)  # no new order on SOL straight away


async def test_a_decision_that_fails_after_an_order_is_logged_and_its_task_ends_cleanly() -> None:
    bot = Bot()
    record_decision = bot.journal.record_decision

    async def frozen_after_the_first(decision: DecisionRecord, pending: OrderRecord | None = None) -> None:
        if bot.journal.decisions:
            raise TimeoutError("journal write took longer than 5 s")
        await record_decision(decision, pending)

    bot.journal.record_decision = frozen_after_the_first  # type: ignore[method-assign]
    with capture_logs() as logs:
        await bot.quote()
        tasks = list(bot.service.orders.tasks)
        await bot.idle()
        await asyncio.gather(*tasks, return_exceptions=True)

    assert [r.amount_contracts for r in bot.exchange.placed] == [HELD_SOL]
    assert [t.exception() for t in tasks] == [None] * len(tasks)
    assert [e["asset"] for e in logs if e["event"] == "decision_failed"] == ["SOL"]
    assert bot.service.counters.errors == 1


class ControlJournal:
    """The control part of the journal: halted for maintenance."""

    def __init__(self) -> None:
        self.state = ControlState(halted=True, reason="maintenance", by="op")

    async def control_state(self) -> ControlState:
        return self.state

    async def set_control_state(self, state: ControlState) -> None:
        self.state = state

    async def control_events(self, query: JournalQuery = JournalQuery()) -> list[ControlEventRow]:
        return []


async def test_after_a_lost_trader_lock_an_operator_resume_sends_nothing() -> None:
    bot = Bot()

    async def record_event(*_: object) -> None:
        return None

    control = OperatorControl(bot.service.trading, bot.exchange, bot.alerts,  # type: ignore[arg-type]
                              bot.service.counters, ControlJournal(), record_event)
    await control.start()
    lock = TraderLock(lambda: asyncio.sleep(0))
    bot.service.trading.holds_lock = lock.held  # as bootstrap wires it
    lock.lose("the lock's database session ended")
    bot.service.trading.halt("trader lock lost")  # as bootstrap's lock_lost does

    await control.handle("resume", "maintenance done", "op")  # HTTP, still served while the bot stops
    await bot.quote()
    await bot.service.cycle.evaluate_all()
    await bot.idle()

    assert bot.exchange.placed == []
    assert bot.journal.sent_decisions() == []


async def test_an_account_event_that_fails_is_logged_and_skipped_and_the_account_stream_goes_on(
    tmp_path: Path,
) -> None:
    bot = Bot()
    runner = Runner(bot.service, 60, 60, tmp_path / "heartbeat")

    async def frozen(fills: object) -> int:
        raise JournalUnavailable("journal write took longer than 5 s")

    bot.journal.record_fills = frozen  # type: ignore[method-assign]
    fill = Fill("t1", "o1", "dkx", SOL, Side.SELL, D(1), D(100), D(0), "USDT", T0)
    snapshot = account(D(0), T0 + timedelta(seconds=1), seq=7)
    opened: list[int] = []

    async def account_events() -> AsyncIterator[AccountEvent]:
        opened.append(1)
        for event in (fill, snapshot):
            yield event
        await asyncio.Event().wait()  # the stream stays open

    with capture_logs() as logs:
        consuming = asyncio.create_task(runner._consume(account_events, runner._on_event, "account"))
        await bot.until(lambda: bot.state.account == snapshot, "the snapshot after the failed fill")
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)

    assert len(opened) == 1  # not torn down and reopened
    assert [e["event_type"] for e in logs if e["event"] == "account_event_failed"] == ["Fill"]
