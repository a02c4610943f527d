"""Replaying history through the decision code and the simulated exchange.

Every price event (one per bar close, per asset) goes through the same path as the live bot's cycle: the
simulated engine gets the quote, the exposure model moves the holdings (held outside the exchange, in a
pool or a wallet, as `DK_EXTERNAL__<ASSET>` declares them to the live bot), funding due by then settles
(`adjust_balance` of the settle coin), `domain.exposure.asset_deltas` computes each asset's delta from the
account's balances and positions (refreshed after every fill and funding payment, as the live market state
is on account events), the external holdings and an options book's positions, the policy
(`domain.decide_policies`, wrapping `domain.policy.decide`) decides, `domain.risk.check` applies the risk
limits, and a market order goes to `SimEngine.place_order`, which fills it against its synthetic book.

Figures (USD; costs are positive when paid):
- `fees_usd`: the engine's fees. `slippage_usd`: what fills cost beyond the quote's mid (half the spread
  plus the walk through the book). `cost_usd` = fees + slippage.
- `hedge_pnl_usd`: the hedge positions' PnL valued at the mid, so fees, slippage and funding are apart.
- `exposure_pnl_usd`: the holdings' PnL between price events, sum of holdings x change of the mid, plus an
  options book's change of value: what the hedge offsets. `net_pnl_usd` = exposure + hedge + funding - cost.
- `tracking_error_usd`: root mean square of the portfolio's USD deviation from target (sum over assets
  of (delta - target) x mid), sampled at every price event after the prices and holdings move and
  before that event's decisions, each sample weighted by the time since the previous price event.
  `max_abs_delta_usd`: the largest |deviation| among those samples.
- `funding_usd`: funding on the hedge, settled at the funding file's timestamps at the latest mid:
  -position x mid x rate (positive = received). `warnings`: the spans of the price window the funding
  rates leave uncovered (`funding_gaps`), where no funding is counted.

Options book (`--exposure calls:N[:STRIKE_PCT[:DAYS]]`, `domain.exposure_models.OptionBook`): N coin-settled
calls per asset (Deribit-style, one coin a contract), struck at STRIKE_PCT % of the asset's first mid and
expiring DAYS after its first price event, held outside the hedging account (with `DK_EXTERNAL__<ASSET>`
coins beside them, if declared: covered calls). They are valued by Black-76 on the mid at the fixed implied
volatility `option_vol`, and `asset_deltas` counts them as the live bot counts an option position without a
published delta: the price-adjusted delta plus their value in the coin (REFERENCE 1.3), with their gamma for
the cost-aware band. The premium and the payoff are taken in USD: the book's PnL is the change of its USD
value. At the first price event at or after expiry the calls settle at their intrinsic value on that mid:
the book's value stops there and its delta is zero from then on (the hedge is then traded back by the
policy). The risk model's measured drift follows the holdings; the options enter the cost-aware band by
their gamma.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from heapq import merge
from itertools import groupby, pairwise
from pathlib import Path
from typing import Any

from deltakeeper.backtest.data import (
    AssetSeries,
    ExposureSpec,
    PriceEvent,
    coin_settled_call,
    linear_perp,
    load_funding,
    load_inventory,
    load_price_series,
    parse_exposure,
    price_decimals,
)
from deltakeeper.backtest.files import DataFile
from deltakeeper.backtest.settings import POLICIES, SWEEP_GRID, BacktestSettings
from deltakeeper.domain import risk
from deltakeeper.domain.decide_policies import HedgePolicy, MarketContext, RiskModel, TimerPolicy
from deltakeeper.domain.errors import ConfigError, OrderRejected
from deltakeeper.domain.exposure import AssetDelta, Position, asset_deltas
from deltakeeper.domain.exposure_models import (
    COIN_QUANTUM,
    ConstantProductPool,
    ExposureModel,
    InventoryPath,
    OptionBook,
    StaticHoldings,
)
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.orders import Fill, OrderRequest, OrderType, Side, client_order_id
from deltakeeper.domain.policy import AssetPolicy, AssetView
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.engine import SimEngine

ACCOUNT = "backtest"
SETTLE = "USDT"
COLLATERAL_USD = Decimal(1_000_000_000)
"""The account's margin wallet: large on purpose, margin is not what a backtest measures."""
_WALLET = Decimal("1E-8")
_CENT = Decimal("0.01")
_DAY_SECS = 86_400
_SERIES = ("t_secs", "deviation_usd", "band_usd", "cost_usd")


