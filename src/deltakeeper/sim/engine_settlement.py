"""The engine's settlements: liquidation below the maintenance margin, expiry of options and dated
futures, and funding of perpetuals."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

from deltakeeper.domain.exposure import Position, unrealized_pnl
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.margin import leg_requirements
from deltakeeper.domain.orders import Fill, FundingPayment, OrderStatus, OrderType, Quote, Side
from deltakeeper.sim.engine_matching import EngineMatching
from deltakeeper.sim.engine_state import SimAccount, SimOrder, to_wallet


class EngineSettlement(EngineMatching):
    """Liquidations, expiries and funding, each run by `SimEngine.on_quote`."""

    # liquidation

    def _pool(self, account: SimAccount, settle: str) -> tuple[Decimal, dict[str, Decimal]]:
        """A settlement currency's margin balance at the marks, and each of its positions' maintenance
        margin."""
        rules = self._rules()
        equity = account.balances.get(settle, ZERO)
        margins: dict[str, Decimal] = {}
        for symbol, pos in account.positions.items():
            instrument = self.instruments[symbol]
            if instrument.settle != settle:
                continue
            mark = self._mark(symbol, pos)
            if not instrument.is_option:
                equity += unrealized_pnl(instrument, Position(symbol, pos.contracts, pos.entry_price, mark))
            try:
                underlying = self._underlying(instrument)
                margins[symbol] = leg_requirements(instrument, pos.contracts, mark, underlying, rules)[1]
            except ValueError:
                margins[symbol] = ZERO
        return equity, margins

    def _surely_solvent(self, account: SimAccount, settle: str) -> bool:
        """A cheap bound checked first on every quote: the wallet alone covers each futures position's
        largest loss (at most its notional at the higher of entry and mark) plus its maintenance margin
        (at most its notional at the mark). Options always take the full check."""
        need = ZERO
        for symbol, pos in account.positions.items():
            instrument = self.instruments[symbol]
            if instrument.settle != settle:
                continue
            if instrument.is_option:
                return False
            mark = self._mark(symbol, pos)
            if instrument.inverse:
                face = abs(pos.contracts) * instrument.contract_size
                need += face / min(mark, pos.entry_price) + face / mark
            else:
                size = abs(pos.contracts) * instrument.contract_size
                need += size * (max(mark, pos.entry_price) + mark)
        return account.balances.get(settle, ZERO) >= need

    def _check_liquidations(self, settle: str, ts: datetime) -> None:
        for account_id, account in self._accounts.items():
            if not any(self.instruments[s].settle == settle for s in account.positions):
                continue
            if self._surely_solvent(account, settle):
                continue
            equity, margins = self._pool(account, settle)
            if equity >= sum(margins.values(), ZERO):
                continue
            while margins and equity < sum(margins.values(), ZERO):
                self._liquidate(account_id, account, max(margins, key=lambda s: margins[s]), ts)
                equity, margins = self._pool(account, settle)
            if account.balances.get(settle, ZERO) < 0:
                account.balances[settle] = ZERO
            self._emit(account_id, self.snapshot(account_id, ts))

    def _liquidate(self, account_id: str, account: SimAccount, symbol: str, ts: datetime) -> None:
        """Close the position at its mark with an order of the exchange's own."""
        pos = account.positions[symbol]
        mark = self._mark(symbol, pos)
        side = Side.SELL if pos.contracts > 0 else Side.BUY
        order = SimOrder(
            exchange_order_id=self._new_id(), client_order_id=None, symbol=symbol, side=side,
            amount=abs(pos.contracts), order_type=OrderType.MARKET, price=None, reduce_only=True,
            reserve_price=mark, ts=ts, reason="liquidation",
        )
        account.open_orders[order.exchange_order_id] = order
        account.by_exchange_id[order.exchange_order_id] = order
        self._execute(account_id, account, self.instruments[symbol], order, order.amount, mark, ts,
                      maker=False, liquidation=True)
        self._emit(account_id, order.state())

    # expiry

    def _settle_expiries(self, base: str, ts: datetime) -> None:
        """Settle the options and futures on `base` that have expired by `ts`, each position by a delivery
        fill: options cash-settled at their intrinsic value (in the premium coin, per unit of the
        underlying: 0 for one that expired worthless), futures closed at the underlying price."""
        due = [(e, s) for e, s in self._expiries if e <= ts and self.instruments[s].base == base]
        if not due:
            return
        underlying = self._price_of(base)
        if underlying is None:
            return
        self._expiries = [item for item in self._expiries if item not in due]
        for _, symbol in due:
            instrument = self.instruments[symbol]
            self._expired.add(symbol)
            strike = instrument.strike or ZERO
            payoff = max(underlying - strike, ZERO) if instrument.is_call else max(strike - underlying, ZERO)
            if instrument.coin_settled:
                payoff /= underlying
            for account_id, account in self._accounts.items():
                for order in [o for o in account.open_orders.values() if o.symbol == symbol]:
                    order.reason = "expired"
                    self._close(account_id, account, order, OrderStatus.CANCELED, ts)
                pos = account.positions.get(symbol)
                if pos is None:
                    continue
                held = pos.contracts
                if instrument.is_option:  # the premium paid or received is in the wallet: the payoff too
                    del account.positions[symbol]
                    price = to_wallet(payoff)
                    value = held * instrument.contract_size * price
                    paid = to_wallet(value)
                    value_usd = abs(value) * (underlying if instrument.coin_settled else Decimal(1))
                else:  # a future: closed at the underlying price, its PnL realised
                    price = underlying
                    paid = self._apply_position(account, instrument, -held, underlying)
                    value_usd = instrument.notional_usd(held, underlying)
                self._credit(account, instrument.settle, paid)
                self._deliver(account_id, account, instrument, held, price, value_usd, ts)
                self._emit(account_id, self.snapshot(account_id, ts))

    def _deliver(self, account_id: str, account: SimAccount, instrument: Instrument, contracts: Decimal,
                 price: Decimal, value_usd: Decimal, ts: datetime) -> None:
        """The fill that closes an expired contract's `contracts` at its settlement `price`, as Bybit's
        `Delivery` execution: a delivery (not a trade), no fee, no order of the account's (no client
        order id), so that the fills alone account for the position."""
        fill = Fill(
            trade_id=self._new_id(), exchange_order_id=self._new_id(), client_order_id=None,
            symbol=instrument.symbol, side=Side.SELL if contracts > 0 else Side.BUY,
            amount_contracts=abs(contracts), price=price, fee=ZERO, fee_currency=instrument.settle, ts=ts,
            notional_usd=value_usd, delivery=True,
        )
        account.fills.append(fill)
        self._forget(account, ts)
        self._emit(account_id, fill)

    # funding

    def _settle_funding(self, instrument: Instrument, quote: Quote, interval_secs: int) -> None:
        slot = math.floor(quote.ts.timestamp() / interval_secs)
        last = self._funding_slots.get(instrument.symbol)
        if last is not None and slot <= last:
            return
        self._funding_slots[instrument.symbol] = slot
        if last is None:
            return
        rate = quote.funding_rate if quote.funding_rate is not None else self.default_funding_rate
        for boundary in range(last + 1, slot + 1):
            self.settle_funding(instrument.symbol, datetime.fromtimestamp(boundary * interval_secs, UTC),
                                rate, quote.mark)

    def settle_funding(self, symbol: str, ts: datetime, rate: Decimal, mark: Decimal) -> None:
        """Pay or charge every position on `symbol` its funding at `rate` on its notional at `mark`."""
        instrument = self.instruments[symbol]
        for account_id, account in self._accounts.items():
            pos = account.positions.get(instrument.symbol)
            if pos is None:
                continue
            amount = to_wallet(-self._settle_notional(instrument, pos.contracts, mark) * rate)
            self._credit(account, instrument.settle, amount)
            payment = FundingPayment(
                payment_id=self._new_id(), symbol=instrument.symbol, amount=amount,
                currency=instrument.settle, rate=rate, position_contracts=pos.contracts, ts=ts,
            )
            account.funding.append(payment)
            self._forget(account, ts)
            self._emit(account_id, payment)
            self._emit(account_id, self.snapshot(account_id, ts))
