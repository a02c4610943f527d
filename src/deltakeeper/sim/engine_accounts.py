"""The engine's accounts and shared machinery: opening accounts, balances, positions with their
margin figures (the engine's rule, as an exchange reports them), snapshots, listeners, and the
helpers every part of the engine uses (ids, events, order history, prices, margin, fees)."""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from deltakeeper.domain.exposure import Position, unrealized_pnl, years_to_expiry
from deltakeeper.domain.greeks import greeks
from deltakeeper.domain.instruments import ZERO, Instrument
from deltakeeper.domain.margin import MarginRules, account_margin, leg_requirements
from deltakeeper.domain.margin_tiers import DEFAULT_TIERS_USD
from deltakeeper.domain.orders import OrderStatus, Quote
from deltakeeper.domain.records import AccountSnapshot
from deltakeeper.ports import AccountEvent
from deltakeeper.sim.engine_state import (
    HISTORY_MAX,
    HISTORY_SECS,
    WALLET_QUANTUM,
    AccountListener,
    Faults,
    QuoteListener,
    SimAccount,
    SimOrder,
    SimPosition,
    to_wallet,
)
from deltakeeper.sim.markets import OPTION_FEE_CAP


class EngineAccounts:
    """The engine's state and accounts, and the helpers its matching and settlements share."""

    def __init__(
        self,
        instruments: Mapping[str, Instrument],
        *,
        seed: int = 0,
        default_funding_rate: Decimal = Decimal("0.0001"),
        history_secs: float = HISTORY_SECS,
        history_max: int = HISTORY_MAX,
    ) -> None:
        if history_secs < 0 or history_max < 1:
            raise ValueError(f"history must be kept: history_secs={history_secs}, history_max={history_max}")
        self.instruments: dict[str, Instrument] = dict(instruments)
        self._history = timedelta(seconds=history_secs)
        self._history_max = history_max
        self.default_funding_rate = default_funding_rate
        self.faults = Faults()
        self.leverage = Decimal(10)
        self.maintenance_tiers = DEFAULT_TIERS_USD
        """The maintenance margin table (USD notional) of every futures market."""
        self.liquidations = True
        """Liquidate a settlement currency whose margin balance falls below its maintenance margin."""
        self.funding_on_grid = True
        """Settle funding on each perpetual's interval grid; off, only `settle_funding` settles it."""
        self._margin_rules: MarginRules | None = None
        self.walk_depth = True
        self.depth_level_usd = Decimal(50_000)
        """Level i of the synthetic book (0 = the touch) holds (i + 1) x this much, in USD."""
        self.depth_step_bps = Decimal(1)
        """Distance between the synthetic book's levels, in bps of the touch (at least one price unit)."""
        self._rng = random.Random(seed)
        self._accounts: dict[str, SimAccount] = {}
        self._quotes: dict[str, Quote] = {}
        self._funding_slots: dict[str, int] = {}
        self._listeners: list[AccountListener] = []
        self._quote_listeners: list[QuoteListener] = []
        self._expiries = sorted(
            (i.expiry, i.symbol) for i in self.instruments.values()
            if i.is_derivative and i.expiry is not None
        )
        self._expired: set[str] = set()
        self._snapshots = itertools.count(1)
        """Numbers the snapshots in the order they are taken (`AccountSnapshot.seq`)."""

    # accounts

    def open_account(self, account_id: str, balances: Mapping[str, Decimal]) -> None:
        if account_id in self._accounts:
            raise ValueError(f"account {account_id!r} exists")
        self._accounts[account_id] = SimAccount(balances=dict(balances))

    def has_account(self, account_id: str) -> bool:
        return account_id in self._accounts

    def balances(self, account_id: str) -> dict[str, Decimal]:
        return dict(self._account(account_id).balances)

    def positions(self, account_id: str) -> list[Position]:
        """Open positions at the mark, with their margin figures (the engine's rule) as an exchange
        reports them, and an option's mark IV, Black-76 delta and underlying price."""
        account = self._account(account_id)
        result = [self._position(symbol, pos) for symbol, pos in account.positions.items()]
        if not result:
            return result
        margin = account_margin(self.instruments, account.balances, result, {}, self._rules())
        reported = []
        for position in result:
            leg = margin.leg(position.symbol)
            if leg is None:
                reported.append(position)
                continue
            liquidation = leg.liquidation_price
            reported.append(replace(
                position,
                initial_margin=to_wallet(leg.initial_margin),
                maintenance_margin=to_wallet(leg.maintenance_margin),
                leverage=leg.leverage,
                liquidation_price=None if liquidation is None else liquidation.quantize(WALLET_QUANTUM),
            ))
        return reported

    def _position(self, symbol: str, pos: SimPosition) -> Position:
        instrument = self.instruments[symbol]
        quote = self._quotes.get(symbol)
        mark = quote.mark if quote else pos.entry_price
        position = Position(symbol, pos.contracts, pos.entry_price, mark)
        upnl = to_wallet(unrealized_pnl(instrument, position))
        position = replace(position, unrealized_pnl=upnl)
        vol = getattr(quote, "mark_iv", None)
        if (instrument.is_option and quote is not None and quote.index and vol
                and instrument.strike is not None and instrument.expiry is not None):
            model = greeks(float(quote.index), float(instrument.strike),
                           years_to_expiry(instrument.expiry, quote.ts), vol, instrument.is_call)
            position = replace(position, delta=Decimal(repr(model.delta)), mark_iv=vol,
                               underlying_price=quote.index)
        return position

    def snapshot(self, account_id: str, now: datetime) -> AccountSnapshot:
        return AccountSnapshot(
            self.balances(account_id), tuple(self.positions(account_id)), now, next(self._snapshots)
        )

    def adjust_balance(self, account_id: str, asset: str, amount: Decimal, now: datetime) -> None:
        """An external flow (deposit, withdrawal, a scenario's inventory change)."""
        balances = self._account(account_id).balances
        balances[asset] = balances.get(asset, ZERO) + amount
        self._emit(account_id, self.snapshot(account_id, now))

    def subscribe(self, listener: AccountListener) -> None:
        """`listener(account_id, event)` for every fill, funding payment, order change, and a snapshot
        after each change of balances or positions."""
        self._listeners.append(listener)

    def subscribe_quotes(self, listener: QuoteListener) -> None:
        self._quote_listeners.append(listener)

    def quote(self, symbol: str) -> Quote | None:
        return self._quotes.get(symbol)

    # internals

    def _account(self, account_id: str) -> SimAccount:
        account = self._accounts.get(account_id)
        if account is None:
            raise KeyError(f"unknown account {account_id!r}")
        return account

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _emit(self, account_id: str, event: AccountEvent) -> None:
        for listener in self._listeners:
            listener(account_id, event)

    # prices, margin and fees

    @staticmethod
    def _settle_notional(instrument: Instrument, contracts: Decimal, price: Decimal) -> Decimal:
        """Signed notional in the settle coin: linear contracts x size x price, inverse face / price."""
        if instrument.inverse:
            return contracts * instrument.contract_size / price
        return contracts * instrument.contract_size * price

    def _rules(self) -> MarginRules:
        rules = self._margin_rules
        tiers = self.maintenance_tiers
        if rules is None or rules.leverage != self.leverage or rules.default_tiers is not tiers:
            rules = self._margin_rules = MarginRules(default_tiers=tiers, leverage=self.leverage)
        return rules

    def _initial_margin(self, instrument: Instrument, contracts: Decimal, price: Decimal) -> Decimal:
        try:
            underlying = self._underlying(instrument)
            return leg_requirements(instrument, contracts, price, underlying, self._rules())[0]
        except ValueError:  # an option whose underlying has no price yet
            return ZERO

    def _underlying(self, instrument: Instrument) -> Decimal | None:
        """The USD price of an option's underlying: its own quote's index, else a quote of its base."""
        if not instrument.is_option:
            return None
        own = self._quotes.get(instrument.symbol)
        if own is not None and own.index:
            return own.index
        return self._price_of(instrument.base)

    def _price_of(self, base: str) -> Decimal | None:
        for symbol, quote in self._quotes.items():
            other = self.instruments[symbol]
            if other.base == base and other.expiry is None:
                return quote.index or quote.mark
        return None

    def _option_fee(self, instrument: Instrument, amount: Decimal, price: Decimal, rate: Decimal) -> Decimal:
        """`rate` of the underlying's value (in coin for a coin-settled option, else at its USD price),
        capped at `OPTION_FEE_CAP` of the premium."""
        size = amount * instrument.contract_size
        per_coin = Decimal(1) if instrument.coin_settled else self._underlying(instrument) or ZERO
        return to_wallet(min(rate * size * per_coin, OPTION_FEE_CAP * size * price))

    # order history

    def _close(self, account_id: str, account: SimAccount, order: SimOrder, status: OrderStatus,
               ts: datetime) -> None:
        order.status = status
        order.ts = ts
        self._closed(account, order)
        self._emit(account_id, order.state())

    def _closed(self, account: SimAccount, order: SimOrder) -> None:
        """Move a final order from the open ones to the history."""
        del account.open_orders[order.exchange_order_id]
        account.closed.append(order)
        self._forget(account, order.ts)

    def _forget(self, account: SimAccount, now: datetime) -> None:
        """Drop the closed orders, fills and funding payments beyond the history kept (oldest first)."""
        horizon = now - self._history
        limit = self._history_max
        closed = account.closed
        while closed and (len(closed) > limit or closed[0].ts < horizon):
            order = closed.popleft()
            del account.by_exchange_id[order.exchange_order_id]
            cid = order.client_order_id
            if cid is not None and account.by_client_id.get(cid) is order:
                del account.by_client_id[cid]
        for events in (account.fills, account.funding):
            while events and (len(events) > limit or events[0].ts < horizon):
                events.popleft()

    @staticmethod
    def _credit(account: SimAccount, asset: str, amount: Decimal) -> None:
        account.balances[asset] = account.balances.get(asset, ZERO) + amount

    def _mark(self, symbol: str, pos: SimPosition) -> Decimal:
        quote = self._quotes.get(symbol)
        return quote.mark if quote else pos.entry_price
