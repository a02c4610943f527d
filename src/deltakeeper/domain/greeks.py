"""Black-76 on the forward (r = 0) and the coin-settled view of it (REFERENCE 1.3).

Option maths is in floats; convert quantities to and from `Decimal` at the edges.
`vol` is annualised (0.60 = 60%), `years_to_expiry` is in years of 365 days.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal


def norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def d1_d2(forward_usd: float, strike_usd: float, years_to_expiry: float, vol: float) -> tuple[float, float]:
    """Black-76 d1 and d2.

    With no variance left (`years_to_expiry <= 0` or `vol <= 0`) the payoff is known: d1 = d2 = +inf
    above the strike, -inf below it and 0 at it (the limit as T -> 0), so the price and delta formulas
    give the intrinsic value and a delta of 0, 0.5 or 1 (puts: 0, -0.5, -1).
    """
    log_moneyness = math.log(forward_usd / strike_usd)
    if years_to_expiry <= 0 or vol <= 0:
        d = math.copysign(math.inf, log_moneyness) if log_moneyness else 0.0
        return d, d
    sd = vol * math.sqrt(years_to_expiry)
    d1 = (log_moneyness + sd * sd / 2) / sd
    return d1, d1 - sd


def black76_price_usd(
    forward_usd: float, strike_usd: float, years_to_expiry: float, vol: float, is_call: bool
) -> float:
    """Undiscounted option price in USD: call `F N(d1) - K N(d2)`, put `K N(-d2) - F N(-d1)`."""
    d1, d2 = d1_d2(forward_usd, strike_usd, years_to_expiry, vol)
    if is_call:
        return forward_usd * norm_cdf(d1) - strike_usd * norm_cdf(d2)
    return strike_usd * norm_cdf(-d2) - forward_usd * norm_cdf(-d1)


@dataclass(frozen=True, slots=True)
class OptionGreeks:
    """One option on one coin of underlying.

    `delta` is the plain Black-Scholes delta (what Deribit's ticker shows). `delta_adj` is the
    price-adjusted delta of a coin-settled option, the one that adds to the account's USD delta
    (Deribit's `delta_total`), and `gamma_adj_per_usd` is its derivative in F. `vega_usd` is per 1.00
    of vol (divide by 100 for one vol point).
    """

    price_usd: float
    premium_coin: float
    delta: float
    delta_adj: float
    gamma_per_usd: float
    gamma_adj_per_usd: float
    vega_usd: float


def greeks(
    forward_usd: float, strike_usd: float, years_to_expiry: float, vol: float, is_call: bool
) -> OptionGreeks:
    """Black-76 price and greeks, plain and coin-settled.

    Coin-settled premium: `P = price / F` coins. Price-adjusted delta: `delta - P`, in closed form
    `(K/F) N(d2)` for a call and `-(K/F) N(-d2)` for a put.

    Gamma of the adjusted delta (derived). For a call, with `dd2/dF = 1 / (F s sqrt T)` and the
    identity `K phi(d2) = F phi(d1)`:
        d/dF [(K/F) N(d2)] = -(K/F^2) N(d2) + (K/F) phi(d2) / (F s sqrt T)
                           = -delta_adj / F + phi(d1) / (F s sqrt T)
                           = gamma - delta_adj / F.
    For a put, d/dF [-(K/F) N(-d2)] = (K/F^2) N(-d2) + (K/F) phi(d2) / (F s sqrt T), which is the
    same `gamma - delta_adj / F`. Equivalently d/dF (delta - C/F) = gamma - (delta - C/F) / F.
    With no variance left the plain gamma is taken as 0 (a step has no finite gamma) and the
    formula still gives the exact slope of the intrinsic adjusted delta, e.g. `-K/F^2` for an
    in-the-money call at expiry.
    """
    d1, d2 = d1_d2(forward_usd, strike_usd, years_to_expiry, vol)
    price_usd = black76_price_usd(forward_usd, strike_usd, years_to_expiry, vol, is_call)
    moneyness = strike_usd / forward_usd
    if is_call:
        delta = norm_cdf(d1)
        delta_adj = moneyness * norm_cdf(d2)
    else:
        delta = norm_cdf(d1) - 1.0
        delta_adj = -moneyness * norm_cdf(-d2)
    root_t = math.sqrt(max(years_to_expiry, 0.0))
    sd = vol * root_t
    gamma = norm_pdf(d1) / (forward_usd * sd) if sd > 0 else 0.0
    return OptionGreeks(
        price_usd=price_usd,
        premium_coin=price_usd / forward_usd,
        delta=delta,
        delta_adj=delta_adj,
        gamma_per_usd=gamma,
        gamma_adj_per_usd=gamma - delta_adj / forward_usd,
        vega_usd=forward_usd * norm_pdf(d1) * root_t,
    )


def coin_settled_delta_coin(contracts_coin: Decimal, delta: float, premium_coin: float) -> Decimal:
    """USD delta, in coins, that a coin-settled option position adds to the account (Deribit's
    DeltaTotal): `contracts x (delta - premium in coin)`. Measured in coin an option is worth C/F, and
    the part of its delta carried by that coin value is already in the account's coin equity."""
    return contracts_coin * Decimal(repr(delta - premium_coin))
