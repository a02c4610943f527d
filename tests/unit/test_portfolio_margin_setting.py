"""DK_EXCHANGE_PORTFOLIO_MARGIN: a Binance portfolio margin account, given to ccxt as its `portfolioMargin`
option (which the venue margin read follows to `/papi/v1/account`); refused at the start with any other
exchange."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.config import effective_settings, load_settings
from deltakeeper.domain.errors import ConfigError
from deltakeeper.exchanges import build_exchange


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith("DK_"):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
async def built(monkeypatch: pytest.MonkeyPatch,
                request: pytest.FixtureRequest) -> AsyncIterator[CcxtExchange]:
    """The exchange `build_exchange` makes of DK_EXCHANGE=`request.param` with portfolio margin on."""
    monkeypatch.setenv("DK_EXCHANGE", request.param)
    monkeypatch.setenv("DK_EXCHANGE_PORTFOLIO_MARGIN", "true")
    exchange, _ = build_exchange(load_settings())
    assert isinstance(exchange, CcxtExchange)
    yield exchange
    await exchange.close()


def test_portfolio_margin_is_off_by_default() -> None:
    settings = load_settings()
    assert settings.exchange_portfolio_margin is False
    assert effective_settings(settings)["DK_EXCHANGE_PORTFOLIO_MARGIN"] is False


@pytest.mark.parametrize("built", ["binance", "binanceusdm", "binancecoinm"], indirect=True)
async def test_a_binance_portfolio_margin_account_sets_ccxts_portfolio_margin_option(
        built: CcxtExchange) -> None:
    client = built._rest
    assert client.options["portfolioMargin"] is True
    assert client.safe_bool_2(client.options, "portfolioMargin", "papi", False)  # what the margin read asks


async def test_without_the_setting_ccxt_keeps_the_classic_futures_account(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DK_EXCHANGE", "binanceusdm")
    exchange, _ = build_exchange(load_settings())
    try:
        assert isinstance(exchange, CcxtExchange)
        assert not exchange._rest.safe_bool_2(exchange._rest.options, "portfolioMargin", "papi", False)
    finally:
        await exchange.close()


@pytest.mark.parametrize("exchange", ["bybit", "okx", "sim"])
def test_portfolio_margin_on_another_exchange_is_a_start_error_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, exchange: str) -> None:
    monkeypatch.setenv("DK_EXCHANGE", exchange)
    monkeypatch.setenv("DK_EXCHANGE_PORTFOLIO_MARGIN", "true")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == "DK_EXCHANGE_PORTFOLIO_MARGIN"
    assert "binance" in str(info.value) and exchange in str(info.value)


def test_portfolio_margin_false_is_accepted_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DK_EXCHANGE", "bybit")
    monkeypatch.setenv("DK_EXCHANGE_PORTFOLIO_MARGIN", "false")
    assert load_settings().exchange_portfolio_margin is False
