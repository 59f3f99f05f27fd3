"""Settings: one typed object, read from the environment once, on first use (never at import).

Every field is documented in README.md (Settings). Environment names are the field names in upper case.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The card holder's step-up for a lock or a reissue must be this fresh (issue: "within the last 10 minutes").
STEP_UP_WINDOW_S = 600


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

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
    otp_hash_key: str = "development-only-otp-key"
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
