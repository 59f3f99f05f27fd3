"""`customers show | delete | purge | otp-enable`: what an operator sees and may change about one customer."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update

from cardstore.models import AuditEvent, Card, Customer, OutboxMessage, utcnow
from tests.conftest import Caller


def _deleted_days_ago(terminal, phone_e164: str, days: int) -> None:
    with terminal.store.unit_of_work() as uow:
        uow.session.execute(update(Customer).where(Customer.phone_e164 == phone_e164)
                            .values(deleted_at=utcnow() - dt.timedelta(days=days)))
        uow.commit()


def test_show_gives_the_agent_the_customers_history_with_the_email_masked(terminal):
    """An agent looks up Hanako: name, number, masked e-mail, her four cards by last four only."""
    shown = terminal.json("customers", "show", "090-0000-1111")
    assert shown["customer"]["name"] == "佐藤 花子"
    assert shown["customer"]["phone_number"] == "+819000001111"
    assert shown["customer"]["email"] == "h***@example.jp"
    assert [c["card"] for c in shown["cards"]] == ["Visa **** 5555", "Visa **** 6666", "MasterCard **** 4444",
                                                   "Mastercard **** 4449"]
    text = terminal.ok("customers", "show", "09000001111")
    assert "佐藤 花子" in text and "h***@example.jp" in text and "hanako.sato" not in text


def test_show_reveals_the_email_only_to_a_named_operator_and_audits_it(terminal):
    """--reveal shows the full address and records who looked; without --operator it is refused."""
    refused = terminal.run("customers", "show", "09000001111", "--reveal")
    assert refused.exit_code == 1 and "--operator" in refused.output
    shown = terminal.json("customers", "show", "09000001111", "--reveal", "--operator", "yamada")
    assert shown["customer"]["email"] == "hanako.sato@example.jp"
    assert [e["action"] for e in terminal.audit("--actor", "yamada")] == ["customer.revealed"]


def test_show_lists_tickets_notifications_and_webhook_audit_after_a_lock(terminal, caller):
    """After Hanako locks 4444 on the phone, the agent sees the ticket, the SMS and the webhook's audit rows."""
    hanako = caller("09000001111")
    hanako.authenticate()
    locked = hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive",
                         lock_reason="lost")
    shown = terminal.json("customers", "show", "09000001111")
    assert shown["lock_tickets"][0]["number"] == locked["ticket_number"]
    assert shown["lock_tickets"][0]["card"] == "MasterCard **** 4444"
    assert {"lock_ticket", "otp"} <= {n["kind"] for n in shown["notifications"]}
    assert all(n["to"] == "*********1111" for n in shown["notifications"])
    assert shown["audit"][0]["action"] == "card.locked" and shown["audit"][0]["actor"] == "system:webhook"


def test_show_of_an_unknown_or_malformed_number_is_an_error(terminal):
    """A number nobody has, or no number at all: exit 1 with a message."""
    unknown = terminal.run("customers", "show", "09099998888")
    assert unknown.exit_code == 1 and "no customer" in unknown.output
    bad = terminal.run("customers", "show", "not-a-number")
    assert bad.exit_code == 1 and "not a phone number" in bad.output


def test_a_deleted_customer_is_unknown_to_the_webhook_but_still_shown_to_operators(terminal, caller):
    """After `customers delete`, verify_user no longer finds Ichiro; the back office shows him as deleted."""
    out = terminal.ok("customers", "delete", "09000002222", "--operator", "yamada")
    assert "deleted" in out
    assert caller("09000002222").call("verify_user")["user_found"] is False
    assert terminal.json("customers", "show", "09000002222")["customer"]["deleted_at"] is not None
    [row] = terminal.audit("--actor", "yamada")
    assert row["action"] == "customer.deleted" and row["customer"] == "*********2222"


def test_deleting_twice_is_refused(terminal):
    """The second delete changes nothing and says when the first happened."""
    terminal.ok("customers", "delete", "09000002222", "--operator", "yamada")
    again = terminal.run("customers", "delete", "09000002222", "--operator", "suzuki")
    assert again.exit_code == 1 and "already deleted" in again.output
    assert terminal.audit("--actor", "suzuki") == []


def test_a_change_without_an_operator_is_refused_and_changes_nothing(terminal):
    """--operator is required; a blank name or a system name is not accepted either."""
    for args in ([], ["--operator", " "], ["--operator", "system:webhook"]):
        result = terminal.run("customers", "delete", "09000002222", *args)
        assert result.exit_code == 2, result.output
    assert terminal.json("customers", "show", "09000002222")["customer"]["deleted_at"] is None


