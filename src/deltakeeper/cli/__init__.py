"""The command line (`deltakeeper ...`): the commands (`main`), the journal's views (`journal`), the
backtest (`backtest`), the emulator (`sim_exchange`), shared arguments (`args`) and output (`output`).
Commands read the journal through the JournalReader port and write through the adapters; no SQL here."""


def main() -> None:
    """`deltakeeper.cli.main.main`, for console scripts installed before the commands moved into this
    package (their entry point is `deltakeeper.cli:main`); imported on call, so that importing a module of
    the package does not load every command."""
    from deltakeeper.cli.main import main as run

    run()
