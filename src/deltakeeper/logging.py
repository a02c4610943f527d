"""structlog on stderr: JSON when stderr is not a terminal, console lines when it is. Exceptions are rendered
(a traceback in JSON as structured frames), and no line shows a secret: the libraries that log credentials
at debug level are held at a higher level, and every line has the known secret values and URL credentials
masked (`deltakeeper.redact`)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterable, Iterator

import structlog

from deltakeeper.redact import Redactor

LIBRARY_LEVELS = {
    "apscheduler": logging.WARNING,
    "aiosqlite": logging.WARNING,
    "asyncio": logging.WARNING,
    "alembic": logging.WARNING,
    "sqlalchemy": logging.WARNING,
    "ccxt": logging.INFO,  # at debug: every request with its headers, the API key among them
    "apprise": logging.WARNING,  # at info and debug: the alert URLs with their tokens
}
"""The lowest level each library logs at, whatever DK_LOG_LEVEL."""


def configure_logging(level: str = "info", fmt: str = "auto", secrets: Iterable[str] = ()) -> None:
    """`secrets`: values no line may show (`config.secret_values`)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    exceptions: structlog.typing.Processor = (
        structlog.processors.ExceptionRenderer(structlog.tracebacks.ExceptionDictTransformer(show_locals=False))
        if use_json
        else structlog.processors.format_exc_info
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        exceptions,
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    final: list[structlog.typing.Processor] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        Redactor(secrets),
        renderer,
    ]
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=final))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for library, lowest in LIBRARY_LEVELS.items():
        logging.getLogger(library).setLevel(max(lowest, root.level))


_LAZY_PROXY = type(structlog.get_logger())
"""What `structlog.get_logger()` returns: a proxy that binds a logger from the configuration when used."""


@contextlib.contextmanager
def quiet_logging() -> Iterator[None]:
    """For a batch run inside this process (a backtest, whose decisions and orders are its result, not log
    lines): below a warning every line is dropped, and what is logged goes to stderr (stdout carries the
    result). The project's module loggers (the `log` proxies) are swapped for one logger bound from that
    configuration, so that a call below the level costs no binding, and put back afterwards with the
    configuration before: the process's own logging, cached or not, is as it was."""
    config = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
                        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
                        cache_logger_on_first_use=False)
    quiet = structlog.get_logger().bind()
    swapped = [(module, proxy) for name, module in list(sys.modules.items())
               if name.partition(".")[0] == "deltakeeper"
               and isinstance(proxy := getattr(module, "log", None), _LAZY_PROXY)]
    try:
        for module, _ in swapped:
            vars(module)["log"] = quiet
        yield
    finally:
        for module, proxy in swapped:
            vars(module)["log"] = proxy
        structlog.configure(**config)
