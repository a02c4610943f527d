"""The emulator's Binance USD-M futures dialect: REST under /fapi and the market and user-data websocket
streams, over the same engine as the Bybit dialect."""
