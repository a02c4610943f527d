"""The alert events the scheduled jobs raise (issue 5, DESIGN.md 2): stale and recovered streams, a
funding rate beyond its threshold, a delta outside the hard limit, a reconciliation that found what the
streams missed, low margin headroom (a hook: `MarginWatch` is its source), and the daily summary.

Every condition alerts once when it starts and once when it clears, not on every check; the Alerts port
folds repeats within its cool-down. Alerts never raise and never wait (the port queues them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal

import structlog

from deltakeeper.app.daily_summary import DailySummary, SummaryReader, summarize
from deltakeeper.app.figures import figure, short
from deltakeeper.app.reconciliation import Reconciliation
from deltakeeper.app.service import Service
from deltakeeper.domain.journal_rows import JournalQuery
from deltakeeper.domain.margin_headroom import HeadroomLevels
from deltakeeper.domain.orders import Quote

log = structlog.get_logger("deltakeeper.watch")

SUMMARY_WINDOW = timedelta(hours=24)
SUMMARY_LEVEL = "warning"
"""The daily summary's alert level: `warning`, so that the default DK_ALERT_LEVEL lets it through."""

MarginHeadroom = Callable[[], Awaitable[float | None]]
"""Margin headroom as a fraction of equity (0 = at maintenance margin), or None where unknown."""


