"""`outbox list | deliver`: the ticket SMS to the registered phone (登録携帯電話番号), its sent flag and retries,
through a real SMTP server (aiosmtpd on loopback) with an e-mail-to-SMS gateway."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from cardstore.models import OutboxMessage, utcnow
from tests.backoffice.conftest import Terminal
from tests.conftest import Caller

FIXED_CODE = "135790"


def _ichiro_locks_his_card_while_sms_is_down(make_app, store_url, port) -> Terminal:
    """No SMS route at the time of the call: the code and the ticket SMS stay in the outbox as failed."""
    app = make_app(database_url=store_url, notify_backend="smtp", smtp_port=port,
                   otp_test_numbers={"09000002222": FIXED_CODE})
    ichiro = Caller(app.test_client(), None, "sms-down", "09000002222")
    ichiro.call("send_otp", otp_channel="sms")
    assert ichiro.call("verify_otp", otp_code=FIXED_CODE)["otp_verified"] is True
    ichiro.call("lock_card", last_four_digit_of_card_number="4444", lock_type="blocked", lock_reason="stolen")
    return Terminal(app)


def _backoff_passes(terminal) -> None:
    with terminal.store.unit_of_work() as uow:
        uow.session.execute(update(OutboxMessage).values(next_attempt_at=utcnow() - dt.timedelta(seconds=1)))
        uow.commit()


def test_failed_messages_are_listed_with_attempts_and_error_and_no_body(make_app, store_url, smtp_server):
    """The operator sees both SMS failed once, masked recipient, the reason, and never the code."""
    port, _ = smtp_server
    terminal = _ichiro_locks_his_card_while_sms_is_down(make_app, store_url, port)
    failed = terminal.json("outbox", "list", "--status", "failed")
    assert [m["kind"] for m in failed] == ["lock_ticket", "otp"]
    assert all(m["attempts"] == 1 and "SMTP_SMS_DOMAIN" in m["last_error"] and m["to"] == "*********2222"
               for m in failed)
    assert terminal.json("outbox", "list", "--status", "sent") == []
    text = terminal.ok("outbox", "list")
    assert FIXED_CODE not in text and "+819000002222" not in text


def test_deliver_retries_after_the_backoff_and_never_sends_twice(make_app, store_url, smtp_server):
    """Once the gateway is configured and the backoff has passed, deliver sends each message once, marks it sent
    with the time, and audits each send; a second run finds nothing due."""
    port, inbox = smtp_server
    _ichiro_locks_his_card_while_sms_is_down(make_app, store_url, port)
    fixed = Terminal(make_app(database_url=store_url, notify_backend="smtp", smtp_port=port,
                              smtp_sms_domain="sms.example"))
    assert "0 due" in fixed.ok("outbox", "deliver")  # still inside the backoff: nothing is tried early
    _backoff_passes(fixed)
    assert "2 due, 2 sent, 0 failed" in fixed.ok("outbox", "deliver", "--operator", "tanaka")
    assert sorted(m["To"] for m in inbox.mails) == ["819000002222@sms.example"] * 2
    assert any("4444" in m.get_payload(decode=True).decode() for m in inbox.mails)  # 登録携帯電話番号に共有
    sent = fixed.json("outbox", "list", "--status", "sent")
    assert len(sent) == 2 and all(m["sent_at"] and m["attempts"] == 2 for m in sent)

    _backoff_passes(fixed)
    assert "0 due" in fixed.ok("outbox", "deliver", "--operator", "tanaka")
    assert len(inbox.mails) == 2
    audit = fixed.audit("--actor", "tanaka")
    assert [e["action"] for e in audit] == ["outbox.sent", "outbox.sent"]
    assert all(e["customer"] == "*********2222" for e in audit)


def test_deliver_without_an_operator_signs_as_the_system(make_app, store_url, smtp_server):
    """A cron run names nobody: its audit rows say system:outbox; a failure is recorded with the next attempt."""
    port, _ = smtp_server
    terminal = _ichiro_locks_his_card_while_sms_is_down(make_app, store_url, port)
    _backoff_passes(terminal)
    assert "2 due, 0 sent, 2 failed" in terminal.ok("outbox", "deliver")
    assert [e["action"] for e in terminal.audit("--actor", "system:outbox")] == ["outbox.failed"] * 2
    failed = terminal.json("outbox", "list", "--status", "failed")
    assert all(m["attempts"] == 2 and m["next_attempt_at"] for m in failed)


def test_outbox_list_refuses_an_unknown_status(sqlite_terminal):
    """--status takes pending, sending, sent or failed."""
    result = sqlite_terminal.run("outbox", "list", "--status", "lost")
    assert result.exit_code == 2 and "pending" in result.output


def test_a_notice_given_up_on_is_requeued_by_an_operator_and_sent_once(make_app, store_url, smtp_server):
    """The ticket SMS failed for good (or was left in `sending`): an operator requeues it, it goes out once, and
    the audit trail says who; the one-time code is refused (a late code is useless); a sent one is refused."""
    port, inbox = smtp_server
    _ichiro_locks_his_card_while_sms_is_down(make_app, store_url, port)
    fixed = Terminal(make_app(database_url=store_url, notify_backend="smtp", smtp_port=port,
                              smtp_sms_domain="sms.example"))
    failed = {m["kind"]: m["id"] for m in fixed.json("outbox", "list", "--status", "failed")}
    with fixed.store.unit_of_work() as uow:
        uow.session.execute(update(OutboxMessage).values(attempts=8))  # delivery has given up on both
        uow.commit()
    assert "0 due" in fixed.ok("outbox", "deliver")

    refused = fixed.run("outbox", "requeue", failed["otp"], "--operator", "tanaka")
    assert refused.exit_code == 1 and "one-time code" in refused.output
    assert fixed.run("outbox", "requeue", failed["lock_ticket"]).exit_code == 2  # --operator is required
    assert "pending again" in fixed.ok("outbox", "requeue", failed["lock_ticket"], "--operator", "tanaka")
    assert "1 due, 1 sent, 0 failed" in fixed.ok("outbox", "deliver")
    assert len(inbox.mails) == 1 and "4444" in inbox.mails[0].get_payload(decode=True).decode()
    again = fixed.run("outbox", "requeue", failed["lock_ticket"], "--operator", "tanaka")
    assert again.exit_code == 1 and "is sent" in again.output
    assert [r["actor"] for r in fixed.audit("--action", "outbox.requeued")] == ["tanaka"]
    assert fixed.run("outbox", "requeue", 99999, "--operator", "tanaka").exit_code == 1
