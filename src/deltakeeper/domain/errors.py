"""One error tree, ordered by what the loop does next (DESIGN.md 10.6)."""


class DeltakeeperError(Exception):
    """Base of every error the project raises on purpose."""


class ConfigError(DeltakeeperError):
    """A bad setting or input: refuse to start, exit 2 with a message naming the variable."""

    def __init__(self, variable: str, expected: str, got: object = None) -> None:
        self.variable = variable
        self.expected = expected
        self.got = got
        shown = "" if got is None else f" (got {got!r})"
        super().__init__(f"{variable}: expected {expected}{shown}")


class ExchangeUnavailable(DeltakeeperError):
    """The exchange could not be reached; retry with backoff inside the adapter."""


class RateLimited(ExchangeUnavailable):
    """The exchange asked us to slow down; the request was definitely refused."""


class RiskDenied(DeltakeeperError):
    """A risk limit refused an order: nothing was sent."""


class OrderRejected(DeltakeeperError):
    """The exchange definitively refused an order (validation, balance)."""


class OrderOutcomeUnknown(DeltakeeperError):
    """The request may have reached the exchange: settle by client order id, never resend blindly."""


class StaleData(DeltakeeperError):
    """A price or position is older than the staleness limit."""