class Watch:
    """Checks run by the Runner: `on_quote` for every quote, `check` after every scheduled recompute,
    `on_reconciled` after every periodic reconciliation, `daily_summary` from the cron job."""

    def __init__(
        self,
        service: Service,
        *,
        hard_limit_bands: float = 3.0,
        funding_alert_bps: Decimal = Decimal(10),
        reader: SummaryReader | None = None,
        daily_summary_at: str | None = None,
        margin_headroom: MarginHeadroom | None = None,
        margin_levels: HeadroomLevels = HeadroomLevels(),
        blind_alert_secs: float = 60.0,
    ) -> None:
        self.service = service
        self.hard_limit_bands = Decimal(str(hard_limit_bands))
        self.funding_alert_bps = funding_alert_bps
        self.reader = reader
        self.daily_summary_at = daily_summary_at
        """HH:MM UTC of the daily summary's cron job; None for none."""
        self.margin_headroom = margin_headroom
        self.margin_levels = margin_levels
        """Its `warn` level alerts `margin_headroom_low` (the same levels as the MarginWatch's)."""
        self.funding_rates: dict[str, Decimal] = {}
        """Symbol -> the last funding rate a quote carried (per funding interval)."""
        self.stale: dict[str, float] = {}
        """Symbol -> its quote age when it was found stale."""
        self.funding_high: set[str] = set()
        self.outside: set[str] = set()
        self.margin_low = False
        self.blind_alert_secs = blind_alert_secs
        self.blind: list[str] = []
        """What the bot has been without for longer than `blind_alert_secs`, as last alerted."""

    def on_quote(self, quote: Quote) -> None:
        if quote.funding_rate is not None:
            self.funding_rates[quote.symbol] = quote.funding_rate

    async def check(self) -> None:
        """After a scheduled recompute."""
        now = self.service.clock.now()
        await self.check_streams(now)
        await self.check_funding()
        await self.check_hard_limit()
        await self.check_margin()

    # -- streams ------------------------------------------------------------------------------

    async def check_streams(self, now: datetime) -> None:
        """A quote older than DK_STALE_SECS (by its arrival or by the exchange's stamp): `stream_stale`
        once; fresh again: `stream_recovered`."""
        service = self.service
        limit = service.options.limits.stale_secs
        ages = {
            symbol: service.state.quote_age_secs(symbol, service.clock.speed, now.timestamp())
            for symbol in service.symbols()
        }
        went_stale = sorted(s for s, age in ages.items() if age > limit and s not in self.stale)
        recovered = sorted(s for s, age in ages.items() if age <= limit and s in self.stale)
        if went_stale:
            parts = [f"{s} ({_age(ages[s])})" for s in went_stale]
            log.warning("stream_stale", symbols=went_stale, stale_secs=limit)
            await service.alerts.send(
                "warning",
                "stream_stale",
                f"no fresh quote for {', '.join(parts)}: older than DK_STALE_SECS={limit:g}; "
                "orders on these markets are denied until quotes are fresh again",
                ",".join(went_stale),
            )
            self.stale.update({s: ages[s] for s in went_stale})
        if recovered:
            log.info("stream_recovered", symbols=recovered)
            fresh = f"quotes fresh again for {', '.join(recovered)}"
            await service.alerts.send("warning", "stream_recovered", fresh, ",".join(recovered))
            for symbol in recovered:
                self.stale.pop(symbol, None)

    # -- blindness ----------------------------------------------------------------------------

    async def check_blind(self, blind_secs: Mapping[str, float]) -> None:
        """`blind_secs`: how long the bot has been without each thing it trades on (`account`, a symbol's
        quotes, `journal` writes; `Runner.blind_secs`). Any beyond DK_BLIND_ALERT_SECS: `blind` (error)
        once; none: `blind_cleared`."""
        limit = self.blind_alert_secs
        blind = sorted(name for name, secs in blind_secs.items() if secs > limit)
        if blind and not self.blind:
            parts = [f"{_blind_name(name)} for {blind_secs[name]:.0f} s" for name in blind]
            log.error("blind", blind=blind, blind_alert_secs=limit)
            await self.service.alerts.send(
                "error", "blind",
                f"trading blind: {', '.join(parts)} (beyond DK_BLIND_ALERT_SECS={limit:g}); "
                "not ready to trade",
            )
        elif not blind and self.blind:
            log.warning("blind_cleared", was=self.blind)
            await self.service.alerts.send(
                "warning", "blind_cleared", f"no longer blind: {', '.join(self.blind)} recovered"
            )
        self.blind = blind

    # -- funding ------------------------------------------------------------------------------

    async def check_funding(self) -> None:
        """A hedge's funding rate per interval beyond DK_FUNDING_ALERT_BPS: `funding_rate_high` once,
        re-armed when it is back within."""
        service = self.service
        for symbol in sorted({p.hedge_symbol for p in service.policies.values()}):
            rate = self.funding_rates.get(symbol)
            if rate is None:
                continue
            bps = abs(rate) * 10_000
            if bps <= self.funding_alert_bps:
                if symbol in self.funding_high:
                    self.funding_high.discard(symbol)
                    log.info("funding_rate_normal", symbol=symbol, rate=figure(rate))
                continue
            if symbol in self.funding_high:
                continue
            self.funding_high.add(symbol)
            instrument = service.state.instruments.get(symbol)
            interval = instrument.funding_interval_secs if instrument is not None else None
            per = f" per {interval / 3600:g} h" if interval else " per interval"
            position = Decimal(0)
            if service.state.account is not None:
                position = sum(
                    (p.contracts for p in service.state.account.positions if p.symbol == symbol), Decimal(0)
                )
            if position == 0:
                who = "no position on it"
            else:
                # Longs pay a positive rate to shorts.
                pays = (position > 0) == (rate > 0)
                side = "long" if position > 0 else "short"
                verb = "pays" if pays else "receives"
                who = f"the hedge ({side} {short(abs(position))} contracts) {verb} it"
            log.warning("funding_rate_high", symbol=symbol, rate=figure(rate))
            await service.alerts.send(
                "warning",
                "funding_rate_high",
                f"{symbol} funding rate {short(rate * 100, 4)}%{per} ({short(bps, 2)} bps, beyond "
                f"DK_FUNDING_ALERT_BPS={short(self.funding_alert_bps)}): {who}",
                symbol,
            )

    # -- the hard limit -----------------------------------------------------------------------

    async def check_hard_limit(self) -> None:
        """An asset's delta farther from its target than DK_HARD_LIMIT_BANDS band half-widths while no
        hedge is under way on it: `delta_outside_hard_limit` (error) once; back within:
        `delta_within_hard_limit`."""
        service = self.service
        for asset, policy in sorted(service.policies.items()):
            decision = service.decisions.last.get(asset)
            if decision is None or decision.band_coin <= 0 or policy.hedge_symbol in service.orders.in_flight:
                continue
            if decision.reason == "rebalance":  # a hedge was sent: the next decision tells how it went
                continue
            bands = abs(decision.delta_coin - decision.target_coin) / decision.band_coin
            if bands <= self.hard_limit_bands:
                if asset in self.outside:
                    self.outside.discard(asset)
                    log.warning("delta_within_hard_limit", asset=asset, bands=str(short(bands, 2)))
                    await service.alerts.send(
                        "warning",
                        "delta_within_hard_limit",
                        f"{asset} delta {short(decision.delta_coin)} is back within "
                        f"{short(self.hard_limit_bands)} bands of its target",
                        asset,
                    )
                continue
            if asset in self.outside:
                continue
            self.outside.add(asset)
            why = decision.reason + (f" ({decision.detail})" if decision.detail else "")
            log.error("delta_outside_hard_limit", asset=asset, bands=short(bands, 2), reason=why)
            await service.alerts.send(
                "error",
                "delta_outside_hard_limit",
                f"{asset} delta {short(decision.delta_coin)} {asset} is {short(bands, 2)} bands from its "
                f"target {short(decision.target_coin)} (band ± {short(decision.band_coin)}, hard limit "
                f"DK_HARD_LIMIT_BANDS={short(self.hard_limit_bands)}); not hedged: {why}, "
                f"trading state {service.trading.state.value}",
                asset,
            )

    # -- margin (a hook) ----------------------------------------------------------------------

    async def check_margin(self) -> None:
        """`margin_headroom_low` (error) once when the headroom source reports less than the threshold.
        Nothing happens without a source (`margin_headroom`: the service wires `MarginWatch` in)."""
        if self.margin_headroom is None:
            return
        headroom = await self.margin_headroom()
        if headroom is None:
            return
        warn = self.margin_levels.warn
        if warn is None or not self.margin_levels.below_warn(headroom):
            self.margin_low = False
            return
        if self.margin_low:
            return
        self.margin_low = True
        log.error("margin_headroom_low", headroom=round(headroom, 4))
        await self.service.alerts.send(
            "error",
            "margin_headroom_low",
            f"margin headroom {headroom:.1%} of equity, below {float(warn):.0%}",
        )

    # -- reconciliation -----------------------------------------------------------------------

    async def on_reconciled(self, result: Reconciliation, idle: bool) -> None:
        """After a periodic reconciliation: what it had to add or settle, the streams had missed.
        `idle` says whether nothing was in flight (else an order still settling may be counted)."""
        parts = [
            _count(result.fills_added, "fill"),
            _count(result.funding_added, "funding payment"),
            _count(result.orders_settled, "order settled", "orders settled"),
            _count(result.orders_canceled, "open order canceled", "open orders canceled"),
        ]
        found = [p for p in parts if p]
        if not found:
            return
        note = "" if idle else " (an order was still in flight)"
        log.warning(
            "reconciliation_mismatch",
            fills_added=result.fills_added,
            funding_added=result.funding_added,
            orders_settled=result.orders_settled,
            orders_canceled=result.orders_canceled,
            idle=idle,
        )
        await self.service.alerts.send(
            "warning",
            "reconciliation_mismatch",
            f"reconciliation found what the streams missed: {', '.join(found)}{note}",
        )

    # -- the daily summary --------------------------------------------------------------------

    async def daily_summary(self, now: datetime | None = None) -> DailySummary | None:
        """The cron job: the 24 h of exchange time before `now` (the exchange clock's now by default),
        from the journal, sent as a `daily_summary` alert. None without a journal reader."""
        if self.reader is None:
            return None
        until = now if now is not None else self.service.clock.now()
        since = until - SUMMARY_WINDOW
        try:
            window = JournalQuery(since=since, until=until)
            fills = await self.reader.fills(window)
            funding = await self.reader.funding(window)
            decisions = await self.reader.decisions(window)
        except Exception as exc:
            self.service.counters.errors += 1
            log.exception("daily_summary_failed", error=str(exc))
            return None
        summary = summarize(since, until, fills, funding, decisions, self.service.ingest.usd)
        log.info("daily_summary", message=summary.message())
        await self.service.alerts.send(SUMMARY_LEVEL, "daily_summary", summary.message())
        return summary


def _count(n: int, one: str, many: str | None = None) -> str:
    if not n:
        return ""
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _blind_name(name: str) -> str:
    return {"account": "the account unreadable", "journal": "journal writes failing"}.get(
        name, f"no quote on {name}"
    )


def _age(secs: float) -> str:
    return "no quote yet" if secs == float("inf") else f"{secs:.1f} s old"
