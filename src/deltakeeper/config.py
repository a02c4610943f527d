"""Settings from `DK_` environment variables (DESIGN.md 11). Invalid values raise ConfigError naming
the variable and what it expected."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.margin_headroom import (
    DEFAULT_CRITICAL_HEADROOM_PCT,
    DEFAULT_MIN_HEADROOM_PCT,
    DEFAULT_WARN_HEADROOM_PCT,
)
from deltakeeper.domain.policy import Band, BandUnit
from deltakeeper.domain.policy_params import DEFAULT_BAND, DEFAULT_PARAMS, PolicyName
from deltakeeper.domain.risk import DEFAULT_LIMITS
from deltakeeper.domain.roll import DEFAULT_ROLL_WINDOW_SECS
from deltakeeper.domain.volatility import RISKMETRICS_DAILY_DECAY
from deltakeeper.redact import alert_url_secrets, redact_url, url_credentials
from deltakeeper.settings_fields import AssetSettings, number_in_range

ENV_PREFIX = "DK_"
SECRET_FIELDS = ("api_key", "api_secret", "api_password", "http_token")
DATABASE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgres", "postgresql+asyncpg")
PORTFOLIO_MARGIN_EXCHANGES = ("binance", "binanceusdm", "binancecoinm")
"""The ccxt ids whose `portfolioMargin` option DK_EXCHANGE_PORTFOLIO_MARGIN sets (Binance's portfolio margin
account, read through its `/papi` endpoints)."""
NOT_SETTINGS_PREFIXES = ("DK_TEST_", "DK_CHROMIUM")
"""`DK_` variables that are not the bot's settings: the test suite's and the benchmarks' own
(DK_TEST_POSTGRES_URL, DK_TEST_ARTIFACTS, DK_CHROMIUM), left alone by the check for unknown variables."""


class Mode(str, Enum):
    LIVE = "live"
    PAPER = "paper"
    SHADOW = "shadow"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
        allow_inf_nan=False,
    )

    exchange: str = "sim"
    exchange_portfolio_margin: bool = False
    """The account is a Binance portfolio margin account: ccxt's `portfolioMargin` option (its `/papi`
    endpoints). Only with a Binance exchange id."""
    mode: Mode = Mode.LIVE
    exchange_url: str | None = None
    sandbox: bool = False
    api_key: SecretStr | None = None
    api_secret: SecretStr | None = None
    api_password: SecretStr | None = None
    allow_withdraw_key: bool = False

    data_dir: Path = Path("./data")
    database_url: str | None = None
    journal_timeout_secs: float = Field(default=5, gt=0)
    """A journal write or trading read not done within this long raises: the order path sends nothing."""

    assets: dict[str, AssetSettings] = Field(default_factory=dict)
    external: dict[str, Annotated[Decimal, AfterValidator(number_in_range)]] = Field(default_factory=dict)
    default_band_pct: Decimal = Field(default=DEFAULT_BAND.half_width, gt=0, le=100)
    policy: PolicyName = "cost-aware"
    rebalance_to: Literal["edge", "target"] = "edge"
    timer_secs: float = Field(default=DEFAULT_PARAMS.timer_secs, gt=0)
    risk_aversion: float = Field(default=DEFAULT_PARAMS.risk_aversion_per_usd, gt=0)
    max_deviation_pct: Decimal = Field(default=DEFAULT_PARAMS.max_deviation_pct, gt=0, le=100)
    slippage_bps: Decimal = Field(default=DEFAULT_PARAMS.slippage_bps, ge=0)
    fixed_cost_usd: Decimal = Field(default=DEFAULT_PARAMS.fixed_cost_usd, ge=0)
    skip_horizon_secs: float = Field(default=DEFAULT_PARAMS.skip_horizon_secs, ge=0)
    ewma_daily_decay: float = Field(default=RISKMETRICS_DAILY_DECAY, gt=0, lt=1)
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

    max_order_usd: Decimal = Field(default=DEFAULT_LIMITS.max_order_usd, gt=0)
    max_daily_traded_usd: Decimal = Field(default=DEFAULT_LIMITS.max_daily_traded_usd, gt=0)
    max_position_usd: Decimal = Field(default=DEFAULT_LIMITS.max_position_usd, gt=0)
    stale_secs: float = Field(default=DEFAULT_LIMITS.stale_secs, gt=0)
    price_collar_bps: Decimal = Field(default=DEFAULT_LIMITS.price_collar_bps, gt=0)
    price_jump_pct: Decimal = Field(default=Decimal(10), gt=0, le=1000)
    """The price gate: a quote this far (percent) from its market's last good price, from its own mark or
    index, or from another fresh market of its asset is held until confirmed (domain/price_gate.py)."""
    price_confirm_secs: float = Field(default=5, ge=0, le=300)
    """How long held quotes must stay at a new level (3 quotes at least) before it is accepted."""
    state_clear_secs: float = Field(default=300, ge=0)
    roll_window_secs: float = Field(default=DEFAULT_ROLL_WINDOW_SECS, gt=0)
    """A quarterly hedge is rolled into the next contract once fewer than this many seconds are left to its
    expiry; `DK_ASSETS__<ASSET>__HEDGE=quarterly` hedges on the nearest quarterly outside this window."""
    order_timeout_secs: float = Field(default=30, gt=0)
    hard_limit_bands: float = Field(default=3, gt=1)
    """Alert when the delta is farther than this many band half-widths from its target and no hedge is
    under way (halted, reduce-only, denied by a limit): `delta_outside_hard_limit`."""
    funding_alert_bps: Decimal = Field(default=Decimal(10), gt=0)
    """Alert when a hedge's funding rate per funding interval is beyond this, either sign."""
    margin_min_headroom_pct: Decimal = Field(default=DEFAULT_MIN_HEADROOM_PCT, ge=0, lt=100)
    """Pre-trade: an order may not leave the margin headroom of its settlement currency, (equity -
    maintenance margin) / equity, below this percentage: it is made smaller or refused."""
    margin_warn_headroom_pct: Decimal = Field(default=DEFAULT_WARN_HEADROOM_PCT, ge=0, lt=100)
    """Alert `margin_headroom_low` when the account's margin headroom falls below this percentage."""
    margin_critical_headroom_pct: Decimal = Field(default=DEFAULT_CRITICAL_HEADROOM_PCT, ge=0, lt=100)
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
    http_allowed_hosts: str = ""
    """Comma-separated host names (or IPs) the HTTP server also answers in the Host header, beyond the bound
    address and the loopback names: the names it is reached by through a proxy or a DNS name. Ignored
    (any Host) when DK_HTTP_TOKEN is set."""
    http_allow_unauthenticated_control: bool = False
    """Without DK_HTTP_TOKEN, POST /api/halt|resume|cancel-all are refused unless this is true."""
    blind_alert_secs: float = Field(default=60, gt=0)
    """Alert `blind` when the account has been unreadable, a market's quotes missing, or journal writes
    failing for longer than this."""

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    _numbers = field_validator("*")(number_in_range)

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

    @field_validator("exchange_portfolio_margin")
    @classmethod
    def _portfolio_margin_on_binance(cls, value: bool, info: ValidationInfo) -> bool:
        exchange = info.data.get("exchange")
        if value and exchange is not None and exchange not in PORTFOLIO_MARGIN_EXCHANGES:
            raise ValueError(f"false unless DK_EXCHANGE is {', '.join(PORTFOLIO_MARGIN_EXCHANGES)} "
                             f"(Binance's portfolio margin account), not {exchange}")
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

    @field_validator("http_token")
    @classmethod
    def _token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("a token that is not empty (unset DK_HTTP_TOKEN for no authentication)")
        return value

    @field_validator("data_dir")
    @classmethod
    def _data_dir(cls, value: Path) -> Path:
        """A folder, or a path where one can be made: its nearest existing ancestor is a folder."""
        existing = next(path for path in (value.absolute(), *value.absolute().parents) if path.exists())
        if not existing.is_dir() or not os.access(existing, os.W_OK):
            raise ValueError(f"a folder, or a path where one can be made ({existing}: not a writable folder)")
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
        """The SQLAlchemy URL, defaulting to SQLite in the data folder (paper trading's a file of its own)."""
        if self.database_url:
            return self.database_url
        name = "deltakeeper-paper.db" if self.mode is Mode.PAPER else "deltakeeper.db"
        return f"sqlite+aiosqlite:///{self.data_dir / name}"

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


