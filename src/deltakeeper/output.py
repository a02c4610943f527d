"""Kept for `margin_report` until its command moves into `deltakeeper.cli`: see `deltakeeper.cli.output`."""

from deltakeeper.cli.output import plain, print_table, to_csv, to_json

__all__ = ["plain", "print_table", "to_csv", "to_json"]
