"""deltakeeper: keeps a crypto portfolio at its target delta with fee-aware hedges."""

__version__ = "0.1.0"
