"""Settings from KABINET_* variables; production refuses development secrets."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.settings import ProductionConfigError, Settings
from kabinet.app import create_app
from tests.conftest import PRODUCTION_SECRET_KEY, PRODUCTION_WEBHOOK_SECRET

# What the production check wants besides the secrets (an external provider, https).
_READY = {
    "env": "production",
    "database_url": "sqlite+aiosqlite:///:memory:",
    "payment_provider": "external",
    "payment_provider_url": "https://pay.example/checkout?payment={payment_id}",
    "public_url": "https://my.kabinet.example",
}


def test_defaults_are_the_spec_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KABINET_DATABASE_URL", "KABINET_ENV"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "sqlite+aiosqlite:///./kabinet.db"
    assert settings.public_url == "http://127.0.0.1:8000"
    assert (settings.max_query_depth, settings.max_aliases, settings.max_tokens) == (10, 10, 2000)
    assert settings.max_body_bytes == 64 * 1024
    assert settings.top_up_min == Decimal("10.00") and settings.top_up_max == Decimal("50000.00")
    assert settings.promised_max_amount == Decimal("5000.00")
    assert (settings.personal_tv_min_channels, settings.personal_tv_max_channels) == (5, 60)
    assert settings.argon2_memory_kib >= 19456 and settings.argon2_time_cost >= 2


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KABINET_PORT", "9001")
    monkeypatch.setenv("KABINET_TOP_UP_MAX", "70000.00")
    monkeypatch.setenv("KABINET_TRUSTED_PROXIES", '["10.0.0.1"]')
    settings = Settings()
    assert settings.port == 9001
    assert settings.top_up_max == Decimal("70000.00")
    assert settings.trusted_proxies == ["10.0.0.1"]


def test_production_refuses_development_secrets() -> None:
    settings = Settings(env="production", database_url="sqlite+aiosqlite:///:memory:")
    with pytest.raises(ProductionConfigError) as raised:
        create_app(settings)
    assert "KABINET_SECRET_KEY" in str(raised.value)
    assert "KABINET_WEBHOOK_SECRET" in str(raised.value)


def test_production_refuses_weak_hashing_and_demo_passwords() -> None:
    settings = Settings(
        env="production",
        secret_key="k" * 40,
        webhook_secret="w" * 40,
        argon2_memory_kib=1024,
        demo_password="x" * 20,
    )
    with pytest.raises(ProductionConfigError) as raised:
        settings.check_production()
    assert "argon2" in str(raised.value) and "DEMO" in str(raised.value)


def test_production_with_real_secrets_passes_the_check() -> None:
    settings = Settings(
        **_READY, secret_key=PRODUCTION_SECRET_KEY, webhook_secret=PRODUCTION_WEBHOOK_SECRET
    )
    settings.check_production()
    assert settings.is_production
    # 32 hex digits (openssl rand -hex 16) are random enough
    Settings(
        **_READY,
        secret_key="9f86d081884c7d659a2feaa0c55ad015",
        webhook_secret=PRODUCTION_WEBHOOK_SECRET,
    ).check_production()


def test_production_refuses_weak_or_shared_secrets_and_an_http_public_url() -> None:
    """Issue 13, item 10: 32 × "a", one value for both secrets, an http:// public URL."""
    good = {"secret_key": PRODUCTION_SECRET_KEY, "webhook_secret": PRODUCTION_WEBHOOK_SECRET}
    for weak in ("a" * 32, "password" * 4, "abab" * 10, "0123" * 9):
        with pytest.raises(ProductionConfigError, match="KABINET_SECRET_KEY must be set"):
            Settings(**_READY, **{**good, "secret_key": weak}).check_production()
        with pytest.raises(ProductionConfigError, match="KABINET_WEBHOOK_SECRET must be set"):
            Settings(**_READY, **{**good, "webhook_secret": weak}).check_production()
    with pytest.raises(ProductionConfigError, match="must differ"):
        Settings(
            **{**_READY, "secret_key": PRODUCTION_SECRET_KEY}, webhook_secret=PRODUCTION_SECRET_KEY
        ).check_production()
    with pytest.raises(ProductionConfigError, match="KABINET_PUBLIC_URL must be an https"):
        Settings(**{**_READY, "public_url": "http://my.kabinet.example"}, **good).check_production()
    with pytest.raises(ProductionConfigError, match="KABINET_METRICS_TOKEN"):
        Settings(**_READY, **good, metrics_token="m" * 40).check_production()
    Settings(**_READY, **good, metrics_token=PRODUCTION_SECRET_KEY[::-1]).check_production()


def test_production_refuses_the_sandbox_payment_provider() -> None:
    settings = Settings(
        env="production",
        secret_key=PRODUCTION_SECRET_KEY,
        webhook_secret=PRODUCTION_WEBHOOK_SECRET,
        public_url="https://my.kabinet.example",
    )
    with pytest.raises(ProductionConfigError, match="KABINET_PAYMENT_PROVIDER"):
        settings.check_production()
    external = settings.model_copy(
        update={
            "payment_provider": "external",
            "payment_provider_url": "http://insecure/{payment_id}",
        }
    )
    with pytest.raises(ProductionConfigError, match="https"):
        external.check_production()


def test_a_bad_public_url_is_refused() -> None:
    with pytest.raises(ValueError, match="KABINET_PUBLIC_URL"):
        Settings(public_url="ftp://x")
