"""Replaying history through the decision code and the simulated exchange.

Every price event (one per bar close, per asset) goes through the live bot's own decision cycle
(app/service.py, the same parts wired to the replay's ports in backtest/venue.py): the simulated engine
gets the quote and the ingest applies it to the market state, the exposure model moves the holdings (held
outside the exchange, in a pool or a wallet, as `DK_EXTERNAL__<ASSET>` declares them to the live bot),
funding due by then settles (`adjust_balance` of the settle coin, the account read again), then the
`DecisionCycle` decides on the quote: the asset's delta from the market state, the risk model and a proxy
hedge's beta (fixed, or EWMA), the policy (`domain.decide_policies`), the risk check with the trading
state, the execution plan (`DK_SLICE_MAX_USD`, `DK_SLICE_MAX_SLIPPAGE_BPS`: a sliced order sends its next
slice on the next price event) and the order runner (one order in flight per instrument), whose market
orders `SimEngine.place_order` fills against its synthetic book. One event loop runs the whole replay; after
each price event it runs until every order task has ended or waits for a newer quote.

A proxy hedge (`DK_ASSETS__<ASSET>__HEDGE` naming another asset's linear perpetual, `DK_ASSETS__<ASSET>__BETA`
a ratio or `ewma`) needs that asset's prices too: its market is then a hedge market only, with no exposure or
policy of its own. A proxy-hedged asset is not hedged at the start: its first decisions open the hedge,
once its beta is known. Its deviation is the asset's USD deviation plus the hedge's USD delta.

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

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deltakeeper.backtest.dataset import Dataset, funding_gaps, load_dataset
from deltakeeper.backtest.files import DataFile
from deltakeeper.backtest.replay import Replay
from deltakeeper.backtest.settings import POLICIES, SWEEP_GRID, BacktestSettings
from deltakeeper.domain.errors import ConfigError

__all__ = ["Dataset", "funding_gaps", "load_dataset", "run_backtest", "run_dataset", "sweep", "sweep_dataset"]


# -- public API ------------------------------------------------------------------------------------------


def run_dataset(
    data: Dataset, policy: str, settings: BacktestSettings | None = None, series: bool = False
) -> dict[str, Any]:
    """One run over loaded data. Money is `Decimal`, statistics are floats. With `series`, the result has
    `series`: {asset: lists of `t_secs`, `deviation_usd`, `band_usd`, `cost_usd` at each price event}."""
    if policy not in POLICIES:
        raise ConfigError("--policy", "timer, band or cost-aware", policy)
    result = Replay(data, policy, settings or BacktestSettings(), series).run()
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
