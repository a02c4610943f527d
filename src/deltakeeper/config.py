"""Settings from `DK_` environment variables (DESIGN.md 11). Invalid values raise ConfigError naming
the variable and what it expected."""

from __future__ import annotations

import os
import re
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.policy import Band, BandUnit

ENV_PREFIX = "DK_"
SECRET_FIELDS = ("api_key", "api_secret", "api_password", "http_token")
DATABASE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg")


class Mode(str, Enum):
    LIVE = "live"
    PAPER = "paper"
    SHADOW = "shadow"


class AssetSettings(BaseModel):
    """`DK_ASSETS__<ASSET>__<FIELD>`: how one asset is hedged."""

    model_config = {"extra": "forbid"}

    hedge: str | None = None
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
        if not number.is_finite() or number <= 0:
            raise ValueError("a positive number or `ewma`")
        return text

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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", validate_default=True
    )

    exchange: str = "sim"
    mode: Mode = Mode.LIVE
    exchange_url: str | None = None
    sandbox: bool = False
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    api_password: SecretStr | None = None
    allow_withdraw_key: bool = False

    data_dir: Path = Path("./data")
    database_url: str | None = None

    assets: dict[str, AssetSettings] = Field(default_factory=dict)
    external: dict[str, Decimal] = Field(default_factory=dict)
    default_band_pct: Decimal = Field(default=Decimal(1), gt=0, le=100)
    policy: Literal["band", "timer", "cost-aware"] = "band"
    rebalance_to: Literal["edge", "target"] = "target"
    timer_secs: float = Field(default=3600, gt=0)
    risk_aversion: float = Field(default=1e-4, gt=0)
    max_deviation_pct: Decimal = Field(default=Decimal(10), gt=0, le=100)
    slippage_bps: Decimal = Field(default=Decimal(0), ge=0)
    fixed_cost_usd: Decimal = Field(default=Decimal(0), ge=0)
    skip_horizon_secs: float = Field(default=0, ge=0)
    ewma_daily_decay: float = Field(default=0.94, gt=0, lt=1)
    backtest_spread_bps: Decimal = Field(default=Decimal(1), ge=0)
    recompute_secs: float = Field(default=10, gt=0)
    reconcile_secs: float = Field(default=300, gt=0)
    execution: Literal["market", "post-only"] = "market"
    post_only_timeout_secs: float = Field(default=10, gt=0)
    """How long a post-only order rests before the rest goes as a market order."""
    slice_max_usd: Decimal = Field(default=Decimal(0), ge=0)
    """Split a hedge into orders of at most this notional; 0: no slicing by size."""
    slice_max_slippage_bps: Decimal = Field(default=Decimal(0), ge=0)
    """Split a hedge so that no order walks the book further than this from the touch; 0: off."""

    max_order_usd: Decimal = Field(default=Decimal(250_000), gt=0)
    max_daily_traded_usd: Decimal = Field(default=Decimal(5_000_000), gt=0)
    max_position_usd: Decimal = Field(default=Decimal(2_000_000), gt=0)
    stale_secs: float = Field(default=15, gt=0)
    price_collar_bps: Decimal = Field(default=Decimal(100), gt=0)
    price_jump_pct: Decimal = Field(default=Decimal(10), gt=0, le=1000)
    """The price gate: a quote this far (percent) from its market's last good price, from its own mark or
    index, or from another fresh market of its asset is held until confirmed (domain/price_gate.py)."""
    price_confirm_secs: float = Field(default=5, ge=0, le=300)
    """How long held quotes must stay at a new level (3 quotes at least) before it is accepted."""
    state_clear_secs: float = Field(default=300, ge=0)
    order_timeout_secs: float = Field(default=30, gt=0)
    hard_limit_bands: float = Field(default=3, gt=1)
    """Alert when the delta is farther than this many band half-widths from its target and no hedge is
    under way (halted, reduce-only, denied by a limit): `delta_outside_hard_limit`."""
    funding_alert_bps: Decimal = Field(default=Decimal(10), gt=0)
    """Alert when a hedge's funding rate per funding interval is beyond this, either sign."""
    margin_min_headroom_pct: Decimal = Field(default=Decimal(20), ge=0, lt=100)
    """Pre-trade: an order may not leave the margin headroom of its settlement currency, (equity -
    maintenance margin) / equity, below this percentage: it is made smaller or refused."""
    margin_warn_headroom_pct: Decimal = Field(default=Decimal(35), ge=0, lt=100)
    """Alert `margin_headroom_low` when the account's margin headroom falls below this percentage."""
    margin_critical_headroom_pct: Decimal = Field(default=Decimal(15), ge=0, lt=100)
    """REDUCE_ONLY (breach `margin_low`) while the account's margin headroom is below this percentage."""

    sim_speed: float = Field(default=600, gt=0)
    sim_seed: int = 1
    sim_scenario: Literal["market-maker", "static", "rally"] = "market-maker"
    sim_tick_secs: float = Field(default=30, gt=0)

    alert_urls: str | None = None
    alert_level: Literal["debug", "info", "warning", "error", "critical"] = "warning"
    alert_cooldown_secs: float = Field(default=600, ge=0)
    daily_summary_at: str = "00:00"

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    http_token: SecretStr | None = None

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("exchange")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        value = value.strip().lower()
        if value == "sim":
            return value
        import ccxt  # only when a real exchange is named: importing ccxt takes a moment

        if value not in ccxt.exchanges:
            raise ValueError("`sim` or a ccxt exchange id such as bybit, okx, binance")
        return value

    @field_validator("exchange_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("a base URL http(s)://host:port")
        return value.rstrip("/") if value else value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        scheme = value.split("://", 1)[0] if "://" in value else ""
        if scheme not in DATABASE_SCHEMES:
            raise ValueError("a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("assets", "external", mode="before")
    @classmethod
    def _upper_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).upper(): v for k, v in value.items()}
        return value

    @field_validator("daily_summary_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        match = re.fullmatch(r"([01]\d|2[0-3]):([0-5]\d)", value)
        if not match:
            raise ValueError("a time HH:MM (UTC)")
        return value

    @property
    def database(self) -> str:
        """The SQLAlchemy URL, defaulting to SQLite in the data folder."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'deltakeeper.db'}"

    @property
    def default_band(self) -> Band:
        return Band(BandUnit.PCT, self.default_band_pct)

    def secret(self, name: str) -> str | None:
        value = getattr(self, name)
        return value.get_secret_value() if value is not None else None


def _variable(loc: tuple[int | str, ...]) -> str:
    return ENV_PREFIX + "__".join(str(part).upper() for part in loc)


def _read_secret_files(environ: dict[str, str]) -> dict[str, str]:
    """`DK_API_KEY_FILE=/run/secrets/key` sets DK_API_KEY from the file's content."""
    values: dict[str, str] = {}
    for name in SECRET_FIELDS:
        var = f"{ENV_PREFIX}{name.upper()}_FILE"
        path = environ.get(var)
        if not path:
            continue
        try:
            values[name] = Path(path).read_text().strip()
        except OSError as exc:
            raise ConfigError(var, "a readable file holding the secret", path) from exc
    return values


def load_settings() -> Settings:
    """Read and validate every setting from the environment. Raises ConfigError naming the first bad
    variable."""
    overrides = _read_secret_files(dict(os.environ))
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = _variable(error["loc"])
        if error["type"] == "extra_forbidden":
            raise ConfigError(
                variable, "a known setting: HEDGE, TARGET, BAND_COIN, BAND_USD, BAND_PCT, BETA or NEUTRAL"
            ) from exc
        message = error["msg"].removeprefix("Value error, ")
        raise ConfigError(variable, message, error.get("input")) from exc


def effective_settings(settings: Settings) -> dict[str, Any]:
    """Every setting keyed by its variable name, secrets redacted, values as JSON-able strings."""
    out: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        var = f"{ENV_PREFIX}{name.upper()}"
        if name == "assets":
            for asset, spec in value.items():
                for field, field_value in spec.model_dump().items():
                    if field_value is not None:
                        out[f"{var}__{asset}__{field.upper()}"] = str(field_value)
            continue
        if name == "external":
            for asset, amount in value.items():
                out[f"{var}__{asset}"] = str(amount)
            continue
        if name in SECRET_FIELDS or name == "alert_urls":
            out[var] = "**********" if value is not None else None
        elif value is None or isinstance(value, bool | int | float):
            out[var] = value
        else:
            out[var] = value.value if isinstance(value, Enum) else str(value)
    out["DK_DATABASE_URL"] = redact_url(settings.database)
    return out


def redact_url(url: str) -> str:
    """Hide a password in a database URL."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1****@", url)
