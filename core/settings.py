"""Settings from `KABINET_*` environment variables (and an optional `.env`).

Every number of SPEC §3 is a setting here, with the SPEC's value as its default.
"""

from __future__ import annotations

import math
from collections import Counter
from decimal import Decimal
from functools import lru_cache
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET_KEY = "dev-secret-key-change-me"  # noqa: S105 - a known development default
DEV_WEBHOOK_SECRET = "dev-webhook-secret-change-me"  # noqa: S105


# A production secret must look random: its characters' empirical (Shannon) entropy times
# its length, a rough estimate of the bits it holds, at least this ("a" * 32: 0 bits; 32 hex
# digits: about 115, never below ~95; secrets.token_urlsafe(32): about 200), and it must not
# be one shorter piece repeated ("password" * 4).
MIN_SECRET_BITS = 80


class ProductionConfigError(RuntimeError):
    """The service refuses to start in production with development defaults."""


def estimated_bits(value: str) -> float:
    """Length × the empirical entropy per character: low for repeats and short alphabets;
    0 for a value that is one shorter piece repeated."""
    if not value or value in (value + value)[1:-1]:
        return 0.0
    counts = Counter(value).values()
    total = len(value)
    per_char = -sum(n / total * math.log2(n / total) for n in counts)
    return per_char * total


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KABINET_", env_file=".env", extra="ignore", frozen=True
    )

    # -- running it (SPEC §6)
    env: Literal["development", "production"] = "development"
    database_url: str = "sqlite+aiosqlite:///./kabinet.db"
    # A few busy connections serve more than many: see README "Running".
    database_pool_size: int = Field(5, ge=1)
    database_max_overflow: int = Field(0, ge=0)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1)
    public_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEV_SECRET_KEY
    webhook_secret: str = DEV_WEBHOOK_SECRET
    log_level: str = "INFO"
    trusted_proxies: list[str] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    # `/metrics` wants `Authorization: Bearer <this>` when set; production without it: 404.
    metrics_token: str | None = None

    # -- mail
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    mail_from: str = "Kabinet <no-reply@kabinet.local>"
    outbox_poll_seconds: float = Field(2.0, gt=0)
    # Backoff doubles from 30 s to an hourly retry: 128 attempts keep trying for ~5 days,
    # as mail servers do, before a letter is left for an operator.
    outbox_max_attempts: int = Field(128, ge=1)

    # -- SMS (SPEC §8): `log` prints them (development; production keeps them waiting),
    # `http` posts them to a gateway in the style of SMS.ru (`<sms_url>` = its sms/send).
    sms_provider: Literal["log", "http"] = "log"
    sms_url: str | None = None
    sms_api_key: str | None = None
    sms_sender: str | None = None  # the gateway's approved sender name ("from"); None: its default
    sms_timeout_seconds: float = Field(10.0, gt=0)

    # -- reminders (SPEC §8)
    low_balance_days: int = Field(3, ge=0)

    # -- events for the operator's systems (SPEC §9)
    # Hosts a subscription may reach in production although they resolve to a loopback,
    # private or link-local address (an operator's own network); JSON list in the variable.
    webhook_allowed_hosts: list[str] = Field(default_factory=list)
    events_poll_seconds: float = Field(2.0, gt=0)
    # How long a claimed delivery is one deliverer's: after a crash, its claims are sent again
    # by another once this runs out. Longer than a round can take (a few 10 s timeouts).
    events_lease_seconds: int = Field(180, ge=1)
    # `kabinet events prune` deletes delivered/failed deliveries and their events older than this.
    events_keep_days: int = Field(30, ge=1)

    # -- GraphQL limits (SPEC §5)
    max_query_depth: int = Field(10, ge=1)
    max_aliases: int = Field(10, ge=0)
    max_tokens: int = Field(2000, ge=1)
    max_page_size: int = Field(100, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    introspection_in_production: bool = False

    # -- registration, sign-in, sessions, recovery (SPEC §3)
    login_is_contract_number: bool = True
    registration_max_failures: int = 5
    registration_lock_seconds: int = 3600
    registration_max_failures_per_address: int = 20
    password_min_length: int = 15
    password_max_length: int = 128
    argon2_memory_kib: int = Field(19456, ge=8)
    argon2_time_cost: int = Field(2, ge=1)
    argon2_parallelism: int = Field(1, ge=1)
    argon2_max_concurrent: int = Field(2, ge=1)
    argon2_nice: int = Field(10, ge=0, le=19)
    access_token_idle_seconds: int = 30 * 60
    access_token_absolute_seconds: int = 12 * 3600
    refresh_token_seconds: int = 30 * 24 * 3600
    login_max_failures_per_identifier: int = 10
    login_max_failures_per_address: int = 50
    login_window_seconds: int = 15 * 60
    recovery_code_seconds: int = 600
    recovery_code_attempts: int = 5
    recovery_code_failures_per_address_per_hour: int = 20
    recovery_requests_per_identifier_per_hour: int = 5
    recovery_requests_per_address_per_hour: int = 20
    support_requests_per_address_per_hour: int = 5
    operator_name: str = "Кабинет Телеком"

    # -- money (SPEC §3 "Money")
    currency: str = "RUB"
    top_up_min: Decimal = Decimal("10.00")
    top_up_max: Decimal = Decimal("50000.00")
    idempotency_key_hours: int = 24
    # A top-up still PENDING this long after it was created is CANCELED (SPEC §7 "Abandoned
    # top-ups"): `kabinet payments expire`, and a step of `serve`'s background work.
    top_up_expiry_hours: int = Field(24, ge=1)
    # Autopay payments the billing day may make for one contract in a calendar month
    # (SPEC §7 "Autopay"); at most one a day whatever this says.
    autopay_max_per_month: int = Field(5, ge=1, le=31)
    bonus_rub_per_point: Decimal = Decimal("5")
    bonus_points_months: int = 12
    promised_min_contract_age_days: int = 60
    promised_lookahead_days: int = 30
    promised_average_months: int = 3
    promised_max_amount: Decimal = Decimal("5000.00")
    promised_term_days: int = 3
    promised_fee_free_up_to: Decimal = Decimal("100.00")
    promised_fee_small: Decimal = Decimal("10.00")
    promised_fee_small_up_to: Decimal = Decimal("500.00")
    promised_fee_large: Decimal = Decimal("25.00")
    billing_in_serve: bool = False
    billing_hour_utc: int = Field(1, ge=0, le=23)
    billing_parallel: int = Field(2, ge=1, le=32)
    # Who confirms top-ups: the built-in sandbox (development only) or an external provider
    # whose hosted page is `payment_provider_url`, a template with {payment_id} (the Payment's
    # global ID) and {amount} (e.g. "https://pay.example/checkout?payment={payment_id}").
    # Or YooKassa's API v3 (SPEC §7): `yookassa` with the shop's id and secret key.
    payment_provider: Literal["sandbox", "external", "yookassa"] = "sandbox"
    payment_provider_url: str | None = None
    yookassa_shop_id: str | None = None
    yookassa_secret_key: str | None = None
    yookassa_api_url: str = "https://api.yookassa.ru/v3"
    # How long one call to YooKassa may take (connect, send, wait, read) before it counts as
    # "no answer": the payment stays PENDING and a retry resumes it.
    yookassa_timeout_seconds: float = Field(10.0, gt=0)
    # Where a payer may be sent back after paying (`createTopUp(returnUrl)`): origins
    # ("https://my.example"); empty: the origin of `public_url` only.
    return_url_origins: list[str] = Field(default_factory=list)
    # The 54-FZ receipt sent with every provider payment and refund: its item's VAT code
    # (None: from the dated VAT rate, resolvers/receipts.py VAT_RATES: 12 for 22/122, 6 for
    # 20/120), payment mode and payment subject (YooKassa's names).
    receipt_vat_code: int | None = Field(None, ge=1, le=12)
    receipt_payment_mode: str = "advance"
    receipt_payment_subject: str = "service"

    # -- services (SPEC §2, §3 "Services")
    personal_tv_min_channels: int = 5
    personal_tv_max_channels: int = 60
    personal_tv_channel_fee: Decimal = Decimal("15.00")
    multiroom_max_devices: int = 4
    multiroom_device_fee: Decimal = Decimal("50.00")

    # -- voluntary pause and socially significant access (SPEC §8)
    pause_max_days: int = Field(30, ge=1)
    # how far ahead a pause may be asked for: it starts today or within this many days
    pause_start_within_days: int = Field(30, ge=0)
    # a pause starts at least this many days after the last day of the one before
    pause_every_days: int = Field(30, ge=0)
    pause_daily_fee: Decimal = Field(Decimal("3.00"), ge=0)
    social_access_days: int = Field(7, ge=1)

    # -- demo data (never in production)
    demo_password: str | None = None
    demo_admin_password: str | None = None

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @model_validator(mode="after")
    def _check_urls(self) -> Settings:
        if not self.public_url.startswith(("http://", "https://")):
            raise ValueError("KABINET_PUBLIC_URL must start with http:// or https://")
        return self

    def check_production(self) -> None:
        """Refuse development secrets in production (SPEC §5)."""
        if not self.is_production:
            return
        problems = []
        for name, value, default in (
            ("KABINET_SECRET_KEY", self.secret_key, DEV_SECRET_KEY),
            ("KABINET_WEBHOOK_SECRET", self.webhook_secret, DEV_WEBHOOK_SECRET),
        ):
            if value == default or len(value) < 32 or estimated_bits(value) < MIN_SECRET_BITS:
                problems.append(
                    f"{name} must be set to a random value of 32+ characters"
                    f" (about {MIN_SECRET_BITS}+ bits; e.g. python -c"
                    " 'import secrets; print(secrets.token_urlsafe(32))')"
                )
        if self.secret_key == self.webhook_secret:
            problems.append("KABINET_SECRET_KEY and KABINET_WEBHOOK_SECRET must differ")
        if not self.public_url.startswith("https://"):
            problems.append("KABINET_PUBLIC_URL must be an https:// URL in production")
        if self.metrics_token is not None and (
            len(self.metrics_token) < 32 or estimated_bits(self.metrics_token) < MIN_SECRET_BITS
        ):
            problems.append("KABINET_METRICS_TOKEN must be a random value of 32+ characters")
        if self.argon2_memory_kib < 19456 or self.argon2_time_cost < 2:
            problems.append("argon2 parameters are below m=19456 KiB, t=2")
        if self.payment_provider == "sandbox":
            problems.append(
                "KABINET_PAYMENT_PROVIDER must be 'yookassa' or 'external' in production"
                " (the sandbox credits unpaid payments)"
            )
        elif self.payment_provider == "yookassa":
            if not self.yookassa_shop_id or not self.yookassa_secret_key:
                problems.append(
                    "KABINET_YOOKASSA_SHOP_ID and KABINET_YOOKASSA_SECRET_KEY must be set"
                    " for the yookassa payment provider"
                )
            if not self.yookassa_api_url.startswith("https://"):
                problems.append("KABINET_YOOKASSA_API_URL must be an https:// URL in production")
        elif not (self.payment_provider_url or "").startswith("https://"):
            problems.append("KABINET_PAYMENT_PROVIDER_URL must be an https:// URL template")
        if self.sms_provider == "http":
            if not (self.sms_url or "").startswith("https://"):
                problems.append(
                    "KABINET_SMS_URL must be an https:// URL with KABINET_SMS_PROVIDER=http"
                )
            if not self.sms_api_key:
                problems.append("KABINET_SMS_API_KEY must be set with KABINET_SMS_PROVIDER=http")
        if self.demo_password or self.demo_admin_password:
            problems.append("KABINET_DEMO_* passwords are not allowed in production")
        if problems:
            raise ProductionConfigError("refusing to start in production: " + "; ".join(problems))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