def _unknown_variables(environ: Mapping[str, str]) -> None:
    """Refuse a `DK_` variable that is no setting (a typo would silently leave its setting at the
    default), naming the closest known one."""
    known = {f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields}
    known |= {f"{ENV_PREFIX}{name.upper()}_FILE" for name in SECRET_FIELDS}
    asset_fields = [name.upper() for name in AssetSettings.model_fields]
    for variable in sorted(environ):
        name = variable.upper()
        if not name.startswith(ENV_PREFIX) or name in known or name.startswith(NOT_SETTINGS_PREFIXES):
            continue
        head, _, rest = name.partition("__")
        asset, _, field = rest.partition("__")
        if head == "DK_EXTERNAL" and asset and not field:
            continue
        if head == "DK_ASSETS" and asset and (not field or field in asset_fields):
            continue
        candidates = [*known, *(f"DK_ASSETS__{asset or '<ASSET>'}__{f}" for f in asset_fields)]
        candidates.append(f"DK_EXTERNAL__{asset or '<ASSET>'}")
        closest = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        hint = f"; did you mean {closest[0]}?" if closest else " (see the README's settings table)"
        raise ConfigError(variable, f"a known setting{hint}")


def _message(pydantic_message: str) -> str:
    return pydantic_message.removeprefix("Value error, ").removeprefix("Input should be ")


