"""Margin in the loop (issue 6, DESIGN.md 6): the account's standard cross margin per settlement
currency, the pre-trade margin source of the order check, REDUCE_ONLY when the headroom is critical,
liquidation fills journaled and alerted, and coin-neutral assets.

`MarginWatch` computes, from the market state (the account snapshot, refreshed on every account
event and every scheduled recompute), per derivative position and per settlement currency the margin
used (initial and maintenance margin), the headroom `(equity - MM) / equity` and the price move that would
liquidate it (`domain.margin.account_margin`): the exchange's own figures where its adapter reports them
on the positions (`Position.liquidation_price`, `initial_margin`, `maintenance_margin`, `leverage`; the
simulated exchange reports its own rule's), else the estimate from `MarginRules` at the position's leverage
or 10x: the tier tables the exchange publishes for the futures held or hedged with (`load_tiers`, once at
start, `Exchange.fetch_leverage_tiers`), else the tables given, else REFERENCE 3.1's default tiers (logged).

- It is the Watch's `margin_headroom` hook (an async callable): each scheduled check computes the margin,
  and the Watch alerts `margin_headroom_low` below DK_MARGIN_WARN_HEADROOM_PCT. Below
  DK_MARGIN_CRITICAL_HEADROOM_PCT the check also feeds the breach `margin_low` to the trading state
  machine (REDUCE_ONLY, alert `trading_state_changed`) and journals a decision with the reason
  `margin_low` for each hedged asset; once the headroom is back above it, the breach clears with the
  state machine's hysteresis (DK_STATE_CLEAR_SECS).
- `context(symbol)` is the order check's margin source for the pre-trade check (`domain.risk.check`,
  DK_MARGIN_MIN_HEADROOM_PCT): the settlement currency's equity and the margin of the other positions.
- `on_liquidation(fill)` runs for every new fill the exchange marks as a liquidation or auto-deleveraging
  execution: the journal's fills table has no column for it, so a decision row with the reason
  `liquidation` names the trade id, and an `liquidation_fill` alert (error) goes out. The account event
  that follows makes the decision cycle decide again and hedge the exposure back (within the margin it has).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog

from deltakeeper.app.cycle import Decisions, new_decision_id
from deltakeeper.app.figures import short
from deltakeeper.app.market_state import MarketState
from deltakeeper.app.trading_state import Counters, TradingStatus
from deltakeeper.app.venue_margin import VenueMarginView
from deltakeeper.domain.errors import DeltakeeperError
from deltakeeper.domain.exposure import AssetDelta
from deltakeeper.domain.instruments import Instrument
from deltakeeper.domain.margin import (
    AccountMargin,
    MarginRules,
    account_margin,
)
from deltakeeper.domain.margin_headroom import HeadroomLevels
from deltakeeper.domain.orders import Fill
from deltakeeper.domain.policy import AssetPolicy
from deltakeeper.domain.records import AccountSnapshot, DecisionRecord
from deltakeeper.domain.risk import MarginContext
from deltakeeper.ports import Alerts, Clock, Exchange, Journal

if TYPE_CHECKING:
    from datetime import datetime

    from deltakeeper.app.watch import Watch

log = structlog.get_logger("deltakeeper.margin")

MARGIN_LOW = "margin_low"
ZERO = Decimal(0)


@dataclass
class _Computed:
    """`MarginWatch.margin()`'s last result and what it was computed from."""

    account: AccountSnapshot
    instruments: dict[str, Instrument]
    instrument_count: int
    rules: MarginRules
    prices: dict[str, Decimal]
    margin: AccountMargin | None

    def same_inputs(self, other: _Computed) -> bool:
        """The same account snapshot, instruments and rules (the very objects: they are replaced, not
        changed; the instruments' count is checked too), and the same assets at the very same prices."""
        return (
            self.account is other.account
            and self.instruments is other.instruments
            and self.instrument_count == other.instrument_count
            and self.rules is other.rules
            and len(self.prices) == len(other.prices)
            and all(other.prices.get(asset) is price for asset, price in self.prices.items())
        )


