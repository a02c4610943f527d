import os
import re
from decimal import Decimal
from decimal import Decimal as D
from pathlib import Path

import pytest

from deltakeeper.config import (
    AssetSettings,
    Mode,
    Settings,
    effective_settings,
    load_settings,
    redact_url,
    secret_values,
)
from deltakeeper.domain.errors import ConfigError
from deltakeeper.domain.policy import Band, BandUnit


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in list(os.environ):
        if name.upper().startswith("DK_"):
            monkeypatch.delenv(name)


def config_error(monkeypatch, **env: str) -> ConfigError:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    return info.value


def test_load_settings_defaults():
    settings = load_settings()
    assert settings.exchange == "sim"
    assert settings.mode is Mode.LIVE
    assert settings.sandbox is False
    assert settings.api_key is None
    assert settings.assets == {}
    assert settings.external == {}
    assert settings.default_band == Band(BandUnit.PCT, D(1))
    assert settings.rebalance_to == "edge"
    assert settings.policy == "cost-aware"
    assert settings.recompute_secs == 10
    assert settings.max_order_usd == D(250_000)
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 8080
    assert settings.daily_summary_at == "00:00"
    assert settings.database == f"sqlite+aiosqlite:///{Path('./data') / 'deltakeeper.db'}"


def test_load_settings_reads_flat_scalars(monkeypatch):
    monkeypatch.setenv("DK_MODE", "paper")
    monkeypatch.setenv("DK_MAX_ORDER_USD", "12345.5")
    monkeypatch.setenv("DK_REBALANCE_TO", "target")
    monkeypatch.setenv("DK_SANDBOX", "true")
    monkeypatch.setenv("DK_DATA_DIR", "/tmp/dk-data")
    settings = load_settings()
    assert settings.mode is Mode.PAPER
    assert settings.max_order_usd == D("12345.5")
    assert settings.rebalance_to == "target"
    assert settings.sandbox is True
    assert settings.database == "sqlite+aiosqlite:////tmp/dk-data/deltakeeper-paper.db"  # its own journal


def test_load_settings_reads_nested_asset_settings(monkeypatch):
    monkeypatch.setenv("DK_ASSETS__SOL__HEDGE", "SOL/USDT:USDT")
    monkeypatch.setenv("DK_ASSETS__SOL__BAND_USD", "500")
    monkeypatch.setenv("DK_ASSETS__SOL__TARGET", "-2.5")
    settings = load_settings()
    sol = settings.assets["SOL"]
    assert sol.hedge == "SOL/USDT:USDT"
    assert sol.target == D("-2.5")
    assert sol.band(settings.default_band) == Band(BandUnit.USD, D(500))


def test_load_settings_asset_names_are_case_insensitive(monkeypatch):
    monkeypatch.setenv("DK_ASSETS__sol__BAND_COIN", "1.5")
    monkeypatch.setenv("DK_EXTERNAL__btc", "0.75")
    settings = load_settings()
    assert settings.assets["SOL"].band(settings.default_band) == Band(BandUnit.COIN, D("1.5"))
    assert settings.external == {"BTC": D("0.75")}


def test_load_settings_accepts_json_for_a_nested_field(monkeypatch):
    monkeypatch.setenv("DK_ASSETS", '{"eth": {"hedge": "ETH/USDC:USDC", "band_pct": "1.5"}}')
    monkeypatch.setenv("DK_EXTERNAL", '{"sol": "12"}')
    settings = load_settings()
    assert settings.assets["ETH"].hedge == "ETH/USDC:USDC"
    assert settings.assets["ETH"].band_pct == D("1.5")
    assert settings.external == {"SOL": D(12)}


def test_asset_without_a_band_uses_the_default_band(monkeypatch):
    monkeypatch.setenv("DK_ASSETS__ETH__HEDGE", "ETH/USDT:USDT")
    monkeypatch.setenv("DK_DEFAULT_BAND_PCT", "3")
    settings = load_settings()
    assert settings.assets["ETH"].band(settings.default_band) == Band(BandUnit.PCT, D(3))


