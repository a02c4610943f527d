"""The backtest's logging (`quiet_logging`): warnings only, to stderr, the module loggers bound once for the
run, and the process's own logging as it was afterwards."""

from __future__ import annotations

import pytest
import structlog
from structlog.testing import capture_logs

import deltakeeper.app.cycle as cycle
import deltakeeper.app.market_state as market_state
from deltakeeper.logging import quiet_logging


def test_quiet_logging_binds_the_module_loggers_once_and_puts_everything_back(
    capsys: pytest.CaptureFixture[str],
) -> None:
    proxy, config = cycle.log, structlog.get_config()

    with quiet_logging():
        assert cycle.log is not proxy  # no binding per call: one logger, already bound
        assert cycle.log is market_state.log
        cycle.log.info("rebalance_cycle", asset="BTC")
        cycle.log.warning("order_book_unavailable", symbol="BTC/USDT:USDT")

    captured = capsys.readouterr()
    assert captured.out == ""
    assert "order_book_unavailable" in captured.err
    assert "rebalance_cycle" not in captured.err
    assert cycle.log is proxy
    assert structlog.get_config() == config
    with capture_logs() as logs:  # a test's capture, like the service's configuration, still sees the logs
        cycle.log.info("rebalance_cycle", asset="ETH")
    assert [entry["event"] for entry in logs] == ["rebalance_cycle"]
