"""Instruments the unit tests share, each as a real exchange lists it (REFERENCE 1.1)."""

from decimal import Decimal as D

from deltakeeper.domain.instruments import Instrument, Kind

# OKX BTC-USDT-SWAP: 0.01 BTC a contract, lot step 0.01 contracts
OKX_LINEAR = Instrument(
    "BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT",
    contract_size=D("0.01"), lot_step_contracts=D("0.01"),
)
# The same contract traded in whole contracts: one lot step is 0.01 BTC, 600 USD at 60,000
LINEAR_WHOLE = Instrument(
    "BTC/USDT:USDT", Kind.PERPETUAL, "BTC", "USDT", "USDT", contract_size=D("0.01"), lot_step_contracts=D(1)
)
# Bybit BTCUSD: 1 USD face a contract, whole contracts
BYBIT_INVERSE = Instrument(
    "BTC/USD:BTC", Kind.PERPETUAL, "BTC", "USD", "BTC",
    inverse=True, contract_size=D(1), lot_step_contracts=D(1),
)
# OKX BTC-USD-SWAP: 100 USD face a contract, whole contracts
OKX_INVERSE = Instrument(
    "BTC/USD:BTC", Kind.PERPETUAL, "BTC", "USD", "BTC",
    inverse=True, contract_size=D(100), lot_step_contracts=D(1),
)
