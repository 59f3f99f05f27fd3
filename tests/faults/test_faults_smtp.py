"""SMTP down (or refusing) while a code or a ticket notice is sent: the outbox keeps the message with its attempts
and error; delivering later, with SMTP back, sends it exactly once. Against a real SMTP server (aiosmtpd)."""
from __future__ import annotations

import datetime as dt
import re
import threading
from types import SimpleNamespace

from sqlalchemy import select

from cardstore.models import OutboxMessage, utcnow
from notify import Notifier
from tests.conftest import Caller
from webhook.app import service_of

HANAKO = "09000001111"
SMS_GATEWAY = "sms.bank.example"


def smtp_app(make_app, smtp, **overrides):
    return make_app(notify_backend="smtp", smtp_port=smtp.port, smtp_from="cards@bank.example",
                    smtp_sms_domain=SMS_GATEWAY, notify_deadline_seconds=2, **overrides)


def outbox(app) -> list[SimpleNamespace]:
    """The outbox rows as they are now (plain copies: the unit of work ends here)."""
    columns = [c.key for c in OutboxMessage.__table__.columns]
    with service_of(app).store.unit_of_work() as uow:
        rows = uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [SimpleNamespace(**{c: getattr(r, c) for c in columns}) for r in rows]


def deliver_later(app, hours: float = 1, *, seconds: float = 0) -> dict[str, int]:
    """What the relay does once the retry is due (a one-time code must still be valid by then: use seconds)."""
    service = service_of(app)
    counts = Notifier(service.settings).deliver(service.store, now=utcnow() + dt.timedelta(hours=hours, seconds=seconds))
    return {k: n for k, n in counts.items() if n or k != "given_up"}


def code_in(mail) -> str:
    return re.search(r"\b(\d{6})\b", mail.get_payload(decode=True).decode("utf-8")).group(1)


def test_code_sent_while_smtp_is_down_is_kept_and_delivered_once_later(make_app, smtp):
    """Hanako asks for a code by e-mail while SMTP is down: the call still answers (the code is committed), the
    outbox row keeps the attempt and the error; with SMTP back it is sent once, and the code in it verifies."""
    app = smtp_app(make_app, smtp)
    hanako = Caller(app.test_client(), None, "smtp-down-otp", HANAKO)
    assert hanako.call("send_otp", otp_channel="email")["otp_sent"] is True

    (row,) = outbox(app)
    assert row.kind == "otp" and row.status == "failed" and row.attempts == 1
    assert "ConnectionRefused" in row.last_error
    assert row.next_attempt_at > row.created_at  # backed off, not retried in a tight loop

    smtp.up()
    assert deliver_later(app, 0, seconds=31) == {"sent": 1, "failed": 0}
    assert deliver_later(app, 0, seconds=120) == {"sent": 0, "failed": 0}
    assert [m["To"] for m in smtp.mailbox.mails] == ["hanako.sato@example.jp"]
    (row,) = outbox(app)
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None
    assert "******" in row.body  # the delivered code no longer readable in the store
    assert hanako.call("verify_otp", otp_code=code_in(smtp.mailbox.mails[0]))["otp_verified"] is True


def test_ticket_notice_refused_by_smtp_is_retried_and_sent_once(make_app, smtp, phone):
    """The lock goes through while the SMTP server answers 451 (try later): the ticket notice waits in the
    outbox; the next delivery sends one SMS-gateway mail with the ticket number, and another run sends none."""
    app = smtp_app(make_app, smtp)
    smtp.up()
    hanako = Caller(app.test_client(), None, "smtp-refuses-ticket", HANAKO)
    hanako.call("send_otp", otp_channel="email")
    assert hanako.call("verify_otp", otp_code=code_in(smtp.mailbox.mails[-1]))["otp_verified"] is True

    smtp.mailbox.refuse_with = "451 4.3.0 Mail server temporarily rejected message"
    locked = hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive",
                         lock_reason="lost")
    assert locked["card_status"] == "inactive"
    ticket_row = [r for r in outbox(app) if r.kind == "lock_ticket"][0]
    assert ticket_row.status == "failed" and ticket_row.attempts == 1 and "451" in ticket_row.last_error

    smtp.mailbox.refuse_with = None
    assert deliver_later(app) == {"sent": 1, "failed": 0}
    assert deliver_later(app, hours=48) == {"sent": 0, "failed": 0}
    notices = [m for m in smtp.mailbox.mails if m["To"] == f"819000001111@{SMS_GATEWAY}"]
    assert len(notices) == 1
    assert str(locked["ticket_number"]) in notices[0].get_payload(decode=True).decode("utf-8")


def test_repeated_failures_keep_every_attempt(make_app, smtp):
    """SMTP stays down over three delivery runs: the row keeps counting attempts and the last error, and
    the backoff grows each time; nothing is dropped."""
    app = smtp_app(make_app, smtp)
    Caller(app.test_client(), None, "smtp-long-outage", HANAKO).call("send_otp", otp_channel="email")
    waits = []
    for seconds in (31, 92, 213):  # each past the previous backoff (30, 60, 120 s), all inside the code's 300 s
        assert deliver_later(app, 0, seconds=seconds) == {"sent": 0, "failed": 1}
        (row,) = outbox(app)
        waits.append(row.next_attempt_at)
    assert row.attempts == 4 and row.status == "failed" and "ConnectionRefused" in row.last_error
    assert waits[0] < waits[1] < waits[2]


def test_two_deliverers_at_once_send_each_message_once(make_app, smtp, faulty_store_url):
    """Two `outbox deliver` runs racing on PostgreSQL over the same waiting messages: each message is sent once
    (a row is claimed before it is sent)."""
    # Growing delays off: five codes at once, the most one customer may get in ten minutes.
    app = smtp_app(make_app, smtp, database_url=faulty_store_url, throttle_free_events=5)
    client = app.test_client()
    for n in range(5):
        assert Caller(client, None, f"race-{n}", HANAKO).call("send_otp", otp_channel="email")["otp_sent"]
    Caller(client, None, "race-misaki", "09012345041").call("send_otp", otp_channel="email")
    assert [r.status for r in outbox(app)] == ["failed"] * 6
    smtp.up()
    barrier = threading.Barrier(2)
    results = []

    def deliverer():
        barrier.wait()
        results.append(deliver_later(app, 0, seconds=31))

    threads = [threading.Thread(target=deliverer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(r["sent"] for r in results) == 6
    assert len(smtp.mailbox.mails) == 6
    assert all(r.status == "sent" and r.attempts == 2 for r in outbox(app))
