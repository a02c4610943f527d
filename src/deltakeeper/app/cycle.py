"""The decision cycle (DESIGN.md 5), the same for live trading, shadow mode and the backtest: for an asset,
its delta from the market state, `DK_POLICY`'s decision (a proxy hedge's beta applied), the risk check,
the execution plan (slices, post-only), the decision journaled with its first order, and the plan handed
to the order runner; first, a quarterly hedge's roll when one is due (`app/roll.py`). Nothing here sends an
order or writes the market state."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import structlog

from deltakeeper.app.execution import BOOK_DEPTH, ExecutionOptions, ExecutionPlan, plan_execution, touch_price
from deltakeeper.app.figures import figure, join
from deltakeeper.app.hedge_choice import Chosen, HedgeChooser
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.order_check import OrderCheck
from deltakeeper.app.order_runner import OrderRunner
from deltakeeper.app.orders import taking_price
from deltakeeper.app.risk_tracks import RiskTracks
from deltakeeper.app.roll import RollOrders, Rolls, RollSettings, dated_alike
from deltakeeper.app.trading_state import Counters, TradingStatus
from deltakeeper.domain.costs import BookLevel
from deltakeeper.domain.decide_policies import (
    FixedBandPolicy,
    HedgePolicy,
    MarketContext,
    TimerPolicy,
    proxy_detail,
    proxy_view,
    residual_vol,
)
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.orders import OrderIntent, OrderRequest, OrderType, Side, client_order_id
from deltakeeper.domain.policy import AssetPolicy, AssetView, Decision
from deltakeeper.domain.records import DecisionRecord, OrderRecord
from deltakeeper.domain.roll import DEFAULT_ROLL_WINDOW_SECS
from deltakeeper.domain.volatility import RISKMETRICS_DAILY_DECAY
from deltakeeper.ports import Clock, Journal

log = structlog.get_logger("deltakeeper.rebalance")

def new_decision_id(_counter: itertools.count[int] = itertools.count()) -> int:
    """Unique across restarts and databases: wall-clock milliseconds, then a sequence number."""
    return time.time_ns() // 1_000_000 * 4096 + next(_counter) % 4096


class BookReader(Protocol):
    """The part of the Exchange port the cycle reads: the order book, to slice by slippage."""

    async def fetch_order_book(self, symbol: str, depth: int) -> tuple[list[BookLevel], list[BookLevel]]: ...


@dataclass(frozen=True, slots=True)
class CycleOptions:
    policy: HedgePolicy = field(default_factory=FixedBandPolicy)
    """`DK_POLICY`: what decides each rebalance (domain/decide_policies.py)."""
    execution: ExecutionOptions = field(default_factory=ExecutionOptions)
    betas: Mapping[str, Decimal | None] = field(default_factory=dict)
    """`DK_ASSETS__<ASSET>__BETA` of proxy-hedged assets: a fixed ratio, or None for the EWMA estimate. An
    asset hedged with another asset's contract and no entry here is hedged at 1."""
    ewma_daily_decay: float = RISKMETRICS_DAILY_DECAY
    bar_secs: Mapping[str, float] = field(default_factory=dict)
    """Asset -> the spacing of its prices when known in advance (a backtest's bars); else the risk model
    and the EWMA beta learn it from the first two quotes."""
    roll_window_secs: float = DEFAULT_ROLL_WINDOW_SECS
    """`DK_ROLL_WINDOW_SECS`: a quarterly hedge is rolled once fewer seconds than this are left to expiry."""
    carry_perps: Mapping[str, str] = field(default_factory=dict)
    """Asset -> its perpetual, for the assets hedged by carry (`HEDGE=carry`, `app.hedge_choice`)."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One decision: its journal record, and the risk check's notes on its order (`denied` when the check
    refused it)."""

    record: DecisionRecord
    risk_notes: tuple[str, ...] = ()
    denied: bool = False


@dataclass
class Decisions:
    """The last decision taken on each asset (status, watches, margin records) and its reason."""

    last: dict[str, DecisionRecord] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


