"""The lock as one explicit transaction outside the ORM (issue 15), on real stores: exactly its four rows or none,
the same refusals as before, a free ticket number however the candidates fall, and a card that two concurrent locks
cannot both change from the same state (PostgreSQL's row lock)."""
from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import create_engine, select, text, update

from cardstore import repository
from cardstore.models import AuditEvent, Card, Customer, LockTicket, OutboxMessage, VerifiedSession, utcnow
from settings import STEP_UP_WINDOW_S
from tests.conftest import Caller, cx_request, reset_postgres
from tests.store_state import recorded, refuse_inserts, store_snapshot, unchanged
from webhook.app import service_of

HANAKO, HANAKO_E164 = "09000001111", "+819000001111"


@pytest.fixture
def hanako(caller):
    h = caller(HANAKO, session="lock-write")
    h.authenticate()
    return h


def lock(c, last4="4444", lock_type="inactive", reason="lost"):
    return c.call("lock_card", last_four_digit_of_card_number=last4, lock_type=lock_type, lock_reason=reason)


def _card(store, last4="4444", phone=HANAKO_E164) -> Card:
    with store.unit_of_work() as uow:
        card = uow.session.scalars(select(Card).join(Customer).where(Customer.phone_e164 == phone,
                                                                     Card.last4 == last4)).one()
        uow.session.expunge(card)
        return card


def _rows(store, model, *where) -> list:
    with store.unit_of_work() as uow:
        rows = uow.session.scalars(select(model).where(*where).order_by(model.id)).all()
        uow.session.expunge_all()
        return list(rows)


def _assert_one_whole_lock(store, answer: dict, *, before_status="active", lock_type="inactive", reason="lost",
                           version=1) -> None:
    """The card moved once; one ticket, one audit row, one outbox row, all saying the same."""
    card = _card(store)
    assert answer == {"ticket_number": answer["ticket_number"], "card_status": lock_type}
    assert (card.status, card.status_version) == (lock_type, version)
    (ticket,) = _rows(store, LockTicket, LockTicket.card_id == card.id, LockTicket.card_status_version == version)
    assert (ticket.number, ticket.lock_type, ticket.reason) == (answer["ticket_number"], lock_type, reason)
    (audit,) = [a for a in _rows(store, AuditEvent, AuditEvent.card_id == card.id)
                if (a.after or {}).get("ticket_number") == ticket.number]
    assert (audit.actor, audit.action, audit.customer_id) == ("system:webhook", "card.locked", card.customer_id)
    assert audit.before == {"status": before_status}
    assert audit.after == {"status": lock_type, "reason": reason, "ticket_number": ticket.number}
    notices = [m for m in _rows(store, OutboxMessage, OutboxMessage.kind == "lock_ticket")
               if str(ticket.number) in m.body]
    assert len(notices) == 1 and notices[0].to == HANAKO_E164 and notices[0].customer_id == card.customer_id


def test_a_lock_writes_exactly_its_four_rows(hanako, store):
    """The card's status and version, one ticket, one audit row, one outbox row exactly as the ORM wrote them
    (every NOT NULL column and Python-side default supplied), and nothing else."""
    with recorded(store) as changes:
        answer = lock(hanako)
    assert sorted(changes) == ["audit_events", "cards", "lock_tickets", "outbox"], changes
    assert [len(changes[t]["added"]) for t in ("audit_events", "lock_tickets", "outbox")] == [1, 1, 1]
    assert len(changes["cards"]["added"]) == len(changes["cards"]["removed"]) == 1  # one row changed
    assert changes["cards"]["count"][0] == changes["cards"]["count"][1]
    _assert_one_whole_lock(store, answer)
    card = _card(store)
    assert card.updated_at is not None and abs(card.updated_at - utcnow()) < dt.timedelta(minutes=1)
    (ticket,) = _rows(store, LockTicket)
    assert ticket.session.endswith("lock-write") and abs(ticket.created_at - utcnow()) < dt.timedelta(minutes=1)
    (audit,) = _rows(store, AuditEvent, AuditEvent.action == "card.locked")
    assert audit.session.endswith("lock-write") and audit.at == ticket.created_at
    (outbox,) = _rows(store, OutboxMessage, OutboxMessage.kind == "lock_ticket")
    assert outbox.channel == "sms" and outbox.subject and outbox.redacted_body == outbox.body
    assert "4444" in outbox.body and str(ticket.number) in outbox.body
    # What the relay did with it: it was pending (attempts 0, due at once), and has been delivered.
    assert outbox.status == "sent" and outbox.attempts == 1 and outbox.expires_at is None
    assert outbox.created_at == ticket.created_at and outbox.next_attempt_at is not None


