"""What the adapter does differently on Bitget futures (ccxt `bitget`, a classic account's `mix` API), in one
place.

- Its fills (`/api/v2/mix/order/fills`) and funding payments (`/api/v2/mix/account/bill`, business type
  `contract_settle_fee`) are listed per symbol only (ccxt requires one), newest first, at most 100 a page,
  over at most 30 days (bills; fills: three months) between `startTime` and `endTime` (ccxt's `since` and
  `until`): both are read per traded market, 30 days at a time.
- Its fills carry no client order id: an order's is looked up by its order id (`/api/v2/mix/order/detail`,
  `clientOid`), as on Binance.
- A unified (UTA) account lists fills and funding across markets; ccxt tells the two apart by asking the
  account's settings. Only the classic account is verified.
"""

from __future__ import annotations

HISTORY_WINDOW_MS = 30 * 86_400_000
"""The longest window Bitget lists futures bills for (its fills: three months)."""