@dataclass(frozen=True, slots=True)
class Dataset:
    """Everything a run replays, loaded once and shared by the runs of a sweep."""

    series: Mapping[str, AssetSeries]
    funding: Mapping[str, tuple[tuple[float, Decimal], ...]]
    exposure: ExposureSpec
    inventory: Mapping[str, InventoryPath]
    spread_bps: float
    warnings: tuple[str, ...] = ()
    """What the data leaves out (`funding_gaps`): on stderr, and in every result."""

    @property
    def assets(self) -> list[str]:
        return list(self.series)

    def steps(self) -> list[tuple[float, list[PriceEvent]]]:
        """Price events of every asset merged in time, grouped by timestamp (assets in name order)."""
        streams = [self.series[a].events for a in sorted(self.series)]
        merged = merge(*streams, key=lambda e: e.t_secs)
        return [(t, list(group)) for t, group in groupby(merged, key=lambda e: e.t_secs)]

    @property
    def price_events(self) -> int:
        return sum(len(s.events) for s in self.series.values())


def _file(spec: str | Path | DataFile) -> DataFile:
    return spec if isinstance(spec, DataFile) else DataFile(Path(spec))


def load_dataset(
    prices: Mapping[str, str | Path | DataFile],
    funding: Mapping[str, str | Path | DataFile] | None = None,
    exposure: str | ExposureSpec = "static",
    spread_bps: float = 1.0,
) -> Dataset:
    if not prices:
        raise ConfigError("--prices", "at least one price file")
    series = {a.upper(): load_price_series(a.upper(), _file(p), spread_bps) for a, p in prices.items()}
    rates: dict[str, tuple[tuple[float, Decimal], ...]] = {}
    warnings: list[str] = []
    for asset, given in (funding or {}).items():
        if asset.upper() not in series:
            raise ConfigError("--funding", "an asset that has --prices", asset)
        file = _file(given)
        rates[asset.upper()] = load_funding(file)
        warnings.extend(funding_gaps(asset.upper(), series[asset.upper()], rates[asset.upper()], file.path))
    spec = parse_exposure(exposure) if isinstance(exposure, str) else exposure
    inventory: dict[str, InventoryPath] = {}
    if spec.kind == "inventory":
        assert spec.path is not None
        inventory = load_inventory(spec.path)
        unknown = sorted(set(inventory) - set(series))
        if unknown:
            raise ConfigError("--exposure", "inventory assets that have --prices", ", ".join(unknown))
    return Dataset(series, rates, spec, inventory, spread_bps, tuple(warnings))


def funding_gaps(
    asset: str, series: AssetSeries, rates: Sequence[tuple[float, Decimal]], path: Path
) -> list[str]:
    """Spans of the price window with no funding rate: before the first rate, after the last one's interval,
    and between two rates more than two intervals apart. The interval is the commonest spacing of the
    rates (8 hours for most venues)."""
    start, end = series.events[0].t_secs, series.events[-1].t_secs
    times = [t for t, _ in rates]
    spacings = sorted(b - a for a, b in pairwise(times) if b > a)
    interval = spacings[len(spacings) // 2] if spacings else 8 * 3600.0
    gaps: list[tuple[float, float]] = []
    inside = [t for t in times if start <= t <= end]
    if not inside:
        gaps.append((start, end))
    else:
        if inside[0] - start > interval:
            gaps.append((start, inside[0]))
        gaps.extend((a, b) for a, b in pairwise(inside) if b - a > 2 * interval)
        if end - inside[-1] > interval:
            gaps.append((inside[-1], end))

    def utc(t: float) -> str:
        return f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d %H:%M}"

    return [f"{asset}: no funding rate from {utc(a)} to {utc(b)} UTC in {path.name} (funding is not counted "
            f"there)" for a, b in gaps]


