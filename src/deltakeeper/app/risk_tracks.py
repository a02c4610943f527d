"""Per asset, what the policy and a proxy hedge learn from the prices: the risk model (volatility and
drift of the exposure, for the cost-aware band) and the EWMA beta of an asset on another asset's contract,
sampled once per bar of exchange time."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal

from deltakeeper.app.market_state import MarketState
from deltakeeper.domain.decide_policies import RiskModel
from deltakeeper.domain.policy import AssetPolicy
from deltakeeper.domain.volatility import EwmaBeta

MIN_RISK_BAR_SECS = 60.0
"""The risk model samples prices once per bar of the quote spacing (exchange time), at least this long: a
live stream quoting every 100 ms gives one-minute returns, so its 30-return warm-up covers half an hour, not
three seconds of noise."""
NO_RISK = RiskModel.for_bar(MIN_RISK_BAR_SECS)
_BETA_QUANTUM = Decimal("0.0001")


@dataclass
class RiskTrack:
    """One asset's risk model, sampled from its quotes once per bar (the first quote spacing seen, unless
    known), and for a proxy hedge the EWMA beta of the asset on the hedge."""

    proxy: bool
    first_ts: float | None = None
    bar_secs: float | None = None
    slot: int | None = None
    model: RiskModel | None = None
    beta: EwmaBeta | None = None


class RiskTracks:
    def __init__(
        self,
        state: MarketState,
        policies: Mapping[str, AssetPolicy],
        *,
        uses_risk_model: bool,
        betas: Mapping[str, Decimal | None],
        ewma_daily_decay: float,
        bar_secs: Mapping[str, float] | None = None,
    ) -> None:
        self.state = state
        self.policies = policies
        self.uses_risk_model = uses_risk_model
        self.betas = betas
        self.ewma_daily_decay = ewma_daily_decay
        self.tracks: dict[str, RiskTrack] = {}
        self._used_betas: dict[str, Decimal] = {}
        """Asset -> the EWMA beta its last decision was taken on (`beta`)."""
        for asset, policy in policies.items():
            proxy = state.instruments[policy.hedge_symbol].base != asset
            if proxy or uses_risk_model:
                track = self.tracks[asset] = RiskTrack(proxy)
                known = (bar_secs or {}).get(asset)
                if known is not None:
                    self._start(track, max(known, MIN_RISK_BAR_SECS))

    def model(self, asset: str) -> RiskModel:
        track = self.tracks.get(asset)
        return track.model if track is not None and track.model is not None else NO_RISK

    def beta_model(self, asset: str) -> EwmaBeta | None:
        track = self.tracks.get(asset)
        return track.beta if track is not None else None

    def beta(self, asset: str) -> tuple[Decimal | None, bool]:
        """The proxy hedge ratio: the fixed one, else the EWMA estimate (`EwmaBeta.hedge_ratio`: enough
        returns, clamped). Once an estimate has been used, a later unknown one holds it: the hedge is kept
        at the last ratio, not bought back or re-sized on nothing. Returns (the ratio, whether held); None
        until a first estimate."""
        if asset not in self.betas:
            return Decimal(1), False
        fixed = self.betas[asset]
        if fixed is not None:
            return fixed, False
        model = self.beta_model(asset)
        estimate = model.hedge_ratio if model is not None else None
        if estimate is None:
            held = self._used_betas.get(asset)
            return held, held is not None
        beta = self._used_betas[asset] = Decimal(repr(estimate)).quantize(_BETA_QUANTUM)
        return beta, False

    def _start(self, track: RiskTrack, bar_secs: float) -> None:
        track.bar_secs = bar_secs
        if self.uses_risk_model:
            track.model = RiskModel.for_bar(bar_secs, self.ewma_daily_decay)
        if track.proxy:
            track.beta = EwmaBeta.for_bar(bar_secs, self.ewma_daily_decay)

    def observe(self, asset: str, quote_symbol: str) -> None:
        """Feed the asset's risk model (price, and its exposure before the hedge) and a proxy's EWMA beta,
        once per bar of exchange time. The bar is the spacing of the asset's first two quotes."""
        track = self.tracks.get(asset)
        if track is None:
            return
        policy = self.policies[asset]
        price_symbol = self.state.price_symbols.get(asset, policy.hedge_symbol)
        quote = self.state.quotes.get(price_symbol) if quote_symbol == price_symbol else None
        if quote is None:
            return
        t_secs = quote.ts.timestamp()
        if track.bar_secs is None:
            if track.first_ts is None or t_secs <= track.first_ts:
                track.first_ts = t_secs if track.first_ts is None else track.first_ts
                return
            self._start(track, max(t_secs - track.first_ts, MIN_RISK_BAR_SECS))
        assert track.bar_secs is not None
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
