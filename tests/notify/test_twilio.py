"""SMS through Twilio's Messages API, against a loopback server speaking its request and response shapes: accepted,
refused for good (4xx), refused for now (429, 5xx), stalled, dripping — each attempt within the deadline."""
from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from cardstore.models import utcnow
from notify import Notifier
from settings import ProductionRefused, Settings
from tests.conftest import cx_request
from tests.local_servers import TwilioServer
from tests.notify.conftest import outbox_rows
from webhook.app import service_of

HANAKO = "09000001111"


def lock_hanakos_card(app) -> None:
    """Hanako (verified by a fixed code) locks her card: the ticket SMS is queued; nothing is sent yet."""
    client = app.test_client()
    for tag, params in (("prebuilt_components_authentication:send_otp", {"otp_channel": "email"}),
                        ("prebuilt_components_authentication:verify_otp", {"otp_code": "135790"}),
                        ("prebuilt_components_lock_card:lock_card_ticket_number",
                         {"last_four_digit_of_card_number": "4444", "lock_type": "inactive", "lock_reason": "lost"})):
        assert client.post("/webhook", json=cx_request(tag, "tw", phone_number=HANAKO, **params)).status_code == 200


def relay_pass(app, *, later_s: float = 0) -> dict[str, int]:
    service = service_of(app)
    return Notifier(service.settings).deliver(service.store, now=utcnow() + dt.timedelta(seconds=later_s))


@pytest.fixture
def sms_app(make_app, twilio):
    def build(**overrides):
        return make_app(otp_test_numbers={HANAKO: "135790"}, **twilio.settings(**overrides))
    return build


def test_an_accepted_sms_is_sent_once_in_twilios_request_shape(sms_app, twilio, phone):
    """The relay POSTs To, From and Body as a form with Basic auth to the account's Messages.json; Twilio's 201
    marks the notice sent; the e-mail code goes through NOTIFY_BACKEND (the file), not Twilio."""
    app = sms_app()
    lock_hanakos_card(app)
    assert relay_pass(app) == {"sent": 2, "failed": 0, "given_up": 0}
    (request,) = twilio.received
    assert request["path"] == f"/2010-04-01/Accounts/{TwilioServer.ACCOUNT_SID}/Messages.json"
    assert request["content_type"] == "application/x-www-form-urlencoded"
    assert request["form"]["To"] == "+819000001111" and request["form"]["From"] == "+15005550006"
    assert "4444" in request["form"]["Body"] and len(twilio.accepted) == 1
    assert [m["kind"] for m in phone.messages()] == ["otp"]
    assert relay_pass(app, later_s=3600) == {"sent": 0, "failed": 0, "given_up": 0}
    assert len(twilio.received) == 1


def test_a_messaging_service_sid_is_sent_as_such(sms_app, twilio):
    """TWILIO_FROM=MG… is a Messaging Service: sent as MessagingServiceSid, not From."""
    app = sms_app(twilio_from="MG" + "0" * 32)
    lock_hanakos_card(app)
    relay_pass(app)
    assert twilio.received[0]["form"]["MessagingServiceSid"] == "MG" + "0" * 32
    assert "From" not in twilio.received[0]["form"]


def test_an_invalid_number_is_given_up_with_twilios_code(sms_app, twilio):
    """400 with error 21211 (invalid 'To'): retrying cannot help; the notice is given up with the code recorded,
    and no later pass sends it."""
    twilio.mode = ("error", 400, 21211)
    app = sms_app()
    lock_hanakos_card(app)
    assert relay_pass(app)["given_up"] == 1
    ticket = [r for r in outbox_rows(app) if r.kind == "lock_ticket"][0]
    assert ticket.status == "given_up" and ticket.last_error == "Twilio HTTP 400 error 21211"
    assert "+81" not in ticket.last_error  # Twilio's own text quotes the number: not kept
    twilio.mode = "ok"
    relay_pass(app, later_s=3600)
    assert twilio.accepted == []