def test_two_bands_for_one_asset_name_the_asset(monkeypatch):
    error = config_error(monkeypatch, DK_ASSETS__SOL__BAND_COIN="1", DK_ASSETS__SOL__BAND_PCT="2")
    assert error.variable == "DK_ASSETS__SOL"
    assert "DK_ASSETS__SOL" in str(error)
    assert "one of" in str(error)


def test_unknown_asset_field_names_the_variable(monkeypatch):
    error = config_error(monkeypatch, DK_ASSETS__SOL__BAND="1")
    assert error.variable == "DK_ASSETS__SOL__BAND"


def test_bad_asset_band_names_the_nested_variable(monkeypatch):
    error = config_error(monkeypatch, DK_ASSETS__SOL__BAND_COIN="-1")
    assert error.variable == "DK_ASSETS__SOL__BAND_COIN"


def test_unknown_exchange_names_dk_exchange(monkeypatch):
    error = config_error(monkeypatch, DK_EXCHANGE="notanexchange")
    assert error.variable == "DK_EXCHANGE"
    assert str(error).startswith("DK_EXCHANGE:")
    assert "notanexchange" in str(error)


def test_known_ccxt_exchange_is_accepted_in_any_case(monkeypatch):
    monkeypatch.setenv("DK_EXCHANGE", " Bybit ")
    assert load_settings().exchange == "bybit"


def test_unsupported_database_url_names_dk_database_url(monkeypatch):
    error = config_error(monkeypatch, DK_DATABASE_URL="mysql://x")
    assert error.variable == "DK_DATABASE_URL"
    assert "DK_DATABASE_URL" in str(error)


def test_bad_number_names_the_variable(monkeypatch):
    error = config_error(monkeypatch, DK_MAX_ORDER_USD="abc")
    assert error.variable == "DK_MAX_ORDER_USD"
    assert error.got == "abc"
    assert str(error).startswith("DK_MAX_ORDER_USD:")


def test_non_positive_limit_names_the_variable(monkeypatch):
    assert config_error(monkeypatch, DK_MAX_POSITION_USD="0").variable == "DK_MAX_POSITION_USD"


def test_bad_summary_time_names_the_variable(monkeypatch):
    assert config_error(monkeypatch, DK_DAILY_SUMMARY_AT="25:00").variable == "DK_DAILY_SUMMARY_AT"


