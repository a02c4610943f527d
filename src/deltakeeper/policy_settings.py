"""The live bot's hedging settings made domain values: per asset its policy and pricing market, proxy
betas, bands a lot step can hold, the hedge policy and the risk limits. Pure: `Settings` and the exchange's
instruments and account in, domain values out (ConfigError naming the variable otherwise)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from deltakeeper.config import Settings
from deltakeeper.domain.decide_policies import HedgePolicy
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.instruments import Instrument, is_stable
from deltakeeper.domain.margin_headroom import HeadroomLevels
from deltakeeper.domain.policy import (
    AssetPolicy,
    BandUnit,
    RebalanceTo,
    auto_hedge_symbol,
    min_band_coin,
    price_symbol,
)
from deltakeeper.domain.policy_params import PolicyParams, make_policy
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.domain.risk import RiskLimits
from deltakeeper.domain.roll import nearest_quarterly

QUARTERLY = "quarterly"
"""`DK_ASSETS__<ASSET>__HEDGE=quarterly`: the nearest quarterly outside the roll window."""
CARRY = "carry"
"""`DK_ASSETS__<ASSET>__HEDGE=carry`: its perpetual or its nearest quarterly, by carry (`app.hedge_choice`);
resolved to the perpetual until the cycle chooses."""


def resolve_policies(
    settings: Settings, instruments: Mapping[str, Instrument], account: AccountSnapshot,
    now: datetime | None = None,
) -> tuple[dict[str, AssetPolicy], dict[str, str]]:
    """Policies per hedged asset, and the pricing market of every asset the account can hold. An asset
    hedged on a dated future (`quarterly`: the nearest outside the roll window at `now`) is priced by its
    own perpetual or spot market, not by the future (whose price carries the basis).

    With no `DK_ASSETS__*`, every non-stable asset held (or declared external) that has a USD-margined
    perpetual is hedged with it, at target 0 and the default band (DESIGN.md 11)."""
    held = {a for a, q in account.balances.items() if q != 0 and not is_stable(a)} | set(settings.external)
    held |= {instruments[p.symbol].base for p in account.positions if p.symbol in instruments}
    rebalance_to = RebalanceTo(settings.rebalance_to)
    policies: dict[str, AssetPolicy] = {}
    if settings.assets:
        for asset, spec in settings.assets.items():
            symbol = auto_hedge_symbol(asset, instruments) if spec.hedge in (None, CARRY) else spec.hedge
            variable = f"DK_ASSETS__{asset}__HEDGE"
            if symbol == QUARTERLY:
                symbol = _quarterly(asset, instruments, settings.roll_window_secs, now)
            if symbol is None:
                raise ConfigError(
                    variable, f"a hedge market: the exchange lists no USD-margined perpetual on {asset}"
                )
            if symbol not in instruments or not instruments[symbol].is_derivative:
                raise ConfigError(variable, "a derivative market the exchange lists", symbol)
            policies[asset] = AssetPolicy(
                asset, symbol, spec.band(settings.default_band), spec.target, rebalance_to
            )
    else:
        for asset in sorted(held):
            symbol = auto_hedge_symbol(asset, instruments)
            if symbol is not None:
                policies[asset] = AssetPolicy(asset, symbol, settings.default_band, Decimal(0), rebalance_to)
    prices: dict[str, str] = {}
    for asset in held | set(policies):
        symbol = policies[asset].hedge_symbol if asset in policies else price_symbol(asset, instruments)
        if asset in policies and instruments[policies[asset].hedge_symbol].expiry is not None:
            symbol = price_symbol(asset, instruments) or symbol  # its own market (no basis) where listed
        elif asset in policies and instruments[policies[asset].hedge_symbol].base != asset:
            symbol = price_symbol(asset, instruments)  # a proxy hedge: the asset is priced by its own market
            if symbol is None:
                raise ConfigError(f"DK_ASSETS__{asset}__HEDGE",
                                  f"a hedge on {asset} itself: no market on the exchange prices {asset}",
                                  policies[asset].hedge_symbol)
        if symbol is not None:
            prices[asset] = symbol
    for policy in policies.values():  # a proxy hedge's position needs its own asset's price
        base = instruments[policy.hedge_symbol].base
        if base not in prices:
            prices[base] = price_symbol(base, instruments) or policy.hedge_symbol
    return policies, prices


def carry_perps(settings: Settings, policies: Mapping[str, AssetPolicy]) -> dict[str, str]:
    """Asset -> its perpetual, for the assets hedged by carry (`HEDGE=carry`)."""
    return {a: policies[a].hedge_symbol for a, spec in settings.assets.items() if spec.hedge == CARRY}


def _quarterly(asset: str, instruments: Mapping[str, Instrument], roll_window_secs: float,
               now: datetime | None) -> str:
    if now is None:
        raise ValueError("a quarterly hedge is resolved at a time")
    future = nearest_quarterly(instruments.values(), asset, now, roll_window_secs=roll_window_secs)
    if future is None:
        raise ConfigError(f"DK_ASSETS__{asset}__HEDGE", f"a market the exchange lists: no USD-margined "
                          f"quarterly on {asset} expires later than DK_ROLL_WINDOW_SECS from now", QUARTERLY)
    return future.symbol


def resolve_betas(
    settings: Settings, policies: Mapping[str, AssetPolicy], instruments: Mapping[str, Instrument]
) -> dict[str, Decimal | None]:
    """`DK_ASSETS__<ASSET>__BETA` of every proxy-hedged asset (None: the EWMA estimate; unset: 1). A hedge
    market is one asset's only: two assets hedged on one contract would trade against each other."""
    betas: dict[str, Decimal | None] = {}
    hedged_by: dict[str, str] = {}
    for asset, policy in sorted(policies.items()):
        other = hedged_by.setdefault(policy.hedge_symbol, asset)
        if other != asset:
            raise ConfigError(f"DK_ASSETS__{asset}__HEDGE",
                              f"a hedge market no other asset uses ({other} is hedged with it)",
                              policy.hedge_symbol)
        spec = settings.assets.get(asset)
        beta = spec.beta if spec is not None else None
        if instruments[policy.hedge_symbol].base == asset:
            if beta is not None and beta != "ewma" and Decimal(beta) == 1:
                continue
            if beta is not None:
                raise ConfigError(f"DK_ASSETS__{asset}__BETA",
                                  f"no beta: {policy.hedge_symbol} is a contract on {asset} itself; "
                                  "a beta is for a hedge on another asset (DK_ASSETS__<ASSET>__HEDGE)", beta)
            continue
        betas[asset] = None if beta == "ewma" else Decimal(beta or 1)
    return betas


