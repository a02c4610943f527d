import os
from decimal import Decimal as D
from pathlib import Path

import pytest

from deltakeeper.config import Mode, effective_settings, load_settings, redact_url
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
    assert settings.rebalance_to == "target"
    assert settings.policy == "band"
    assert settings.recompute_secs == 10
    assert settings.max_order_usd == D(250_000)
    assert settings.http_host == "127.0.0.1"
    assert settings.http_port == 8080
    assert settings.daily_summary_at == "00:00"
    assert settings.database == f"sqlite+aiosqlite:///{Path('./data') / 'deltakeeper.db'}"


def test_load_settings_reads_flat_scalars(monkeypatch):
    monkeypatch.setenv("DK_MODE", "paper")
    monkeypatch.setenv("DK_MAX_ORDER_USD", "12345.5")
    monkeypatch.setenv("DK_REBALANCE_TO", "edge")
    monkeypatch.setenv("DK_SANDBOX", "true")
    monkeypatch.setenv("DK_DATA_DIR", "/tmp/dk-data")
    settings = load_settings()
    assert settings.mode is Mode.PAPER
    assert settings.max_order_usd == D("12345.5")
    assert settings.rebalance_to == "edge"
    assert settings.sandbox is True
    assert settings.database == "sqlite+aiosqlite:////tmp/dk-data/deltakeeper.db"


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
