"""The back-office service functions the console and the commands share, called directly: queue order, the
audited view, import conflicts and jobs with their stored progress, readable records, masking and escaping."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from backoffice import audit, handoffs, importer, jobs, records
from backoffice.errors import BadInput, Refused
from cardstore.models import AuditEvent, Handoff, ImportJob
from contact import mask_in_text
from safetext import escaped, has_controls

HEADER = "phone_number,name,email,zip_code,card_last4,card_vendor,card_status\r\n"


def _handed_off(caller, phone_number: str, last4: str, session: str) -> int:
    person = caller(phone_number, session=session)
    person.authenticate()
    if person.call("validate_card", last_four_digit_of_card_number=last4)["card_status"] == "active":
        person.call("lock_card", last_four_digit_of_card_number=last4, lock_type="inactive", lock_reason="lost")
    return person.call("request_reactivation", last_four_digit_of_card_number=last4)["handoff_id"]


def test_the_queue_is_unanswered_first_then_oldest_first_with_ages(store, caller):
    """Three hand-offs, the oldest answered: the two unanswered come first, oldest first; each has its age."""
    oldest = _handed_off(caller, "09012345041", "1456", "a")
    middle = _handed_off(caller, "09000001111", "5555", "b")
    newest = _handed_off(caller, "09000001111", "6666", "c")
    now = dt.datetime(2030, 1, 1)
    with store.unit_of_work() as uow:
        for i, handoff_id in enumerate((oldest, middle, newest)):
            uow.session.execute(update(Handoff).where(Handoff.id == handoff_id)
                                .values(created_at=now - dt.timedelta(hours=3 - i)))
        handoffs.resolve(uow, oldest, "sato", handoffs.REJECTED, "no")
    with store.unit_of_work() as uow:
        queue = handoffs.list_handoffs(uow, now=now)
    assert [h["id"] for h in queue] == [middle, newest, oldest]
    assert [h["age_seconds"] for h in queue[:2]] == [7200, 3600]


def test_opening_a_handoff_is_recorded_before_it_is_shown(store, caller):
    """`show` commits a `handoff.viewed` row with the viewer and which fields were shown, never their values."""
    handoff_id = _handed_off(caller, "09012345041", "1456", "a")
    with store.unit_of_work() as uow:
        shown = handoffs.show(uow, handoff_id, "viewer@bank.example", zone=ZoneInfo("Asia/Tokyo"))
    assert shown["customer"]["phone_national"] == "09012345041"
    assert shown["handoff"]["created_at"].endswith("+09:00")
    with store.unit_of_work() as uow:
        [viewed] = uow.session.scalars(select(AuditEvent).where(AuditEvent.action == "handoff.viewed")).all()
        assert viewed.actor == "viewer@bank.example" and "09012345041" not in str(viewed.after)


def test_an_answer_queues_the_sms_in_its_own_transaction(store, caller):
    """A refused answer (already answered) queues nothing; the first answer queued exactly one SMS."""
    handoff_id = _handed_off(caller, "09012345041", "1456", "a")
    with store.unit_of_work() as uow:
        first = handoffs.resolve(uow, handoff_id, "sato", handoffs.REJECTED, "no")
    assert first["outbox_id"] is not None
    with store.unit_of_work() as uow, pytest.raises(Refused):
        handoffs.resolve(uow, handoff_id, "suzuki", handoffs.REJECTED, "again")
    from cardstore.models import OutboxMessage

    with store.unit_of_work() as uow:
        kinds = list(uow.session.scalars(select(OutboxMessage.kind).where(OutboxMessage.kind.like("handoff_%"))))
    assert kinds == ["handoff_rejected"]


@pytest.mark.parametrize("note", ["", "   ", "x" * 2001, "ok\x1b[31m", "bell\x07", "c1\x9b", "rtl\u202e"])
def test_a_bad_note_is_refused(note):
    """Empty, too long, or holding control characters: BadInput before anything is read."""
    with pytest.raises(BadInput):
        handoffs.check_note(note)


def test_a_note_may_have_line_breaks():
    """Multi-line notes are fine."""
    assert handoffs.check_note(" 本人確認済み\n折り返し済み ") == "本人確認済み\n折り返し済み"


def test_three_rows_of_one_number_each_name_the_others():
    """Lines 2 and 4 agree, line 3 differs: every one is rejected, naming the lines with the other name."""
    data = (HEADER + "09011112222,山田 太郎,,1500001,1111,Visa,active\r\n"
                     "09011112222,山田 次郎,,1500001,2222,Visa,active\r\n"
                     "09011112222,山田 太郎,,1500001,3333,Visa,active\r\n").encode()
    report, groups = importer.check_file(data, region="JP")
    reasons = {r.line: r.reasons for r in report.rejected}
    assert reasons == {2: ["name differs from line 3, which has the same phone number"],
                       3: ["name differs from lines 2, 4, which has the same phone number"],
                       4: ["name differs from line 3, which has the same phone number"]}
    assert groups == {}


def test_one_card_twice_with_another_status_is_rejected_on_both_rows():
    """The same card as active and blocked: both rows, each naming the other."""
    data = (HEADER + "09011112222,山田 太郎,,1500001,1111,Visa,active\r\n"
                     "09011112222,山田 太郎,,1500001,1111,Visa,blocked\r\n").encode()
    report, _ = importer.check_file(data, region="JP")
    assert {r.line: r.reasons for r in report.rejected} == {
        2: ["the same card is on line 3 with another vendor or status"],
        3: ["the same card is on line 2 with another vendor or status"]}


def test_a_mixed_encoding_file_names_the_line_where_it_changes():
    """UTF-8 on lines 2-3, Shift_JIS from line 4: BadInput naming line 4."""
    data = (HEADER.encode() + "09011110001,田中,,1500001,1111,Visa,active\r\n".encode()
            + "09011110002,佐藤,,1500001,1111,Visa,active\r\n".encode()
            + "09011110003,鈴木,,1500001,1111,Visa,active\r\n".encode("cp932"))
    with pytest.raises(BadInput, match=r"^line 4: the file mixes encodings"):
        importer.decode(data)


def test_a_pure_shift_jis_file_is_still_read():
    """Only Shift_JIS lines: detected as cp932 as before."""
    data = (HEADER + "09011110001,田中 一郎,,1500001,1111,Visa,active\r\n").encode("cp932")
    assert importer.decode(data).encoding == "cp932"


def test_an_import_job_keeps_its_progress_and_result_in_the_store(store):
    """preview -> start (run inline) -> done: the phases were written, the file dropped, a second start refused."""
    rows = "".join(f"0901111{n:04d},顧客 {n},,1500001,{n:04d},Visa,active\r\n" for n in range(2500))
    token = jobs.preview(store, (HEADER + rows).encode(), filename="many.csv", actor="op@bank.example",
                         region="JP")
    assert jobs.status(store, token)["preview"]["rows"]["read"] == 2500
    seen = []
    original = jobs._StoreProgress.save

    def spy(self, phase, total, done):
        seen.append((phase, done))
        original(self, phase, total, done)

    jobs._StoreProgress.save = spy
    try:
        jobs.start(store, token, "op@bank.example", region="JP", background=False)
    finally:
        jobs._StoreProgress.save = original
    job = jobs.status(store, token)
    assert job["status"] == "done" and job["result"]["rows"]["imported"] == 2500
    assert {phase for phase, _ in seen} == {"checking rows", "importing"}
    assert any(0 < done < 2500 for phase, done in seen if phase == "checking rows")
    with store.unit_of_work() as uow:
        assert uow.session.scalars(select(ImportJob.data)).one() is None
    with pytest.raises(Refused):
        jobs.start(store, token, "op@bank.example", region="JP", background=False)


def test_audit_changes_read_as_words():
    """before/after dicts become one line per field, with an arrow only where the value changed."""
    assert records.changes({"status": "inactive"}, {"status": "active", "handoff_id": 1}) == [
        "status: inactive → active", "handoff_id: 1"]
    assert records.changes({"a": 1}, {"a": 1}) == ["a: 1"]
    assert records.changes({"gone": "x"}, None) == ["gone: x → (removed)"]


def test_an_unknown_action_names_the_valid_ones():
    with pytest.raises(BadInput, match="card.locked"):
        audit.check_action("lock")


@pytest.mark.parametrize("cell, shown", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+81 90", "'+81 90"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\\x09=1"), ("sato", "sato"), ("a=b", "a=b"),
])
def test_csv_cells_a_spreadsheet_would_run_are_text(cell, shown):
    """Formula starts get an apostrophe; control characters are escaped."""
    assert audit.csv_cell(cell) == shown


def test_errors_are_masked():
    """E-mail addresses and long digit runs in free text are masked like elsewhere; dates and codes stay."""
    text = "550 5.1.1 <09012345678@sms.example.jp>: unknown; hanako.sato@example.jp; +81 90-1234-5678 on 2026-11-23"
    masked = mask_in_text(text)
    assert "09012345678" not in masked and "hanako.sato" not in masked and "1234-5678" not in masked
    assert "0***@sms.example.jp" in masked and "h***@example.jp" in masked and "2026-11-23" in masked
    assert masked.startswith("550 5.1.1 ")


def test_control_characters_are_escaped_and_detected():
    """ESC, BEL, C1 and bidi overrides show as escapes; newlines stay in multi-line text."""
    assert escaped("a\x1b]52;c;x\x07b\x85\u202e\nc") == "a\\x1b]52;c;x\\x07b\\x85\\u202e\nc"
    assert has_controls("a\nb") and not has_controls("a\nb", multiline=True)


def test_a_file_without_the_columns_is_refused_before_a_job_exists(store):
    """A header without the required columns: BadInput at once, no job row, no file kept."""
    with pytest.raises(BadInput, match="missing column"):
        jobs.preview(store, b"name,phone\r\nx,y\r\n", filename="wrong.csv", actor="op@bank.example", region="JP")
    with store.unit_of_work() as uow:
        assert uow.session.scalars(select(ImportJob)).all() == []
