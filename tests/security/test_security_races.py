"""Races on real stores, SQLite and PostgreSQL alike: parallel callers (threads, one app) cannot outrun a check.

SQLite used to begin its transaction at the first write, so a read-check-write was not atomic there; every write
unit of work now takes the write lock when it starts (BEGIN IMMEDIATE), as PostgreSQL's row locks do.
"""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from cardstore.models import ACTIVE, BLOCKED, INACTIVE, WEBHOOK_TRANSITIONS, AuditEvent, Card, Customer, LockTicket, \
    OtpChallenge
from tests.conftest import Caller
from webhook.app import service_of

HANAKO = "09000001111"
RACE_CARDS = [f"7{n:03d}" for n in range(12)]


def run_together(*jobs) -> list:
    """Start every job at the same instant (a barrier), wait for all, re-raise the first error."""
    barrier = threading.Barrier(len(jobs))
    answers: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i: int, job) -> None:
        try:
            barrier.wait()
            answers[i] = job()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return answers


@pytest.fixture
def race_app(make_app, store_url):
    """The webhook on each store, with a pool big enough for every thread (so nothing waits for a connection)."""
    return make_app(database_url=store_url, db_pool_size=40)


def test_thirty_parallel_guesses_against_one_code_count_exactly_the_allowed_three(race_app, phone):
    """One session, one code, 30 wrong guesses sent at once: every guess that was compared is recorded (attempts,
    audit row), no more than the code's limit of three are compared, and nothing verified. (Throttling may refuse
    some guesses before they are compared; a lost update would compare many and record few.)"""
    mallory = Caller(race_app.test_client(), phone, "race-guesses", HANAKO)
    assert mallory.call("send_otp", otp_channel="sms")["otp_sent"] is True
    wrong = "000000" if phone.last_code() != "000000" else "111111"
    clients = [Caller(race_app.test_client(), phone, "race-guesses", HANAKO) for _ in range(30)]
    answers = run_together(*[lambda c=c: c.call("verify_otp", otp_code=wrong) for c in clients])

    # A compared guess answers the attempts left (2, 1) or, for the last one, max_no_match; the rest find no code
    # (or are refused by a throttle).
    compared = [a for a in answers if a.get("otp_attempts_left", 0) > 0 or a.get("transfer_reason") == "max_no_match"]
    assert not any(a.get("otp_verified") for a in answers)
    limit = service_of(race_app).settings.otp_max_attempts
    with service_of(race_app).store.unit_of_work() as uow:
        challenge = uow.session.scalars(select(OtpChallenge)).one()
        failed = uow.session.scalars(select(AuditEvent).where(AuditEvent.action == "otp.failed")).all()
        assert 1 <= challenge.attempts <= limit
        assert len(failed) == challenge.attempts == len(compared), answers
        assert challenge.status == ("exhausted" if challenge.attempts == limit else "pending")


def _add_race_cards(store) -> None:
    with store.unit_of_work() as uow:
        hanako = uow.session.scalars(select(Customer).where(Customer.phone_e164 == "+819000001111")).one()
        for last4 in RACE_CARDS:
            uow.repo.add(Card(customer_id=hanako.id, last4=last4, vendor="Visa", status=ACTIVE))
        uow.commit()


def test_a_permanent_and_a_temporary_lock_raced_on_one_card_make_one_transition_out_of_active(race_app, phone):
    """Two verified sessions of Hanako lock the same card at the same instant, one permanently and one
    temporarily, on twelve cards: each card leaves `active` once, every ticket has its audit row, the audit
    history explains the final status, and a card the permanent lock reached is never left temporarily locked."""
    store = service_of(race_app).store
    _add_race_cards(store)
    permanent = Caller(race_app.test_client(), phone, "race-permanent", HANAKO)
    temporary = Caller(race_app.test_client(), phone, "race-temporary", HANAKO)
    permanent.authenticate()
    temporary.authenticate()
    outcomes = []
    for last4 in RACE_CARDS:
        outcomes.append(run_together(
            lambda: permanent.call("lock_card", last_four_digit_of_card_number=last4, lock_type=BLOCKED,
                                   lock_reason="stolen"),
            lambda: temporary.call("lock_card", last_four_digit_of_card_number=last4, lock_type=INACTIVE,
                                   lock_reason="lost"),
        ))
    with store.unit_of_work() as uow:
        for last4, (perm, temp) in zip(RACE_CARDS, outcomes):
            card = uow.session.scalars(select(Card).where(Card.last4 == last4)).one()
            locked = uow.session.scalars(select(AuditEvent).where(AuditEvent.card_id == card.id,
                                                                  AuditEvent.action == "card.locked")
                                         .order_by(AuditEvent.id)).all()
            tickets = uow.session.scalars(select(LockTicket).where(LockTicket.card_id == card.id)).all()
            assert sum(a.before["status"] == ACTIVE for a in locked) == 1, (last4, perm, temp)
            assert sorted(a.after["ticket_number"] for a in locked) == sorted(t.number for t in tickets)
            status = ACTIVE
            for row in locked:  # the audit trail, replayed, explains the card
                assert row.before["status"] == status and (status, row.after["status"]) in WEBHOOK_TRANSITIONS
                status = row.after["status"]
            assert card.status == status == BLOCKED, (last4, perm, temp)
            # Whoever lost heard the truth: a ticket for a lock that happened, or INVALID_TRANSITION.
            assert perm.get("card_status") == BLOCKED
            assert temp.get("card_status") == INACTIVE or temp.get("webhook_error_code") == "INVALID_TRANSITION"


def test_on_sqlite_a_write_unit_holds_the_write_lock_from_its_first_read_and_reads_never_wait(sqlite_url):
    """A writing unit that has only read so far already holds SQLite's write lock (another writer is refused at
    once with timeout 0), while a read-only unit reads beside it without waiting — and cannot commit."""
    import sqlite3

    from cardstore.uow import ReadOnlyUnitOfWork, Store

    store = Store(sqlite_url)
    path = sqlite_url.removeprefix("sqlite:///")
    try:
        with store.unit_of_work() as writer:
            assert writer.session.scalars(select(Card.id)).first() is not None  # a read: BEGIN IMMEDIATE ran
            other = sqlite3.connect(path, timeout=0, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
            with store.unit_of_work(read_only=True) as reader:
                assert reader.session.scalars(select(Card.id)).first() is not None
        with store.unit_of_work(read_only=True) as reader:
            reader.session.add(Card(customer_id=1, last4="9999", vendor="Visa"))
            with pytest.raises(ReadOnlyUnitOfWork):
                reader.commit()
        with store.unit_of_work(read_only=True) as reader:
            assert reader.session.scalars(select(Card).where(Card.last4 == "9999")).first() is None
    finally:
        store.dispose()
