"""Kept for `margin_report` until its command moves into `deltakeeper.cli`: see `deltakeeper.cli.args`."""

from deltakeeper.cli.args import Format, ShortFormat, fail, read_json_file

__all__ = ["Format", "ShortFormat", "fail", "read_json_file"]
