"""Per-asset delta from balances, positions and declared external holdings (DESIGN.md 4, REFERENCE 1)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from deltakeeper.domain.instruments import ZERO, Instrument, is_stable


@dataclass(frozen=True, slots=True)
class Position:
    """A derivative position. `contracts` is signed (+ long). `unrealized_pnl` is in the settle coin,
    as the exchange reports it, or None when it did not say."""

    symbol: str
    contracts: Decimal
    entry_price: Decimal
    mark_price: Decimal
    unrealized_pnl: Decimal | None = None


@dataclass(frozen=True, slots=True)
class AssetDelta:
    asset: str
    delta_coin: Decimal
    delta_usd: Decimal
    gross_coin: Decimal
    """Sum of the absolute exposures of every leg, for percentage bands."""


def unrealized_pnl(instrument: Instrument, position: Position) -> Decimal:
    """PnL in the settle coin: the exchange's figure when given, else from entry and mark."""
    if position.unrealized_pnl is not None:
        return position.unrealized_pnl
    if position.entry_price == 0 or position.mark_price == 0:
        return ZERO
    if instrument.inverse:
        face_usd = position.contracts * instrument.contract_size
        return face_usd * (1 / position.entry_price - 1 / position.mark_price)
    return position.contracts * instrument.contract_size * (position.mark_price - position.entry_price)


def asset_deltas(
    instruments: Mapping[str, Instrument],
    balances: Mapping[str, Decimal],
    positions: Iterable[Position],
    prices_usd: Mapping[str, Decimal],
    external: Mapping[str, Decimal] | None = None,
) -> dict[str, AssetDelta]:
    """Delta per underlying asset, in coins and in USD at `prices_usd`.

    Wallet balances count as exposure (coin collateral is a delta). A position settled in a coin adds
    its unrealised PnL to that coin's exposure, because wallet balances exclude it. Inverse contracts
    count at face / their own mark. Stablecoins and USD are the numeraire and never appear.
    """
    coin: dict[str, Decimal] = {}
    gross: dict[str, Decimal] = {}

    def add(asset: str, amount: Decimal) -> None:
        if is_stable(asset) or amount == 0:
            return
        coin[asset] = coin.get(asset, ZERO) + amount
        gross[asset] = gross.get(asset, ZERO) + abs(amount)

    for asset, amount in balances.items():
        add(asset.upper(), amount)
    for asset, amount in (external or {}).items():
        add(asset.upper(), amount)
    for position in positions:
        instrument = instruments.get(position.symbol)
        if instrument is None:
            raise KeyError(f"position in unknown market {position.symbol!r}")
        add(instrument.base, instrument.delta_coin(position.contracts, position.mark_price))
        add(instrument.settle, unrealized_pnl(instrument, position))

    result: dict[str, AssetDelta] = {}
    for asset in sorted(coin):
        price = prices_usd.get(asset)
        if price is None:
            raise KeyError(f"no USD price for {asset}")
        result[asset] = AssetDelta(asset, coin[asset], coin[asset] * price, gross[asset])
    return result