def check_bands(policies: Mapping[str, AssetPolicy], instruments: Mapping[str, Instrument]) -> None:
    """A coin band narrower than one lot step of a linear hedge can never be held: refuse to start.
    (USD and percentage bands, and inverse hedges, depend on the price: the policy's rounding handles
    them, recording `rounds_to_zero` when the band is too narrow for a trade.)"""
    for asset, policy in policies.items():
        hedge = instruments[policy.hedge_symbol]
        if policy.band.unit is not BandUnit.COIN or hedge.inverse or hedge.base != asset:
            continue
        narrowest = min_band_coin(hedge, Decimal(1))
        if policy.band.half_width * 2 < narrowest:
            raise ConfigError(
                f"DK_ASSETS__{asset}__BAND_COIN",
                f"a band at least one lot step of {hedge.symbol} wide ({narrowest} {asset} in all)",
                str(policy.band.half_width),
            )


def live_policy(settings: Settings) -> HedgePolicy:
    """DK_POLICY with its parameters (DK_TIMER_SECS, DK_RISK_AVERSION, ...)."""
    params = PolicyParams(
        timer_secs=settings.timer_secs,
        risk_aversion_per_usd=settings.risk_aversion,
        max_deviation_pct=settings.max_deviation_pct,
        slippage_bps=settings.slippage_bps,
        fixed_cost_usd=settings.fixed_cost_usd,
        skip_horizon_secs=settings.skip_horizon_secs,
    )
    return make_policy(settings.policy, params)


def margin_levels(settings: Settings) -> HeadroomLevels:
    return HeadroomLevels.from_pct(
        settings.margin_min_headroom_pct,
        settings.margin_warn_headroom_pct,
        settings.margin_critical_headroom_pct,
    )


def risk_limits(settings: Settings) -> RiskLimits:
    levels = margin_levels(settings)
    return RiskLimits(
        settings.max_order_usd,
        settings.max_daily_traded_usd,
        settings.max_position_usd,
        settings.stale_secs,
        settings.price_collar_bps,
        levels.min,
        levels.critical,
    )
