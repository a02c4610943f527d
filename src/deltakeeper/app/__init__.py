"""Use-cases orchestrated with asyncio over the domain and the ports."""
