"""Values as JSON shows them (DESIGN.md 10.12): Decimals in plain notation, times in ISO-8601 UTC, enums
by value, a dataclass value (a journal row, `domain.journal_rows`) as {field: value} in field order. The
one serializer of the command line and the HTTP API: typed values are turned into JSON here, at the
output edge."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Any


def plain(value: Any) -> Any:
    """A JSON-able value: Decimals in plain notation, times in ISO-8601 UTC, enums by value, a dataclass
    value as {field: value} in field order."""
    if isinstance(value, Decimal):
        text = format(value, "f")
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(plain(value), indent=2)
