"""The account's margin mode and the venue's own maintenance margin ratio (issue 13), read with ccxt's
implicit API: `fetch_venue_margin` asks the venue, the `*_margin` functions are the pure parse of its
answers (MalformedPayload when an answer does not say what it must).

- Bybit: `/v5/account/info` (`unifiedMarginStatus` 1 classic, 2 UMA, 3-6 unified trading account;
  `marginMode` REGULAR_MARGIN, ISOLATED_MARGIN, PORTFOLIO_MARGIN), the unified wallet's `accountMMRate`
  (`/v5/account/wallet-balance`, MM / equity; a classic account has none).
- Binance: with ccxt's `portfolioMargin` option, Portfolio Margin's `/papi/v1/account` `uniMMR` (equity /
  MM, inverted); else the classic futures account: USD-M `totalMaintMargin / totalMarginBalance`, COIN-M
  the asset nearest liquidation's `maintMargin / marginBalance`.
- OKX: `/api/v5/account/config` `acctLv` (1 spot, 2 spot and futures: standard; 3 multi-currency margin:
  unified; 4 portfolio margin), `/api/v5/account/balance` `mmr / adjEq` (USD, cross-margined modes), else
  the currency nearest liquidation's `mmr / eq` (single-currency margin).
Other venues: UNKNOWN ("not read on ..."), never a guess.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from deltakeeper.adapters.ccxt_parse import BINANCE_IDS, MalformedPayload, dec, opt_dec
from deltakeeper.domain.venue_margin import (
    AccountMode,
    VenueMargin,
    inverse_ratio,
    ratio_of,
    unknown_margin,
    worst_ratio,
)

Call = Callable[..., Awaitable[Any]]
"""`CcxtExchange._call`: a ccxt method and its arguments, rate-limit retries and error translation."""

_BYBIT_UNIFIED_STATUSES = frozenset({2, 3, 4, 5, 6})
_OKX_LEVELS = {"1": AccountMode.STANDARD, "2": AccountMode.STANDARD, "3": AccountMode.UNIFIED,
               "4": AccountMode.PORTFOLIO}


async def fetch_venue_margin(client: Any, exchange_id: str, call: Call, as_of: datetime) -> VenueMargin:
    """Ask the venue behind the ccxt `client`; the venue's refusals and failures raise as `call` raises
    them, an unreadable answer MalformedPayload."""
    if exchange_id == "bybit":
        info = await call(client.private_get_v5_account_info)
        if _int(_bybit_result(info), "unifiedMarginStatus") == 1:
            return bybit_margin(info, None, as_of)
        wallet = await call(client.private_get_v5_account_wallet_balance, {"accountType": "UNIFIED"})
        return bybit_margin(info, wallet, as_of)
    if exchange_id in BINANCE_IDS:
        if client.safe_bool_2(client.options, "portfolioMargin", "papi", False):
            return binance_portfolio_margin(await call(client.papi_get_account), as_of)
        if exchange_id == "binancecoinm":
            return binance_coinm_margin(await call(client.dapiprivate_get_account), as_of)
        return binance_usdm_margin(await call(client.fapiprivatev3_get_account), as_of)
    if exchange_id == "okx":
        config = await call(client.private_get_account_config)
        return okx_margin(config, await call(client.private_get_account_balance), as_of)
    return unknown_margin(as_of, f"the account mode is not read on {exchange_id}")


# -- Bybit -------------------------------------------------------------------------------------------


def bybit_margin(info: Any, wallet: Any | None, as_of: datetime) -> VenueMargin:
    """`info`: the `/v5/account/info` answer; `wallet`: the UNIFIED `/v5/account/wallet-balance` answer
    (None for a classic account, which has no account-wide rate)."""
    result = _bybit_result(info)
    status = _int(result, "unifiedMarginStatus")
    margin_mode = result.get("marginMode")
    detail = f"unifiedMarginStatus={status}, marginMode={margin_mode}"
    if status == 1:
        return VenueMargin(AccountMode.STANDARD, as_of, detail=f"{detail} (classic account)")
    if status not in _BYBIT_UNIFIED_STATUSES:
        return unknown_margin(as_of, detail)
    mode = {"PORTFOLIO_MARGIN": AccountMode.PORTFOLIO, "REGULAR_MARGIN": AccountMode.UNIFIED,
            "ISOLATED_MARGIN": AccountMode.STANDARD}.get(str(margin_mode), AccountMode.UNKNOWN)
    ratio = None
    if wallet is not None:
        accounts = _bybit_result(wallet).get("list")
        if not isinstance(accounts, list) or not accounts or not isinstance(accounts[0], Mapping):
            raise MalformedPayload("result.list", "a wallet account", wallet)
        ratio = opt_dec(accounts[0].get("accountMMRate"), "accountMMRate")
    return VenueMargin(mode, as_of, ratio, "accountMMRate" if ratio is not None else "", detail)


def _bybit_result(answer: Any) -> Mapping[str, Any]:
    result = answer.get("result") if isinstance(answer, Mapping) else None
    if not isinstance(result, Mapping):
        raise MalformedPayload("result", "an object", answer)
    return result


# -- Binance -----------------------------------------------------------------------------------------


def binance_portfolio_margin(account: Any, as_of: datetime) -> VenueMargin:
    """`account`: the `/papi/v1/account` answer."""
    uni_mmr = dec(_mapping(account).get("uniMMR"), "uniMMR")
    ratio = inverse_ratio(uni_mmr)
    return VenueMargin(AccountMode.PORTFOLIO, as_of, ratio, "1/uniMMR" if ratio is not None else "",
                       f"portfolioMargin, accountStatus={account.get('accountStatus')}")


def binance_usdm_margin(account: Any, as_of: datetime) -> VenueMargin:
    """`account`: the USD-M `/fapi/v3/account` answer (classic account)."""
    account = _mapping(account)
    ratio = ratio_of(dec(account.get("totalMaintMargin"), "totalMaintMargin"),
                     dec(account.get("totalMarginBalance"), "totalMarginBalance"))
    return VenueMargin(AccountMode.STANDARD, as_of, ratio,
                       "totalMaintMargin/totalMarginBalance" if ratio is not None else "",
                       "USD-M futures account (classic)")


def binance_coinm_margin(account: Any, as_of: datetime) -> VenueMargin:
    """`account`: the COIN-M `/dapi/v1/account` answer: each asset is margined apart."""
    assets = _mapping(account).get("assets")
    if not isinstance(assets, list):
        raise MalformedPayload("assets", "a list", account)
    pools = {str(a.get("asset")): (dec(a.get("maintMargin"), "maintMargin"),
                                   dec(a.get("marginBalance"), "marginBalance"))
             for a in assets if isinstance(a, Mapping)}
    worst = worst_ratio(pools)
    if worst is None:
        return VenueMargin(AccountMode.STANDARD, as_of, None, "", "COIN-M futures account (classic)")
    asset, ratio = worst
    return VenueMargin(AccountMode.STANDARD, as_of, ratio, f"assets[{asset}].maintMargin/marginBalance",
                       "COIN-M futures account (classic)")


# -- OKX ---------------------------------------------------------------------------------------------


def okx_margin(config: Any, balance: Any, as_of: datetime) -> VenueMargin:
    """`config`: the `/api/v5/account/config` answer; `balance`: the `/api/v5/account/balance` one."""
    level = str(_okx_first(config).get("acctLv", ""))
    mode = _OKX_LEVELS.get(level, AccountMode.UNKNOWN)
    detail = f"acctLv={level}"
    account = _okx_first(balance)
    mmr = opt_dec(account.get("mmr"), "mmr")
    equity = opt_dec(account.get("adjEq"), "adjEq")
    if mmr is not None and equity is not None and (ratio := ratio_of(mmr, equity)) is not None:
        return VenueMargin(mode, as_of, ratio, "mmr/adjEq", detail)
    details = account.get("details")
    pools = {}
    for item in details if isinstance(details, list) else []:
        if not isinstance(item, Mapping):
            continue
        ccy_mmr, ccy_eq = opt_dec(item.get("mmr"), "mmr"), opt_dec(item.get("eq"), "eq")
        if ccy_mmr is not None and ccy_eq is not None:
            pools[str(item.get("ccy"))] = (ccy_mmr, ccy_eq)
    worst = worst_ratio(pools)
    if worst is None:
        return VenueMargin(mode, as_of, None, "", detail)
    ccy, ratio = worst
    return VenueMargin(mode, as_of, ratio, f"details[{ccy}].mmr/eq", detail)


def _okx_first(answer: Any) -> Mapping[str, Any]:
    data = answer.get("data") if isinstance(answer, Mapping) else None
    if not isinstance(data, list) or not data or not isinstance(data[0], Mapping):
        raise MalformedPayload("data", "a list of one object", answer)
    return data[0]


# -- fields ------------------------------------------------------------------------------------------


def _mapping(answer: Any) -> Mapping[str, Any]:
    if not isinstance(answer, Mapping):
        raise MalformedPayload("answer", "an object", answer)
    return answer


def _int(item: Mapping[str, Any], key: str) -> int:
    value = item.get(key)
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise MalformedPayload(key, "an integer", value)
    return int(value)
