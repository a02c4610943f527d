"""A Bybit v5 wire-protocol face of the simulated exchange (DESIGN.md 8.2): REST and websockets that the
unmodified ccxt/ccxt.pro client trades against. Start it with `server.serve`; point ccxt at it with
`client.point_ccxt_at`."""
