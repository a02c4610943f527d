"""The price gate: a quote is applied only when what the bot already trusts agrees with it.

A quote is compared with the last quote of its market that the gate accepted (its last good price), with
its own mark and index, and with the other markets of the same asset (spot, perpetual, futures) that have
a fresh good price. It is accepted at once when it is consistent (mark and index within the limit of its
mid), does not jump from its last good price (or another market agrees with the jump: the asset moved
there too), and no fresh other market disagrees. Otherwise it is held: not applied, not decided on.

A held quote is confirmed, and accepted, by persistence: `confirm_quotes` consecutive held quotes at one
level (each within the limit of the first), spanning at least `confirm_secs`, with no fresh other market
disagreeing (one whose own held quotes are at the new level moved too, and does not disagree). So a market
that genuinely gapped is followed at most `confirm_secs` (and `confirm_quotes` quotes) after the gap, and
a lone absurd tick (3x, 1000x, 0.001x) is never accepted: the next normal quote is accepted and drops it.
A quote that disagrees with its own mark or index is never confirmed, and does not break a confirmation.

A market's first quote has nothing of its own to be compared with (its mark and index come in the same
tick): the caller reads the market independently first (`seed`), and the first quote is judged against
that read as against a last good price.

An independent read of the market's price (a REST ticker: `vouch`) settles a held level at once: one that
agrees with it accepts the latest held quote; one that contradicts it (agrees with the last good price, or
with neither) vetoes it: persistence no longer confirms it, only a later agreeing read does. A read that
failed is no read: the caller does not call `vouch`.

Pure: prices are Decimals, times are seconds on any monotonic clock, given by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal

CONFIRM_QUOTES = 3
"""How many consecutive quotes at a new level confirm it (besides `confirm_secs`)."""


@dataclass(frozen=True, slots=True)
class GateLimits:
    jump_pct: Decimal = Decimal(10)
    """`DK_PRICE_JUMP_PCT`: two prices further apart than this (the larger over the smaller, minus 1,
    in percent) disagree."""
    confirm_secs: float = 5.0
    """`DK_PRICE_CONFIRM_SECS`: how long held quotes must stay at a new level to be accepted."""
    source_max_age_secs: float = 15.0
    """Another market's price older than this is no evidence either way (`DK_STALE_SECS`)."""
    confirm_quotes: int = CONFIRM_QUOTES


@dataclass(frozen=True, slots=True)
class Sample:
    """What the gate looks at in one quote."""

    mid: Decimal
    mark: Decimal
    index: Decimal | None
    at_secs: float
    """When it arrived (the caller's monotonic clock)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str
    """Accepted: `consistent`, `first` (nothing to compare with), `agrees_with:<symbol>` (a jump another
    market confirms), `confirmed` (held quotes that stayed at the new level). Held: `inconsistent`
    (mark or index far from the mid), `jump` or `disagrees_with:<symbol>`, then `unconfirmed` (not yet)
    or `vetoed` (a read contradicted the level); `read_contradicts` (`vouch`). Accepted by a read:
    `read`."""
    reference: Decimal
    """An earlier price that vouches for this quote: the last good mid of the market, the agreeing
    market's, the previous confirming quote's; the quote's own mark only for a first quote with nothing
    to compare with. What the price collar compares the touch with (domain/risk.py)."""
    last_good: Decimal | None = None
    """The market's last good mid (for the log of a held quote)."""


@dataclass(frozen=True, slots=True)
class _Candidate:
    level: Decimal
    """The mid of the first held quote at the new level."""
    since_secs: float
    last_mid: Decimal
    last_secs: float
    latest: Sample
    """The last held quote at the level: what an agreeing read accepts."""
    count: int = 1
    vetoed: bool = False
    """A read contradicted the level: only an agreeing read confirms it."""


