"""The operator's slips and the hostile files the console issue found in the commands, each as it was tried:
both answer flags, a hidden conflict, UTC times, raw types and JSON, a wrong action name, mixed encodings, escape
sequences, addresses in errors, a one-hour retention."""
from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from cardstore.models import Card, Customer, OutboxMessage


def _misaki_asks_to_reactivate_1456(caller) -> int:
    misaki = caller("09012345041")
    misaki.authenticate()
    return misaki.call("request_reactivation", last_four_digit_of_card_number="1456")["handoff_id"]


def _card_status(store, last4: str = "1456") -> str:
    with store.unit_of_work() as uow:
        return uow.session.scalars(select(Card.status).join(Customer)
                                   .where(Customer.phone_e164 == "+819012345041", Card.last4 == last4)).one()


def test_both_answer_flags_are_refused_and_nothing_changes(terminal, caller):
    """`--reactivate --reject`: a usage error (exit 2); the hand-off stays 未回答, the card inactive."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    result = terminal.run("handoffs", "resolve", handoff_id, "--operator", "sato", "--reactivate", "--reject",
                          "--note", "slip")
    assert result.exit_code == 2 and "exactly one" in result.output
    [waiting] = terminal.json("handoffs", "list")
    assert waiting["status"] == "unanswered" and _card_status(terminal.store) == "inactive"


def test_handoffs_show_names_whom_to_call_back_and_is_audited(terminal, caller):
    """`handoffs show ID --operator` prints the full number and the name; the viewing is a `handoff.viewed` row."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    out = terminal.ok("handoffs", "show", handoff_id, "--operator", "sato")
    assert "09012345041" in out and "高橋 美咲" in out
    assert [e["actor"] for e in terminal.audit("--action", "handoff.viewed")] == ["sato"]


def test_the_card_status_at_request_time_is_kept(terminal, caller):
    """After a rejection the card is blocked by a later call: the hand-off still says it was inactive when asked."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    terminal.ok("handoffs", "resolve", handoff_id, "--operator", "sato", "--reject", "--note", "名義不一致")
    with terminal.store.unit_of_work() as uow:
        uow.session.execute(update(Card).where(Card.last4 == "1456").values(status="blocked"))
        uow.commit()
    [answered] = terminal.json("handoffs", "list")
    assert answered["card_status_at_request"] == "inactive" and answered["card_status"] == "blocked"


def test_an_answer_sends_the_customer_an_sms_of_the_outcome(terminal, caller):
    """Reactivated: an SMS about it is queued to the customer's number in the answer's transaction."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    terminal.ok("handoffs", "resolve", handoff_id, "--operator", "sato", "--reactivate", "--note", "本人確認済み")
    with terminal.store.unit_of_work() as uow:
        sms = uow.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "handoff_reactivated")).one()
        assert (sms.channel, sms.to) == ("sms", "+819012345041") and "1456" in sms.body


def test_times_are_local_and_lock_types_and_changes_read_as_words(terminal, caller):
    """Asia/Tokyo times (+09:00), `temporary` for an inactive lock, and `status: inactive → active`."""
    hanako = caller("09000001111")
    hanako.authenticate()
    hanako.call("lock_card", last_four_digit_of_card_number="5555", lock_type="inactive", lock_reason="lost")
    shown = terminal.json("customers", "show", "09000001111")
    assert shown["lock_tickets"][0]["lock_type"] == "temporary"
    assert shown["customer"]["created_at"].endswith("+09:00")
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    terminal.ok("handoffs", "resolve", handoff_id, "--operator", "sato", "--reactivate", "--note", "ok")
    out = terminal.ok("audit", "list", "--action", "card.reactivated")
    assert "status: inactive → active" in out and "+09:00" in out


def test_an_unknown_audit_action_lists_the_valid_ones(terminal):
    """`audit list --action lock`: an error naming the valid actions, not an empty list."""
    result = terminal.run("audit", "list", "--action", "lock")
    assert result.exit_code == 1 and "card.locked" in result.output and "handoff.answered" in result.output


def test_a_conflict_is_reported_on_both_rows_with_every_reason(terminal, write_csv):
    """Line 2 has an unknown vendor and the same number as line 3 with another name: line 2 gets both reasons,
    line 3 the conflict; neither is imported."""
    path = write_csv([
        ["09055550001", "田中 一郎", "", "150-0001", "1111", "Nosuchcard", "active"],
        ["09055550001", "田中 二郎", "", "150-0001", "2222", "Visa", "active"],
    ])
    report = json.loads(terminal.run("customers", "import", path, "--operator", "sato", "--json").output)
    reasons = {r["line"]: r["reasons"] for r in report["rejections"]}
    assert any("card_vendor" in r for r in reasons[2]) and any("name differs from line 3" in r for r in reasons[2])
    assert any("name differs from line 2" in r for r in reasons[3])
    assert report["customers_created"] == 0


