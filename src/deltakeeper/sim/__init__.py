"""The simulated exchange: engine, feeds, clock, scenario, the in-process gateway and the Bybit-v5 server."""
