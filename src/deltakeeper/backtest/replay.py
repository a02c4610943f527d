"""One replay of a backtest (backtest/run.py describes it): the price events through the live decision
cycle, wired to the replay's ports (backtest/venue.py), and the figures kept on the way."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from deltakeeper.app.cycle import CycleOptions, Evaluation
from deltakeeper.app.execution import ExecutionOptions
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.service import ServiceOptions, build_service
from deltakeeper.backtest.data import PriceEvent, linear_perp
from deltakeeper.backtest.dataset import Dataset
from deltakeeper.backtest.hedges import (
    CARRY,
    QUARTERLY,
    FundingPer8h,
    exposure_model,
    future_quotes,
    hedge_markets,
    option_book,
    quarterlies,
    quarterly_hedge,
)
from deltakeeper.backtest.results import SERIES, WALLET, AssetRun, rms, total, usd
from deltakeeper.backtest.settings import BacktestSettings
from deltakeeper.backtest.venue import QuietAlerts, ReplayClock, ReplayExchange, ReplayGate, ReplayJournal
from deltakeeper.domain.errors import OrderRejected
from deltakeeper.domain.exposure import AssetDelta, Position
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import Fill, OrderRequest, OrderState, OrderStatus, OrderType, Quote, Side
from deltakeeper.domain.policy import AssetPolicy
from deltakeeper.logging import quiet_logging
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.engine import SimEngine

ACCOUNT = "backtest"
SETTLE = "USDT"
COLLATERAL_USD = Decimal(1_000_000_000)
"""The account's margin wallet: large on purpose, margin is not what a backtest measures."""
ORDER_TIMEOUT_SECS = 30.0
"""`DK_ORDER_TIMEOUT_SECS` of the replay: a market order fills at once; a slice waits at most this long (wall
seconds) for the next price event, which the replay gives it as soon as every order task waits."""
STATE_CLEAR_SECS = 300.0
"""`DK_STATE_CLEAR_SECS`' default: a risk limit's breach holds REDUCE_ONLY until clear this long."""


