"""The command line (`deltakeeper ...`): the commands (`main`), the journal's views (`journal`), the
backtest (`backtest`), the emulator (`sim_exchange`), shared arguments (`args`) and output (`output`).
Commands read the journal through the JournalReader port and write through the adapters; no SQL here."""
