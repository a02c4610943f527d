"""The rebalance cycle: recompute delta, decide, check risk, journal, execute (DESIGN.md 5 and 6). The
orders themselves are sent, settled and sliced by `app/orders.py`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from deltakeeper.app.execution import (
    BOOK_DEPTH,
    ExecutionOptions,
    ExecutionPlan,
    plan_execution,
    touch_price,
)
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.orders import SETTLE_POLL_SECS, Basis, OrderRunner, taking_price
from deltakeeper.domain import risk
from deltakeeper.domain.decide_policies import (
    FixedBandPolicy,
    HedgePolicy,
    MarketContext,
    RiskModel,
    proxy_detail,
    proxy_view,
    residual_vol,
)
from deltakeeper.domain.errors import ForeignOrder
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.orders import (
    Fill,
    FundingPayment,
    OrderIntent,
    OrderRequest,
    OrderState,
    OrderStatus,
    OrderType,
    Quote,
    Side,
    client_order_id,
)
from deltakeeper.domain.policy import AssetPolicy, AssetView, Decision
from deltakeeper.domain.records import AccountSnapshot, DecisionRecord, OrderRecord
from deltakeeper.domain.usd import to_usd
from deltakeeper.domain.volatility import RISKMETRICS_DAILY_DECAY, EwmaBeta
from deltakeeper.ports import Alerts, Clock, Exchange, Journal

log = structlog.get_logger("deltakeeper.rebalance")

MIN_RISK_BAR_SECS = 60.0
"""The risk model samples prices once per bar of the quote spacing (exchange time), at least this long: a
live stream quoting every 100 ms gives one-minute returns, so its 30-return warm-up covers half an hour, not
three seconds of noise."""
_NO_RISK = RiskModel.for_bar(MIN_RISK_BAR_SECS)
_BETA_QUANTUM = Decimal("0.0001")
_SPREAD_QUANTUM = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class HedgerOptions:
    limits: risk.RiskLimits
    order_timeout_secs: float
    state_clear_secs: float
    send_orders: bool = True
    """False in shadow mode: decisions are journaled, nothing is sent."""
    policy: HedgePolicy = field(default_factory=FixedBandPolicy)
    """`DK_POLICY`: what decides each rebalance (domain/decide_policies.py)."""
    execution: ExecutionOptions = field(default_factory=ExecutionOptions)
    betas: Mapping[str, Decimal | None] = field(default_factory=dict)
    """`DK_ASSETS__<ASSET>__BETA` of proxy-hedged assets: a fixed ratio, or None for the EWMA estimate. An
    asset hedged with another asset's contract and no entry here is hedged at 1."""
    ewma_daily_decay: float = RISKMETRICS_DAILY_DECAY


@dataclass
class _RiskTrack:
    """One asset's risk model, sampled from its quotes once per bar (the first quote spacing seen), and
    for a proxy hedge the EWMA beta of the asset on the hedge."""

    proxy: bool
    first_ts: float | None = None
    bar_secs: float | None = None
    slot: int | None = None
    model: RiskModel | None = None
    beta: EwmaBeta | None = None


@dataclass
class Counters:
    """What the service did since it started, for the metrics."""

    orders: dict[str, int] = field(default_factory=dict)
    """Orders by final status."""
    fills: int = 0
    fees_usd: Decimal = Decimal(0)
    """Fees paid: a stable fee currency as it is, a coin fee at that asset's price (an unpriced one left
    out)."""
    funding_usd: Decimal = Decimal(0)
    """Net funding, received positive (an unpriced one left out)."""
    errors: int = 0

    def order_done(self, status: OrderStatus) -> None:
        self.orders[status.value] = self.orders.get(status.value, 0) + 1


def new_decision_id(_counter: itertools.count[int] = itertools.count()) -> int:
    """Unique across restarts and databases: wall-clock milliseconds, then a sequence number."""
    return time.time_ns() // 1_000_000 * 4096 + next(_counter) % 4096


