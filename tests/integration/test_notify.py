"""Codes and tickets reach the customer through a real SMTP server (aiosmtpd on loopback)."""
from sqlalchemy import select

from cardstore.models import OutboxMessage
from tests.conftest import Caller


def test_an_email_code_arrives_by_smtp_and_verifies(make_app, smtp_server):
    """Hanako asks for her code by e-mail; the mail arrives at her address and the code in it verifies."""
    port, inbox = smtp_server
    app = make_app(notify_backend="smtp", smtp_port=port, smtp_from="cards@bank.example")
    hanako = Caller(app.test_client(), None, "mail", "09000001111")
    assert hanako.call("send_otp", otp_channel="email")["otp_sent"] is True
    assert len(inbox.mails) == 1
    mail = inbox.mails[0]
    assert mail["To"] == "hanako.sato@example.jp" and mail["From"] == "cards@bank.example"
    import re

    code = re.search(r"\b(\d{6})\b", mail.get_payload(decode=True).decode("utf-8")).group(1)
    assert hanako.call("verify_otp", otp_code=code)["otp_verified"] is True


def test_a_sent_message_no_longer_holds_the_code(make_app, smtp_server):
    """After delivery the outbox row keeps the redacted text only, and is marked sent with its time."""
    port, _ = smtp_server
    app = make_app(notify_backend="smtp", smtp_port=port)
    Caller(app.test_client(), None, "redact", "09000001111").call("send_otp", otp_channel="email")
    with app.extensions["lockcard"].store.unit_of_work() as uow:
        row = uow.session.scalars(select(OutboxMessage)).one()
        assert row.status == "sent" and row.sent_at is not None and row.attempts == 1
        assert "******" in row.body and not any(ch.isdigit() for ch in row.body.split("******")[0][-3:])


def test_sms_without_a_gateway_stays_in_the_outbox_as_failed(make_app, smtp_server):
    """Under smtp with no SMS gateway, the SMS is not lost: failed, with its attempt and error recorded."""
    port, inbox = smtp_server
    app = make_app(notify_backend="smtp", smtp_port=port)
    Caller(app.test_client(), None, "sms", "09000001111").call("send_otp", otp_channel="sms")
    assert inbox.mails == []
    with app.extensions["lockcard"].store.unit_of_work() as uow:
        row = uow.session.scalars(select(OutboxMessage)).one()
        assert row.status == "failed" and row.attempts == 1 and "SMTP_SMS_DOMAIN" in row.last_error


def test_sms_through_an_email_gateway(make_app, smtp_server):
    """With SMTP_SMS_DOMAIN set, the SMS goes to <digits>@gateway."""
    port, inbox = smtp_server
    app = make_app(notify_backend="smtp", smtp_port=port, smtp_sms_domain="sms.example")
    Caller(app.test_client(), None, "gw", "09000001111").call("send_otp", otp_channel="sms")
    assert inbox.mails[0]["To"] == "819000001111@sms.example"
