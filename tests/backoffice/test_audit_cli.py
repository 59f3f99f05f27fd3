"""`audit list`: every change says who made it (the system or a named operator) and when (000, 003)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import update

from cardstore.models import Customer, utcnow


def test_each_back_office_change_is_in_the_audit_trail_under_its_operator(terminal, caller, write_csv):
    """Import, reveal, hand-off answer, OTP re-enable, delete, purge: each operator finds exactly their own actions
    (`outbox deliver` is covered in test_outbox_cli)."""
    path = write_csv([["09033334444", "山田 健二", "", "150-0001", "1111", "JCB", "active"]])
    terminal.ok("customers", "import", path, "--operator", "importer")
    terminal.ok("customers", "show", "09033334444", "--reveal", "--operator", "viewer")
    misaki = caller("09012345041")
    misaki.authenticate()
    handoff_id = misaki.call("request_reactivation", last_four_digit_of_card_number="1456")["handoff_id"]
    terminal.ok("handoffs", "resolve", handoff_id, "--operator", "resolver", "--reactivate", "--note", "ok")
    with terminal.store.unit_of_work() as uow:  # Ichiro locked himself out by wrong codes earlier
        uow.session.execute(update(Customer).where(Customer.phone_e164 == "+819000002222")
                            .values(otp_failures=10, otp_disabled_at=utcnow()))
        uow.commit()
    terminal.ok("customers", "otp-enable", "09000002222", "--operator", "unlocker")
    terminal.ok("customers", "delete", "09033334444", "--operator", "deleter")
    with terminal.store.unit_of_work() as uow:  # ... and two hours pass
        uow.session.execute(update(Customer).where(Customer.phone_e164 == "+819033334444")
                            .values(deleted_at=utcnow() - dt.timedelta(days=31)))
        uow.commit()
    terminal.ok("customers", "purge", "09033334444", "--older-than", "30d", "--operator", "purger")
    by = lambda actor: sorted(e["action"] for e in terminal.audit("--actor", actor))  # noqa: E731
    assert by("importer") == ["customer.imported", "import.completed"]
    assert by("viewer") == ["customer.revealed"]
    assert by("resolver") == ["card.reactivated", "handoff.answered"]
    assert by("unlocker") == ["otp.enabled"]
    assert by("deleter") == ["customer.deleted"]
    assert by("purger") == ["customer.purged"]
    assert "otp.verified" in by("system:webhook") and "handoff.created" in by("system:webhook")


def test_filters_by_customer_actor_and_time(terminal, caller):
    """--customer narrows to one customer, --since to a moment, and they combine."""
    hanako = caller("09000001111")
    hanako.authenticate()
    rows = terminal.audit("--customer", "090-0000-1111")
    assert rows and all(r["customer"] == "*********1111" for r in rows)
    assert {"otp.sent", "otp.verified", "customer.created"} <= {r["action"] for r in rows}
    # Two days ahead: a bare date is read as midnight in the console's zone (Asia/Tokyo), which from 15:00 UTC on
    # is already tomorrow's date — one day ahead of UTC's date was then no longer in the future.
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).date().isoformat()
    assert terminal.audit("--since", future) == []
    recent = terminal.audit("--customer", "09000001111", "--actor", "system:webhook", "--since", "1h")
    assert {r["action"] for r in recent} == {"otp.sent", "otp.verified"}
    assert "otp.verified" in terminal.ok("audit", "list", "--customer", "09000001111")


def test_bad_filters_are_errors(sqlite_terminal):
    """An unknown customer or a date that is not a date: exit 1 with a message."""
    unknown = sqlite_terminal.run("audit", "list", "--customer", "09099998888")
    assert unknown.exit_code == 1 and "no customer" in unknown.output
    bad_date = sqlite_terminal.run("audit", "list", "--since", "yesterday")
    assert bad_date.exit_code == 1 and "not a date" in bad_date.output
