"""The one serializer of command and API output (`deltakeeper.jsonable`): typed journal rows become JSON at
the output edge, the same JSON as the rows' dicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

from deltakeeper.domain.journal_rows import DecisionRow, FillRow, row_dict
from deltakeeper.jsonable import plain, to_json

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
FILL = FillRow(id=7, trade_id="t1", exchange_order_id="x1", client_order_id=None, symbol="SOL/USDT:USDT",
               side="sell", amount_contracts=Decimal("10.50"), price=Decimal("150.0"), fee=Decimal("0.0525"),
               fee_currency="USDT", notional_usd=Decimal("1575.000"), is_maker=False, ts=T0, recorded_at=T0,
               kind="trade")
DECISION = DecisionRow(id=3, decision_id=2, ts=T0, asset="SOL", delta_coin=Decimal("-1E+1"),
                       delta_usd=Decimal(-1500), target_coin=Decimal(0), band_coin=Decimal("2.5"),
                       price_usd=Decimal(150), reason="inside_band", trading_state="active", symbol=None,
                       side=None, amount_contracts=None, est_cost_usd=None, detail="", recorded_at=T0)


def test_a_journal_row_is_serialized_as_its_columns_in_table_order() -> None:
    fill = plain(FILL)

    assert list(fill) == list(row_dict(FILL))
    assert fill["amount_contracts"] == "10.5" and fill["notional_usd"] == "1575"
    assert fill["ts"] == "2026-01-05T12:00:00Z" and fill["client_order_id"] is None
    assert plain(DECISION)["delta_coin"] == "-10"


def test_typed_rows_and_their_dicts_give_the_same_bytes() -> None:
    rows = [FILL, DECISION]

    assert json.dumps(plain(rows)) == json.dumps(plain([row_dict(row) for row in rows]))
    assert to_json(rows) == to_json([row_dict(row) for row in rows])
