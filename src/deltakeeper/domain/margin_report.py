"""What a portfolio needs under portfolio margin and under standard cross margin, the capital portfolio
margin frees, and how far each derivative leg is from liquidation (REFERENCE 3): the pure part of
`deltakeeper margin`, on a `MarginBook` (the command reads it from a portfolio file or the live account).

Portfolio margin (`domain.portfolio_margin.portfolio_margin`), one grid per underlying and settlement
currency:
- in the coin: inverse contracts and coin-settled options (Deribit);
- in USD, reported under the stablecoin they settle in: linear contracts, and with `include_spot`
  (default true: unified and portfolio-margin accounts count spot) the asset's wallet balance as spot.
  Spot alone needs no margin: it joins the grid of its asset's stablecoin-settled derivatives, once.
  USD-settled options have no place in the estimator yet: they are listed in `notes` and left out.
Grids of one settlement currency add up (no offsets across underlyings). Add-ons the book cannot know
(open orders, market-maker protection) count as zero.

Standard cross margin and liquidation, per derivative leg: `domain.margin_legs`. Without tiers for a
symbol, the default table is REFERENCE 3.1's (Binance BTCUSDT of 2021-03-18, in USD), and above a table's
last cap its last rate goes on. The leg's equity: for an isolated leg (`marginMode`) the exchange's
`collateral` where the position has it, else the margin posted at entry at its leverage plus its PnL; for
a cross leg (the default) the settlement currency's margin balance (wallet + futures PnL, as Deribit
counts it: an option's value is left to its margin, which includes its mark) less the other legs'
maintenance margin. A cross leg's `collateral` is shown, not used: ccxt's figure is the position's own
margin (Bybit: its `positionBalance` plus its PnL), while the whole settlement currency backs it. Other
coins' value does not count: the spot gain sits in another wallet. Each leg also shows the exchange's own
`liquidationPrice`, `initialMargin`, `maintenanceMargin`, `collateral`, `leverage` and `marginMode` where
the position has them, beside the estimate, and names the figures that disagree by more than 5%. The
leg's `liquidation_price`/`liquidation_move` are the exchange's where it gives them, else the estimate's.

For each portfolio-margin grid, `move_to_margin_call` is the index move up and down after which the
settlement currency's equity (margin balance + options' value + spot in the grid, less the other grids'
maintenance margin) falls below the grid's maintenance margin
(`domain.portfolio_margin.move_to_margin_call`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Context, Decimal
from typing import Any

from deltakeeper.domain.exposure import Position, unrealized_pnl
from deltakeeper.domain.instruments import ZERO, Instrument, is_stable
from deltakeeper.domain.margin import DEFAULT_LEVERAGE
from deltakeeper.domain.margin_headroom import margin_headroom
from deltakeeper.domain.margin_legs import (
    MOVE_DOWN_LIMIT,
    MOVE_UP_LIMIT,
    TierTables,
    legs_of,
    position_row,
    ratio,
    risk_position,
    standard_margin,
)
from deltakeeper.domain.portfolio_margin import (
    PortfolioMarginParams,
    PositionKind,
    RiskPosition,
    move_to_margin_call,
    portfolio_margin,
)

ROUNDING = Decimal("1e-12")


@dataclass(frozen=True, slots=True)
class MarginBook:
    """A portfolio as the report reads it: instruments, wallet balances, positions (with the exchange's
    margin figures where it gives them), each asset's USD price, and the time (needed by dated futures and
    options only). `tiers`: per symbol, its maintenance margin table (`TierTables`); `params`: per asset,
    its portfolio-margin parameters (Deribit's BTC values by default)."""

    instruments: Mapping[str, Instrument]
    balances: Mapping[str, Decimal]
    positions: Sequence[Position]
    prices: Mapping[str, Decimal]
    as_of: datetime | None = None
    tiers: TierTables = field(default_factory=dict)
    include_spot: bool = True
    params: Mapping[str, PortfolioMarginParams] = field(default_factory=dict)


def margin_report(book: MarginBook) -> dict[str, Any]:
    """The margin report of a book (module notes). Raises ConfigError where a leg cannot be valued."""
    tables = book.tiers
    include_spot, params_by_asset = book.include_spot, book.params
    legs = legs_of(book.instruments, book.positions, book.prices, book.as_of)
    notes: list[str] = []

    def price_of(coin: str) -> Decimal:
        return Decimal(1) if is_stable(coin) else book.prices[coin]

    # Standard cross margin, and each settlement currency's margin balance (wallet + futures PnL).
    standard: dict[str, dict[str, Decimal]] = {}
    margin_balance: dict[str, Decimal] = {}
    option_value: dict[str, Decimal] = {}
    leg_margin: dict[int, tuple[Decimal, Decimal, Decimal, str]] = {}
    for leg in legs:
        im, mm, _, source = leg_margin[leg.index] = standard_margin(leg, tables)
        total = standard.setdefault(leg.settle, {"initial": ZERO, "maintenance": ZERO})
        total["initial"] += im
        total["maintenance"] += mm
        margin_balance.setdefault(leg.settle, book.balances.get(leg.settle, ZERO))
        if leg.is_option:
            value = leg.size_coin * leg.position.mark_price
            option_value[leg.settle] = option_value.get(leg.settle, ZERO) + value
        else:
            margin_balance[leg.settle] += unrealized_pnl(leg.instrument, leg.position)
        if not leg.is_option and leg.symbol not in tables:
            notes.append(f"{leg.symbol}: maintenance margin from the default tier table (REFERENCE 3.1, "
                         "Binance BTCUSDT 2021-03-18); give leverage_tiers for the exchange's own")
        if source == "default" and not leg.is_option:
            notes.append(f"{leg.symbol}: no leverage in the file, initial margin at {DEFAULT_LEVERAGE}x")

    # Portfolio margin, one grid per (underlying, settlement currency).
    groups: dict[tuple[str, str], list[RiskPosition]] = {}
    for leg in legs:
        risk = risk_position(leg)
        if risk is None:
            notes.append(f"{leg.symbol}: the portfolio-margin estimator revalues coin-settled inverse "
                         "contracts and options and stablecoin-settled linear ones, not this leg (settled in "
                         f"{leg.settle}): left out of it, so the capital freed is overstated")
            continue
        groups.setdefault((leg.instrument.base, leg.settle), []).append(risk)
    spot_value: dict[str, Decimal] = {}
    spot_coin: dict[tuple[str, str], Decimal] = {}
    if include_spot:
        for asset in sorted({base for base, _ in groups}):
            settles = sorted(settle for base, settle in groups if base == asset and is_stable(settle))
            amount = book.balances.get(asset, ZERO)
            if settles and amount:
                groups[(asset, settles[0])].append(RiskPosition(PositionKind.SPOT, amount))
                spot_coin[(asset, settles[0])] = amount
                spot_value[settles[0]] = spot_value.get(settles[0], ZERO) + amount * book.prices[asset]
    results = {}
    for (asset, settle), risk_positions in sorted(groups.items()):
        params = dataclasses.replace(params_by_asset.get(asset, PortfolioMarginParams()),
                                     include_spot=include_spot)
        results[(asset, settle)] = (params, risk_positions,
                                    portfolio_margin(risk_positions, book.prices[asset], params))
    pm_totals: dict[str, dict[str, Decimal]] = {}
    for (_, settle), (_, _, pm) in results.items():
        total = pm_totals.setdefault(settle, {"initial": ZERO, "maintenance": ZERO})
        total["initial"] += pm.initial_margin
        total["maintenance"] += pm.maintenance_margin
    pm_equity = {
        settle: margin_balance.get(settle, book.balances.get(settle, ZERO))
        + option_value.get(settle, ZERO) + spot_value.get(settle, ZERO)
        for settle in pm_totals
    }
    pm_groups = []
    for (asset, settle), (params, risk_positions, pm) in results.items():
        others = pm_totals[settle]["maintenance"] - pm.maintenance_margin
        equity = pm_equity[settle] - others
        to_call = {
            "up": move_to_margin_call(risk_positions, book.prices[asset], equity, params, upward=True,
                                      max_move=MOVE_UP_LIMIT),
            "down": move_to_margin_call(risk_positions, book.prices[asset], equity, params, upward=False,
                                        max_move=MOVE_DOWN_LIMIT),
        }
        worst = min(pm.scenarios, key=lambda cell: cell.pnl)
        if worst.extended and pm.worst_loss > 0:
            notes.append(f"{asset}/{settle} grid: the worst loss is the options' at the extended move "
                         f"{worst.move:+.0%} with the full loss (extended_table_factor "
                         f"{params.extended_table_factor:g}; Deribit's fraction and dampener are not "
                         "published), so the portfolio margin may overstate")
        pm_groups.append({
            "asset": asset, "settle": settle, "index_price": book.prices[asset],
            "spot_coin": spot_coin.get((asset, settle), ZERO),
            "worst_scenario": {"move": worst.move, "vol_shock": worst.vol_shock, "extended": worst.extended},
            "worst_loss": pm.worst_loss, "roll_shock": pm.roll_shock,
            "risk_matrix_margin": pm.risk_matrix_margin, "initial": pm.initial_margin,
            "maintenance": pm.maintenance_margin, "equity": equity, "move_to_margin_call": to_call,
        })

    positions = [
        position_row(leg, legs, leg_margin, margin_balance, tables) for leg in legs
    ]

    settles = sorted(set(standard) | set(pm_totals))
    freed = {
        s: standard.get(s, {}).get("initial", ZERO) - pm_totals.get(s, {}).get("initial", ZERO)
        for s in settles
    }
    return _rounded({
        "as_of": book.as_of,
        "portfolio_margin": {s: pm_totals[s] for s in sorted(pm_totals)},
        "standard_margin": {s: standard[s] for s in sorted(standard)},
        "capital_freed": freed,
        "capital_freed_usd": sum((amount * price_of(s) for s, amount in freed.items()), ZERO),
        "equity": {
            "portfolio_margin": {s: pm_equity[s] for s in sorted(pm_equity)},
            "standard_margin": {s: margin_balance[s] for s in sorted(margin_balance)},
        },
        "headroom": {
            "portfolio_margin": {s: ratio(margin_headroom(pm_equity[s], pm_totals[s]["maintenance"]))
                                 for s in sorted(pm_totals)},
            "standard_margin": {s: ratio(margin_headroom(margin_balance[s], standard[s]["maintenance"]))
                                for s in sorted(standard)},
        },
        "portfolio_margin_groups": pm_groups,
        "positions": positions,
        "notes": list(dict.fromkeys(notes)),
    })


def _rounded(value: Any) -> Any:
    """Decimals to at most 12 decimal places (a division leaves 28 digits), through dicts and lists."""
    if isinstance(value, Decimal) and value.is_finite():
        rounded = value.quantize(ROUNDING, context=Context(prec=80))
        return value if rounded == value else rounded
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
