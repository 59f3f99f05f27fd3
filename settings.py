"""Settings: one typed object, read from the environment once, on first use (never at import).

Every field is documented in README.md (Settings). Environment names are the field names in upper case.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# The card holder's step-up for a lock or a reissue must be this fresh (issue: "within the last 10 minutes").
STEP_UP_WINDOW_S = 600
DEVELOPMENT_OTP_HASH_KEY = "development-only-otp-key"
# Where Google publishes the keys that sign its OAuth2 ID tokens (what verify_oauth2_token uses).
GOOGLE_ID_TOKEN_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
MIN_PRODUCTION_SECRET = 16
MIN_PRODUCTION_OTP_KEY = 32


class ProductionRefused(Exception):
    """APP_ENV=production with a setting that is only safe in development: the service does not start.

    Not a ValueError on purpose: pydantic passes it through unwrapped, so the message is exactly the reasons.
    """


class Settings(BaseModel):
    # Errors never echo the input: it holds the secrets.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    app_env: Literal["development", "production"] = "development"
    # Default: an SQLite file in the instance folder (resolved by the app factory).
    database_url: str | None = None
    db_pool_size: int = Field(default=5, ge=1, le=100)
    default_region: str = Field(default="JP", min_length=2, max_length=2)

    otp_ttl_seconds: int = Field(default=300, ge=30, le=600)
    otp_max_attempts: int = Field(default=3, ge=1, le=10)
    otp_send_limit: int = Field(default=5, ge=1, le=50)
    otp_send_window_seconds: int = Field(default=600, ge=60)
    # Consecutive wrong codes across challenges before OTP is disabled for the customer (NIST 800-63B: <= 100).
    otp_failure_limit: int = Field(default=10, ge=1, le=100)
    otp_hash_key: str = DEVELOPMENT_OTP_HASH_KEY
    # Test numbers with a fixed code (like Firebase Auth's): "09000001111=123456,…". Off by default.
    otp_test_numbers: dict[str, str] = Field(default_factory=dict)
    # How long a session's verification lets it read cards; a lock or a reissue needs a fresher one.
    verified_session_ttl_seconds: int = Field(default=1800, ge=60)
    trust_upstream_auth_level: bool = False

    notify_backend: Literal["console", "file", "smtp"] = "console"
    notify_file: Path | None = None
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_from: str = "no-reply@example.com"
    smtp_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    # SMS through an e-mail-to-SMS gateway: "<digits>@<smtp_sms_domain>". Unset: SMS fails under smtp.
    smtp_sms_domain: str | None = None

    # Who may call POST /webhook (webhook/auth.py). `none` is for development only.
    webhook_auth: Literal["google-id-token", "basic", "header", "none"] = "none"
    # google-id-token: the `aud` the token must carry (the service URL); comma-separated for several URLs.
    webhook_audience: list[str] = Field(default_factory=list)
    # google-id-token: the service accounts allowed to call (the Dialogflow service agent), comma-separated.
    webhook_allowed_service_accounts: list[str] = Field(default_factory=list)
    webhook_id_token_certs_url: str = GOOGLE_ID_TOKEN_CERTS_URL
    webhook_basic_user: str | None = None
    webhook_basic_password: SecretStr | None = None
    webhook_header_name: str = Field(default="X-Webhook-Token", pattern=r"^[A-Za-z0-9-]{1,64}$")
    webhook_header_value: SecretStr | None = None
    # The key of the session reference written in log lines instead of the CX session id (webhook/logs.py).
    # Unset: derived from OTP_HASH_KEY, so a production deployment already has a secret one.
    log_session_key: SecretStr | None = None
    # Cloud Logging: with the project id, log lines carry the full trace resource name and group under the request.
    google_cloud_project: str | None = None

    @field_validator("otp_test_numbers", mode="before")
    @classmethod
    def _parse_test_numbers(cls, value: object) -> object:
        if isinstance(value, str):
            pairs = [p.strip() for p in value.split(",") if p.strip()]
            out = {}
            for pair in pairs:
                number, sep, code = pair.partition("=")
                if not sep:
                    raise ValueError(f"OTP_TEST_NUMBERS entry without '=': expected NUMBER=CODE")
                out[number.strip()] = code.strip()
            return out
        return value

    @field_validator("otp_test_numbers")
    @classmethod
    def _codes_are_six_digits(cls, value: dict[str, str]) -> dict[str, str]:
        for code in value.values():
            if not (len(code) == 6 and code.isdigit()):
                raise ValueError("OTP_TEST_NUMBERS codes must be 6 digits")
        return value

    @field_validator("webhook_audience", "webhook_allowed_service_accounts", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("webhook_allowed_service_accounts")
    @classmethod
    def _emails_lower(cls, value: list[str]) -> list[str]:
        return [v.lower() for v in value]

    @model_validator(mode="after")
    def _auth_is_complete(self) -> Settings:
        if self.webhook_auth == "google-id-token":
            if not self.webhook_audience:
                raise ValueError("WEBHOOK_AUTH=google-id-token needs WEBHOOK_AUDIENCE (the service URL)")
            # Anyone with a Google account can mint an ID token for any audience: the allow-list is the check.
            if not self.webhook_allowed_service_accounts:
                raise ValueError("WEBHOOK_AUTH=google-id-token needs WEBHOOK_ALLOWED_SERVICE_ACCOUNTS")
        elif self.webhook_auth == "basic":
            if not self.webhook_basic_user or not self.webhook_basic_password:
                raise ValueError("WEBHOOK_AUTH=basic needs WEBHOOK_BASIC_USER and WEBHOOK_BASIC_PASSWORD")
            if ":" in self.webhook_basic_user:
                raise ValueError("WEBHOOK_BASIC_USER must not contain ':'")
        elif self.webhook_auth == "header" and not self.webhook_header_value:
            raise ValueError("WEBHOOK_AUTH=header needs WEBHOOK_HEADER_VALUE")
        return self

    @model_validator(mode="after")
    def _safe_for_production(self) -> Settings:
        if self.app_env != "production":
            return self
        problems = self.production_problems()
        if problems:
            raise ProductionRefused("APP_ENV=production refuses to start: " + "; ".join(problems))
        return self

    def production_problems(self) -> list[str]:
        """What makes these settings unfit for production, one sentence per setting (empty: fit)."""
        problems = []
        if self.webhook_auth == "none":
            problems.append("WEBHOOK_AUTH=none lets anyone call the webhook (use google-id-token, basic or header)")
        if self.webhook_auth == "basic" and len(self.webhook_basic_password.get_secret_value()) < MIN_PRODUCTION_SECRET:
            problems.append(f"WEBHOOK_BASIC_PASSWORD is shorter than {MIN_PRODUCTION_SECRET} characters")
        if self.webhook_auth == "header" and len(self.webhook_header_value.get_secret_value()) < MIN_PRODUCTION_SECRET:
            problems.append(f"WEBHOOK_HEADER_VALUE is shorter than {MIN_PRODUCTION_SECRET} characters")
        if self.webhook_auth == "google-id-token" and not self.webhook_id_token_certs_url.startswith("https://"):
            problems.append("WEBHOOK_ID_TOKEN_CERTS_URL must be an https:// URL")
        if self.otp_test_numbers:
            problems.append("OTP_TEST_NUMBERS is set (fixed codes are for development and tests only)")
        if self.database_url is None:
            problems.append("DATABASE_URL is not set (an explicit database is required, not the instance SQLite file)")
        elif self.database_url.startswith("sqlite"):
            problems.append("DATABASE_URL is SQLite (a container's disk is not kept; use PostgreSQL)")
        if self.otp_hash_key == DEVELOPMENT_OTP_HASH_KEY:
            problems.append("OTP_HASH_KEY is the development key (set a random secret)")
        elif len(self.otp_hash_key) < MIN_PRODUCTION_OTP_KEY:
            problems.append(f"OTP_HASH_KEY is shorter than {MIN_PRODUCTION_OTP_KEY} characters")
        if self.notify_backend in ("console", "file"):
            problems.append(f"NOTIFY_BACKEND={self.notify_backend} writes codes locally instead of sending them (use smtp)")
        return problems

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Settings from the environment (names in upper case), then `overrides`."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.model_fields:
            raw = env.get(name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update(overrides)
        return cls.model_validate(values)
