"""Arguments shared by the command-line modules: output formats and JSON files (durations and times:
`domain.durations`)."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any, NoReturn

from deltakeeper.domain.errors import ConfigError


class Format(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class ShortFormat(str, Enum):
    table = "table"
    json = "json"


def fail(variable: str, expected: str, got: object = None) -> NoReturn:
    raise ConfigError(variable, expected, got)


def read_json_file(path: Path, flag: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError:
        fail(flag, "a readable JSON file", str(path))
    except json.JSONDecodeError as exc:
        fail(flag, f"valid JSON ({exc.msg} at line {exc.lineno})", str(path))