class DecisionCycle:
    """Keeps each asset's delta inside its band, and rolls a quarterly hedge before its expiry (`app.roll`).
    At most one order in flight per instrument: the next decision on it waits until the order runner has
    finished the previous one. A roll replaces the asset's policy in `policies` with one on the next
    contract: the mapping is the service's, every reader sees the hedge the asset has now."""

    def __init__(
        self,
        state: MarketState,
        policies: MutableMapping[str, AssetPolicy],
        options: CycleOptions,
        *,
        journal: Journal,
        clock: Clock,
        trading: TradingStatus,
        counters: Counters,
        check: OrderCheck,
        orders: OrderRunner,
        book: BookReader,
        decisions: Decisions | None = None,
    ) -> None:
        self.state = state
        self.policies = policies
        self.options = options
        self.journal = journal
        self.clock = clock
        self.trading = trading
        self.counters = counters
        self.check = check
        self.orders = orders
        self.book = book
        self.decisions = decisions if decisions is not None else Decisions()
        self.risk = RiskTracks(state, policies, uses_risk_model=options.policy.uses_risk_model,
                               betas=options.betas, ewma_daily_decay=options.ewma_daily_decay,
                               bar_secs=options.bar_secs)
        self.rolls = Rolls(state, orders, check, journal, clock,
                           RollSettings(options.roll_window_secs, check.limits.stale_secs), new_decision_id,
                           self._switch_hedge)
        self.hedges = HedgeChooser.for_cycle(state, clock, options.carry_perps, check.limits.stale_secs,
                                             options.roll_window_secs)
        self._timer_slots: dict[str, int | None] = {}
        self._by_price_symbol: dict[str, list[str]] = {}
        for asset, policy in policies.items():
            for symbol in {policy.hedge_symbol, state.price_symbols.get(asset, policy.hedge_symbol)}:
                self._by_price_symbol.setdefault(symbol, []).append(asset)

    def symbols(self) -> list[str]:
        """Every symbol the bot streams quotes for: the hedges (a quarterly's with the contracts it rolls
        into) and the markets that price the assets."""
        instruments = self.state.instruments
        hedges = [instruments[p.hedge_symbol] for p in self.policies.values()]
        hedges += [instruments[s] for s in self.hedges.symbols(self.policies)]
        rolled_into = {s for s, i in instruments.items() if any(dated_alike(i, h) for h in hedges)}
        return sorted({*self.state.price_symbols.values(), *(h.symbol for h in hedges), *rolled_into})

    def _switch_hedge(self, asset: str, symbol: str) -> None:
        """A roll is done with: `asset` is hedged on `symbol` from now on."""
        self.policies[asset] = replace(self.policies[asset], hedge_symbol=symbol)
        assets = self._by_price_symbol.setdefault(symbol, [])
        if asset not in assets:
            assets.append(asset)
        log.info("hedge_rolled", asset=asset, hedge=symbol)

    def restart_timer(self, asset: str, t_secs: float) -> None:
        """The hedge was just set outside the cycle (a backtest's opening hedge): the timer policy counts
        its interval from `t_secs`."""
        policy = self.options.policy
        if isinstance(policy, TimerPolicy):
            self._timer_slots[asset] = policy.slot(t_secs)

    def observe(self, quote_symbol: str) -> None:
        """A quote decided on elsewhere (a backtest's opening hedge): the risk samples of its assets."""
        for asset in self._by_price_symbol.get(quote_symbol, ()):
            self.risk.observe(asset, quote_symbol)

    async def on_quote(self, quote_symbol: str) -> dict[str, Evaluation | None]:
        """A quote applied: on every asset the market prices or hedges, sample its risk, then decide. An
        error on one asset is logged with its traceback (`quote_failed`) and the others go on."""
        evaluations: dict[str, Evaluation | None] = {}
        for asset in self._by_price_symbol.get(quote_symbol, ()):
            try:
                self.risk.observe(asset, quote_symbol)
                evaluations[asset] = await self.evaluate(asset, scheduled=False)
            except Exception as exc:
                self.counters.errors += 1
                log.exception("quote_failed", symbol=quote_symbol, asset=asset, error=str(exc))
        return evaluations

    async def evaluate_all(self) -> dict[str, AssetDelta]:
        """The scheduled recompute: every asset, every decision journaled."""
        deltas = self.state.deltas()
        for asset in self.policies:
            await self.evaluate(asset, scheduled=True, deltas=deltas)
        return deltas

    async def evaluate(
        self, asset: str, scheduled: bool, deltas: dict[str, AssetDelta] | None = None
    ) -> Evaluation | None:
        """Decide on `asset` unless its instrument is busy or trading is not ours; None when nothing was
        decided (busy, or no quote, price or account yet)."""
        policy = self.policies[asset]
        symbol = policy.hedge_symbol
        if self.orders.busy(symbol) or not self.trading.holds_lock():
            return None
        deltas = self.state.deltas() if deltas is None else deltas
        roll = self.rolls.due(self.state.instruments[symbol], deltas, self.trading.state.value)
        if roll is not None:
            return await self._roll(asset, roll, scheduled)
        successor = self.rolls.successor(self.state.instruments[symbol])
        if successor is not None:  # nothing to roll: hedge on the next contract from now on
            self._switch_hedge(asset, successor)
            policy, symbol = self.policies[asset], successor
            if self.orders.busy(symbol):
                return None
        chosen = self.choose_hedge(asset, symbol)
        if chosen is None:
            return None
        policy, symbol = self.policies[asset], chosen.symbol
        evaluation, request = self._decide(asset, policy, deltas)
        if evaluation is None:
            return None
        record = replace(evaluation.record, detail=join(evaluation.record.detail, chosen.note))
        if request is None:
            await self._journal_decision(record, None, scheduled)
            return replace(evaluation, record=record)
        basis = self.orders.sender.basis(symbol, asset, record.band_coin)  # what `_decide` sized it from
        with self.orders.claim(symbol, request.client_order_id):
            plan = await self._plan(request, record.decision_id)
            request = self._first_order(plan)  # the same client id, as the plan sends it
            record = replace(record, detail=join(record.detail, plan.note))
            pending = OrderRecord.pending(request, record.decision_id, self.clock.now(), record.price_usd,
                                          asset)
            await self._journal_decision(record, pending, scheduled)
        self.orders.submit(asset, plan, request, basis, record,
                           then=lambda: self.evaluate(asset, scheduled=True))
        return replace(evaluation, record=record)

    def choose_hedge(self, asset: str, symbol: str) -> Chosen | None:
        """The hedge of `asset`, hedged on `symbol`: for a carry asset with no hedge held, chosen by carry and
        switched to (None: waiting, or that market is busy). A backtest's opening hedge asks it too."""
        chosen = self.hedges.choose(asset, symbol)
        if chosen is not None and chosen.symbol != symbol:
            self._switch_hedge(asset, chosen.symbol)
            if self.orders.busy(chosen.symbol):
                return None
        return chosen

    async def _roll(self, asset: str, roll: RollOrders, scheduled: bool) -> Evaluation:
        """Carry out a roll that both legs' risk checks pass whole (`Rolls`); else journal it denied."""
        notes = self.rolls.refused(roll)
        record = roll.decision
        if notes:
            denied = replace(record, reason=",".join(notes), symbol=None, side=None, amount_contracts=None,
                             est_cost_usd=None, detail=join("roll", record.detail))
            await self._journal_decision(denied, None, scheduled)
            return Evaluation(denied, notes, denied=True)
        await self.rolls.start(roll, then=lambda: self.evaluate(asset, scheduled=True))
        self.decisions.reasons[asset] = record.reason
        self.decisions.last[asset] = record
        return Evaluation(record)

    async def _journal_decision(self, record: DecisionRecord, pending: OrderRecord | None, scheduled: bool
                                ) -> None:
        """Journal a decision (with its first order, pending) when it trades, is scheduled, or its reason
        changed; log the cycle."""
        asset = record.asset
        if scheduled or pending is not None or self.decisions.reasons.get(asset) != record.reason:
            await self.journal.record_decision(record, pending)
        self.decisions.reasons[asset] = record.reason
        self.decisions.last[asset] = record
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
    ) -> tuple[Evaluation | None, OrderRequest | None]:
        hedge = self.state.instruments[policy.hedge_symbol]
        quote = self.state.quotes.get(policy.hedge_symbol)
        price = self.state.price_usd(asset)
        if quote is None or price is None or self.state.account is None:
            return None, None  # nothing to decide on yet: no record, no order
        delta = deltas.get(asset) or AssetDelta(asset, Decimal(0), Decimal(0), Decimal(0))
        now = self.clock.now()
        decision, delta, policy_detail = self._policy_decision(asset, policy, delta, price, now)
        decision_id = new_decision_id()
        if decision.intent is None:
            record = self._record(decision_id, now, delta, decision, decision.reason, policy_detail)
            return Evaluation(record), None
        intent = decision.intent
        touch = taking_price(intent.side, quote)
        priced = OrderIntent(intent.symbol, intent.side, intent.amount_contracts, touch, intent.reduce_only)
        outcome = self.check(priced, now)
        notes = tuple(outcome.notes)
        detail = ",".join(notes)
        if outcome.intent is None:
            denied = self._record(decision_id, now, delta, decision, detail or "denied", policy_detail)
            return Evaluation(denied, notes, denied=True), None
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
        record = self._record(decision_id, now, delta, decision, "rebalance", join(policy_detail, detail),
                              sent, cost)
        return Evaluation(record, notes), request

    def _policy_decision(
        self, asset: str, policy: AssetPolicy, delta: AssetDelta, price: Decimal, now: datetime
    ) -> tuple[Decision, AssetDelta, str]:
        """`DK_POLICY`'s decision, the asset's delta it was taken on (a proxy hedge's position counted in,
        converted back by the beta), and the policy's detail for the journal."""
        hedge = self.state.instruments[policy.hedge_symbol]
        quote = self.state.quotes[hedge.symbol]
        held_coin = hedge.delta_coin(self.state.position_contracts(hedge.symbol), quote.mark)  # proxy: below
        view = AssetView(asset, delta.delta_coin, delta.gross_coin, price, hedge, quote.mark, held_coin)
        proxy = ""
        if hedge.base != asset:
            beta, held = self.risk.beta(asset)
            if beta is None:
                band = policy.band.half_width_coin(price, delta.gross_coin)
                waiting = Decision(
                    asset, delta.delta_coin, policy.target_coin, band, price, None, "beta_unknown"
                )
                return waiting, delta, "beta=ewma warming_up"
            beta_model = self.risk.beta_model(asset)
            vol = residual_vol(beta_model, float(beta)) if beta_model is not None else None
            proxy = join(proxy_detail(beta, vol, delta.delta_usd), "beta_held" if held else "")
            view = proxy_view(view, self.state.position_contracts(hedge.symbol), beta)
            delta = AssetDelta(asset, view.delta_coin, view.delta_coin * price, view.gross_coin,
                               delta.gamma_coin_per_usd)
        mid = quote.mid
        spread_bps = (quote.ask - quote.bid) / mid * 10_000 if mid > 0 else Decimal(0)
        ctx = MarketContext(now.timestamp(), spread_bps, self.risk.model(asset), self._timer_slots.get(asset),
                            delta.gamma_coin_per_usd)
        outcome = self.options.policy.decide(view, policy, ctx)
        self._timer_slots[asset] = outcome.timer_slot
        return outcome.decision, delta, join(outcome.detail, proxy)

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
                bids, asks = await self.book.fetch_order_book(request.symbol, BOOK_DEPTH)
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
