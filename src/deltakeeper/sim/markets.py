"""The simulator's default markets: spot, USDT-margined linear perpetual and coin-margined inverse perpetual
for SOL, BTC and ETH, named as ccxt symbols, with Bybit's standard (VIP 0) fee rates."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from deltakeeper.domain.instruments import Instrument, Kind

SPOT_FEE_RATE = Decimal("0.001")
PERP_TAKER_FEE_RATE = Decimal("0.00055")
PERP_MAKER_FEE_RATE = Decimal("0.0002")
FUNDING_INTERVAL_SECS = 8 * 3600
MIN_NOTIONAL_USD = Decimal(5)


@dataclass(frozen=True, slots=True)
class SimAsset:
    """One underlying and the sizes of its three markets."""

    base: str
    price_decimals: int
    spot_lot_step: Decimal
    linear_lot_step: Decimal
    linear_contract_size: Decimal = Decimal(1)
    inverse_face_usd: Decimal = Decimal(1)

    @property
    def price_tick(self) -> Decimal:
        return Decimal(1).scaleb(-self.price_decimals)

    @property
    def spot_symbol(self) -> str:
        return f"{self.base}/USDT"

    @property
    def linear_symbol(self) -> str:
        return f"{self.base}/USDT:USDT"

    @property
    def inverse_symbol(self) -> str:
        return f"{self.base}/USD:{self.base}"

    def instruments(self) -> list[Instrument]:
        """Spot, linear perpetual, inverse perpetual: the order the feeds quote them in."""
        spot = Instrument(
            symbol=self.spot_symbol, kind=Kind.SPOT, base=self.base, quote="USDT", settle="USDT",
            lot_step_contracts=self.spot_lot_step, min_contracts=self.spot_lot_step,
            min_notional_usd=MIN_NOTIONAL_USD, taker_fee_rate=SPOT_FEE_RATE, maker_fee_rate=SPOT_FEE_RATE,
        )
        linear = Instrument(
            symbol=self.linear_symbol, kind=Kind.PERPETUAL, base=self.base, quote="USDT", settle="USDT",
            contract_size=self.linear_contract_size, lot_step_contracts=self.linear_lot_step,
            min_contracts=self.linear_lot_step, min_notional_usd=MIN_NOTIONAL_USD,
            taker_fee_rate=PERP_TAKER_FEE_RATE, maker_fee_rate=PERP_MAKER_FEE_RATE,
            funding_interval_secs=FUNDING_INTERVAL_SECS,
        )
        inverse = Instrument(
            symbol=self.inverse_symbol, kind=Kind.PERPETUAL, base=self.base, quote="USD", settle=self.base,
            inverse=True, contract_size=self.inverse_face_usd, lot_step_contracts=Decimal(1),
            min_contracts=Decimal(1), taker_fee_rate=PERP_TAKER_FEE_RATE, maker_fee_rate=PERP_MAKER_FEE_RATE,
            funding_interval_secs=FUNDING_INTERVAL_SECS,
        )
        return [spot, linear, inverse]


ASSETS: dict[str, SimAsset] = {
    "SOL": SimAsset("SOL", price_decimals=2, spot_lot_step=Decimal("0.001"), linear_lot_step=Decimal("0.1")),
    "BTC": SimAsset("BTC", price_decimals=1, spot_lot_step=Decimal("0.000001"),
                    linear_lot_step=Decimal("0.001")),
    "ETH": SimAsset("ETH", price_decimals=2, spot_lot_step=Decimal("0.00001"),
                    linear_lot_step=Decimal("0.01")),
}


def default_instruments() -> dict[str, Instrument]:
    """Every simulated market by ccxt symbol."""
    return {i.symbol: i for asset in ASSETS.values() for i in asset.instruments()}
