"""The account's margin mode and the venue's own maintenance margin ratio (issue 13): real ccxt clients
(Bybit, Binance, OKX) whose HTTP answers are recorded shapes, answered by a fake transport. A failed or
unreadable read is never "standard"."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from tests.unit.test_ccxt_order_lookup import Clock, answering, recorded

from deltakeeper.adapters.ccxt_exchange import CcxtExchange
from deltakeeper.domain.errors import ExchangeUnavailable
from deltakeeper.domain.venue_margin import AccountMode

AS_OF = datetime(2024, 1, 1, tzinfo=UTC)


def bybit_answers(margin_mode: str = "REGULAR_MARGIN", status: int = 4, mm_rate: str = "0.0215") -> Any:
    info = recorded("bybit_account_info.json")
    info["result"].update(marginMode=margin_mode, unifiedMarginStatus=status)
    wallet = recorded("bybit_wallet_balance.json")
    wallet["result"]["list"][0]["accountMMRate"] = mm_rate

    def answer(path: str, query: dict[str, str]) -> Any:
        if path == "/v5/account/info":
            return info
        if path == "/v5/account/wallet-balance":
            assert query.get("accountType") == "UNIFIED"
            return wallet
        raise AssertionError(path)

    return answer


async def read(exchange: CcxtExchange, answer: Any) -> tuple[Any, list[str]]:
    asked = answering(exchange, answer)
    try:
        return await exchange.fetch_account_margin(), asked
    finally:
        await exchange.close()


def bybit() -> CcxtExchange:
    return CcxtExchange("bybit", clock=Clock(), api_key="k", secret="s")


@pytest.mark.parametrize(("margin_mode", "mode"), [("REGULAR_MARGIN", AccountMode.UNIFIED),
                                                   ("PORTFOLIO_MARGIN", AccountMode.PORTFOLIO),
                                                   ("ISOLATED_MARGIN", AccountMode.STANDARD)])
async def test_bybit_unified_account_mode_and_account_mm_rate(margin_mode: str, mode: AccountMode) -> None:
    venue, asked = await read(bybit(), bybit_answers(margin_mode))

    assert venue.mode is mode
    assert venue.maintenance_ratio == Decimal("0.0215")
    assert venue.ratio_source == "accountMMRate"
    assert f"marginMode={margin_mode}" in venue.detail and venue.as_of == AS_OF
    assert asked == ["/v5/account/info", "/v5/account/wallet-balance"]


async def test_bybit_classic_account_is_standard_without_a_unified_wallet_read() -> None:
    venue, asked = await read(bybit(), bybit_answers(status=1))

    assert venue.mode is AccountMode.STANDARD
    assert venue.maintenance_ratio is None
    assert asked == ["/v5/account/info"]


async def test_bybit_account_info_without_its_status_is_unreadable_not_standard() -> None:
    answer = bybit_answers()
    broken = copy.deepcopy(answer("/v5/account/info", {}))
    del broken["result"]["unifiedMarginStatus"]

    with pytest.raises(ExchangeUnavailable, match="unifiedMarginStatus"):
        await read(bybit(), lambda path, query: broken if path == "/v5/account/info" else answer(path, query))


async def test_binance_portfolio_margin_reads_uni_mmr_inverted() -> None:
    exchange = CcxtExchange("binanceusdm", clock=Clock(), api_key="k", secret="s",
                            ccxt_config={"options": {"portfolioMargin": True}})
    account = recorded("binance_papi_account.json")

    venue, asked = await read(exchange, lambda path, query: account)

    assert venue.mode is AccountMode.PORTFOLIO
    assert venue.maintenance_ratio == 1 / Decimal(account["uniMMR"])
    assert venue.ratio_source == "1/uniMMR" and "accountStatus=NORMAL" in venue.detail
    assert asked == ["/papi/v1/account"]


async def test_binance_classic_usdm_account_ratio_is_maint_margin_over_margin_balance() -> None:
    account = recorded("binanceusdm_account.json")

    venue, asked = await read(CcxtExchange("binanceusdm", clock=Clock(), api_key="k", secret="s"),
                              lambda path, query: account)

    assert venue.mode is AccountMode.STANDARD
    assert venue.maintenance_ratio == Decimal("11.95453485") / Decimal("111.02007243")
    assert venue.ratio_source == "totalMaintMargin/totalMarginBalance"
    assert asked == ["/fapi/v3/account"]


async def test_binance_coinm_account_ratio_is_the_asset_nearest_liquidation() -> None:
    account = recorded("binancecoinm_account.json")

    venue, asked = await read(CcxtExchange("binancecoinm", clock=Clock(), api_key="k", secret="s"),
                              lambda path, query: account)

    assert venue.mode is AccountMode.STANDARD
    assert venue.maintenance_ratio == Decimal("0.001") / Decimal("1.05")
    assert venue.ratio_source == "assets[BTC].maintMargin/marginBalance"
    assert asked == ["/dapi/v1/account"]


def okx_answers(level: str, mmr: str = "", adj_eq: str = "", detail_mmr: str | None = None) -> Any:
    config = recorded("okx_account_config.json")
    config["data"][0]["acctLv"] = level
    balance = recorded("okx_account_balance.json")
    balance["data"][0].update(mmr=mmr, adjEq=adj_eq)
    if detail_mmr is not None:
        balance["data"][0]["details"][1]["mmr"] = detail_mmr  # BTC, eq 1.05

    def answer(path: str, query: dict[str, str]) -> Any:
        return {"/api/v5/account/config": config, "/api/v5/account/balance": balance}[path]

    return answer


def okx() -> CcxtExchange:
    return CcxtExchange("okx", clock=Clock(), api_key="k", secret="s", password="p")


async def test_okx_portfolio_margin_level_and_account_mmr_over_adjusted_equity() -> None:
    venue, asked = await read(okx(), okx_answers("4", mmr="1050.5", adj_eq="42028.2687404020176"))

    assert venue.mode is AccountMode.PORTFOLIO
    assert venue.maintenance_ratio == Decimal("1050.5") / Decimal("42028.2687404020176")
    assert venue.ratio_source == "mmr/adjEq" and venue.detail == "acctLv=4"
    assert asked == ["/api/v5/account/config", "/api/v5/account/balance"]


@pytest.mark.parametrize(("level", "mode"), [("1", AccountMode.STANDARD), ("2", AccountMode.STANDARD),
                                             ("3", AccountMode.UNIFIED), ("7", AccountMode.UNKNOWN)])
async def test_okx_account_levels(level: str, mode: AccountMode) -> None:
    venue, _ = await read(okx(), okx_answers(level))

    assert venue.mode is mode
    assert venue.maintenance_ratio is None  # the recorded balance leaves mmr and adjEq empty


async def test_okx_single_currency_margin_ratio_is_the_currency_nearest_liquidation() -> None:
    venue, _ = await read(okx(), okx_answers("2", detail_mmr="0.021"))

    assert venue.mode is AccountMode.STANDARD
    assert venue.maintenance_ratio == Decimal("0.021") / Decimal("1.05")
    assert venue.ratio_source == "details[BTC].mmr/eq"


async def test_okx_refusal_is_an_error_not_a_mode() -> None:
    def refuse(path: str, query: dict[str, str]) -> Any:
        return {"code": "50001", "msg": "Service temporarily unavailable, please try again later", "data": []}

    with pytest.raises(ExchangeUnavailable):
        await read(okx(), refuse)


async def test_an_exchange_the_adapter_cannot_read_the_mode_of_is_unknown() -> None:
    venue, asked = await read(CcxtExchange("deribit", clock=Clock(), api_key="k", secret="s"),
                              lambda path, query: {})

    assert venue.mode is AccountMode.UNKNOWN and venue.maintenance_ratio is None
    assert "deribit" in venue.detail and asked == []