# -- state ---------------------------------------------------------------------------------------------


@dataclass
class _Figures:
    trades: int = 0
    traded_notional_usd: Decimal = ZERO
    fees_usd: Decimal = ZERO
    slippage_usd: Decimal = ZERO

    def add(self, fill: Fill, slippage: Decimal) -> None:
        self.traded_notional_usd += fill.notional_usd
        self.fees_usd += fill.fee
        self.slippage_usd += slippage


@dataclass
class _Asset:
    asset: str
    hedge: Instrument
    policy: AssetPolicy
    model: ExposureModel
    risk: RiskModel
    book: OptionBook | None = None
    book_value_usd: Decimal | None = None
    """The options book's value at the last price event (its payoff once settled)."""
    book_settled: bool = False
    holdings: Decimal = ZERO
    hedge_contracts: Decimal = ZERO
    mid: Decimal | None = None
    started: bool = False
    opened_at: float | None = None
    timer_slot: int | None = None
    figures: _Figures = field(default_factory=_Figures)
    initial: _Figures = field(default_factory=_Figures)
    funding_usd: Decimal = ZERO
    hedge_pnl_usd: Decimal = ZERO
    exposure_pnl_usd: Decimal = ZERO
    sq_sum: float = 0.0
    weight: float = 0.0
    max_abs: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    risk_notes: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    last_skip: str = ""
    band_coin: Decimal = ZERO
    """The last decision's band half-width."""
    series: dict[str, list[float]] | None = None
    """With `series`: at each of the asset's price events, the time, the deviation from target before the
    decision, the band and the cumulative cost (USD)."""


def _exposure_model(data: Dataset, cfg: BacktestSettings, asset: str, first_price: float) -> ExposureModel:
    spec = data.exposure
    if spec.kind == "lp":
        return ConstantProductPool.from_value(float(spec.value_usd), first_price)
    if spec.kind == "inventory":
        return data.inventory.get(asset) or StaticHoldings(ZERO)
    if spec.kind == "calls":
        return StaticHoldings(cfg.external_coin.get(asset, ZERO))
    held = cfg.external_coin.get(asset)
    if held is None:
        held = (spec.value_usd / Decimal(repr(first_price))).quantize(COIN_QUANTUM)
    return StaticHoldings(held)


def _option_book(spec: ExposureSpec, cfg: BacktestSettings, series: AssetSeries) -> OptionBook | None:
    """`calls:N:STRIKE_PCT:DAYS`: the calls on the asset, struck at STRIKE_PCT % of its first mid (to the
    price tick), expiring DAYS after its first price event."""
    if spec.kind != "calls":
        return None
    first = series.events[0]
    tick = Decimal(1).scaleb(-price_decimals(series.asset, first.price))
    strike = (first.quote.mark * spec.strike_pct / 100).quantize(tick)
    expiry = first.ts + timedelta(days=float(spec.expiry_days))
    return OptionBook(coin_settled_call(series.asset, strike, expiry), spec.calls, cfg.option_vol)