class Replay:
    def __init__(
        self, data: Dataset, policy_name: str, cfg: BacktestSettings, record_series: bool = False
    ) -> None:
        cfg.validate()
        self.data = data
        self.cfg = cfg
        self.policy_name = policy_name
        perps = {a: linear_perp(a) for a in data.series}
        futures = quarterlies(data, cfg)
        instruments = {p.symbol: p for p in perps.values()} | futures
        self.futures: dict[str, list[Instrument]] = {}
        """Asset -> the quarterlies listed on it, quoted at each of its price events."""
        for future in futures.values():
            self.futures.setdefault(future.base, []).append(future)
        carry = {a: perps[a].symbol for a in data.series if cfg.hedges.get(a) == CARRY}
        self.funding_8h = {a: FundingPer8h(data.funding[a]) for a in carry}
        """Carry asset -> the funding rate its perpetual's quotes carry, for the choice by carry."""
        self.assets: dict[str, AssetRun] = {}
        for asset, symbol in hedge_markets(data, cfg).items():
            series = data.series[asset]
            hedge = (quarterly_hedge(asset, futures, series.events[0].ts, cfg) if symbol == QUARTERLY
                     else instruments[symbol])
            self.assets[asset] = AssetRun(
                asset=asset,
                hedge=hedge,
                policy=AssetPolicy(asset, hedge.symbol, cfg.band_for(asset),
                                   cfg.targets_coin.get(asset, ZERO), cfg.rebalance_to),
                model=exposure_model(data, cfg, asset, series.events[0].price),
                book=option_book(data.exposure, cfg, series),
                series={k: [] for k in SERIES} if record_series else None,
                carry=asset in carry,
            )
        self.by_hedge = {run.hedge.symbol: run for run in self.assets.values()}
        """Hedge market -> its asset's run (a quarterly or carry hedge's by every quarterly it may use)."""
        for run in self.assets.values():
            if run.hedge.expiry is not None or run.carry:
                self.by_hedge.update((f.symbol, run) for f in self.futures[run.asset])
        self.held: dict[str, Decimal] = {}
        """Hedge market -> the contracts held there, marked to its own mid (`_mark_hedge`)."""
        self.marks: dict[str, Decimal] = {}
        self.books = [a.book for a in self.assets.values() if a.book is not None]
        self.mids: dict[str, Decimal] = {}
        """Asset -> the mid of its linear perpetual at the last price event."""
        self.clock = ReplayClock()
        self.engine = SimEngine(instruments, seed=0)
        self.engine.open_account(ACCOUNT, {SETTLE: COLLATERAL_USD})
        self.engine.liquidations = False  # the wallet never nears a margin call: no check on every quote
        self.engine.subscribe(self._on_event)
        delta_instruments = dict(instruments)
        delta_instruments.update((b.instrument.symbol, b.instrument) for b in self.books)
        state = MarketState(delta_instruments, {}, {a: p.symbol for a, p in perps.items()}, clock=self.clock,
                            gate=ReplayGate(), monotonic=self.clock.monotonic)
        policy = cfg.policy(policy_name)
        options = ServiceOptions(cfg.limits, ORDER_TIMEOUT_SECS, STATE_CLEAR_SECS, CycleOptions(
            policy=policy,
            execution=ExecutionOptions(slice_max_usd=cfg.slice_max_usd,
                                       slice_max_slippage_bps=cfg.slice_max_slippage_bps),
            betas={a: cfg.betas.get(a, Decimal(1)) for a, run in self.assets.items() if run.proxy},
            ewma_daily_decay=cfg.ewma_daily_decay,
            bar_secs={a: s.bar_secs for a, s in data.series.items()},
            roll_window_secs=cfg.roll_window_secs,
            carry_perps=carry,
        ))
        self.exchange = ReplayExchange(self.engine, ACCOUNT, self.clock, self._held_elsewhere)
        self.service = build_service(
            self.exchange, ReplayJournal(self._order_ended), self.clock, QuietAlerts(), state,
            {a: run.policy for a, run in self.assets.items()}, options, monotonic=self.clock.monotonic,
        )
        self.fills: list[Fill] = []
        """Every fill of the engine, in order."""
        self.opening = False
        self.orders = 0
        self._traded: set[str] = set()
        self.total_weight = 0.0
        self.portfolio_sq_sum = 0.0
        self.portfolio_max_abs = 0.0

    # -- the ports' side ------------------------------------------------------------------------------

    def _on_event(self, account_id: str, event: AccountEvent) -> None:
        """A fill of the engine: its hedged asset's figures (the opening hedge's apart), at its own market's
        mid."""
        if type(event) is not Fill:
            return
        self.fills.append(event)
        if event.delivery:
            return  # a quarterly's delivery at expiry, no trade: `_drop_settled` counts it out
        run = self.by_hedge[event.symbol]
        own = self.engine.quote(event.symbol)  # a quarterly's own, the basis in it
        mid = own.mark if own is not None else self.mids[run.hedge.base]
        signed = event.amount_contracts * event.side.sign
        run.hedge_contracts += signed
        self.held[event.symbol] = self.held.get(event.symbol, ZERO) + signed
        figures = run.initial if self.opening else run.figures
        figures.add(event, (event.price - mid) * signed * run.hedge.contract_size)
        if event.client_order_id not in self._traded:
            self._traded.add(event.client_order_id or "")
            figures.trades += 1
            if run.carry:
                run.count(run.markets, event.symbol)

    def _order_ended(self, state: OrderState) -> None:
        if state.status is OrderStatus.REJECTED:
            self.by_hedge[state.symbol].rejected += 1

    def _held_elsewhere(self) -> list[Position]:
        """The options books' positions at the latest mids (none once expired)."""
        held = []
        for run in self.assets.values():
            if run.book is not None and run.mid is not None:
                position = run.book.position(run.mid, self.clock.now())
                if position is not None:
                    held.append(position)
        return held

    async def _read_account(self) -> None:
        self.service.ingest.on_account(await self.exchange.fetch_account())

    # -- one run -------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        with quiet_logging():
            return asyncio.run(self._run())

    async def _run(self) -> dict[str, Any]:
        steps = self.data.steps()
        funding = sorted(
            ((t, asset, rate) for asset, rows in self.data.funding.items() for t, rate in rows),
            key=lambda row: row[0],
        )
        funding_index = 0
        first_t = steps[0][0]
        while funding_index < len(funding) and funding[funding_index][0] <= first_t:
            funding_index += 1  # funding before the replay starts is not ours
        previous_t: float | None = None
        expiries = sorted({f.expiry for fs in self.futures.values() for f in fs if f.expiry is not None})
        cycle, orders = self.service.cycle, self.service.orders
        await self._read_account()
        for t_secs, events in steps:
            self.clock.t_secs = t_secs
            for event in events:
                self._price(event, t_secs)
            funded = False
            while funding_index < len(funding) and funding[funding_index][0] <= t_secs:
                _, asset, rate = funding[funding_index]
                funded = self._settle_funding(asset, rate, events[0].ts) or funded
                funding_index += 1
            settled = bool(expiries) and expiries[0] <= events[0].ts
            while expiries and expiries[0] <= events[0].ts:
                expiries.pop(0)
            if settled:
                self._drop_settled(events[0].ts)
            if self.books or funded or settled:
                await self._read_account()  # the options books' positions at the new mids; funding paid;
                # a quarterly settled at its expiry
            opened = {event.asset for event in events if self._open_hedge(event, t_secs)}
            if opened:
                await self._read_account()
            deltas = self.service.state.deltas()  # before this event's decisions
            if previous_t is not None:
                self._sample(deltas, t_secs - previous_t)
            for event in events:
                run = self.assets.get(event.asset)
                if event.asset in opened:
                    cycle.observe(event.quote.symbol)  # the opening hedge is this event's decision
                    continue
                if run is not None:
                    run.started = True  # not hedged at the start: the first decision opens the hedge
                self._count(await cycle.on_quote(event.quote.symbol))
                await orders.settled()
                if run is not None and run.series is not None:
                    self._record(run, deltas, t_secs)
            previous_t = t_secs
        await orders.drain()
        return self._result(steps[0][1][0].ts, steps[-1][1][0].ts)

    def _count(self, evaluations: Mapping[str, Evaluation | None]) -> None:
        for asset, evaluation in evaluations.items():
            if evaluation is None:
                continue
            run = self.assets[asset]
            record = evaluation.record
            run.band_coin = record.band_coin
            for note in evaluation.risk_notes:
                run.count(run.risk_notes, note)
            run.count(run.reasons, "denied" if evaluation.denied else record.reason)
            if record.reason == "cost_exceeds_risk":
                run.last_skip = record.detail

    def _price(self, event: PriceEvent, t_secs: float) -> None:
        perp = event.quote
        funding = self.funding_8h.get(event.asset)
        if funding is not None:  # what the choice by carry reads: the funding rate and the spot (the close)
            perp = replace(perp, index=perp.mark, funding_rate=funding.at(t_secs))
        for quote in [perp, *future_quotes(self.futures.get(event.asset, []), perp)]:
            self.engine.on_quote(quote)
            self.service.ingest.on_quote(quote)
            self._mark_hedge(quote)
        mid = event.quote.mark
        self.mids[event.asset] = mid
        run = self.assets.get(event.asset)
        if run is None:
            return
        if run.mid is not None:
            run.exposure_pnl_usd += run.holdings * (mid - run.mid)
        run.mid = mid
        book = run.book
        if book is not None and not run.book_settled:
            value = book.value_usd(mid, event.ts)
            if run.book_value_usd is not None:
                run.exposure_pnl_usd += value - run.book_value_usd
            run.book_value_usd = value
            run.book_settled = book.expired(event.ts)
        holdings = run.model.holdings_coin(event.price, t_secs)
        if holdings != run.holdings:
            run.holdings = holdings
            self.service.ingest.on_external(run.asset, holdings)

    def _drop_settled(self, ts: datetime) -> None:
        """Quarterlies settled by `ts` no longer hedge (the exchange reports no fill for a settlement)."""
        for symbol, contracts in self.held.items():
            expiry = self.engine.instruments[symbol].expiry
            if contracts and expiry is not None and expiry <= ts:
                self.by_hedge[symbol].hedge_contracts -= contracts
                self.held[symbol] = ZERO

    def _mark_hedge(self, quote: Quote) -> None:
        """The hedge PnL of the contracts held in `quote`'s market, from its previous mid to this one."""
        run = self.by_hedge.get(quote.symbol)
        before = self.marks.get(quote.symbol)
        self.marks[quote.symbol] = quote.mark
        if run is not None and before is not None:
            size = self.engine.instruments[quote.symbol].contract_size
            run.hedge_pnl_usd += self.held.get(quote.symbol, ZERO) * size * (quote.mark - before)

    def _settle_funding(self, market: str, rate: Decimal, ts: datetime) -> bool:
        """Funding on the hedge held in `market`'s perpetual; returns whether any was paid."""
        perp = linear_perp(market)
        run = self.by_hedge.get(perp.symbol)
        mid = self.mids.get(market)
        held = self.held.get(perp.symbol, ZERO)  # a carry hedge on a quarterly pays none
        if run is None or not run.started or mid is None or held == 0:
            return False
        notional = held * perp.contract_size * mid
        amount = (-notional * rate).quantize(WALLET)
        if amount:
            self.engine.adjust_balance(ACCOUNT, SETTLE, amount, ts)
            run.funding_usd += amount
        return bool(amount)

    def _open_hedge(self, event: PriceEvent, t_secs: float) -> bool:
        """The asset's first price event (`start_hedged`): open the hedge at the target, outside the figures
        (its cost goes to `initial_hedge`), before the first tracking error sample. Not for a proxy hedge,
        which waits for its beta."""
        run = self.assets.get(event.asset)
        if run is None or run.started or run.proxy or not self.cfg.start_hedged:
            return False
        cycle = self.service.cycle
        symbol = self.service.policies[run.asset].hedge_symbol
        if run.carry and cycle.choose_hedge(run.asset, symbol) is None:
            return False  # no choice yet (no funding rate): the cycle opens the hedge once it chooses
        hedge = self.engine.instruments[self.service.policies[run.asset].hedge_symbol]
        run.started = True
        run.opened_at = t_secs
        cycle.restart_timer(run.asset, t_secs)  # the timer counts from the opening hedge
        delta = self.service.state.deltas().get(run.asset)
        deviation = (delta.delta_coin if delta is not None else ZERO) - run.policy.target_coin
        price = self.service.state.quotes[hedge.symbol].mark
        contracts = hedge.round_contracts(hedge.contracts_for_coin(-deviation, price))
        if contracts != 0 and abs(contracts) >= hedge.min_contracts:
            self.orders += 1
            request = OrderRequest(f"dkopen{self.orders}", hedge.symbol, Side.for_signed(contracts),
                                   abs(contracts), OrderType.MARKET)
            self.opening = True
            try:
                self.engine.place_order(ACCOUNT, request, event.ts)
            except OrderRejected:
                run.rejected += 1
            finally:
                self.opening = False
        return True

    # -- tracking error ------------------------------------------------------------------------------

    def _deviation_usd(self, run: AssetRun, deltas: Mapping[str, AssetDelta]) -> float:
        delta = deltas.get(run.asset)
        coin = delta.delta_coin if delta is not None else ZERO
        assert run.mid is not None
        deviation = (coin - run.policy.target_coin) * run.mid
        if run.proxy:
            hedge_mid = self.mids[run.hedge.base]
            deviation += run.hedge.delta_coin(run.hedge_contracts, hedge_mid) * hedge_mid
        return float(deviation)

    def _sample(self, deltas: Mapping[str, AssetDelta], weight: float) -> None:
        portfolio = 0.0
        for run in self.assets.values():
            if run.mid is None:
                continue
            deviation = self._deviation_usd(run, deltas)
            portfolio += deviation
            run.sample(deviation, weight)
        self.portfolio_sq_sum += weight * portfolio * portfolio
        self.portfolio_max_abs = max(self.portfolio_max_abs, abs(portfolio))
        self.total_weight += weight

    def _record(self, run: AssetRun, deltas: Mapping[str, AssetDelta], t_secs: float) -> None:
        assert run.series is not None and run.mid is not None
        figures = run.figures
        for key, value in (("t_secs", t_secs),
                           ("deviation_usd", self._deviation_usd(run, deltas)),
                           ("band_usd", float(run.band_coin * run.mid)),
                           ("cost_usd", float(figures.fees_usd + figures.slippage_usd))):
            run.series[key].append(value)

    # -- results -------------------------------------------------------------------------------------

    def _result(self, start: datetime, end: datetime) -> dict[str, Any]:
        per_asset = {a: r.result(self.mids.get(r.hedge.base)) for a, r in sorted(self.assets.items())}
        totals: dict[str, Any] = {
            "policy": self.policy_name,
            "exposure": str(self.data.exposure),
            "start": start.astimezone(UTC),
            "end": end.astimezone(UTC),
            "price_events": self.data.price_events,
            "spread_bps": self.data.spread_bps,
        }
        for key in ("trades", "traded_notional_usd", "fees_usd", "slippage_usd", "cost_usd", "funding_usd",
                    "hedge_pnl_usd", "exposure_pnl_usd", "net_pnl_usd", "rejected_orders"):
            totals[key] = total(r[key] for r in per_asset.values())
        totals["tracking_error_usd"] = rms(self.portfolio_sq_sum, self.total_weight)
        totals["max_abs_delta_usd"] = usd(self.portfolio_max_abs)
        totals["initial_hedge"] = {
            key: total(r["initial_hedge"][key] for r in per_asset.values())
            for key in ("trades", "traded_notional_usd", "fees_usd", "slippage_usd")
        }
        if self.books:
            totals["option_vol"] = self.cfg.option_vol
        totals["warnings"] = list(self.data.warnings)
        totals["settings"] = self.cfg.settings_used(self.policy_name)
        totals["assets"] = per_asset
        return totals