def test_a_queued_lock_notice_is_pending_and_due(hanako, store, make_app, phone, store_url):
    """The outbox row as the lock leaves it, before any relay: pending, no attempt, due now, no lease."""
    app = make_app(database_url=store_url)
    quiet = Caller(app.test_client(), phone, "lock-write", HANAKO)
    body = quiet.client.post("/webhook", json=cx_request(
        Caller.TAGS["lock_card"], "lock-write", phone_number=HANAKO, last_four_digit_of_card_number="4444",
        lock_type="blocked", lock_reason="stolen")).get_json()
    assert body["sessionInfo"]["parameters"]["card_status"] == "blocked"
    (outbox,) = _rows(store, OutboxMessage, OutboxMessage.kind == "lock_ticket")
    assert (outbox.status, outbox.attempts, outbox.last_error, outbox.sent_at, outbox.lease_until,
            outbox.claimed_by) == ("pending", 0, None, None, None, None)
    assert outbox.next_attempt_at == outbox.created_at and abs(outbox.created_at - utcnow()) < dt.timedelta(minutes=1)


def test_a_replay_returns_the_same_ticket_and_writes_nothing(hanako, store):
    first = lock(hanako)
    with unchanged(store):
        assert lock(hanako) == first
        assert lock(hanako, reason="stolen") == first  # the same lock asked again: the reason does not make it new


def test_a_lock_then_a_permanent_one_then_replays_of_both(hanako, store):
    """active -> inactive -> blocked; the temporary lock's ticket is not replayed once the card moved on (refused:
    blocked -> inactive), the permanent one's is."""
    first = lock(hanako)
    second = lock(hanako, lock_type="blocked", reason="stolen")
    assert second["card_status"] == "blocked" and second["ticket_number"] != first["ticket_number"]
    with unchanged(store):
        assert lock(hanako)["webhook_error_code"] == "INVALID_TRANSITION"
        assert lock(hanako, lock_type="blocked", reason="stolen") == second
    _assert_one_whole_lock(store, second, before_status="inactive", lock_type="blocked", reason="stolen", version=2)


@pytest.mark.parametrize("who, phone_number, last4, code", [
    ("unverified", HANAKO, "4444", "AUTH_REQUIRED"),  # her number, but this session proved nothing
    ("stranger", "09099998888", "4444", "AUTH_REQUIRED"),  # nobody's number: never told apart from the above
    ("someone else's", "09000002222", "4444", "AUTH_REQUIRED"),  # a customer, verified in another session only
    ("verified", HANAKO, "9999", "CARD_NOT_FOUND"),  # verified, but not her card
    ("verified", HANAKO, "1457", "CARD_NOT_FOUND"),  # Misaki's card, not hers
])
def test_refusals_keep_their_codes_and_write_nothing(hanako, caller, store, who, phone_number, last4, code):
    other = caller("09000002222", session="someone-else")
    other.authenticate()
    c = hanako if who == "verified" else caller(phone_number, session=f"refused-{who}")
    if who == "someone else's":
        c = caller(phone_number, session="lock-write")  # Hanako's session asking about 2222's card
    with unchanged(store):
        assert lock(c, last4=last4) == {"transfer_reason": "webhook_error", "webhook_error_code": code}


def test_a_code_older_than_the_step_up_window_is_not_enough(hanako, store):
    """Verified, but longer ago than STEP_UP_WINDOW_S: AUTH_REQUIRED (the window's bound compared in the store)."""
    with store.unit_of_work() as uow:
        uow.session.execute(update(VerifiedSession).values(
            verified_at=utcnow() - dt.timedelta(seconds=STEP_UP_WINDOW_S + 5)))
        uow.commit()
    with unchanged(store):
        assert lock(hanako)["webhook_error_code"] == "AUTH_REQUIRED"
    with store.unit_of_work() as uow:
        uow.session.execute(update(VerifiedSession).values(
            verified_at=utcnow() - dt.timedelta(seconds=STEP_UP_WINDOW_S - 30)))
        uow.commit()
    assert lock(hanako)["card_status"] == "inactive"


def test_a_deleted_customer_cannot_lock(hanako, store):
    with store.unit_of_work() as uow:
        uow.session.execute(update(Customer).where(Customer.phone_e164 == HANAKO_E164).values(deleted_at=utcnow()))
        uow.commit()
    with unchanged(store):
        assert lock(hanako)["webhook_error_code"] == "AUTH_REQUIRED"