class _Replay:
    def __init__(
        self, data: Dataset, policy_name: str, cfg: BacktestSettings, record_series: bool = False
    ) -> None:
        cfg.validate()
        self.data = data
        self.cfg = cfg
        self.policy: HedgePolicy = cfg.policy(policy_name)
        self.policy_name = policy_name
        self.uses_risk_model = self.policy.uses_risk_model
        self.assets: dict[str, _Asset] = {}
        for asset, series in data.series.items():
            hedge = linear_perp(asset)
            wanted = cfg.hedges.get(asset)
            if wanted is not None and wanted != hedge.symbol:
                raise ConfigError(f"DK_ASSETS__{asset}__HEDGE",
                                  f"{hedge.symbol}: a backtest hedges with the linear perpetual", wanted)
            first = series.events[0].price
            self.assets[asset] = _Asset(
                asset=asset,
                hedge=hedge,
                policy=AssetPolicy(asset, hedge.symbol, cfg.band_for(asset),
                                   cfg.targets_coin.get(asset, ZERO), cfg.rebalance_to),
                model=_exposure_model(data, cfg, asset, first),
                risk=RiskModel.for_bar(series.bar_secs, cfg.ewma_daily_decay),
                book=_option_book(data.exposure, cfg, series),
                series={k: [] for k in _SERIES} if record_series else None,
            )
        self.instruments = {a.hedge.symbol: a.hedge for a in self.assets.values()}
        self.books = [a.book for a in self.assets.values() if a.book is not None]
        self.delta_instruments = dict(self.instruments)
        """The hedges (the engine's markets) and the options books' calls (held elsewhere)."""
        self.delta_instruments.update((b.instrument.symbol, b.instrument) for b in self.books)
        self.engine = SimEngine(self.instruments, seed=0)
        self.engine.open_account(ACCOUNT, {SETTLE: COLLATERAL_USD})
        self.fills: list[Fill] = []
        self.engine.subscribe(self._on_event)
        self.external: dict[str, Decimal] = {}
        """The exposure's holdings, held outside the exchange (a pool, a wallet), as `DK_EXTERNAL__*`."""
        self.balances: dict[str, Decimal] = {}
        self.positions: list[Position] = []
        self._refresh_account()
        self.orders = 0
        self.traded_today_usd = ZERO
        self.day: int | None = None
        self.total_weight = 0.0
        self.portfolio_sq_sum = 0.0
        self.portfolio_max_abs = 0.0
        self.samples = 0

    def _on_event(self, account_id: str, event: AccountEvent) -> None:
        if type(event) is Fill:
            self.fills.append(event)

    # -- one run -------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
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
        start_hedged = self.cfg.start_hedged
        for t_secs, events in steps:
            ts = events[0].ts
            for event in events:
                self._price(event, t_secs)
            while funding_index < len(funding) and funding[funding_index][0] <= t_secs:
                _, asset, rate = funding[funding_index]
                self._settle_funding(self.assets[asset], rate, ts)
                funding_index += 1
            opened = False
            if start_hedged:
                for event in events:
                    state = self.assets[event.asset]
                    if not state.started:
                        self._open_hedge(state, event, t_secs)
                        opened = True
            deltas = self._deltas(ts)
            if previous_t is not None:
                self._sample(deltas, t_secs - previous_t)
            for event in events:
                state = self.assets[event.asset]
                if opened and state.opened_at == t_secs:
                    continue  # the opening hedge is this event's decision
                state.started = True  # not hedged at the start: the first decision opens the hedge
                self._decide(state, event, deltas, t_secs)
                if state.series is not None:
                    self._record(state, deltas, t_secs)
            previous_t = t_secs
        return self._result(steps[0][1][0].ts, steps[-1][1][0].ts)

    def _price(self, event: PriceEvent, t_secs: float) -> None:
        state = self.assets[event.asset]
        self.engine.on_quote(event.quote)
        mid = event.quote.mark
        if state.mid is not None:
            move = mid - state.mid
            state.hedge_pnl_usd += state.hedge_contracts * state.hedge.contract_size * move
            state.exposure_pnl_usd += state.holdings * move
        state.mid = mid
        book = state.book
        if book is not None and not state.book_settled:
            value = book.value_usd(mid, event.ts)
            if state.book_value_usd is not None:
                state.exposure_pnl_usd += value - state.book_value_usd
            state.book_value_usd = value
            state.book_settled = book.expired(event.ts)
        holdings = state.model.holdings_coin(event.price, t_secs)
        if holdings != state.holdings:
            state.holdings = holdings
            self.external[state.asset] = holdings
        if self.uses_risk_model:  # the timer and the plain band do not read it
            state.risk = state.risk.observe(event.price, holdings, t_secs)

    def _settle_funding(self, state: _Asset, rate: Decimal, ts: datetime) -> None:
        if not state.started or state.mid is None or state.hedge_contracts == 0:
            return
        notional = state.hedge_contracts * state.hedge.contract_size * state.mid
        amount = (-notional * rate).quantize(_WALLET)
        if amount:
            self.engine.adjust_balance(ACCOUNT, SETTLE, amount, ts)
            state.funding_usd += amount
            self._refresh_account()

    def _refresh_account(self) -> None:
        """What the live bot's market state does on an account event: take the new balances and positions.
        (Between fills and funding they do not change; a linear position's delta does not move with its
        mark, and its unrealised PnL is in USDT, which carries no delta.)"""
        self.balances = self.engine.balances(ACCOUNT)
        self.positions = self.engine.positions(ACCOUNT)

    def _deltas(self, ts: datetime) -> dict[str, AssetDelta]:
        prices = {a: s.mid for a, s in self.assets.items() if s.mid is not None}
        positions = self.positions
        if self.books:
            positions = list(positions)
            for state in self.assets.values():
                if state.book is not None and state.mid is not None:
                    held = state.book.position(state.mid, ts)
                    if held is not None:
                        positions.append(held)
        return asset_deltas(self.delta_instruments, self.balances, positions, prices, self.external, as_of=ts)

    def _deviation_usd(self, state: _Asset, deltas: Mapping[str, AssetDelta]) -> float:
        delta = deltas.get(state.asset)
        coin = delta.delta_coin if delta is not None else ZERO
        assert state.mid is not None
        return float((coin - state.policy.target_coin) * state.mid)

    def _sample(self, deltas: Mapping[str, AssetDelta], weight: float) -> None:
        total = 0.0
        for state in self.assets.values():
            if state.mid is None:
                continue
            deviation = self._deviation_usd(state, deltas)
            total += deviation
            state.sq_sum += weight * deviation * deviation
            state.weight += weight
            if abs(deviation) > state.max_abs:
                state.max_abs = abs(deviation)
        self.portfolio_sq_sum += weight * total * total
        self.portfolio_max_abs = max(self.portfolio_max_abs, abs(total))
        self.total_weight += weight
        self.samples += 1

    def _record(self, state: _Asset, deltas: Mapping[str, AssetDelta], t_secs: float) -> None:
        assert state.series is not None and state.mid is not None
        figures = state.figures
        for key, value in (("t_secs", t_secs), ("deviation_usd", self._deviation_usd(state, deltas)),
                           ("band_usd", float(state.band_coin * state.mid)),
                           ("cost_usd", float(figures.fees_usd + figures.slippage_usd))):
            state.series[key].append(value)

    # -- trading -------------------------------------------------------------------------------------

    def _open_hedge(self, state: _Asset, event: PriceEvent, t_secs: float) -> None:
        """The asset's first price event: open the hedge at the target, outside the figures (its cost goes to
        `initial_hedge`), before the first tracking error sample."""
        state.started = True
        state.opened_at = t_secs
        if isinstance(self.policy, TimerPolicy):
            state.timer_slot = self.policy.slot(t_secs)  # the timer counts from the opening hedge
        delta = self._deltas(event.ts).get(state.asset)
        deviation = (delta.delta_coin if delta is not None else ZERO) - state.policy.target_coin
        contracts = state.hedge.round_contracts(state.hedge.contracts_for_coin(-deviation, event.quote.mark))
        if contracts != 0 and abs(contracts) >= state.hedge.min_contracts:
            request = OrderRequest(client_order_id(self._next_order()), state.hedge.symbol,
                                   Side.for_signed(contracts), abs(contracts), OrderType.MARKET)
            self._send(state, request, event, initial=True)

    def _next_order(self) -> int:
        self.orders += 1
        return self.orders

    def _decide(self, state: _Asset, event: PriceEvent, deltas: Mapping[str, AssetDelta],
                t_secs: float) -> None:
        quote = event.quote
        delta = deltas.get(state.asset) or AssetDelta(state.asset, ZERO, ZERO, ZERO)
        view = AssetView(state.asset, delta.delta_coin, delta.gross_coin, quote.mark, state.hedge, quote.mark)
        ctx = MarketContext(t_secs, event.spread_bps, state.risk, state.timer_slot, delta.gamma_coin_per_usd)
        outcome = self.policy.decide(view, state.policy, ctx)
        state.timer_slot = outcome.timer_slot
        decision = outcome.decision
        state.band_coin = decision.band_coin
        intent = decision.intent
        if intent is None:
            reason = decision.reason
            state.reasons[reason] = state.reasons.get(reason, 0) + 1
            if reason == "cost_exceeds_risk":
                state.last_skip = outcome.detail
            return
        day = int(t_secs // _DAY_SECS)
        if day != self.day:
            self.day, self.traded_today_usd = day, ZERO
        touch = quote.ask if intent.side.sign > 0 else quote.bid
        ctx_risk = risk.RiskContext(
            quote_age_secs=0.0,
            mark_price=quote.mark,
            position_contracts=state.hedge_contracts,
            traded_today_usd=self.traded_today_usd,
            state=risk.TradingState.ACTIVE,
        )
        checked = risk.check(replace(intent, reference_price=touch), state.hedge, ctx_risk, self.cfg.limits)
        for note in checked.notes:
            state.risk_notes[note] = state.risk_notes.get(note, 0) + 1
        if checked.intent is None:
            state.reasons["denied"] = state.reasons.get("denied", 0) + 1
            return
        sent = checked.intent
        state.reasons["rebalance"] = state.reasons.get("rebalance", 0) + 1
        request = OrderRequest(client_order_id(self._next_order()), sent.symbol, sent.side,
                               sent.amount_contracts, OrderType.MARKET, reduce_only=sent.reduce_only)
        self._send(state, request, event, initial=False)

    def _send(self, state: _Asset, request: OrderRequest, event: PriceEvent, *, initial: bool) -> None:
        start = len(self.fills)
        try:
            self.engine.place_order(ACCOUNT, request, event.ts)
        except OrderRejected:
            state.rejected += 1
            return
        figures = state.initial if initial else state.figures
        mid = event.quote.mark
        size = state.hedge.contract_size
        for fill in self.fills[start:]:
            signed = fill.amount_contracts * fill.side.sign
            state.hedge_contracts += signed
            figures.add(fill, (fill.price - mid) * signed * size)
            if not initial:
                self.traded_today_usd += fill.notional_usd
        if len(self.fills) > start:
            figures.trades += 1
            self._refresh_account()

    # -- results -------------------------------------------------------------------------------------

    def _result(self, start: datetime, end: datetime) -> dict[str, Any]:
        per_asset = {a: self._asset_result(s) for a, s in sorted(self.assets.items())}
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
            totals[key] = _total(r[key] for r in per_asset.values())
        totals["tracking_error_usd"] = self._rms(self.portfolio_sq_sum, self.total_weight)
        totals["max_abs_delta_usd"] = _usd(self.portfolio_max_abs)
        totals["initial_hedge"] = {
            key: _total(r["initial_hedge"][key] for r in per_asset.values())
            for key in ("trades", "traded_notional_usd", "fees_usd", "slippage_usd")
        }
        if self.books:
            totals["option_vol"] = self.cfg.option_vol
        totals["warnings"] = list(self.data.warnings)
        totals["settings"] = self.cfg.settings_used(self.policy_name)
        totals["assets"] = per_asset
        return totals

    @staticmethod
    def _rms(sq_sum: float, weight: float) -> float:
        return round(math.sqrt(sq_sum / weight), 4) if weight else 0.0

    def _asset_result(self, s: _Asset) -> dict[str, Any]:
        cost = s.figures.fees_usd + s.figures.slippage_usd
        result: dict[str, Any] = {
            "hedge": s.hedge.symbol,
            "trades": s.figures.trades,
            "traded_notional_usd": s.figures.traded_notional_usd,
            "fees_usd": s.figures.fees_usd,
            "slippage_usd": s.figures.slippage_usd,
            "cost_usd": cost,
            "funding_usd": s.funding_usd,
            "hedge_pnl_usd": s.hedge_pnl_usd.quantize(_WALLET),
            "exposure_pnl_usd": s.exposure_pnl_usd.quantize(_WALLET),
            "net_pnl_usd": (s.exposure_pnl_usd + s.hedge_pnl_usd + s.funding_usd - cost).quantize(_WALLET),
            "tracking_error_usd": self._rms(s.sq_sum, s.weight),
            "max_abs_delta_usd": _usd(s.max_abs),
            "rejected_orders": s.rejected,
            "initial_hedge": {
                "trades": s.initial.trades,
                "traded_notional_usd": s.initial.traded_notional_usd,
                "fees_usd": s.initial.fees_usd,
                "slippage_usd": s.initial.slippage_usd,
            },
            "final_holdings_coin": s.holdings,
            "final_hedge_coin": s.hedge.delta_coin(s.hedge_contracts, s.mid or Decimal(1)),
            "decisions": dict(sorted(s.reasons.items())),
        }
        if s.book is not None:
            option = s.book.instrument
            result["options"] = {
                "symbol": option.symbol,
                "contracts": s.book.contracts,
                "strike_usd": option.strike,
                "expiry": option.expiry,
                "vol": s.book.vol,
                "settled": s.book_settled,
                "final_value_usd": (s.book_value_usd or ZERO).quantize(_WALLET),
            }
        if s.risk_notes:
            result["risk_notes"] = dict(sorted(s.risk_notes.items()))
        if s.last_skip:
            result["last_skip"] = s.last_skip
        if s.series is not None:
            result["series"] = s.series
        return result


def _total(values: Iterable[Any]) -> Any:
    """The sum of counts (ints) or of USD amounts (Decimals)."""
    items = list(values)
    return sum(items[1:], start=items[0]) if items else 0


def _usd(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_CENT)


# -- public API ------------------------------------------------------------------------------------------


def run_dataset(
    data: Dataset, policy: str, settings: BacktestSettings | None = None, series: bool = False
) -> dict[str, Any]:
    """One run over loaded data. Money is `Decimal`, statistics are floats. With `series`, the result has
    `series`: {asset: lists of `t_secs`, `deviation_usd`, `band_usd`, `cost_usd` at each price event}."""
    if policy not in POLICIES:
        raise ConfigError("--policy", "timer, band or cost-aware", policy)
    result = _Replay(data, policy, settings or BacktestSettings(), series).run()
    if series:
        result["series"] = {a: r.pop("series") for a, r in result["assets"].items()}
    return result


def run_backtest(
    prices: Mapping[str, str | Path | DataFile],
    funding: Mapping[str, str | Path | DataFile] | None = None,
    exposure: str = "static",
    policy: str = "band",
    settings: BacktestSettings | None = None,
) -> dict[str, Any]:
    """Replay `prices` ({asset: CSV or Parquet file of bars}) and `funding` ({asset: file of timestamp and
    rate}) with an exposure (`static[:USD]`, `lp[:USD]`, `inventory=FILE`, `calls:N[:STRIKE_PCT[:DAYS]]`)
    and a policy (`timer`, `band`, `cost-aware`). Raises ConfigError for bad input."""
    cfg = settings or BacktestSettings()
    return run_dataset(load_dataset(prices, funding, exposure, cfg.spread_bps), policy, cfg)


def sweep_dataset(
    data: Dataset, policy: str, settings: BacktestSettings | None = None
) -> list[dict[str, Any]]:
    """One run per point of the policy's fixed grid (`SWEEP_GRID`), in grid order."""
    if policy not in POLICIES:
        raise ConfigError("--policy", "timer, band or cost-aware", policy)
    cfg = settings or BacktestSettings()
    return [run_dataset(data, policy, cfg.with_point(point)) for point in SWEEP_GRID[policy]]


def sweep(
    prices: Mapping[str, str | Path | DataFile],
    funding: Mapping[str, str | Path | DataFile] | None = None,
    exposure: str = "static",
    policy: str = "band",
    settings: BacktestSettings | None = None,
) -> list[dict[str, Any]]:
    """`run_backtest` at every point of the policy's fixed grid, the data loaded once."""
    cfg = settings or BacktestSettings()
    return sweep_dataset(load_dataset(prices, funding, exposure, cfg.spread_bps), policy, cfg)


def cost_and_tracking_error(results: Sequence[Mapping[str, Any]]) -> list[tuple[float, float]]:
    """(tracking error, cost) of each run, in USD."""
    return [(float(r["tracking_error_usd"]), float(r["cost_usd"])) for r in results]