def test_purging_a_customer_that_is_not_deleted_is_refused(terminal):
    """Purge names a live customer: refused, nothing removed."""
    result = terminal.run("customers", "purge", "09000002222", "--older-than", "180d", "--operator", "yamada")
    assert result.exit_code == 1 and "not deleted" in result.output
    assert terminal.json("customers", "show", "09000002222")["cards"]


def test_purge_leaves_customers_within_retention(terminal):
    """Deleted 10 days ago, retention 180 days: the customer stays, by name or in the sweep."""
    terminal.ok("customers", "delete", "09000002222", "--operator", "yamada")
    named = terminal.run("customers", "purge", "09000002222", "--older-than", "180d", "--operator", "yamada")
    assert named.exit_code == 1 and "within the retention period" in named.output
    assert "purged 0 customer(s)" in terminal.ok("customers", "purge", "--older-than", "180d", "--operator", "yamada")
    assert terminal.json("customers", "show", "09000002222")["customer"]["deleted_at"] is not None


def test_purge_removes_a_customer_past_retention_and_leaves_an_audit_row_without_personal_data(terminal, caller):
    """Misaki asked for a reactivation, was deleted 200 days ago; the purge removes her, her cards, hand-off and
    messages, keeps the audit trail detached from her, and records the purge with counts only."""
    misaki = caller("09012345041")
    misaki.authenticate()
    misaki.call("request_reactivation", last_four_digit_of_card_number="1456")
    terminal.ok("customers", "delete", "09012345041", "--operator", "yamada")
    _deleted_days_ago(terminal, "+819012345041", 200)

    out = terminal.ok("customers", "purge", "--older-than", "180d", "--operator", "sato")
    assert "purged 1 customer(s)" in out
    gone = terminal.run("customers", "show", "09012345041")
    assert gone.exit_code == 1
    [purge] = terminal.audit("--actor", "sato")
    assert purge["action"] == "customer.purged" and purge["customer"] is None
    assert purge["before"]["cards"] == 4 and purge["before"]["handoffs"] == 1 and purge["before"]["notifications"] >= 1
    text = str(purge)
    for personal in ("5041", "高橋", "misaki", "12345"):
        assert personal not in text
    with terminal.store.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(OutboxMessage)
                                  .where(OutboxMessage.to == "+819012345041")) == 0
        assert uow.session.scalar(select(func.count()).select_from(Card).where(Card.last4 == "1456")) == 0
        # the webhook's and yamada's rows about her are still there, no longer pointing at anyone
        assert uow.session.scalar(select(func.count()).select_from(AuditEvent)
                                  .where(AuditEvent.action == "customer.deleted")) == 1


def test_purge_refuses_a_duration_it_cannot_read(terminal):
    """'6 months' is ambiguous: the operator is told which units work."""
    result = terminal.run("customers", "purge", "--older-than", "6m", "--operator", "yamada")
    assert result.exit_code == 1 and "h d w or y" in result.output


def test_otp_enable_lets_a_locked_out_customer_receive_codes_again(make_app, store_url, phone):
    """Ichiro was locked out by a release before issue 12 (the webhook no longer disables anyone); after otp-enable a
    new code is sent."""
    from tests.backoffice.conftest import Terminal
    from webhook.app import service_of

    app = make_app(database_url=store_url)
    terminal = Terminal(app)
    ichiro = Caller(app.test_client(), phone, "lockout", "09000002222")
    with service_of(app).store.unit_of_work() as uow:
        uow.session.execute(update(Customer).where(Customer.phone_e164 == "+819000002222")
                            .values(otp_disabled_at=utcnow(), otp_failures=1))
        uow.commit()
    assert ichiro.call("send_otp", otp_channel="sms")["webhook_error_code"] == "OTP_DISABLED"
    assert terminal.json("customers", "show", "09000002222")["customer"]["otp_disabled_at"] is not None

    out = terminal.ok("customers", "otp-enable", "09000002222", "--operator", "yamada")
    assert "enabled" in out
    assert ichiro.call("send_otp", otp_channel="sms")["otp_sent"] is True
    [row] = terminal.audit("--actor", "yamada")
    assert row["action"] == "otp.enabled" and row["before"]["otp_failures"] == 1


def test_otp_enable_for_a_customer_who_is_not_locked_out_is_refused(terminal):
    """Nothing to re-enable: exit 1, no audit row."""
    result = terminal.run("customers", "otp-enable", "09000001111", "--operator", "yamada")
    assert result.exit_code == 1 and "not disabled" in result.output
    assert terminal.audit("--actor", "yamada") == []