def test_no_notice_is_texted_to_a_toll_free_number(caller, store, phone):
    """An older record with a toll-free number (verified by e-mail): the lock is made; its notice is queued with it
    and given up by the relay, which never texts such a number (tests/security: any SMS row, whatever queued it)."""
    toll_free = "+81120444555"
    with store.unit_of_work() as uow:
        customer = uow.repo.add(Customer(phone_e164=toll_free, zip_code="1000001", email="free@example.jp"))
        uow.session.flush()
        uow.repo.add(Card(customer_id=customer.id, last4="8888", vendor="Visa"))
        uow.commit()
    c = caller("0120444555", session="toll-free")
    assert c.authenticate(channel="email")["otp_verified"] is True
    answer = lock(c, last4="8888")
    assert answer["card_status"] == "inactive"
    notices = _rows(store, OutboxMessage, OutboxMessage.kind == "lock_ticket")
    assert [(n.to, n.status, n.sent_at) for n in notices] == [(toll_free, "given_up", None)]
    assert "TOLL_FREE" in notices[0].last_error
    assert phone.messages(toll_free) == []
    assert len(_rows(store, AuditEvent, AuditEvent.action == "card.locked")) == 1


# --- failures in the middle keep nothing -------------------------------------------------------------------------

@pytest.mark.parametrize("table", ["audit_events", "outbox"])
def test_a_failing_insert_keeps_nothing_and_the_retry_locks(hanako, store, store_url, table):
    """The audit row (third of the four writes) or the outbox row (the last) cannot be written — the database
    refuses it: webhook_error, and the card's UPDATE and every row sent before it are rolled back with it, on the
    first run and on the webhook's one retry. Once the table takes rows again, the same request makes one whole
    lock."""
    before = store_snapshot(store)
    remove = refuse_inserts(store_url, table)
    try:
        assert lock(hanako) == {"transfer_reason": "webhook_error", "webhook_error_code": "INTERNAL"}
    finally:
        remove()
    assert store_snapshot(store) == before
    _assert_one_whole_lock(store, lock(hanako))


def _offer(monkeypatch, numbers: list[int]) -> None:
    """The lock's candidate ticket numbers are these, NUMBER_CANDIDATES at a time, in order."""
    supply = iter(numbers)
    monkeypatch.setattr(repository, "_candidates",
                        lambda: {f"n{i}": next(supply) for i in range(repository.NUMBER_CANDIDATES)})


def test_taken_candidates_fall_back_to_a_probe(hanako, store, monkeypatch):
    """Every number the lock's statement was offered is taken: the probe finds a free one, and the lock uses it."""
    other = _card(store, "4444", "+819000002222")
    taken = [2_000_001, 2_000_002, 2_000_003, 2_000_004, 2_000_005, 2_000_006]
    with store.unit_of_work() as uow:
        for n in taken:
            uow.repo.add(LockTicket(number=n, card_id=other.id, session="elsewhere", lock_type="inactive",
                                    reason="lost", created_at=utcnow()))
        uow.commit()
    _offer(monkeypatch, taken + [2_000_007] + list(range(3_000_000, 3_000_100)))
    answer = lock(hanako)
    assert answer["ticket_number"] == 2_000_007
    _assert_one_whole_lock(store, answer)


def test_the_first_free_candidate_is_taken(hanako, store, monkeypatch):
    other = _card(store, "4444", "+819000002222")
    with store.unit_of_work() as uow:
        uow.repo.add(LockTicket(number=4_000_001, card_id=other.id, session="elsewhere", lock_type="inactive",
                                reason="lost", created_at=utcnow()))
        uow.commit()
    _offer(monkeypatch, [4_000_001, 4_000_002, 4_000_003])
    assert lock(hanako)["ticket_number"] == 4_000_002


def _wait_for_lock_waiters(engine, statement_start: str, count: int, timeout_s: float = 5.0) -> bool:
    """Whether `count` sessions of this database are waiting on a lock in a statement starting so."""
    deadline = time.monotonic() + timeout_s
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE :q"), {"q": statement_start + "%"}).scalar_one()
            if waiting >= count:
                return True
            conn.rollback()
            time.sleep(0.005)
    return False


@pytest.fixture
def patient(monkeypatch):
    """Stores built from now on wait up to 5 s on a lock (not 0.5 s): the tests below hold a lock on purpose and
    release it once the webhook's statement waits for it, however slow the machine is."""
    from cardstore import uow

    monkeypatch.setattr(uow, "LOCK_TIMEOUT_MS", 5000)
    monkeypatch.setattr(uow, "STATEMENT_TIMEOUT_MS", 5000)
    monkeypatch.setattr(uow._deadline_connection_class(), "round_trip_deadline_s", 5.0)