def load_settings() -> Settings:
    """Read and validate every setting from the environment. Raises ConfigError naming the first bad
    variable."""
    environ = dict(os.environ)
    _unknown_variables(environ)
    overrides = _read_secret_files(environ)
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        error = exc.errors()[0]
        variable = _variable(error["loc"])
        if error["type"] == "extra_forbidden":
            raise ConfigError(
                variable, "a known setting: HEDGE, TARGET, BAND_COIN, BAND_USD, BAND_PCT, BETA or NEUTRAL"
            ) from exc
        got = error.get("input")
        if variable.removeprefix(ENV_PREFIX).lower() in SECRET_FIELDS:
            got = None
        elif isinstance(got, str):
            got = redact_url(got)
        raise ConfigError(variable, _message(error["msg"]), got) from exc
    except SettingsError as exc:  # a nested setting given as a whole that is not JSON
        field = re.search(r'field "(\w+)"', str(exc))
        variable = ENV_PREFIX + (field.group(1).upper() if field else "")
        expected = "a JSON object (or its parts as __ variables)"
        raise ConfigError(variable, expected, environ.get(variable)) from exc


def secret_values(settings: Settings) -> list[str]:
    """The values no log line may show: the credentials, the URLs' passwords, what in an alert URL may be
    a credential."""
    from deltakeeper.adapters.alerts import parse_alert_urls

    values = [secret for name in SECRET_FIELDS if (secret := settings.secret(name))]
    for url in (settings.database_url, settings.exchange_url):
        values += url_credentials(url) if url else []
    for url in parse_alert_urls(settings.alert_urls):
        values += alert_url_secrets(url)
    return values


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
            out[var] = redact_url(value.value if isinstance(value, Enum) else str(value))
    out["DK_DATABASE_URL"] = redact_url(settings.database)
    return out