class MarginWatch:
    """See the module notes. `levels`: the headroom levels (DK_MARGIN_*_HEADROOM_PCT) it reports and acts
    at. `context` is the order check's margin source, `on_liquidation` the ingest's liquidation handler
    (bootstrap wires both)."""

    def __init__(
        self,
        state: MarketState,
        exchange: Exchange,
        clock: Clock,
        journal: Journal,
        alerts: Alerts,
        trading: TradingStatus,
        counters: Counters,
        decisions: Decisions,
        policies: Mapping[str, AssetPolicy],
        rules: MarginRules | None = None,
        *,
        levels: HeadroomLevels = HeadroomLevels(),
    ) -> None:
        self.state = state
        self.exchange = exchange
        self.clock = clock
        self.journal = journal
        self.alerts = alerts
        self.trading = trading
        self.counters = counters
        self.decisions = decisions
        self.policies = policies
        self.rules = rules or MarginRules()
        self.levels = levels
        self.critical = False
        """Whether the last check found the headroom below the critical level."""
        self.liquidations = 0
        self.unknown = False
        """Whether the margin could not be estimated last time (logged once)."""
        self._last: _Computed | None = None
        self.venue: VenueMarginView | None = None
        """The venue's own account mode and margin ratio, shown beside the estimate (bootstrap sets it)."""

    async def load_tiers(self, symbols: Iterable[str]) -> None:
        """Take the exchange's maintenance margin tables for the futures among `symbols` (the markets held
        and hedged with) in place of the rules' defaults. Those it publishes none for, or all when it
        cannot be asked, keep the rules' tables: logged (`margin_tiers_default`)."""
        instruments = self.state.instruments
        futures = sorted({s for s in symbols if s in instruments and instruments[s].is_derivative
                          and not instruments[s].is_option})
        if not futures:
            return
        try:
            tiers = await self.exchange.fetch_leverage_tiers(futures)
        except DeltakeeperError as exc:
            log.warning("margin_tiers_default", symbols=futures, reason=f"{type(exc).__name__}: {exc}")
            return
        missing = [s for s in futures if s not in tiers]
        if missing:
            log.info("margin_tiers_default", symbols=missing, reason="the exchange publishes none")
        if tiers:
            self.rules = replace(self.rules, tiers={**self.rules.tiers, **tiers})
            log.info("margin_tiers_loaded", symbols=sorted(tiers))

    # -- the figures ----------------------------------------------------------------------------

    def margin(self) -> AccountMargin | None:
        """The account's margin now; None before the first account snapshot, or while it cannot be
        estimated (a short option whose underlying has no price yet: logged once)."""
        state = self.state
        account = state.account
        if account is None:
            return None
        prices = _prices(state)
        computed = _Computed(account, state.instruments, len(state.instruments), self.rules, prices, None)
        if self._last is not None and self._last.same_inputs(computed):
            return self._last.margin  # the same snapshot (replaced, never mutated) at the same prices
        try:
            margin: AccountMargin | None = account_margin(
                state.instruments, account.balances, account.positions, prices, self.rules
            )
        except ValueError as exc:
            if not self.unknown:
                log.warning("margin_unknown", error=str(exc))
            self.unknown = True
            margin = None
        else:
            self.unknown = False
        computed.margin = margin
        self._last = computed
        return margin

    def context(self, symbol: str) -> MarginContext | None:
        """The pre-trade check's view of the margin an order on `symbol` draws on."""
        state = self.state
        instrument = state.instruments.get(symbol)
        account = state.account
        if instrument is None or account is None or not instrument.is_derivative:
            return None
        margin = self.margin()
        if margin is None:
            return None
        headroom = margin.headroom if margin.headroom is not None else Decimal(1)
        underlying = state.price_usd(instrument.base)
        position = next((p for p in account.positions if p.symbol == symbol), None)
        leverage = position.leverage if position is not None else None
        pool = margin.by_settle.get(instrument.settle)
        if pool is None:
            equity = account.balances.get(instrument.settle, ZERO)
            return MarginContext(equity, ZERO, ZERO, headroom, self.rules, underlying, leverage)
        leg = next((leg for leg in pool.legs if leg.symbol == symbol), None)
        initial_other = pool.initial_margin - (leg.initial_margin if leg is not None else ZERO)
        maintenance_other = pool.maintenance_margin - (leg.maintenance_margin if leg is not None else ZERO)
        return MarginContext(
            pool.equity, initial_other, maintenance_other, headroom, self.rules, underlying, leverage
        )

    # -- the scheduled check (the Watch's hook) -------------------------------------------------

    async def __call__(self) -> float | None:
        """Compute the margin, move the trading state on the critical level, and return the headroom for
        the Watch's warning (None without derivative positions). The venue's own ratio, informational, is
        read (when due) only after: a slow or failing read never delays or skips the check."""
        margin = self.margin()
        headroom = margin.headroom if margin is not None else None
        await self._observe(margin, headroom)
        if self.venue is not None:
            await self.venue.refresh_if_due()
        return None if headroom is None else float(headroom)

    async def _observe(self, margin: AccountMargin | None, headroom: Decimal | None) -> None:
        critical = self.levels.critical
        if critical is None or margin is None:
            return  # an unknown margin is not "not low": the breach stays as it is
        now = self.clock.now()
        low = headroom is not None and self.levels.below_critical(headroom)
        if low:
            self.trading.observe(frozenset({MARGIN_LOW}), now)
        else:
            self.trading.clear(MARGIN_LOW, now)
        if low and not self.critical:
            assert margin is not None and headroom is not None
            await self._journal_margin_low(margin, headroom, critical, now)
        self.critical = low

    async def _journal_margin_low(
        self, margin: AccountMargin, headroom: Decimal, critical: Decimal, now: datetime
    ) -> None:
        low = [s for s in margin.by_settle.values() if self.levels.below_critical(s.headroom)]
        where = ", ".join(f"{s.settle} {_pct(s.headroom)}" for s in low)
        detail = (
            f"margin headroom {where} below DK_MARGIN_CRITICAL_HEADROOM_PCT={_pct(critical)}: "
            f"trading {self.trading.state.value}"
        )
        log.error(
            "margin_low", headroom=_pct(headroom), critical=_pct(critical), settle=[s.settle for s in low]
        )
        for asset in sorted(self.policies):
            await self._record(asset, now, MARGIN_LOW, detail)

    # -- liquidations ---------------------------------------------------------------------------

    async def on_liquidation(self, fill: Fill) -> None:
        """A new fill marked as a liquidation: journal a `liquidation` decision naming the trade, alert."""
        self.liquidations += 1
        instrument = self.state.instruments.get(fill.symbol)
        asset = instrument.base if instrument is not None else fill.symbol.split("/")[0]
        verb = "bought" if fill.side.sign > 0 else "sold"
        detail = (
            f"trade {fill.trade_id}: the exchange {verb} {short(fill.amount_contracts)} {fill.symbol} "
            f"at {short(fill.price)} to close the position (liquidation, fee {short(fill.fee, 8)} "
            f"{fill.fee_currency})"
        )
        log.error(
            "liquidation_fill",
            symbol=fill.symbol,
            trade_id=fill.trade_id,
            side=fill.side.value,
            amount=str(fill.amount_contracts),
            price=str(fill.price),
        )
        try:
            await self._record(asset, fill.ts, "liquidation", detail, fill)
        except Exception as exc:
            self.counters.errors += 1
            log.exception("liquidation_journal_failed", trade_id=fill.trade_id, error=str(exc))
        await self.alerts.send(
            "error",
            "liquidation_fill",
            f"{fill.symbol}: liquidated: the exchange {verb} {short(fill.amount_contracts)} at "
            f"{short(fill.price)} (trade {fill.trade_id}); the next decision hedges {asset} back "
            "within the margin left",
            fill.symbol,
        )

    async def _record(
        self, asset: str, ts: datetime, reason: str, detail: str, fill: Fill | None = None
    ) -> None:
        delta = self.state.deltas().get(asset) or AssetDelta(asset, ZERO, ZERO, ZERO)
        last = self.decisions.last.get(asset)
        policy = self.policies.get(asset)
        target = last.target_coin if last is not None else (policy.target_coin if policy else ZERO)
        price = self.state.price_usd(asset) or (fill.price if fill is not None else ZERO)
        await self.journal.record_decision(
            DecisionRecord(
                decision_id=new_decision_id(),
                ts=ts,
                asset=asset,
                delta_coin=delta.delta_coin,
                delta_usd=delta.delta_usd,
                target_coin=target,
                band_coin=last.band_coin if last is not None else ZERO,
                price_usd=price,
                reason=reason,
                trading_state=self.trading.state.value,
                symbol=fill.symbol if fill is not None else None,
                side=fill.side if fill is not None else None,
                amount_contracts=fill.amount_contracts if fill is not None else None,
                detail=detail,
            )
        )

    # -- status and metrics ---------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The `margin` field of `/api/status` and `deltakeeper status --format json`."""
        margin = self.margin()
        levels = {
            "min_headroom": _ratio(self.levels.min),
            "warn_headroom": _ratio(self.levels.warn),
            "critical_headroom": _ratio(self.levels.critical),
        }
        venue = {} if self.venue is None else {
            "venue": self.venue.status(margin.headroom if margin is not None else None)}
        if margin is None:
            return {"headroom": None, "liquidation_move": None, **levels, **venue, "by_settle": {}}
        return {
            "headroom": _ratio(margin.headroom),
            "liquidation_move": margin.liquidation_move,
            **levels,
            **venue,
            "liquidations": self.liquidations,
            "by_settle": {
                settle: {
                    "equity": s.equity,
                    "initial_margin": s.initial_margin,
                    "maintenance_margin": s.maintenance_margin,
                    "headroom": _ratio(s.headroom),
                    "liquidation_move": s.liquidation_move,
                    "positions": [
                        {
                            "symbol": leg.symbol,
                            "contracts": leg.contracts,
                            "mark_price": leg.mark_price,
                            "initial_margin": leg.initial_margin,
                            "maintenance_margin": leg.maintenance_margin,
                            "leverage": leg.leverage,
                            "liquidation_price": leg.liquidation_price,
                            "liquidation_move": leg.liquidation_move,
                            "source": leg.source,
                            "estimated_maintenance_margin": leg.estimated_maintenance_margin,
                            "estimated_liquidation_price": leg.estimated_liquidation_price,
                        }
                        for leg in s.legs
                    ],
                }
                for settle, s in margin.by_settle.items()
            },
        }

    def headroom_by_settle(self) -> dict[str, float]:
        """Per settlement currency with derivative positions: its headroom (the metric)."""
        margin = self.margin()
        if margin is None:
            return {}
        return {settle: float(s.headroom) for settle, s in margin.by_settle.items()}


def margin_watch_of(watch: Watch) -> MarginWatch | None:
    """The MarginWatch behind a Watch's `margin_headroom` hook, if that is what it is."""
    hook = watch.margin_headroom
    return hook if isinstance(hook, MarginWatch) else None


def _prices(state: MarketState) -> dict[str, Decimal]:
    """Every asset's USD price the state has."""
    return {asset: price for asset in state.price_symbols if (price := state.price_usd(asset)) is not None}


def _ratio(x: Decimal | None) -> float | None:
    return None if x is None or not x.is_finite() else float(x)


def _pct(x: Decimal) -> str:
    return "-inf" if not x.is_finite() else f"{float(x):.1%}"