class Hedger:
    """Keeps each asset's delta inside its band. At most one order in flight per instrument: the next
    decision on it waits until the order is final, its fills are journaled and the account refreshed."""

    def __init__(
        self,
        exchange: Exchange,
        journal: Journal,
        clock: Clock,
        alerts: Alerts,
        state: MarketState,
        policies: dict[str, AssetPolicy],
        options: HedgerOptions,
    ) -> None:
        self.exchange = exchange
        self.journal = journal
        self.clock = clock
        self.alerts = alerts
        self.state = state
        self.policies = policies
        self.options = options
        self.trading = risk.StateMachine()
        self.margin_context: risk.MarginSource = risk.no_margin_context  # app/margin_watch.py
        self.on_liquidation: risk.LiquidationHandler | None = None
        self.on_foreign_order: Callable[[ForeignOrder], Awaitable[None]] | None = None
        """Another trader's order with our prefix (app/reconciliation.py `halt_on_foreign_order`)."""
        self.holds_lock: Callable[[], bool] = lambda: True
        """Whether this process still holds the trader lock (bootstrap wires `TraderLock.held`). Once it is
        lost nothing is decided or sent, whatever the trading state (an operator's resume included)."""
        self.in_flight: dict[str, str] = {}
        self.last_reason: dict[str, str] = {}
        self.last_decision: dict[str, DecisionRecord] = {}
        self.traded_today_usd = Decimal(0)
        self.counters = Counters()
        self._unpriced_logged: set[str] = set()
        """Currencies whose amounts had no USD price (logged once each)."""
        self._day: datetime | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._quiet = 0
        """While above 0 no decision is taken (a periodic reconciliation compares the books)."""
        self.orders = OrderRunner(
            exchange, journal, clock, state,
            order_timeout_secs=options.order_timeout_secs,
            post_only_timeout_secs=options.execution.post_only_timeout_secs,
            stale_secs=options.limits.stale_secs,
            price_collar_bps=options.limits.price_collar_bps,
            in_flight=self.in_flight,
            check=self._check_order,
            halted=self._halted,
            order_done=self.counters.order_done,
            alert=self._spawn_alert,
        )
        self._by_price_symbol: dict[str, list[str]] = {}
        for asset, policy in policies.items():
            for symbol in {policy.hedge_symbol, state.price_symbols.get(asset, policy.hedge_symbol)}:
                self._by_price_symbol.setdefault(symbol, []).append(asset)
        self._timer_slots: dict[str, int | None] = {}
        self._risk: dict[str, _RiskTrack] = {}
        self._used_betas: dict[str, Decimal] = {}
        """Asset -> the EWMA beta its last decision was taken on (`_beta`)."""
        for asset, policy in policies.items():
            proxy = state.instruments[policy.hedge_symbol].base != asset
            if proxy or options.policy.uses_risk_model:
                self._risk[asset] = _RiskTrack(proxy)

    def symbols(self) -> list[str]:
        """Every symbol the bot streams quotes for: the hedges and the markets that price the assets."""
        return sorted({*self.state.price_symbols.values(), *(p.hedge_symbol for p in self.policies.values())})

    # -- inputs -------------------------------------------------------------------------------

    async def on_quote(self, quote_symbol: str) -> None:
        """Decide on every asset the quoted market prices or hedges. An error on one asset is logged with
        its traceback and the others go on."""
        for asset in self._by_price_symbol.get(quote_symbol, ()):
            try:
                if asset in self._risk:
                    self._observe_risk(asset, quote_symbol)
                await self.evaluate(asset, scheduled=False)
            except Exception as exc:
                self.counters.errors += 1
                log.exception("quote_failed", symbol=quote_symbol, asset=asset, error=str(exc))

    async def on_account(self, snapshot: AccountSnapshot) -> None:
        if self.state.on_account(snapshot):
            for asset in self.policies:
                await self.evaluate(asset, scheduled=False)

    async def on_fill(self, fill: Fill) -> None:
        if await self.journal.record_fills([fill]):
            self._count_traded(fill.notional_usd)
            self.counters.fills += 1
            if (fee_usd := self.usd(fill.fee, fill.fee_currency)) is not None:
                self.counters.fees_usd += fee_usd
            log.info(
                "fill_recorded",
                symbol=fill.symbol,
                trade_id=fill.trade_id,
                client_order_id=fill.client_order_id,
                amount=str(fill.amount_contracts),
                price=str(fill.price),
            )
            if fill.liquidation and self.on_liquidation is not None:
                await self.on_liquidation(fill)

    async def on_funding(self, payment: FundingPayment) -> None:
        if await self.journal.record_funding([payment]):
            if (funding_usd := self.usd(payment.amount, payment.currency)) is not None:
                self.counters.funding_usd += funding_usd
            log.info(
                "funding_recorded",
                symbol=payment.symbol,
                amount=str(payment.amount),
                currency=payment.currency,
                rate=figure(payment.rate),
            )

    async def on_order(self, order: OrderState) -> None:
        try:
            await self.journal.update_order(order)
        except ForeignOrder as found:
            if self.on_foreign_order is None:
                raise
            await self.on_foreign_order(found)

    # -- the cycle ----------------------------------------------------------------------------

    async def evaluate_all(self) -> dict[str, AssetDelta]:
        """The scheduled recompute: every asset, every decision journaled."""
        deltas = self.state.deltas()
        for asset in self.policies:
            await self.evaluate(asset, scheduled=True, deltas=deltas)
        return deltas

    async def evaluate(
        self, asset: str, scheduled: bool, deltas: dict[str, AssetDelta] | None = None
    ) -> None:
        policy = self.policies[asset]
        symbol = policy.hedge_symbol
        busy = symbol in self.in_flight or self._quiet or self.orders.backing_off(symbol)
        if busy or not self.holds_lock():
            return
        record, request = self._decide(asset, policy, self.state.deltas() if deltas is None else deltas)
        if record is None:
            return
        if request is None:
            await self._journal_decision(record, None, scheduled)
            return
        basis = self.orders.basis(symbol, asset, record.band_coin)  # what `_decide` has just sized it from
        self.in_flight[symbol] = request.client_order_id  # before any await: one order per instrument
        try:
            plan = await self._plan(request, record.decision_id)
            request = self._first_order(plan)  # the same client id, as the plan sends it
            record = replace(record, detail=_join(record.detail, plan.note))
            pending = OrderRecord.pending(request, record.decision_id, self.clock.now(), record.price_usd,
                                          asset)
            await self._journal_decision(record, pending, scheduled)
            if not self.options.send_orders:
                await self.journal.update_order(
                    self.orders.local_state(request, OrderStatus.CANCELED, "shadow mode")
                )
        except BaseException:
            self.in_flight.pop(symbol, None)
            raise
        if not self.options.send_orders:
            self.in_flight.pop(symbol, None)
            return
        task = asyncio.create_task(self._execute(asset, plan, request, basis, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _journal_decision(self, record: DecisionRecord, pending: OrderRecord | None, scheduled: bool
                                ) -> None:
        """Journal a decision (with its first order, pending) when it trades, is scheduled, or its reason
        changed; log the cycle."""
        asset = record.asset
        if scheduled or pending is not None or self.last_reason.get(asset) != record.reason:
            await self.journal.record_decision(record, pending)
        self.last_reason[asset] = record.reason
        self.last_decision[asset] = record
        if scheduled or pending is not None:
            log.info(
                "rebalance_cycle",
                asset=asset,
                delta_coin=figure(record.delta_coin),
                target_coin=figure(record.target_coin),
                band_coin=figure(record.band_coin),
                reason=record.reason,
                state=record.trading_state,
                order=pending.client_order_id if pending is not None else None,
            )

    def _decide(
        self, asset: str, policy: AssetPolicy, deltas: dict[str, AssetDelta]
    ) -> tuple[DecisionRecord | None, OrderRequest | None]:
        hedge = self.state.instruments[policy.hedge_symbol]
        quote = self.state.quotes.get(policy.hedge_symbol)
        price = self.state.price_usd(asset)
        if quote is None or price is None or self.state.account is None:
            return None, None  # nothing to decide on yet: no record, no order
        delta = deltas.get(asset) or AssetDelta(asset, Decimal(0), Decimal(0), Decimal(0))
        now = self.clock.now()
        position = self.state.position_contracts(hedge.symbol)
        decision, delta, policy_detail = self._policy_decision(
            asset, policy, delta, price, hedge, quote, position, now
        )
        decision_id = new_decision_id()
        if decision.intent is None:
            return self._record(decision_id, now, delta, decision, decision.reason, policy_detail), None
        intent = decision.intent
        touch = taking_price(intent.side, quote)
        priced = OrderIntent(intent.symbol, intent.side, intent.amount_contracts, touch, intent.reduce_only)
        outcome = self._check_order(priced, now)
        detail = ",".join(outcome.notes)
        if outcome.intent is None:
            return self._record(decision_id, now, delta, decision, detail or "denied", policy_detail), None
        detail = _join(policy_detail, detail)
        sent = outcome.intent
        request = OrderRequest(
            client_order_id(decision_id),
            sent.symbol,
            sent.side,
            sent.amount_contracts,
            OrderType.MARKET,
            reduce_only=sent.reduce_only,
        )
        cost = hedge.notional_usd(sent.amount_contracts, touch) * hedge.taker_fee_rate
        return self._record(decision_id, now, delta, decision, "rebalance", detail, sent, cost), request

    def _policy_decision(
        self,
        asset: str,
        policy: AssetPolicy,
        delta: AssetDelta,
        price: Decimal,
        hedge: Instrument,
        quote: Quote,
        position: Decimal,
        now: datetime,
    ) -> tuple[Decision, AssetDelta, str]:
        """`DK_POLICY`'s decision, the asset's delta it was taken on (a proxy hedge's position counted in,
        converted back by the beta), and the policy's detail for the journal."""
        view = AssetView(asset, delta.delta_coin, delta.gross_coin, price, hedge, quote.mark)
        track = self._risk.get(asset)
        proxy = ""
        if hedge.base != asset:
            beta, held = self._beta(asset, track)
            if beta is None:
                band = policy.band.half_width_coin(price, delta.gross_coin)
                waiting = Decision(
                    asset, delta.delta_coin, policy.target_coin, band, price, None, "beta_unknown"
                )
                return waiting, delta, "beta=ewma warming_up"
            beta_model = track.beta if track is not None else None
            vol = residual_vol(beta_model, float(beta)) if beta_model is not None else None
            proxy = _join(proxy_detail(beta, vol, delta.delta_usd), "beta_held" if held else "")
            view = proxy_view(view, position, beta)
            delta = AssetDelta(asset, view.delta_coin, view.delta_coin * price, view.gross_coin,
                               delta.gamma_coin_per_usd)
        mid = quote.mid
        spread_bps = Decimal(0)
        if mid > 0:
            spread_bps = ((quote.ask - quote.bid) / mid * 10_000).quantize(_SPREAD_QUANTUM)
        model = track.model if track is not None and track.model is not None else _NO_RISK
        ctx = MarketContext(
            now.timestamp(), spread_bps, model, self._timer_slots.get(asset), delta.gamma_coin_per_usd
        )
        outcome = self.options.policy.decide(view, policy, ctx)
        self._timer_slots[asset] = outcome.timer_slot
        return outcome.decision, delta, _join(outcome.detail, proxy)

    def _beta(self, asset: str, track: _RiskTrack | None) -> tuple[Decimal | None, bool]:
        """The proxy hedge ratio: the fixed one, else the EWMA estimate (`EwmaBeta.hedge_ratio`: enough
        returns, clamped). Once an estimate has been used, a later unknown one holds it: the hedge is kept
        at the last ratio, not bought back or re-sized on nothing. Returns (the ratio, whether held); None
        until a first estimate."""
        if asset not in self.options.betas:
            return Decimal(1), False
        fixed = self.options.betas[asset]
        if fixed is not None:
            return fixed, False
        estimate = track.beta.hedge_ratio if track is not None and track.beta is not None else None
        if estimate is None:
            held = self._used_betas.get(asset)
            return held, held is not None
        beta = self._used_betas[asset] = Decimal(repr(estimate)).quantize(_BETA_QUANTUM)
        return beta, False

    def _observe_risk(self, asset: str, quote_symbol: str) -> None:
        """Feed the asset's risk model (price, and its exposure before the hedge) and a proxy's EWMA beta,
        once per bar of exchange time. The bar is the spacing of the asset's first two quotes."""
        policy = self.policies[asset]
        price_symbol = self.state.price_symbols.get(asset, policy.hedge_symbol)
        quote = self.state.quotes.get(price_symbol) if quote_symbol == price_symbol else None
        if quote is None:
            return
        track = self._risk[asset]
        t_secs = quote.ts.timestamp()
        if track.bar_secs is None:
            if track.first_ts is None or t_secs <= track.first_ts:
                track.first_ts = t_secs if track.first_ts is None else track.first_ts
                return
            track.bar_secs = max(t_secs - track.first_ts, MIN_RISK_BAR_SECS)
            decay = self.options.ewma_daily_decay
            if self.options.policy.uses_risk_model:
                track.model = RiskModel.for_bar(track.bar_secs, decay)
            if track.proxy:
                track.beta = EwmaBeta.for_bar(track.bar_secs, decay)
        slot = math.floor(t_secs / track.bar_secs)
        if track.slot is not None and slot <= track.slot:
            return
        track.slot = slot
        if track.model is not None:
            exposure = self._exposure(asset, policy)
            if exposure is not None:
                track.model = track.model.observe(quote.mark, exposure, t_secs)
        if track.beta is not None:
            hedge_quote = self.state.quotes.get(policy.hedge_symbol)
            if hedge_quote is not None:
                track.beta = track.beta.update(quote.mark, hedge_quote.mark)

    def _exposure(self, asset: str, policy: AssetPolicy) -> Decimal | None:
        """The asset's delta before its hedge (holdings and other legs): what the hedge has to follow. Options
        are left out: the cost-aware band counts their drift by their gamma."""
        if self.state.account is None:
            return None
        delta = self.state.deltas().get(asset)
        coin = delta.delta_coin - delta.option_delta_coin if delta is not None else Decimal(0)
        hedge = self.state.instruments[policy.hedge_symbol]
        quote = self.state.quotes.get(hedge.symbol)
        if hedge.base == asset and quote is not None:
            coin -= hedge.delta_coin(self.state.position_contracts(hedge.symbol), quote.mark)
        return coin

    def _record(
        self,
        decision_id: int,
        now: datetime,
        delta: AssetDelta,
        decision: Decision,
        reason: str,
        detail: str = "",
        sent: OrderIntent | None = None,
        est_cost_usd: Decimal | None = None,
    ) -> DecisionRecord:
        """The decision journal's record; with the order `sent` (after the risk check) and its estimated
        cost when it trades."""
        return DecisionRecord(
            decision_id=decision_id,
            ts=now,
            asset=delta.asset,
            delta_coin=delta.delta_coin,
            delta_usd=delta.delta_usd,
            target_coin=decision.target_coin,
            band_coin=decision.band_coin,
            price_usd=decision.price_usd,
            reason=reason,
            trading_state=self.trading.state.value,
            symbol=sent.symbol if sent is not None else None,
            side=sent.side if sent is not None else None,
            amount_contracts=sent.amount_contracts if sent is not None else None,
            est_cost_usd=est_cost_usd,
            detail=detail,
        )

    def _check_order(self, intent: OrderIntent, now: datetime) -> risk.RiskOutcome:
        """The risk limits on an order at its instrument's quote, position and the trading state now; the
        state machine observes the outcome's notes."""
        symbol = intent.symbol
        ctx = risk.RiskContext(
            quote_age_secs=self.state.quote_age_secs(symbol, self.clock.speed, now.timestamp()),
            mark_price=self.state.references[symbol],  # not the same tick's mark: its touch moves with it
            position_contracts=self.state.position_contracts(symbol),
            traded_today_usd=self._traded_today(now),
            state=self.trading.state,
            margin=self.margin_context(symbol),
        )
        outcome = risk.check(intent, self.state.instruments[symbol], ctx, self.options.limits)
        self._observe_state(frozenset(outcome.notes), now)
        return outcome

    def _halted(self) -> bool:
        return self.trading.state is risk.TradingState.HALTED or not self.holds_lock()

    def _observe_state(self, notes: frozenset[str], now: datetime) -> None:
        before = self.trading.state
        self.trading = self.trading.observe(notes, now, self.options.state_clear_secs)
        if self.trading.state is not before:
            log.warning(
                "trading_state_changed",
                before=before.value,
                after=self.trading.state.value,
                cause=self.trading.cause,
            )
            self._spawn_alert(
                "warning",
                "trading_state_changed",
                f"trading state {before.value} -> {self.trading.state.value} "
                f"({self.trading.cause or 'cleared'})",
            )

    # -- execution ----------------------------------------------------------------------------

    async def _plan(self, request: OrderRequest, decision_id: int) -> ExecutionPlan:
        """The orders that carry out a checked hedge (`DK_EXECUTION`, `DK_SLICE_*`): the order book is read
        only to slice by slippage."""
        execution = self.options.execution
        hedge = self.state.instruments[request.symbol]
        quote = self.state.quotes[request.symbol]
        touch = taking_price(request.side, quote)
        book_side = None
        if execution.needs_book:
            try:
                bids, asks = await self.exchange.fetch_order_book(request.symbol, BOOK_DEPTH)
                book_side = asks if request.side is Side.BUY else bids
            except Exception as exc:
                log.warning("order_book_unavailable", symbol=request.symbol, error=str(exc))
        return plan_execution(
            decision_id, hedge, request.side, request.amount_contracts, touch, execution,
            reduce_only=request.reduce_only, book_side=book_side,
        )

    def _first_order(self, plan: ExecutionPlan) -> OrderRequest:
        quote = self.state.quotes[plan.symbol]
        return plan.request(0, plan.slices_contracts[0], touch_price(plan.side, quote.bid, quote.ask))

    async def _execute(
        self, asset: str, plan: ExecutionPlan, first: OrderRequest, basis: Basis, decision: DecisionRecord
    ) -> None:
        """Send the plan's orders one after another, each journaled before it is sent and final before the
        next: the slices, and after a post-only order that did not fill whole by its timeout, a market
        order for the rest. Orders are sent once (resent only after a definite refusal, with the same client
        id). Then journal the fills, and free the instrument: only once the account has been read after the
        last order (never decide on the account from before a fill)."""
        started = self.clock.now()
        states: list[OrderState] = []
        account_known = True
        try:
            order_no = 0
            order: tuple[OrderRequest, Basis] | None = (first, basis)
            for index, amount in enumerate(plan.slices_contracts):
                if index > 0:
                    order = await self.orders.next_order(decision, plan, order_no, amount)
                rest = amount
                while order is not None:  # the slice, then a post-only slice's market fallback
                    request = order[0]
                    order_no += 1
                    account_known = False
                    ended = await self.orders.run(*order)
                    order = None
                    if ended is None:  # not sent, or refused: the account is as it was
                        account_known = True
                        break
                    states.append(ended.state)
                    account_known = ended.account_read
                    rest = request.amount_contracts - ended.state.filled_contracts
                    if ended.falls_back and account_known:
                        order = await self.orders.next_order(decision, plan, order_no, rest, fallback=True)
                if rest > 0 or not account_known:
                    break  # an order that did not fill whole: the next decision sees what is left
            if states:
                await self._backfill_fills({s.client_order_id or "" for s in states}, started)
                summary = self._summary(plan, first, states)
                log.info(
                    "rebalance_completed",
                    asset=asset,
                    client_order_id=first.client_order_id,
                    orders=len(states),
                    status=summary.status.value,
                    filled=str(summary.filled_contracts),
                )
                if summary.filled_contracts > 0:
                    self.orders.filled(plan.symbol)
                    completed = self._completed(decision, summary, account_known)
                    self._spawn_alert("info", "rebalance_completed", completed, asset)
                else:
                    self._spawn_alert(
                        "warning",
                        "order_not_filled",
                        f"order {first.client_order_id} on {plan.symbol} ended "
                        f"{summary.status.value} with nothing filled"
                        + (f": {summary.reject_reason}" if summary.reject_reason else ""),
                        plan.symbol,
                    )
        except Exception as exc:  # an order task must never die silently
            self.counters.errors += 1
            log.exception("order_task_failed", client_order_id=first.client_order_id, error=str(exc))
            failed = f"order {first.client_order_id} failed: {exc}"
            self._spawn_alert("error", "order_failed", failed, plan.symbol)
        finally:
            try:
                if not account_known:  # the account is unknown: no decision on it until a read succeeds
                    await self.orders.read_account_until_ok()
            finally:
                self.in_flight.pop(plan.symbol, None)
        try:  # the next decision, on the account read after it
            await self.evaluate(asset, scheduled=True)
        except Exception as exc:
            self.counters.errors += 1
            log.exception("decision_failed", asset=asset, error=str(exc))

    @staticmethod
    def _summary(plan: ExecutionPlan, first: OrderRequest, states: list[OrderState]) -> OrderState:
        """The decision's orders as one: what they filled in all, at what average price."""
        filled = sum((s.filled_contracts for s in states), Decimal(0))
        cost = sum((s.average_price * s.filled_contracts for s in states if s.average_price is not None),
                   Decimal(0))
        last = states[-1]
        status = last.status if filled < plan.total_contracts else OrderStatus.FILLED
        return replace(
            last,
            client_order_id=first.client_order_id,
            amount_contracts=plan.total_contracts,
            filled_contracts=filled,
            average_price=cost / filled if filled else None,
            status=status,
        )

    def _completed(self, decision: DecisionRecord, state: OrderState, account_known: bool) -> str:
        """The `rebalance_completed` alert: what was traded, and the delta before and after (`?` when the
        account could not be read after it)."""
        asset = decision.asset
        after = self.state.deltas().get(asset) if account_known else None
        verb = "bought" if state.side.sign > 0 else "sold"
        price = f" at {short(state.average_price)}" if state.average_price is not None else ""
        partly = "" if state.status is OrderStatus.FILLED else f" ({state.status.value})"
        delta_after = short(after.delta_coin) if after is not None else "?"
        return (
            f"{asset}: {verb} {short(state.filled_contracts)} {state.symbol}{price}{partly}; delta "
            f"{short(decision.delta_coin)} -> {delta_after} {asset} "
            f"(target {short(decision.target_coin)} ± {short(decision.band_coin)})"
        )

    async def _backfill_fills(self, client_order_ids: set[str], since: datetime) -> None:
        """Journal the fills of these orders the stream may have missed; when the exchange cannot be read,
        the stream and the next reconciliation bring them."""
        try:
            fills = await self.exchange.fetch_fills(since - timedelta(minutes=1))
        except Exception as exc:
            log.warning("fills_backfill_failed", error=str(exc))
            return
        ours = [f for f in fills if f.client_order_id in client_order_ids]
        for fill in ours:
            await self.on_fill(fill)

    # -- housekeeping -------------------------------------------------------------------------

    def _traded_today(self, now: datetime) -> Decimal:
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        if day != self._day:
            self._day, self.traded_today_usd = day, Decimal(0)
        return self.traded_today_usd

    def _count_traded(self, notional_usd: Decimal) -> None:
        self._traded_today(self.clock.now())
        self.traded_today_usd += notional_usd

    async def load_traded_today(self) -> None:
        now = self.clock.now()
        self._traded_today(now)
        assert self._day is not None
        self.traded_today_usd = await self.journal.traded_usd_since(self._day)

    def usd(self, amount: Decimal, currency: str) -> Decimal | None:
        """`amount` of `currency` in USD at its price now (`domain.usd.to_usd`); None when the coin has no
        price, logged (`amount_unpriced`) once per currency: never counted as 0."""
        in_usd = to_usd(amount, currency, self.state.price_usd)
        if in_usd is None and currency not in self._unpriced_logged:
            self._unpriced_logged.add(currency)
            log.warning("amount_unpriced", currency=currency, amount=str(amount))
        return in_usd

    def _spawn_alert(self, level: str, event: str, message: str, subject: str = "") -> None:
        task = asyncio.create_task(self.alerts.send(level, event, message, subject))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def quiet(self, timeout_secs: float) -> AsyncIterator[bool]:
        """Take no new decision while inside; first wait (at most `timeout_secs`) for the orders in flight
        to end. Yields whether nothing is in flight, so that the books can be compared undisturbed."""
        self._quiet += 1
        try:
            deadline = time.monotonic() + timeout_secs
            while self.in_flight:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                if self._tasks:  # the order tasks, and alerts (which end at once)
                    await asyncio.wait(list(self._tasks), timeout=min(remaining, SETTLE_POLL_SECS))
                else:  # an order being journaled: its task starts in a moment
                    await asyncio.sleep(min(remaining, SETTLE_POLL_SECS / 4))
            yield not self.in_flight
        finally:
            self._quiet -= 1

    async def drain(self) -> None:
        """Let in-flight orders settle (on shutdown); no new decision, and no further slice or fallback
        order, from now on."""
        self._quiet += 1
        self.orders.draining = True
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _join(*parts: str) -> str:
    """Details for the decision journal, space-separated, empty ones left out."""
    return " ".join(filter(None, parts))


def short(value: Decimal, places: int = 4) -> str:
    """A Decimal for people: at most `places` decimals, no trailing zeros, plain notation."""
    rounded = round(value, places).normalize()
    return format(rounded if rounded != 0 else Decimal(0), "f")


LOG_DIGITS = 6
"""Significant digits of a computed figure (delta, band, rate) in a log line; the journal keeps it exact."""


def figure(value: Decimal, digits: int = LOG_DIGITS) -> str:
    """A computed Decimal for a log line: `digits` significant digits (every digit before the point is
    kept), no trailing zeros, plain notation: `85.79916684959306` -> `85.7992`."""
    if not value:
        return "0"
    exponent = min(value.adjusted() - digits + 1, 0)
    rounded = value.quantize(Decimal(1).scaleb(exponent)).normalize()
    return format(rounded if rounded else Decimal(0), "f")
