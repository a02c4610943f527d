"""Tradable instruments and the arithmetic of their contracts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from enum import Enum

STABLECOINS = frozenset(
    {"USD", "USDT", "USDC", "DAI", "BUSD", "TUSD", "FDUSD", "USDE", "PYUSD", "USDP", "USTC", "EUR"}
)

ZERO = Decimal(0)
_ONE = Decimal(1)


def is_stable(asset: str) -> bool:
    """Stablecoins and USD are the numeraire, not assets."""
    return asset.upper() in STABLECOINS


class Kind(str, Enum):
    SPOT = "spot"
    PERPETUAL = "swap"
    FUTURE = "future"
    OPTION = "option"


@dataclass(frozen=True, slots=True)
class Instrument:
    """One market. For linear contracts `contract_size` is coins per contract; for inverse ones it is
    USD face per contract. Spot has contract size 1 (amounts are coins).

    Options (`Kind.OPTION`) are never `inverse`: `contract_size` is coins of the underlying per contract,
    and they carry `strike` (USD per coin), `option_type` ('call' or 'put') and `expiry`. An option
    settled in its own base coin (Deribit) is `coin_settled`: its price and PnL are in that coin.
    """

    symbol: str
    kind: Kind
    base: str
    quote: str
    settle: str
    inverse: bool = False
    contract_size: Decimal = Decimal(1)
    lot_step_contracts: Decimal = Decimal("0.001")
    min_contracts: Decimal = ZERO
    min_notional_usd: Decimal = ZERO
    taker_fee_rate: Decimal = Decimal("0.00055")
    maker_fee_rate: Decimal = Decimal("0.0002")
    funding_interval_secs: int | None = None
    expiry: datetime | None = None
    strike: Decimal | None = None
    option_type: str | None = None

    @property
    def is_derivative(self) -> bool:
        return self.kind is not Kind.SPOT

    @property
    def is_option(self) -> bool:
        return self.kind is Kind.OPTION

    @property
    def is_call(self) -> bool:
        """An option's right: True for a call, False for a put (and for anything that is not an option)."""
        return self.option_type == "call"

    @property
    def coin_settled(self) -> bool:
        """Settled in its own base coin (inverse contracts, Deribit options): PnL and premium in coin."""
        return self.settle == self.base

    @property
    def usd_margined(self) -> bool:
        """Settled in a stablecoin: PnL is in USD, not in the asset."""
        return is_stable(self.settle)

    def delta_coin(self, contracts: Decimal, mark_price: Decimal) -> Decimal:
        """Coins of exposure to `base` of a signed number of contracts (REFERENCE 1)."""
        if self.inverse:
            return contracts * self.contract_size / mark_price
        return contracts * self.contract_size

    def contracts_for_coin(self, coin: Decimal, mark_price: Decimal) -> Decimal:
        """Signed contracts (unrounded) that carry `coin` of delta at `mark_price`."""
        if self.inverse:
            return coin * mark_price / self.contract_size
        return coin / self.contract_size

    def notional_usd(self, contracts: Decimal, price: Decimal) -> Decimal:
        if self.inverse:
            return abs(contracts) * self.contract_size
        return abs(contracts) * self.contract_size * price

    def round_contracts(self, contracts: Decimal, toward_zero: bool = False) -> Decimal:
        """Round a signed size to the lot step, to nearest (or toward zero)."""
        step = self.lot_step_contracts
        mode = ROUND_DOWN if toward_zero else ROUND_HALF_EVEN
        return (contracts / step).quantize(_ONE, rounding=mode) * step