@dataclass
class PriceGate:
    limits: GateLimits = field(default_factory=GateLimits)
    _good: dict[str, Sample] = field(default_factory=dict, init=False, repr=False)
    _candidates: dict[str, _Candidate] = field(default_factory=dict, init=False, repr=False)
    _groups: dict[str, str] = field(default_factory=dict, init=False, repr=False)
    """Symbol -> its asset, for the markets that price an asset (not options)."""

    def last_good(self, symbol: str) -> Decimal | None:
        good = self._good.get(symbol)
        return good.mid if good is not None else None

    def check(self, symbol: str, asset: str | None, sample: Sample) -> Verdict:
        """Judge a quote of `symbol`, and remember it: accepted, it is the market's good price. `asset` is
        what the market's price is a price of (`SOL/USD` for SOL's spot and perpetuals alike): the markets
        with the same one are compared. None (an option: its price is a premium, and its index its
        underlying's) checks only the quote's jumps from its own market's last good price."""
        if asset is not None:
            self._groups[symbol] = asset
        last = self._good.get(symbol)
        last_mid = last.mid if last is not None else None
        agree, disagree = self._others(symbol, asset, sample)
        own = [] if asset is None else [p for p in (sample.mark, sample.index) if p is not None]
        consistent = not any(self._apart(p, sample.mid) for p in own)
        jump = last is not None and self._apart(sample.mid, last.mid)
        if consistent and not disagree and (not jump or agree):
            if last is not None and not jump:
                return self._accept(symbol, sample, "consistent", last.mid)
            if agree:
                other = agree[0]
                return self._accept(symbol, sample, f"agrees_with:{other}", self._good[other].mid)
            return self._accept(symbol, sample, "first", sample.mark)
        if not consistent:
            return Verdict(False, "inconsistent", sample.mark, last_mid)
        candidate = self._candidates.get(symbol)
        if candidate is not None and not self._apart(sample.mid, candidate.level):
            previous = candidate.last_mid
            candidate = replace(candidate, last_mid=sample.mid, last_secs=sample.at_secs, latest=sample,
                                count=candidate.count + 1)
        else:
            previous = sample.mark
            candidate = _Candidate(sample.mid, sample.at_secs, sample.mid, sample.at_secs, sample)
        self._candidates[symbol] = candidate
        why = f"disagrees_with:{disagree[0]}" if disagree else "jump"
        held_long_enough = (candidate.count >= self.limits.confirm_quotes
                            and sample.at_secs - candidate.since_secs >= self.limits.confirm_secs)
        if held_long_enough and not disagree and not candidate.vetoed:
            return self._accept(symbol, sample, "confirmed", previous)
        return Verdict(False, f"{why} {'vetoed' if candidate.vetoed else 'unconfirmed'}", previous, last_mid)

    def holding(self, symbol: str) -> bool:
        """Whether quotes of the market are held at a level a read could confirm."""
        return symbol in self._candidates

    def seed(self, symbol: str, read: Sample) -> None:
        """An independent read of a market that has no good price yet (a REST ticker): its first quote is
        judged against it."""
        self._good.setdefault(symbol, read)

    def vouch(self, symbol: str, read_mid: Decimal) -> Verdict | None:
        """An independent read of the market's price now (a REST ticker's mid). None when nothing is held;
        else the latest held quote accepted (`read`, the read its reference) when the read agrees with its
        level, or held with the level vetoed when the read contradicts it."""
        candidate = self._candidates.get(symbol)
        if candidate is None:
            return None
        if not self._apart(read_mid, candidate.level):
            return self._accept(symbol, candidate.latest, "read", read_mid)
        self._candidates[symbol] = replace(candidate, vetoed=True)
        return Verdict(False, "read_contradicts", read_mid, self.last_good(symbol))

    def _accept(self, symbol: str, sample: Sample, reason: str, reference: Decimal) -> Verdict:
        self._good[symbol] = sample
        self._candidates.pop(symbol, None)
        return Verdict(True, reason, reference)

    def _others(self, symbol: str, asset: str | None, sample: Sample) -> tuple[list[str], list[str]]:
        """(the other markets of the asset whose fresh good price agrees with the quote, those that
        disagree). A market that disagrees by its good price but whose fresh held quotes agree moved too:
        it is in neither."""
        agree: list[str] = []
        disagree: list[str] = []
        if asset is None:
            return agree, disagree
        max_age = self.limits.source_max_age_secs
        for other, group in self._groups.items():
            if other == symbol or group != asset:
                continue
            good = self._good.get(other)
            if good is None or sample.at_secs - good.at_secs > max_age:
                continue
            if not self._apart(sample.mid, good.mid):
                agree.append(other)
                continue
            candidate = self._candidates.get(other)
            moved_too = (candidate is not None and sample.at_secs - candidate.last_secs <= max_age
                         and not self._apart(sample.mid, candidate.level))
            if not moved_too:
                disagree.append(other)
        return agree, disagree

    def _apart(self, a: Decimal, b: Decimal) -> bool:
        """Further apart than the limit; a non-positive price is apart from everything."""
        if a <= 0 or b <= 0:
            return True
        low, high = min(a, b), max(a, b)
        return (high / low - 1) * 100 > self.limits.jump_pct