@pytest.mark.postgres
def test_a_number_taken_by_a_concurrent_lock_is_retried(make_app, phone, postgres_base_url, monkeypatch, patient):
    """The number was free when the lock read it, but another transaction inserts it and commits while this lock's
    INSERT waits on the unique index: IntegrityError, the webhook's one retry, a fresh number, one whole lock."""
    reset_postgres(postgres_base_url)
    app = make_app(database_url=postgres_base_url)
    hanako = Caller(app.test_client(), phone, "lock-write", HANAKO)
    hanako.authenticate()
    store = service_of(app).store
    other = _card(store, "4444", "+819000002222")
    _offer(monkeypatch, [5_000_001] * 3 + list(range(5_000_100, 5_000_200)))
    rival = create_engine(postgres_base_url)
    try:
        with rival.connect() as conn:
            conn.execute(text("INSERT INTO lock_tickets (number, card_id, session, lock_type, reason, created_at, "
                              "card_status_version) VALUES (5000001, :card, 'rival', 'inactive', 'lost', now(), 0)"),
                         {"card": other.id})  # uncommitted: invisible to the lock's read

            def commit_when_the_lock_waits() -> None:
                if _wait_for_lock_waiters(rival, "INSERT INTO lock_tickets", 1):
                    conn.commit()

            committer = threading.Thread(target=commit_when_the_lock_waits)
            committer.start()
            answer = lock(hanako)
            committer.join(10)
            assert not conn.in_transaction(), "the lock's INSERT never waited on the rival's number"
    finally:
        rival.dispose()
    assert answer["ticket_number"] == 5_000_100, answer
    _assert_one_whole_lock(store, answer)


# --- two locks of one card at the same time (PostgreSQL: the card's row lock) --------------------------------------

def _two_apps(make_app, postgres_base_url):
    reset_postgres(postgres_base_url)
    return make_app(database_url=postgres_base_url), make_app(database_url=postgres_base_url)


def _race_behind_a_held_row_lock(store_url: str, card_id: int, *calls):
    """Hold the card's row lock, start `calls` in threads, release it once all of them wait on it: they then run
    one after the other from the same starting point (each read began before the first one committed)."""
    holder = create_engine(store_url)
    answers: list = [None] * len(calls)
    try:
        with holder.connect() as conn:
            conn.execute(text("SELECT id FROM cards WHERE id = :id FOR UPDATE"), {"id": card_id})

            def run(i: int) -> None:
                answers[i] = calls[i]()

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
            for t in threads:
                t.start()
            all_waiting = _wait_for_lock_waiters(holder, "SELECT customers.id", len(calls), timeout_s=3.0)
            conn.rollback()
            for t in threads:
                t.join(30)
    finally:
        holder.dispose()
    return all_waiting, answers


@pytest.mark.postgres
@pytest.mark.parametrize("round_", range(3))
def test_a_duplicated_delivery_of_one_lock_gets_one_ticket(make_app, phone, postgres_base_url, patient, round_):
    """CX delivers the same lock twice at once, to two instances: both wait on the card's row lock; the one served
    second sees the card as the first left it and answers with the first one's ticket — one ticket, one audit row,
    one notice."""
    app1, app2 = _two_apps(make_app, postgres_base_url)
    first = Caller(app1.test_client(), phone, "duplicated", HANAKO)
    first.authenticate()
    second = Caller(app2.test_client(), phone, "duplicated", HANAKO)
    store = service_of(app1).store
    card = _card(store)
    waited, answers = _race_behind_a_held_row_lock(postgres_base_url, card.id, lambda: lock(first),
                                                   lambda: lock(second))
    assert waited, "the two locks did not both wait on the card's row lock"
    assert answers[0] == answers[1] and answers[0]["card_status"] == "inactive", answers
    _assert_one_whole_lock(store, answers[0])
    assert len(_rows(store, LockTicket)) == 1


