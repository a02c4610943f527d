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
    """The exchange asked us to slow down; the request was definitely refused. `retry_after_secs`: how
    long the exchange's pause (Retry-After) still holds, when one does."""

    def __init__(self, message: str, retry_after_secs: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_secs = retry_after_secs


class RiskDenied(DeltakeeperError):
    """A risk limit refused an order: nothing was sent."""


class OrderRejected(DeltakeeperError):
    """The exchange definitively refused an order (validation, balance)."""


class OrderNotSent(DeltakeeperError):
    """The exchange adapter deliberately sent nothing (shadow mode): the order ends cancelled, with this
    message as its reason, and the decision ends there."""


class OrderOutcomeUnknown(DeltakeeperError):
    """The request may have reached the exchange: settle by client order id, never resend blindly."""


class StaleData(DeltakeeperError):
    """A price or position is older than the staleness limit."""


class JournalUnavailable(DeltakeeperError):
    """The journal did not answer within DK_JOURNAL_TIMEOUT_SECS: nothing of the call was kept, and no
    order may be sent on it."""


class ForeignOrder(DeltakeeperError):
    """An order with our client-id prefix that this journal did not create: another trader is on the
    account. Never adopted; trading halts."""

    def __init__(self, client_order_id: str, symbol: str) -> None:
        self.client_order_id = client_order_id
        self.symbol = symbol
        super().__init__(f"order {client_order_id} on {symbol} carries our client-id prefix but this journal "
                         "did not create it: another trader is on the account")


class TraderLockLost(DeltakeeperError):
    """This process no longer holds the trader lock: another instance may trade the account now, and its
    orders are not ours to cancel."""
