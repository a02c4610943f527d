"""What the adapter does differently on Binance futures, USD-M and COIN-M (ccxt `binanceusdm`, `binancecoinm`:
`fapi` and `dapi`, which behave alike in all of the following), in one place.

- Its tickers carry no book (the 24h statistics) and its best bid and ask carry no mark: a quote is the
  book ticker (`bookTicker`) with the mark price, index and funding rate (`markPrice`) merged in; none until
  both are known.
- Its account trades (`userTrades`) are listed per symbol only, carry no client order id (its stream's do,
  as `c`), and are answered at most 7 days at a time: fills are read per traded symbol, week by week, and
  an order's client id is looked up by its order id.
- Its position pushes (ACCOUNT_UPDATE) carry no mark price: a push is followed by a read of the account.
- It pushes no funding payment, only the balance update it makes (ACCOUNT_UPDATE, reason FUNDING_FEE):
  the payments are then read by REST (its income history, across symbols, week by week).
- ccxt chooses Binance's error codes by the URL's host (`fapi` linear, `dapi` inverse), which an emulator or
  proxy does not have.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

BINANCE_FUTURES = frozenset({"binanceusdm", "binancecoinm"})
_ERROR_CODES = {"binanceusdm": "linear", "binancecoinm": "inverse"}
"""ccxt's table of error codes (`exceptions[...]`) for each futures client."""
HISTORY_WINDOW_MS = 7 * 86_400_000
"""The longest window Binance lists trades and income for."""


def ccxt_options() -> dict[str, Any]:
    """ccxt options: open orders are read across symbols on purpose (the reconciliation needs them all)."""
    return {"fetchOpenOrders": {"warnWithoutSymbol": False}}


def use_futures_errors(exchange: Any) -> None:
    """Map Binance's answers with the error codes of the client's futures (USD-M linear, COIN-M inverse)
    whatever the URL's host is."""
    futures = exchange.exceptions[_ERROR_CODES[exchange.id]]
    exchange.get_exceptions_by_url = lambda url, exact_or_broad: futures.get(exact_or_broad, {})


def merged_ticker(book: Mapping[str, Any], mark: Mapping[str, Any]) -> dict[str, Any]:
    """A book ticker with the mark price stream's (or REST's) mark, index and funding rate, timed as the
    older of the two."""
    mark_info = mark.get("info") or {}
    stamps = [ts for ts in (book.get("timestamp"), mark.get("timestamp")) if isinstance(ts, int)]
    return {
        **book,
        "markPrice": mark.get("markPrice"),
        "indexPrice": mark.get("indexPrice"),
        "timestamp": min(stamps) if stamps else None,
        "info": {**(book.get("info") or {}),
                 "fundingRate": mark_info.get("r", mark_info.get("lastFundingRate"))},
    }


def client_order_id(trade: Mapping[str, Any]) -> str | None:
    """The client order id a trade carries: ccxt's, else the stream's `c`."""
    info = trade.get("info") or {}
    found = trade.get("clientOrderId") or info.get("c") or info.get("clientOrderId")
    return str(found) if found else None


def is_funding_update(balance: Mapping[str, Any]) -> bool:
    """Whether ccxt's balance came from an ACCOUNT_UPDATE push of a funding settlement."""
    update = (balance.get("info") or {}).get("a")
    return isinstance(update, Mapping) and update.get("m") == "FUNDING_FEE"
