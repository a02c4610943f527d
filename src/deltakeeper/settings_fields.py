"""The validation every numeric setting passes, and the per-asset settings (`DK_ASSETS__<ASSET>__*`):
the parts of `config.Settings` that stand on their own."""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from deltakeeper.domain.policy import Band, BandUnit

MAX_NUMBER = 1e12
"""No numeric setting is larger than this in size: a bigger one is a typo, and overflows the arithmetic."""
MAX_SECS = 366 * 24 * 3600
"""No duration setting (`*_SECS`) is longer than a year."""
NON_NEGATIVE_UNITS = ("_secs", "_usd", "_bps", "_pct")
"""Settings whose name ends with one of these units are never negative."""


def number_in_range(value: Any, info: ValidationInfo) -> Any:
    """Every numeric setting, whoever adds it: finite, at most MAX_NUMBER in size, not negative when its
    unit is a duration, an amount of USD, basis points or a percentage, and at most a year in seconds."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return value
    number = float(value)
    if not math.isfinite(number) or abs(number) > MAX_NUMBER:
        raise ValueError(f"a finite number at most {MAX_NUMBER:g} in size")
    name = info.field_name or ""
    if name.endswith(NON_NEGATIVE_UNITS) and number < 0:
        raise ValueError("a number of 0 or more")
    if name.endswith("_secs") and number > MAX_SECS:
        raise ValueError(f"at most {MAX_SECS} seconds (a year)")
    return value


class AssetSettings(BaseModel):
    """`DK_ASSETS__<ASSET>__<FIELD>`: how one asset is hedged."""

    model_config = {"extra": "forbid", "allow_inf_nan": False}

    hedge: str | None = None
    """The hedge market's symbol, or `quarterly`: the nearest quarterly outside the roll window, rolled into
    the next one before expiry (`DK_ROLL_WINDOW_SECS`), or `carry`: the perpetual or that quarterly, chosen by
    carry whenever the hedge is opened. Unset: the asset's USD-margined perpetual."""
    target: Decimal = Decimal(0)
    band_coin: Decimal | None = Field(default=None, gt=0)
    band_usd: Decimal | None = Field(default=None, gt=0)
    band_pct: Decimal | None = Field(default=None, gt=0, le=100)
    beta: str | None = None
    """Proxy hedge ratio (a hedge on another asset's contract): a positive number, or `ewma` for the EWMA
    minimum-variance estimate. Unset: 1."""
    neutral: Literal["usd", "coin"] = "usd"
    """What the target keeps flat: `usd`, the account's USD value (coin collateral is exposure, REFERENCE
    1.2), or `coin`, its value in the coin (the coin equity the account holds in it is not exposure:
    `domain.margin.coin_neutral_delta`)."""

    @field_validator("beta", mode="before")
    @classmethod
    def _beta(cls, value: Any) -> str | None:
        if value is None:
            return None
        text = str(value).strip().lower()
        if text == "ewma":
            return text
        try:
            number = Decimal(text)
        except InvalidOperation:
            number = Decimal(0)
        if not number.is_finite() or number <= 0 or number > MAX_NUMBER:
            raise ValueError("a positive number or `ewma`")
        return text

    _numbers = field_validator("*")(number_in_range)

    @model_validator(mode="after")
    def _one_band(self) -> AssetSettings:
        given = [name for name in ("band_coin", "band_usd", "band_pct") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"one of BAND_COIN, BAND_USD, BAND_PCT, not {len(given)}")
        return self

    def band(self, default: Band) -> Band:
        if self.band_coin is not None:
            return Band(BandUnit.COIN, self.band_coin)
        if self.band_usd is not None:
            return Band(BandUnit.USD, self.band_usd)
        if self.band_pct is not None:
            return Band(BandUnit.PCT, self.band_pct)
        return default

