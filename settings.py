"""Settings: one typed object, read from the environment once, on first use (never at import).

Every field is documented in README.md (Settings). Environment names are the field names in upper case.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# The card holder's step-up for a lock or a reissue must be this fresh (issue: "within the last 10 minutes").
STEP_UP_WINDOW_S = 600
DEVELOPMENT_OTP_HASH_KEY = "development-only-otp-key"
# Where Google publishes the keys that sign its OAuth2 ID tokens (what verify_oauth2_token uses).
GOOGLE_ID_TOKEN_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
# Where Google publishes the keys that sign IAP's x-goog-iap-jwt-assertion (ES256, {key id: PEM public key}).
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key"
DEVELOPMENT_CONSOLE_KEY = "development-only-console-key"
MIN_PRODUCTION_SECRET = 16
MIN_PRODUCTION_OTP_KEY = 32


# The development upstream key (fixtures/upstream/): its private half is in the repository, so it proves nothing.
DEVELOPMENT_UPSTREAM_KEYS = Path(__file__).resolve().parent / "fixtures" / "upstream" / "development-keys.json"


def load_upstream_keys(path: Path) -> dict[str, str]:
    """`{key id: PEM public key or certificate}` from a JSON file; ValueError saying what is wrong."""
    try:
        keys = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"UPSTREAM_ASSERTION_KEYS cannot be read as JSON ({type(exc).__name__})") from None
    if not isinstance(keys, dict) or not keys or not all(
            isinstance(k, str) and isinstance(v, str) and "-----BEGIN" in v for k, v in keys.items()):
        raise ValueError("UPSTREAM_ASSERTION_KEYS must be a JSON object {key id: PEM public key or certificate}")
    return keys


def _upstream_key_problems(path: Path) -> list[str]:
    try:
        keys = load_upstream_keys(path)
    except ValueError as exc:
        return [str(exc)]
    try:
        development = set(load_upstream_keys(DEVELOPMENT_UPSTREAM_KEYS).values())
    except ValueError:
        development = set()
    if any(pem in development for pem in keys.values()):
        return ["UPSTREAM_ASSERTION_KEYS holds the development key (its private half is public)"]
    return []


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
    # Abuse limits (README "Abuse limits"), all counted in the store. "Per class": a customer's limits are kept
    # apart for sessions that proved nothing, sessions calling from the registered number (caller ID) and sessions
    # that verified this customer before, so strangers cannot use up the card holder's allowance.
    # Codes per customer and class in a sliding burst window.
    otp_send_limit: int = Field(default=5, ge=1, le=50)
    otp_send_window_seconds: int = Field(default=600, ge=60)
    # Codes per customer and class per day (24 h from the first).
    otp_daily_send_limit: int = Field(default=6, ge=1, le=100)
    # Codes one CX session may ask for, whoever for, per hour.
    otp_session_send_limit: int = Field(default=4, ge=1, le=50)
    # Codes sent service-wide per minute; past it nobody gets one and an ERROR line is logged (the alarm).
    otp_global_send_limit_per_minute: int = Field(default=120, ge=1, le=100_000)
    # Wrong codes per customer and class per day; past it that class gets no code and no check until the day ends.
    # Never disables the customer (NIST SP 800-63B 5.2.2: throttling must not let an attacker lock them out).
    otp_failure_limit: int = Field(default=10, ge=1, le=100)
    # Wrong codes one CX session may make per hour.
    otp_session_failure_limit: int = Field(default=6, ge=1, le=100)
    # Growing delays for sessions that proved nothing (and caller-ID sessions): after this many sends or wrong codes
    # (per customer and class, per session), each next one waits base * 2^k seconds after the last, at most max.
    throttle_free_events: int = Field(default=3, ge=0, le=100)
    throttle_delay_base_seconds: int = Field(default=30, ge=0, le=3600)
    throttle_delay_max_seconds: int = Field(default=3600, ge=0, le=86_400)
    # Phone numbers an unverified session may look up (verify_user, send_otp) per hour; delays after half of them.
    lookup_session_limit: int = Field(default=12, ge=1, le=1000)
    # Text numbers phonenumbers cannot classify (unallocated ranges, like the demo's 090-0000-xxxx)? Unset: yes in
    # development, no in production. Premium-rate, shared-cost, toll-free and landline numbers are never texted.
    sms_allow_unclassified_numbers: bool | None = None
    otp_hash_key: str = DEVELOPMENT_OTP_HASH_KEY
    # Test numbers with a fixed code (like Firebase Auth's): "09000001111=123456,…". Off by default.
    otp_test_numbers: dict[str, str] = Field(default_factory=dict)
    # How long a session's verification lets it read cards; a lock or a reissue needs a fresher one.
    verified_session_ttl_seconds: int = Field(default=1800, ge=60)
    # Development only (production refuses it): trust a session auth_level >= 1, a parameter anyone can set.
    trust_upstream_auth_level: bool = False
    # Upstream authentication that proves itself (webhook/upstream.py): a JSON file {key id: PEM public key or
    # certificate} of the upstream authenticator's signing keys, and the issuer and audience its assertions carry.
    upstream_assertion_keys: Path | None = None
    upstream_assertion_issuer: str | None = None
    upstream_assertion_audience: str | None = None
    upstream_assertion_max_lifetime_seconds: int = Field(default=900, ge=30, le=3600)
    # A lock, reissue or hand-off answer is replayed to the same session only this long, and only while still true.
    idempotency_window_seconds: int = Field(default=300, ge=5, le=3600)
    # Replacement cards ever ordered for one card; more need a human (a lost-in-the-post second one is allowed).
    reissue_limit_per_card: int = Field(default=2, ge=1, le=20)

    # How notices leave: console / file (development), smtp (e-mail, and SMS through an e-mail-to-SMS gateway).
    notify_backend: Literal["console", "file", "smtp"] = "console"
    notify_file: Path | None = None
    # SMS through a provider's HTTPS API instead of NOTIFY_BACKEND (e-mail still goes through NOTIFY_BACKEND).
    sms_provider: Literal["none", "twilio"] = "none"
    twilio_account_sid: str | None = Field(default=None, pattern=r"^AC[0-9a-fA-F]{32}$")
    twilio_auth_token: SecretStr | None = None
    # The sender: a phone number (+E.164), an alphanumeric sender id, or a Messaging Service SID (MG…).
    twilio_from: str | None = None
    twilio_api_base: str = "https://api.twilio.com"
    # Every delivery attempt (connect, TLS, the whole exchange) ends within this, however the gateway behaves.
    notify_deadline_seconds: float = Field(default=10.0, gt=0, le=60)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # SMTPS (TLS from the first byte, port 465) instead of STARTTLS.
    smtp_ssl: bool = False
    smtp_from: str = "no-reply@example.com"
    # SMS through an e-mail-to-SMS gateway: "<digits>@<smtp_sms_domain>". Unset: SMS fails under smtp.
    smtp_sms_domain: str | None = None
    # The relay: how often it looks for due notices when no wake-up came (PostgreSQL wakes it by LISTEN/NOTIFY;
    # SQLite has only this poll), how long a claim holds a row in `sending`, and how many sends run at once.
    outbox_poll_seconds: float = Field(default=0.5, gt=0, le=60)
    outbox_lease_seconds: int = Field(default=60, ge=5, le=3600)
    outbox_relay_threads: int = Field(default=4, ge=1, le=64)
    # How many due rows one claim takes (one write transaction), sent one after the other by the claiming thread;
    # their outcomes are written together too. Fewer write transactions per notice: on SQLite each one takes the
    # database's single write lock, which the webhook needs for every lock.
    outbox_claim_batch: int = Field(default=32, ge=1, le=1000)
    # /healthz/outbox answers 503 when a notice not yet delivered (nor given up) is older than this.
    outbox_backlog_alert_seconds: int = Field(default=60, ge=1)

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
    # Operators' console (console/). Times are shown in this zone.
    local_timezone: str = "Asia/Tokyo"
    # `customers purge --older-than` refuses a shorter retention than this (a slip must not purge yesterday's).
    retention_floor_days: int = Field(default=30, ge=1)
    # Who is signed in: `iap` verifies Google Cloud IAP's signed header; `development` is everyone as
    # CONSOLE_DEV_EMAIL with CONSOLE_DEV_ROLE (refused in production); `off` serves no console (404).
    console_auth: Literal["off", "iap", "development"] = "off"
    # iap: the `aud` IAP puts in its assertion: /projects/NUMBER/global/backendServices/ID (load balancer) or
    # /projects/NUMBER/apps/PROJECT_ID (App Engine).
    console_iap_audience: str | None = None
    console_iap_certs_url: str = IAP_CERTS_URL
    # Roles, comma-separated e-mail addresses (as IAP verified them). Supervisors are operators too.
    console_operators: list[str] = Field(default_factory=list)
    console_supervisors: list[str] = Field(default_factory=list)
    console_dev_email: str = "developer@localhost"
    console_dev_role: Literal["operator", "supervisor"] = "supervisor"
    # Signs the console's session cookie (language, CSRF token).
    console_secret_key: SecretStr = SecretStr(DEVELOPMENT_CONSOLE_KEY)
    # The key of the session reference written in log lines instead of the CX session id (webhook/logs.py).
    # Unset: derived from OTP_HASH_KEY, so a production deployment already has a secret one.
    log_session_key: SecretStr | None = None
    # Cloud Logging: with the project id, log lines carry the full trace resource name and group under the request.
    google_cloud_project: str | None = None
    # The browser simulator at /simulator (simulator/web.py): unset, served in development and not in production.
    simulator_page: bool | None = None

    @property
    def serves_simulator_page(self) -> bool:
        return self.simulator_page if self.simulator_page is not None else self.app_env != "production"

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

    @field_validator("local_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError("LOCAL_TIMEZONE is not an IANA time zone (e.g. Asia/Tokyo)") from None
        return value

    @field_validator("console_operators", "console_supervisors", mode="before")
    @classmethod
    def _email_list(cls, value: object) -> object:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        return [v.lower() for v in value] if isinstance(value, list) else value

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
        if self.console_auth == "iap" and not self.console_iap_audience:
            raise ValueError("CONSOLE_AUTH=iap needs CONSOLE_IAP_AUDIENCE (the backend service's IAP audience)")
        if self.upstream_assertion_keys and not (self.upstream_assertion_issuer and self.upstream_assertion_audience):
            raise ValueError("UPSTREAM_ASSERTION_KEYS needs UPSTREAM_ASSERTION_ISSUER and UPSTREAM_ASSERTION_AUDIENCE")
        return self

    @model_validator(mode="after")
    def _delivery_is_complete(self) -> Settings:
        if self.sms_provider == "twilio":
            missing = [name.upper() for name in ("twilio_account_sid", "twilio_auth_token", "twilio_from")
                       if not getattr(self, name)]
            if missing:
                raise ValueError("SMS_PROVIDER=twilio needs " + ", ".join(missing))
        if self.smtp_starttls and self.smtp_ssl:
            raise ValueError("SMTP_STARTTLS and SMTP_SSL exclude each other (STARTTLS upgrades a plain connection)")
        # A live relay must finish (or abandon) its attempt before its claim lapses, or two relays could both send.
        if self.outbox_lease_seconds < 2 * self.notify_deadline_seconds:
            raise ValueError("OUTBOX_LEASE_SECONDS must be at least twice NOTIFY_DEADLINE_SECONDS")
        return self

    @model_validator(mode="after")
    def _safe_for_production(self) -> Settings:
        if self.app_env != "production":
            return self
        problems = self.production_problems()
        if problems:
            raise ProductionRefused("APP_ENV=production refuses to start: " + "; ".join(problems))
        return self

    @property
    def sms_to_unclassified(self) -> bool:
        """Whether a number of unknown type may be texted (see sms_allow_unclassified_numbers)."""
        if self.sms_allow_unclassified_numbers is None:
            return self.app_env != "production"
        return self.sms_allow_unclassified_numbers

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
        if self.trust_upstream_auth_level:
            problems.append("TRUST_UPSTREAM_AUTH_LEVEL trusts a session parameter any DetectIntent client can set "
                            "(have the upstream sign an assertion: UPSTREAM_ASSERTION_KEYS)")
        if self.upstream_assertion_keys:
            problems.extend(_upstream_key_problems(self.upstream_assertion_keys))
        if self.database_url is None:
            problems.append("DATABASE_URL is not set (an explicit database is required, not the instance SQLite file)")
        elif self.database_url.startswith("sqlite"):
            problems.append("DATABASE_URL is SQLite (a container's disk is not kept; use PostgreSQL)")
        if self.otp_hash_key == DEVELOPMENT_OTP_HASH_KEY:
            problems.append("OTP_HASH_KEY is the development key (set a random secret)")
        elif len(self.otp_hash_key) < MIN_PRODUCTION_OTP_KEY:
            problems.append(f"OTP_HASH_KEY is shorter than {MIN_PRODUCTION_OTP_KEY} characters")
        if self.console_auth == "development":
            problems.append("CONSOLE_AUTH=development signs everyone in as a development identity (use iap)")
        if self.console_auth == "iap" and not self.console_iap_certs_url.startswith("https://"):
            problems.append("CONSOLE_IAP_CERTS_URL must be an https:// URL")
        console_key = self.console_secret_key.get_secret_value()
        if self.console_auth == "off":
            pass
        elif console_key == DEVELOPMENT_CONSOLE_KEY:
            problems.append("CONSOLE_SECRET_KEY is the development key (set a random secret)")
        elif len(console_key) < MIN_PRODUCTION_OTP_KEY:
            problems.append(f"CONSOLE_SECRET_KEY is shorter than {MIN_PRODUCTION_OTP_KEY} characters")
        if self.sms_allow_unclassified_numbers:
            problems.append("SMS_ALLOW_UNCLASSIFIED_NUMBERS=true texts numbers of unknown type (pumping risk)")
        if self.notify_backend in ("console", "file"):
            problems.append(f"NOTIFY_BACKEND={self.notify_backend} writes codes locally instead of sending them (use smtp)")
        if self.smtp_user and not (self.smtp_starttls or self.smtp_ssl):
            problems.append("SMTP_USER is set without SMTP_STARTTLS or SMTP_SSL (the password would cross the network "
                            "in clear)")
        if self.sms_provider == "twilio" and not self.twilio_api_base.startswith("https://"):
            problems.append("TWILIO_API_BASE must be an https:// URL")
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
