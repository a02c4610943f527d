"""The portfolio file of `deltakeeper delta --portfolio FILE` and `deltakeeper margin`: ccxt-shaped markets,
positions, balances and prices, as domain values."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from ccxt.base.decimal_to_precision import TICK_SIZE

from deltakeeper.adapters.ccxt_account import position_from_ccxt
from deltakeeper.adapters.ccxt_markets import instrument_from_market
from deltakeeper.adapters.ccxt_parse import MalformedPayload, dec, precision_mode_of, ts_from_ms
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.exposure import Position
from deltakeeper.domain.instruments import Instrument, is_stable


class Portfolio(NamedTuple):
    instruments: dict[str, Instrument]
    balances: dict[str, Decimal]
    positions: list[Position]
    prices: dict[str, Decimal]
    external: dict[str, Decimal]



def portfolio_from_json(doc: object) -> Portfolio:
    """The `deltakeeper delta --portfolio FILE` document (markets, positions, balances, prices, and
    optionally exchange and external) as domain values. An option position may carry `greeks`, its ccxt
    greeks structure (`fetch_greeks`). Raises ConfigError naming the bad entry."""
    if not isinstance(doc, dict):
        raise ConfigError("portfolio", "a JSON object with markets, positions, balances and prices")
    exchange_id = doc.get("exchange", "")
    if not isinstance(exchange_id, str):
        raise ConfigError("exchange", "a ccxt exchange id", exchange_id)
    precision_mode = precision_mode_of(exchange_id) if exchange_id else TICK_SIZE

    instruments: dict[str, Instrument] = {}
    for symbol, market in _section(doc, "markets", dict, required=True).items():
        if not isinstance(market, dict):
            raise ConfigError(f"markets.{symbol}", "a ccxt market object", market)
        with _naming(f"markets.{symbol}"):
            instrument = instrument_from_market({"symbol": symbol, **market}, exchange_id, precision_mode)
        instruments[instrument.symbol] = instrument

    positions: list[Position] = []
    for i, entry in enumerate(_section(doc, "positions", list, required=True)):
        where = f"positions[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(where, "a ccxt position object", entry)
        if entry.get("symbol") not in instruments:
            raise ConfigError(f"{where}.symbol", "a symbol listed in markets", entry.get("symbol"))
        option_greeks = entry.get("greeks")
        if option_greeks is not None and not isinstance(option_greeks, dict):
            raise ConfigError(f"{where}.greeks", "a ccxt greeks object", option_greeks)
        with _naming(where):
            positions.append(position_from_ccxt(entry, instruments[entry["symbol"]], exchange_id,
                                                option_greeks))

    balances = _amounts(doc, "balances", required=True)
    prices = _amounts(doc, "prices", required=True)
    external = _amounts(doc, "external", required=False)
    held = set(balances) | set(external)
    for position in positions:
        held |= {instruments[position.symbol].base, instruments[position.symbol].settle}
    for asset in sorted(held):
        if not is_stable(asset) and asset not in prices:
            raise ConfigError(f"prices.{asset}", "a USD price for every asset held")
    return Portfolio(instruments, balances, positions, prices, external)


@contextmanager
def _naming(where: str) -> Iterator[None]:
    """Turn a MalformedPayload into a ConfigError naming the entry and its field."""
    try:
        yield
    except MalformedPayload as exc:
        raise ConfigError(f"{where}.{exc.field}", exc.expected, exc.got) from None


def _section(doc: Mapping[str, Any], key: str, kind: type, required: bool) -> Any:
    if key not in doc and not required:
        return kind()
    value = doc.get(key)
    if not isinstance(value, kind):
        raise ConfigError(key, f"a JSON {'object' if kind is dict else 'array'}", value)
    return value


def _amounts(doc: Mapping[str, Any], key: str, required: bool) -> dict[str, Decimal]:
    amounts: dict[str, Decimal] = {}
    for asset, value in _section(doc, key, dict, required).items():
        try:
            amounts[str(asset).upper()] = dec(value, asset)
        except MalformedPayload as exc:
            raise ConfigError(f"{key}.{asset}", exc.expected, exc.got) from None
    return amounts


def portfolio_time(doc: object) -> datetime | None:
    """The portfolio file's optional `timestamp` (ms since the epoch), for expiry-dependent terms."""
    if not isinstance(doc, Mapping) or doc.get("timestamp") is None:
        return None
    try:
        return ts_from_ms(doc["timestamp"])
    except (MalformedPayload, ValueError, OverflowError):
        expected = "the portfolio's time in ms since the epoch"
        raise ConfigError("timestamp", expected, doc["timestamp"]) from None
