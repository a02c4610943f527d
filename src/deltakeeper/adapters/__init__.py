"""Adapters: the concrete implementations of the ports (DESIGN.md 2)."""
