"""APP_ENV=production refuses to start with a development-only setting, and names the setting."""
from __future__ import annotations

import pytest

from settings import ProductionRefused, Settings
from webhook.app import create_app

SAFE = {
    "app_env": "production",
    "database_url": "postgresql+psycopg://lockcard@db.internal:5432/lockcard",
    "otp_hash_key": "k" * 48,
    "notify_backend": "smtp",
    "webhook_auth": "header",
    "webhook_header_value": "a-long-random-shared-secret-0123456789",
}


def test_a_production_configuration_starts(tmp_path):
    """Explicit database, real key, SMTP, authenticated callers: the app is built (no store is touched)."""
    app = create_app(Settings(**SAFE))
    assert app.extensions["lockcard"].settings.app_env == "production"


@pytest.mark.parametrize("change, named", [
    ({"webhook_auth": "none"}, "WEBHOOK_AUTH=none"),
    ({"otp_test_numbers": "09000001111=123456"}, "OTP_TEST_NUMBERS"),
    ({"database_url": None}, "DATABASE_URL"),
    ({"database_url": "sqlite:////var/lib/lockcard.sqlite3"}, "DATABASE_URL is SQLite"),
    ({"otp_hash_key": "development-only-otp-key"}, "OTP_HASH_KEY is the development key"),
    ({"otp_hash_key": "short-key"}, "OTP_HASH_KEY is shorter"),
    ({"notify_backend": "console"}, "NOTIFY_BACKEND=console"),
    ({"notify_backend": "file", "notify_file": "/tmp/codes.jsonl"}, "NOTIFY_BACKEND=file"),
    ({"webhook_header_value": "short"}, "WEBHOOK_HEADER_VALUE"),
    ({"webhook_auth": "basic", "webhook_basic_user": "cx", "webhook_basic_password": "short"},
     "WEBHOOK_BASIC_PASSWORD"),
    ({"webhook_auth": "google-id-token", "webhook_audience": "https://x.a.run.app",
      "webhook_allowed_service_accounts": "a@b.iam.gserviceaccount.com",
      "webhook_id_token_certs_url": "http://certs.example/"}, "WEBHOOK_ID_TOKEN_CERTS_URL"),
])
def test_production_refuses_an_unsafe_setting(change, named):
    """Each development-only setting alone stops production, and the message names it."""
    with pytest.raises(ProductionRefused, match=named) as refused:
        Settings(**{**SAFE, **change})
    assert str(refused.value).startswith("APP_ENV=production refuses to start: ")


def test_the_same_settings_are_fine_in_development():
    """Development accepts what production refuses (test numbers, console codes, no auth, the SQLite default)."""
    settings = Settings(otp_test_numbers="09000001111=123456", notify_backend="console", webhook_auth="none")
    assert settings.app_env == "development"


def test_production_from_the_environment_lists_every_problem(monkeypatch):
    """`APP_ENV=production` alone (as on a forgotten deploy): refused, with all four reasons at once."""
    monkeypatch.setenv("APP_ENV", "production")
    for name in ("DATABASE_URL", "OTP_HASH_KEY", "NOTIFY_BACKEND", "WEBHOOK_AUTH", "OTP_TEST_NUMBERS"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ProductionRefused) as refused:
        create_app()
    message = str(refused.value)
    for named in ("WEBHOOK_AUTH=none", "DATABASE_URL", "OTP_HASH_KEY", "NOTIFY_BACKEND=console"):
        assert named in message


def test_an_override_cannot_slip_past_the_check():
    """create_app(settings, **overrides) validates again: turning auth off on a production config is refused."""
    with pytest.raises(ProductionRefused, match="WEBHOOK_AUTH=none"):
        create_app(Settings(**SAFE), webhook_auth="none")


def test_refusal_never_echoes_a_secret():
    """The refusal names settings, never their values (the key and the shared secret stay out of logs)."""
    with pytest.raises(ProductionRefused) as refused:
        Settings(**{**SAFE, "otp_hash_key": "short-secret-key", "webhook_header_value": "tiny-secret"})
    assert "short-secret-key" not in str(refused.value) and "tiny-secret" not in str(refused.value)


def test_otp_failure_limit_never_exceeds_nist_100():
    """OTP_FAILURE_LIMIT above NIST SP 800-63B's 100 is refused in any environment."""
    with pytest.raises(ValueError, match="otp_failure_limit"):
        Settings(otp_failure_limit=101)


REFUSED_ENV = {"APP_ENV": "production", "OTP_HASH_KEY": "s3cret-value-never-echoed-0123456789abcdef",
               "WEBHOOK_AUTH": "none", "NOTIFY_BACKEND": "smtp"}


def test_a_refused_configuration_answers_503_not_500(monkeypatch):
    """Under gunicorn's lazy app, a refused production config answers every call with a JSON 503."""
    from tests.conftest import cx_request
    from webhook.app import LazyApp

    for name in ("DATABASE_URL", "OTP_TEST_NUMBERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in REFUSED_ENV.items():
        monkeypatch.setenv(name, value)
    from werkzeug.test import Client

    r = Client(LazyApp()).post("/webhook", json=cx_request("prebuilt_components_lock_card:validate_card"))
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "MISCONFIGURED"
    assert "s3cret" not in r.get_data(as_text=True)


def test_the_functions_framework_entry_point_answers_503_too(monkeypatch):
    """`functions-framework --target=webhook` with a refused config: a JSON 503, never a 500."""
    from functions_framework import create_app as ff_create_app

    import main

    for name in ("DATABASE_URL", "OTP_TEST_NUMBERS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in REFUSED_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(main, "app", main.LazyApp(), raising=False)
    r = ff_create_app(target="webhook", source="main.py").test_client().post("/", json={})
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "MISCONFIGURED"


def test_gunicorn_refuses_to_start_with_a_refused_configuration(tmp_path):
    """`gunicorn main:app` exits before serving, naming the settings (and no secret), so the deploy fails."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "OTP_TEST_NUMBERS")}
    env.update(REFUSED_ENV)
    root = Path(__file__).resolve().parents[2]
    gunicorn = Path(sys.executable).with_name("gunicorn")
    done = subprocess.run([str(gunicorn), "--bind", "127.0.0.1:0", "main:app"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "WEBHOOK_AUTH=none" in done.stderr and "DATABASE_URL is not set" in done.stderr
    assert "s3cret" not in done.stderr