def test_fixing_a_file_and_importing_it_again_stores_it(terminal, write_csv):
    """After the fix the same rows import; run again, every row is unchanged, none rejected."""
    rows = [["09055550001", "田中 一郎", "", "150-0001", "1111", "Visa", "active"],
            ["09055550001", "田中 一郎", "", "150-0001", "2222", "Visa", "active"]]
    first = json.loads(terminal.ok("customers", "import", write_csv(rows), "--operator", "sato", "--json"))
    assert first["rows"]["rejected"] == 0 and first["cards_added"] == 2
    again = json.loads(terminal.ok("customers", "import", write_csv(rows), "--operator", "sato", "--json"))
    assert again["rows"] == {"read": 2, "imported": 0, "merged": 0, "unchanged": 2, "rejected": 0}


def test_a_file_mixing_utf8_and_shift_jis_rows_is_refused_at_the_line(terminal, tmp_path):
    """Two spreadsheets pasted together: refused with the line where the encoding changes; nothing imported."""
    header = "phone_number,name,email,zip_code,card_last4,card_vendor,card_status\r\n"
    data = (header.encode() + "09055550001,田中 一郎,,150-0001,1111,Visa,active\r\n".encode("utf-8")
            + "09055550002,山田 花子,,150-0001,2222,Visa,active\r\n".encode("cp932"))
    path = tmp_path / "mixed.csv"
    path.write_bytes(data)
    result = terminal.run("customers", "import", path, "--operator", "sato")
    assert result.exit_code == 1 and "line 3" in result.output and "mixes encodings" in result.output
    assert terminal.run("customers", "show", "09055550001").exit_code == 1


@pytest.mark.parametrize("column, value", [
    ("name", "田中\x1b]52;c;ZXZpbA==\x07一郎"), ("name", "田中\x9b31m一郎"),
    ("email", "ichiro\x1b[2J@example.jp"), ("email", "ichiro@example.jp\x07"),
])
def test_control_characters_in_a_file_are_refused(terminal, write_csv, column, value):
    """ESC, OSC 52, BEL, C1 in a name or an e-mail: the row is rejected for it, and the value is not echoed."""
    row = {"phone_number": "09055550001", "name": "田中 一郎", "email": "", "zip_code": "150-0001",
           "card_last4": "1111", "card_vendor": "Visa", "card_status": "active", column: value}
    result = terminal.run("customers", "import", write_csv([list(row.values())]), "--operator", "sato")
    assert result.exit_code == 3 and "control characters" in result.output
    assert "\x1b" not in result.output and "\x07" not in result.output and "\x9b" not in result.output


def test_a_note_with_an_escape_sequence_is_refused(terminal, caller):
    """`--note` with ESC: refused, the hand-off unanswered."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    result = terminal.run("handoffs", "resolve", handoff_id, "--operator", "sato", "--reject",
                          "--note", "ok\x1b]0;pwned\x07")
    assert result.exit_code == 1 and "control characters" in result.output
    assert terminal.json("handoffs", "list")[0]["status"] == "unanswered"


def test_stored_control_characters_are_escaped_on_the_terminal(terminal):
    """A name stored before the rule: `customers show` prints `\\x1b`, not ESC, in text and in JSON."""
    with terminal.store.unit_of_work() as uow:
        uow.session.execute(update(Customer).where(Customer.phone_e164 == "+819000001111")
                            .values(name="佐藤\x1b]52;c;ZXZpbA==\x07\x85花子"))
        uow.commit()
    for args in (("customers", "show", "09000001111"), ("customers", "show", "09000001111", "--json")):
        out = terminal.ok(*args)
        assert "\x1b" not in out and "\x07" not in out and "\x85" not in out
        assert "x1b]52;c;ZXZpbA==" in out


def test_outbox_list_masks_addresses_and_numbers_in_errors(terminal):
    """A gateway error quoting the recipient: `outbox list` shows it masked, in text and JSON."""
    with terminal.store.unit_of_work() as uow:
        uow.session.add(OutboxMessage(customer_id=None, kind="lock_ticket", channel="sms", to="+819000001111",
                                      body="b", redacted_body="b", status="failed", attempts=1,
                                      last_error="550 <09000001111@sms.example.jp> unknown; also hanako.sato@"
                                                 "example.jp and +81 90-0000-1111"))
        uow.commit()
    for args in (("outbox", "list"), ("outbox", "list", "--json")):
        out = terminal.ok(*args)
        assert "09000001111" not in out and "hanako.sato" not in out and "90-0000-1111" not in out
        assert "h***@example.jp" in out


def test_retention_has_a_floor(terminal):
    """`customers purge --older-than 1h` is refused (RETENTION_FLOOR_DAYS, 30 by default); nothing purged."""
    terminal.ok("customers", "delete", "09000002222", "--operator", "sato")
    result = terminal.run("customers", "purge", "--older-than", "1h", "--operator", "sato")
    assert result.exit_code == 1 and "at least 30 days" in result.output
    assert terminal.json("customers", "show", "09000002222")["customer"]["deleted_at"] is not None


@pytest.mark.parametrize("name", ["ѕystem:webhook", "sаto"])  # Cyrillic ѕ; Cyrillic а inside a Latin name
def test_an_operator_name_with_look_alike_letters_is_refused(terminal, name):
    """A name that reads as the webhook (or as a colleague) in the audit trail: a usage error, nothing changed."""
    result = terminal.run("customers", "delete", "09000002222", "--operator", name)
    assert result.exit_code == 2 and "look-alikes" in result.output
    assert terminal.json("customers", "show", "09000002222")["customer"]["deleted_at"] is None
