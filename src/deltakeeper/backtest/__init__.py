"""`deltakeeper backtest`: replay price history through the decision code and the simulated exchange,
and measure what a policy's settings cost against how closely they hold the target delta."""

from deltakeeper.backtest.run import (
    Dataset,
    load_dataset,
    run_backtest,
    run_dataset,
    sweep,
    sweep_dataset,
)
from deltakeeper.backtest.settings import POLICIES, SWEEP_GRID, BacktestSettings

__all__ = [
    "POLICIES",
    "SWEEP_GRID",
    "BacktestSettings",
    "Dataset",
    "load_dataset",
    "run_backtest",
    "run_dataset",
    "sweep",
    "sweep_dataset",
]
