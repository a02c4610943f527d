"""`python -m deltakeeper.backtest ...`: the backtest command on its own (exit 2 on bad input)."""

from __future__ import annotations

import sys

import typer

from deltakeeper.cli.backtest import backtest
from deltakeeper.domain.errors import ConfigError


def main() -> None:
    app = typer.Typer(add_completion=False)
    app.command()(backtest)
    try:
        app(standalone_mode=False)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