@pytest.mark.parametrize("status, code", [(429, 20429), (500, 20500), (503, 20503), (401, 20003)])
def test_a_refusal_for_now_is_retried_after_the_backoff_and_sent_once(sms_app, twilio, status, code):
    """429 (too many requests), 5xx and 401 (our credentials: an operator fixes them) keep the notice queued with
    the error; once the gateway is fine and the backoff passed, it is sent once."""
    twilio.mode = ("error", status, code)
    app = sms_app()
    lock_hanakos_card(app)
    assert relay_pass(app)["failed"] == 1
    ticket = [r for r in outbox_rows(app) if r.kind == "lock_ticket"][0]
    assert ticket.status == "failed" and ticket.last_error == f"Twilio HTTP {status} error {code}"
    assert relay_pass(app) == {"sent": 0, "failed": 0, "given_up": 0}  # not before the backoff
    twilio.mode = "ok"
    assert relay_pass(app, later_s=31)["sent"] == 1
    assert relay_pass(app, later_s=3600)["sent"] == 0
    assert len(twilio.accepted) == 1


@pytest.mark.parametrize("mode", ["stall", "drip"])
def test_a_stalled_or_dripping_gateway_ends_the_attempt_at_the_deadline(sms_app, twilio, mode):
    """Twilio holds the request, or answers a byte at a time: the attempt is cut at NOTIFY_DEADLINE_SECONDS (the
    whole exchange, not one read), recorded as failed for retry; with the gateway well, it is sent once."""
    twilio.mode = mode
    app = sms_app(notify_deadline_seconds=1)
    lock_hanakos_card(app)
    assert relay_pass(app)["failed"] == 1
    ticket = [r for r in outbox_rows(app) if r.kind == "lock_ticket"][0]
    assert ticket.status == "failed" and "NOTIFY_DEADLINE_SECONDS" in ticket.last_error
    twilio.mode = "ok"
    assert relay_pass(app, later_s=31)["sent"] == 1
    assert len(twilio.accepted) == 1


def test_a_refused_connection_is_retried(make_app):
    """Nothing listens at TWILIO_API_BASE: a failed attempt kept for retry, with the reason."""
    from tests.local_servers import free_port

    server = TwilioServer()
    settings = server.settings(twilio_api_base=f"http://127.0.0.1:{free_port()}")
    server.close()
    app = make_app(otp_test_numbers={HANAKO: "135790"}, **settings)
    lock_hanakos_card(app)
    assert relay_pass(app)["failed"] == 1
    assert "ConnectionRefused" in [r for r in outbox_rows(app) if r.kind == "lock_ticket"][0].last_error


@pytest.mark.parametrize("missing", ["twilio_account_sid", "twilio_auth_token", "twilio_from"])
def test_missing_twilio_credentials_are_a_start_up_error_naming_the_setting(twilio, missing):
    """SMS_PROVIDER=twilio without one of its settings does not start (no half-working relay)."""
    values = {**twilio.settings(), missing: None}
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    assert missing.upper() in str(caught.value)


def test_an_unknown_provider_is_a_start_up_error():
    """SMS_PROVIDER names a provider we have, or nothing."""
    with pytest.raises(ValidationError) as caught:
        Settings.from_env({"SMS_PROVIDER": "carrier-pigeon"})
    assert "sms_provider" in str(caught.value)


PRODUCTION = {"app_env": "production", "webhook_auth": "header", "webhook_header_value": "x" * 20,
              "database_url": "postgresql+psycopg://db/lockcard", "otp_hash_key": "k" * 40, "notify_backend": "smtp",
              "smtp_starttls": True}


def test_production_refuses_a_plain_http_twilio_base(twilio):
    """In production the SMS provider is reached over HTTPS only."""
    with pytest.raises(ProductionRefused, match="TWILIO_API_BASE"):
        Settings(**PRODUCTION, **twilio.settings())
    assert Settings(**PRODUCTION, **twilio.settings(twilio_api_base="https://api.twilio.com")).sms_provider == "twilio"


@pytest.mark.parametrize("tls", [{}, {"smtp_starttls": False}])
def test_production_refuses_smtp_credentials_without_tls(tls):
    """SMTP_USER with neither STARTTLS nor SMTPS would send the password in clear: production does not start."""
    values = {**PRODUCTION, "smtp_starttls": False, "smtp_user": "relay", "smtp_password": "secret", **tls}
    with pytest.raises(ProductionRefused, match="SMTP_USER"):
        Settings(**values)
    assert Settings(**{**values, "smtp_starttls": True}).smtp_user == "relay"
    assert Settings(**{**values, "smtp_ssl": True}).smtp_user == "relay"