def test_api_key_is_read_from_a_file(monkeypatch, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("file-key-123\n")
    monkeypatch.setenv("DK_API_KEY", "env-key")
    monkeypatch.setenv("DK_API_KEY_FILE", str(key_file))
    monkeypatch.setenv("DK_API_SECRET", "env-secret")
    settings = load_settings()
    assert settings.secret("api_key") == "file-key-123"
    assert settings.secret("api_secret") == "env-secret"
    assert settings.secret("api_password") is None


def test_unreadable_secret_file_names_the_file_variable(monkeypatch, tmp_path):
    error = config_error(monkeypatch, DK_API_SECRET_FILE=str(tmp_path / "missing"))
    assert error.variable == "DK_API_SECRET_FILE"


def test_effective_settings_redacts_secrets(monkeypatch):
    monkeypatch.setenv("DK_API_KEY", "key-abc")
    monkeypatch.setenv("DK_API_SECRET", "secret-def")
    monkeypatch.setenv("DK_HTTP_TOKEN", "token-ghi")
    effective = effective_settings(load_settings())
    shown = repr(effective)
    for secret in ("key-abc", "secret-def", "token-ghi"):
        assert secret not in shown
    assert effective["DK_API_KEY"] == "**********"
    assert effective["DK_HTTP_TOKEN"] == "**********"
    assert effective["DK_API_PASSWORD"] is None


def test_effective_settings_redacts_the_database_password(monkeypatch):
    monkeypatch.setenv("DK_DATABASE_URL", "postgresql://bot:hunter2@db:5432/dk")
    effective = effective_settings(load_settings())
    assert effective["DK_DATABASE_URL"] == "postgresql://bot:****@db:5432/dk"
    assert "hunter2" not in repr(effective)


def test_effective_settings_lists_nested_and_scalar_values_by_variable(monkeypatch):
    monkeypatch.setenv("DK_ASSETS__SOL__BAND_COIN", "2")
    monkeypatch.setenv("DK_EXTERNAL__BTC", "0.5")
    effective = effective_settings(load_settings())
    assert effective["DK_ASSETS__SOL__BAND_COIN"] == "2"
    assert effective["DK_ASSETS__SOL__TARGET"] == "0"
    assert effective["DK_EXTERNAL__BTC"] == "0.5"
    assert effective["DK_MODE"] == "live"
    assert effective["DK_HTTP_PORT"] == 8080
    assert effective["DK_DATABASE_URL"].startswith("sqlite+aiosqlite:///")


def test_redact_url_leaves_a_url_without_password_alone():
    assert redact_url("postgresql://bot@db/dk") == "postgresql://bot@db/dk"
    assert redact_url("sqlite:///data/dk.db") == "sqlite:///data/dk.db"


# -- every numeric setting: finite and in range (issue 11, item 15) ---------------------------------------

def _numeric_variables() -> list[str]:
    """Every numeric setting's variable, from the settings model (settings added later are covered too)."""
    variables = []
    for name, field in Settings.model_fields.items():
        if field.annotation in (int, float, Decimal, Decimal | None, float | None):
            variables.append(f"DK_{name.upper()}")
    for name, field in AssetSettings.model_fields.items():
        if field.annotation in (Decimal, Decimal | None):
            variables.append(f"DK_ASSETS__SOL__{name.upper()}")
    return [*variables, "DK_EXTERNAL__SOL"]


def test_the_numeric_settings_are_found():
    expected = {"DK_STALE_SECS", "DK_TIMER_SECS", "DK_MAX_ORDER_USD", "DK_HTTP_PORT", "DK_EXTERNAL__SOL"}
    assert expected <= set(_numeric_variables())


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e400", "-1e400", "Infinity"])
def test_every_numeric_setting_refuses_a_value_that_is_not_a_finite_number(monkeypatch, value):
    for variable in _numeric_variables():
        error = config_error(monkeypatch, **{variable: value})
        assert error.variable == variable, (variable, value, str(error))
        assert str(error).startswith(f"{variable}: expected ")
        monkeypatch.delenv(variable)


@pytest.mark.parametrize("value", ["1e13", "-1e13"])
def test_every_numeric_setting_refuses_a_number_beyond_1e12(monkeypatch, value):
    for variable in _numeric_variables():
        error = config_error(monkeypatch, **{variable: value})
        assert error.variable == variable, (variable, value, str(error))
        monkeypatch.delenv(variable)


def test_durations_amounts_bps_and_percentages_are_never_negative(monkeypatch):
    units = ("_SECS", "_USD", "_BPS", "_PCT")
    variables = [v for v in _numeric_variables() if v.endswith(units)]
    assert "DK_ALERT_COOLDOWN_SECS" in variables and "DK_SLIPPAGE_BPS" in variables
    for variable in variables:
        error = config_error(monkeypatch, **{variable: "-0.5"})
        assert error.variable == variable, (variable, str(error))
        monkeypatch.delenv(variable)


def test_a_duration_longer_than_a_year_is_refused(monkeypatch):
    for variable in [v for v in _numeric_variables() if v.endswith("_SECS")]:
        error = config_error(monkeypatch, **{variable: str(367 * 24 * 3600)})
        assert error.variable == variable, (variable, str(error))  # a year, or the setting's own bound
        monkeypatch.delenv(variable)


def test_inf_stale_secs_names_the_variable_and_what_it_expected(monkeypatch):
    error = config_error(monkeypatch, DK_STALE_SECS="inf")
    assert str(error) == "DK_STALE_SECS: expected a finite number (got 'inf')"


def test_pydantic_wording_reads_as_what_was_expected(monkeypatch):
    assert str(config_error(monkeypatch, DK_STALE_SECS="-1")) == (
        "DK_STALE_SECS: expected greater than 0 (got '-1')"
    )


def test_an_asset_beta_beyond_1e12_is_refused(monkeypatch):
    assert config_error(monkeypatch, DK_ASSETS__ETH__BETA="1e400").variable == "DK_ASSETS__ETH__BETA"


# -- the HTTP token, nested JSON, the data folder ----------------------------------------------------------

def test_an_empty_http_token_is_refused(monkeypatch):
    error = config_error(monkeypatch, DK_HTTP_TOKEN="")
    assert error.variable == "DK_HTTP_TOKEN" and "not empty" in str(error)
    monkeypatch.delenv("DK_HTTP_TOKEN")
    assert config_error(monkeypatch, DK_HTTP_TOKEN="  ").variable == "DK_HTTP_TOKEN"


def test_an_empty_http_token_file_is_refused(monkeypatch, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("\n")
    assert config_error(monkeypatch, DK_HTTP_TOKEN_FILE=str(token_file)).variable == "DK_HTTP_TOKEN"


@pytest.mark.parametrize("variable", ["DK_ASSETS", "DK_EXTERNAL"])
def test_a_nested_setting_that_is_not_json_names_the_variable(monkeypatch, variable):
    error = config_error(monkeypatch, **{variable: "SOL"})
    assert error.variable == variable and "JSON" in str(error)


def test_a_data_dir_that_cannot_be_a_folder_is_refused(monkeypatch, tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    error = config_error(monkeypatch, DK_DATA_DIR=str(a_file / "data"))
    assert error.variable == "DK_DATA_DIR"


def test_a_data_dir_still_to_be_made_is_accepted(monkeypatch, tmp_path):
    monkeypatch.setenv("DK_DATA_DIR", str(tmp_path / "new" / "data"))
    assert load_settings().data_dir == tmp_path / "new" / "data"


# -- unknown DK_ variables ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("typo", "closest"),
    [
        ("DK_EXCHNAGE", "DK_EXCHANGE"),
        ("DK_STALE_SEC", "DK_STALE_SECS"),
        ("DK_ASSETS__SOL__BAND_CION", "DK_ASSETS__SOL__BAND_COIN"),
        ("DK_ASSET__ETH__HEDGE", "DK_ASSETS__ETH__HEDGE"),
        ("DK_EXTERNALS__BTC", "DK_EXTERNAL__BTC"),
        ("DK_API_SECRET_FIEL", "DK_API_SECRET_FILE"),
        ("DK_HTTP_TOKNE_FILE", "DK_HTTP_TOKEN_FILE"),
        ("dk_log_levle", "DK_LOG_LEVEL"),
    ],
)
def test_an_unknown_variable_is_refused_naming_the_closest_known_one(monkeypatch, typo, closest):
    error = config_error(monkeypatch, **{typo: "1"})
    assert error.variable == typo
    assert str(error) == f"{typo}: expected a known setting; did you mean {closest}?"


def test_an_unknown_variable_like_no_setting_points_to_the_settings_table(monkeypatch):
    error = config_error(monkeypatch, DK_ZZZZ_QQQQ="1")
    assert error.variable == "DK_ZZZZ_QQQQ" and "settings table" in str(error)


def test_the_test_suites_variables_are_not_settings_and_are_left_alone(monkeypatch):
    for variable in ("DK_TEST_POSTGRES_URL", "DK_TEST_ARTIFACTS", "DK_CHROMIUM"):
        monkeypatch.setenv(variable, "x")
    assert load_settings().exchange == "sim"


def test_every_dk_variable_the_deploy_files_benchmarks_and_ci_set_is_known(monkeypatch):
    repo = Path(__file__).resolve().parents[2]
    files = [repo / "Dockerfile", repo / ".ci" / "run", repo / "tests" / "conftest.py"]
    for folder in ("deploy", "benchmarks", "chaos"):
        files += [path for path in (repo / folder).rglob("*") if path.is_file() and path.suffix != ".pyc"]
    names = set()
    for path in files:
        names |= set(re.findall(r"\b(DK_[A-Z0-9_]*[A-Z0-9])\b", path.read_text()))
    assert {"DK_DATA_DIR", "DK_HTTP_TOKEN", "DK_TEST_POSTGRES_URL"} <= names
    for name in sorted(names):
        monkeypatch.setenv(name, "")
        try:
            load_settings()
        except ConfigError as error:
            assert "known setting" not in str(error), str(error)
        monkeypatch.delenv(name)


# -- secrets in `config` (issue 11, item 13) ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("variable", "url", "shown"),
    [
        ("DK_DATABASE_URL", "postgresql://bot:hunter2@db/dk", "postgresql://bot:****@db/dk"),
        ("DK_DATABASE_URL", "postgresql://:hunter2@db/dk", "postgresql://:****@db/dk"),
        ("DK_DATABASE_URL", "postgresql://db/dk?user=bot&password=hunter2",
         "postgresql://db/dk?user=bot&password=****"),
        ("DK_DATABASE_URL", "postgresql://bot:hun@ter2@db/dk", "postgresql://bot:****@db/dk"),
        ("DK_EXCHANGE_URL", "http://proxy:hunter2@127.0.0.1:9464", "http://proxy:****@127.0.0.1:9464"),
        ("DK_EXCHANGE_URL", "https://10.0.0.1:8443?apikey=hunter2&x=1", "https://10.0.0.1:8443?apikey=****&x=1"),
        ("DK_EXCHANGE_URL", "https://10.0.0.1:8443/?access_token=hunter2",
         "https://10.0.0.1:8443/?access_token=****"),
    ],
)
def test_config_shows_no_password_of_any_url_form(monkeypatch, variable, url, shown):
    monkeypatch.setenv(variable, url)
    effective = effective_settings(load_settings())
    assert effective[variable] == shown
    assert "hunter2" not in repr(effective) and "ter2" not in repr(effective)


def test_a_refused_database_url_is_shown_without_its_password(monkeypatch):
    error = config_error(monkeypatch, DK_DATABASE_URL="mysql://bot:hunter2@db/dk")
    assert "hunter2" not in str(error)


def test_a_refused_secret_is_not_echoed(monkeypatch):
    assert "hunter2" not in str(config_error(monkeypatch, DK_HTTP_TOKEN="", DK_API_KEY="hunter2"))


def test_secret_values_hold_the_credentials_and_the_alert_url_tokens(monkeypatch):
    monkeypatch.setenv("DK_API_KEY", "key-abc")
    monkeypatch.setenv("DK_API_SECRET", "secret-def")
    monkeypatch.setenv("DK_API_PASSWORD", "pass-ghi")
    monkeypatch.setenv("DK_HTTP_TOKEN", "token-jkl")
    monkeypatch.setenv("DK_DATABASE_URL", "postgresql://bot:db-pw-mno@db/dk")
    monkeypatch.setenv("DK_ALERT_URLS", "tgram://123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/42, json://u:pw-pqr@h/x")
    values = secret_values(load_settings())
    for secret in ("key-abc", "secret-def", "pass-ghi", "token-jkl", "db-pw-mno", "pw-pqr",
                   "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "json://u:pw-pqr@h/x"):
        assert secret in values
    assert "bot" not in values and "db" not in values
