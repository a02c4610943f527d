"""The simulator's default markets: spot, USDT-margined linear perpetual and coin-margined inverse perpetual
for SOL, BTC and ETH, named as ccxt symbols, with Bybit's standard (VIP 0) fee rates; and, on request,
options on BTC or ETH (`option_instruments`): coin-settled (Deribit-style) or settled in a stablecoin (Bybit's
USDC options); and Bybit-style quarterly futures (`future_instruments`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from decimal import Decimal

from deltakeeper.domain.carry import last_friday_of_quarter_0800_utc
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


# Options (1 coin a contract, no funding): coin-settled and priced in coin (Deribit-style), or settled in a
# stablecoin and priced in USD (Bybit's USDC options)

OPTION_FEE_RATE = Decimal("0.0003")
"""Per coin of underlying, taker and maker; the engine caps it at `OPTION_FEE_CAP` of the premium."""
OPTION_FEE_CAP = Decimal("0.125")
OPTION_LOT_STEP = Decimal("0.1")
USD_OPTION_LOT_STEP = Decimal("0.01")
"""Bybit's BTC and ETH options trade in steps of 0.01 coin."""
OPTION_PRICE_TICK = Decimal("0.0001")
OPTION_EXPIRY_TIME = time(8, 0)
"""Deribit's options expire at 08:00 UTC."""
DEFAULT_STRIKE_MONEYNESS = (0.90, 0.95, 1.0, 1.05, 1.10)
DEFAULT_EXPIRY_DAYS = (7, 30)


def option_symbol(base: str, expiry: datetime, strike: Decimal, is_call: bool,
                  settle: str | None = None) -> str:
    """ccxt's unified option symbol, e.g. `BTC/USD:BTC-260206-60000-C` (settled in `settle`, by default
    the base coin: `BTC/USD:USDC-260206-60000-C` for a USDC option)."""
    return f"{base}/USD:{settle or base}-{expiry:%y%m%d}-{strike.normalize():f}-{'C' if is_call else 'P'}"


def option_instruments(
    base: str = "BTC",
    *,
    start: datetime,
    price: float,
    moneyness: tuple[float, ...] = DEFAULT_STRIKE_MONEYNESS,
    expiry_days: tuple[int, ...] = DEFAULT_EXPIRY_DAYS,
    settle: str | None = None,
) -> dict[str, Instrument]:
    """Calls and puts on `base`, one coin a contract: a strike at each `moneyness` times `price` (rounded
    to a round number: 1,000 USD for BTC-sized prices), for each expiry `days` after `start` at 08:00 UTC.
    Settled in `base` and priced in it, or settled in the stablecoin `settle` (USDC) and priced in USD,
    in lots of 0.01."""
    lot_step = OPTION_LOT_STEP if settle is None else USD_OPTION_LOT_STEP
    step = 10 ** max(0, int(math.log10(price)) - 1)
    strikes = sorted({Decimal(round(price * m / step) * step) for m in moneyness})
    instruments: dict[str, Instrument] = {}
    for days in expiry_days:
        day = (start + timedelta(days=days)).date()
        expiry = datetime.combine(day, OPTION_EXPIRY_TIME, tzinfo=start.tzinfo)
        for strike in strikes:
            for is_call in (True, False):
                symbol = option_symbol(base, expiry, strike, is_call, settle)
                instruments[symbol] = Instrument(
                    symbol=symbol, kind=Kind.OPTION, base=base, quote="USD", settle=settle or base,
                    contract_size=Decimal(1), lot_step_contracts=lot_step,
                    min_contracts=lot_step, taker_fee_rate=OPTION_FEE_RATE,
                    maker_fee_rate=OPTION_FEE_RATE, expiry=expiry, strike=strike,
                    option_type="call" if is_call else "put",
                )
    return instruments


# Dated futures (Bybit-style quarterlies: linear USDT-settled, inverse coin-settled, no funding)

INVERSE_FUTURE_BASES = frozenset({"BTC", "ETH"})
"""Bybit lists inverse (coin-settled) quarterlies on BTC and ETH only; linear ones on every asset here."""
DEFAULT_QUARTERLIES = 2
"""How many quarterly expiries are listed at a time: the current quarter's and the next one's."""


def future_symbol(base: str, expiry: datetime, *, inverse: bool) -> str:
    """ccxt's unified symbol of a dated future: `BTC/USDT:USDT-261225`, inverse `BTC/USD:BTC-261225`."""
    market = f"{base}/USD:{base}" if inverse else f"{base}/USDT:USDT"
    return f"{market}-{expiry:%y%m%d}"


def quarterly_expiries(after: datetime, count: int = DEFAULT_QUARTERLIES) -> list[datetime]:
    """The next `count` quarterly expiries (last Friday of Mar/Jun/Sep/Dec, 08:00 UTC) strictly after
    `after`."""
    expiries: list[datetime] = []
    year, quarter = after.year, (after.month - 1) // 3 + 1
    while len(expiries) < count:
        expiry = last_friday_of_quarter_0800_utc(year, quarter)
        if expiry > after:
            expiries.append(expiry)
        year, quarter = (year + 1, 1) if quarter == 4 else (year, quarter + 1)
    return expiries


def future_instruments(start: datetime, count: int = DEFAULT_QUARTERLIES,
                       bases: tuple[str, ...] = tuple(ASSETS)) -> dict[str, Instrument]:
    """The quarterly futures listed at `start`, by ccxt symbol: for each of `bases`, a linear USDT-settled
    contract (the linear perpetual's contract size and lot step) and, on BTC and ETH, an inverse
    coin-settled one (1 USD face), for each of the next `count` quarterly expiries; the perpetuals' fees."""
    instruments: dict[str, Instrument] = {}
    for expiry in quarterly_expiries(start, count):
        for base in bases:
            asset = ASSETS[base]
            linear = Instrument(
                symbol=future_symbol(base, expiry, inverse=False), kind=Kind.FUTURE, base=base,
                quote="USDT", settle="USDT", contract_size=asset.linear_contract_size,
                lot_step_contracts=asset.linear_lot_step,
                min_contracts=asset.linear_lot_step, min_notional_usd=MIN_NOTIONAL_USD,
                taker_fee_rate=PERP_TAKER_FEE_RATE, maker_fee_rate=PERP_MAKER_FEE_RATE, expiry=expiry,
            )
            instruments[linear.symbol] = linear
            if base in INVERSE_FUTURE_BASES:
                inverse = replace(
                    linear, symbol=future_symbol(base, expiry, inverse=True), quote="USD", settle=base,
                    inverse=True, contract_size=asset.inverse_face_usd, lot_step_contracts=Decimal(1),
                    min_contracts=Decimal(1), min_notional_usd=Decimal(0),
                )
                instruments[inverse.symbol] = inverse
    return instruments