@pytest.mark.postgres
@pytest.mark.parametrize("lock_types", [("inactive", "inactive"), ("blocked", "blocked"), ("blocked", "inactive")])
def test_two_sessions_locking_one_card_at_once_make_one_change_from_active(make_app, phone, postgres_base_url,
                                                                           patient, lock_types):
    """Two verified sessions, two instances, the same card at the same instant: exactly one leaves it from active;
    the other either refuses (INVALID_TRANSITION) or makes the next legal change (inactive -> blocked), and every
    change has exactly one ticket and one audit row that tell its story."""
    app1, app2 = _two_apps(make_app, postgres_base_url)
    a = Caller(app1.test_client(), phone, "session-a", HANAKO)
    b = Caller(app2.test_client(), phone, "session-b", HANAKO)
    a.authenticate()
    b.authenticate()
    store = service_of(app1).store
    card = _card(store)
    waited, answers = _race_behind_a_held_row_lock(
        postgres_base_url, card.id, lambda: lock(a, lock_type=lock_types[0]), lambda: lock(b, lock_type=lock_types[1]))
    assert waited, "the two locks did not both wait on the card's row lock"
    made = [x for x in answers if "ticket_number" in x]
    refused = [x for x in answers if x.get("webhook_error_code") == "INVALID_TRANSITION"]
    assert len(made) + len(refused) == 2 and made, answers
    tickets = _rows(store, LockTicket, LockTicket.card_id == card.id)
    audits = _rows(store, AuditEvent, AuditEvent.card_id == card.id, AuditEvent.action == "card.locked")
    assert sorted(t.number for t in tickets) == sorted(x["ticket_number"] for x in made)
    assert [a.after["ticket_number"] for a in audits] == [t.number for t in tickets]
    assert sum(a.before["status"] == "active" for a in audits) == 1
    status = "active"
    for version, (ticket, audit) in enumerate(zip(tickets, audits), start=1):
        assert audit.before == {"status": status} and ticket.card_status_version == version
        status = audit.after["status"]
    final = _card(store)
    assert (final.status, final.status_version) == (status, len(tickets))


# --- the number as the session verified it (issue 15: a lock by a verified session's own text parses nothing) ------

def test_a_lock_with_the_verified_number_written_otherwise_still_locks(caller, store):
    """Verified as "090-0000-1111", locking as "09000001111" (or the E.164 form): the same customer, one lock."""
    h = caller("090-0000-1111", session="written-otherwise")
    assert h.authenticate()["otp_verified"] is True
    h.phone_number = "+81 90 0000 1111"
    answer = lock(h)
    assert answer["card_status"] == "inactive" and "webhook_error_code" not in answer


def test_a_verified_text_opens_nothing_in_another_session(caller, store):
    """Session A verified Hanako with this very text; session B, which verified nothing, sends the same text."""
    caller(HANAKO, session="verified-a").authenticate()
    with unchanged(store, except_tables=("throttle_counters", "audit_events")):
        assert lock(caller(HANAKO, session="never-verified-b"))["webhook_error_code"] == "AUTH_REQUIRED"


def test_a_verified_text_is_dead_once_the_number_is_the_customers_no_longer(hanako, store):
    """Hanako verified with 090-0000-1111; an operator then gives her another number: the session's text no longer
    speaks for her (a lock finds no customer with that number), as before the text was kept."""
    with store.unit_of_work() as uow:
        uow.session.execute(update(Customer).where(Customer.phone_e164 == HANAKO_E164)
                            .values(phone_e164="+819000009999"))
        uow.commit()
    with unchanged(store, except_tables=("throttle_counters", "audit_events")):
        assert lock(hanako)["webhook_error_code"] == "AUTH_REQUIRED"


def test_a_verified_text_is_dead_once_the_number_is_given_to_someone_else(hanako, store):
    """Hanako verified with her number; it is then given to a new customer (Hanako's changed): the session's text
    must not open the new holder's card, although the text now canonicalises to the new holder's number."""
    with store.unit_of_work() as uow:
        uow.session.execute(update(Customer).where(Customer.phone_e164 == HANAKO_E164)
                            .values(phone_e164="+819000009999"))
        newcomer = Customer(phone_e164=HANAKO_E164, name="新", email=None, zip_code="1000001")
        uow.session.add(newcomer)
        uow.session.flush()
        uow.session.add(Card(customer_id=newcomer.id, last4="4444", vendor="Visa"))
        uow.commit()
    with unchanged(store, except_tables=("throttle_counters", "audit_events")):
        assert lock(hanako)["webhook_error_code"] == "AUTH_REQUIRED"


def test_a_lock_by_the_text_its_session_verified_with_parses_no_number(caller, store):
    """The webhook's cache of parsed numbers, emptied after verification: a lock sending the verified text leaves it
    empty (the number was not parsed); one sending the number written otherwise parses it (one entry)."""
    from handlers.values import _e164_of

    h = caller("090-0000-1111", session="parses-nothing")
    assert h.authenticate()["otp_verified"] is True
    _e164_of.cache_clear()
    assert lock(h)["card_status"] == "inactive"
    assert _e164_of.cache_info().currsize == 0
    h.phone_number = "09000001111"
    assert lock(h, lock_type="blocked")["card_status"] == "blocked"
    assert _e164_of.cache_info().currsize == 1
