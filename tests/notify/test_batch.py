"""Batched claims and records: one write transaction claims up to OUTBOX_CLAIM_BATCH of the oldest due rows, two
relays racing never claim one row twice (PostgreSQL: SKIP LOCKED, the pick evaluated once), a relay that dies
mid-batch has every row sent again exactly once after the lease and no code after its expiry, and the relay's
write transactions per notice stay a fraction of one (on SQLite each takes the store's single write lock)."""
from __future__ import annotations

import datetime as dt
import itertools
import threading
import time

import pytest
from sqlalchemy import event, select

from cardstore.models import OutboxMessage, utcnow
from cardstore.uow import Store
from notify import Notifier
from notify.relay import Relay
from tests.conftest import test_settings

NUMBERS = itertools.count()


def queue(store: Store, n: int, *, kind: str = "lock_ticket", expires_in_s: float | None = None) -> list[int]:
    """Queue `n` notices (due now); their ids."""
    now = utcnow()
    with store.unit_of_work() as uow:
        rows = [OutboxMessage(kind=kind, channel="sms", to=f"0900000{i:04d}", body=f"notice {kind} {next(NUMBERS)}",
                              redacted_body=f"notice {kind} ******", created_at=now, next_attempt_at=now,
                              expires_at=None if expires_in_s is None else now + dt.timedelta(seconds=expires_in_s))
                for i in range(n)]
        uow.session.add_all(rows)
        uow.session.flush()
        ids = [r.id for r in rows]
        uow.commit()
    return ids


def rows(store: Store) -> dict[int, OutboxMessage]:
    with store.unit_of_work() as uow:
        found = uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)).all()
        uow.session.expunge_all()
    return {r.id: r for r in found}


@pytest.fixture
def setup(store_url, phone):
    stores = []

    def make(**overrides):
        settings = test_settings(store_url, phone.path, **overrides)
        store = Store(store_url)
        stores.append(store)
        store.engine.dispose()  # a clean pool: the seed fixtures' connection is not ours
        return settings, store

    yield make
    for store in stores:
        store.dispose()


def sent_ids(phone) -> list[str]:
    return [m["body"] for m in phone.messages()] if phone.path.exists() else []


def test_a_batch_claim_takes_at_most_the_batch_oldest_first(setup):
    settings, store = setup(outbox_claim_batch=20)
    old_ids = queue(store, 25)
    expired = queue(store, 3, kind="otp", expires_in_s=-1)  # already expired: never claimed
    notifier = Notifier(settings)
    claim = notifier.claim_batch(store)
    assert [m.id for m in claim.messages] == old_ids[:20]
    state = rows(store)
    assert all(state[i].status == "sending" and state[i].attempts == 1 and state[i].claimed_by == claim.token
               for i in old_ids[:20])
    assert all(state[i].status == "pending" and state[i].attempts == 0 for i in old_ids[20:] + expired)
    # the `ids` filter, a smaller limit
    again = notifier.claim_batch(store, [old_ids[24], old_ids[22], expired[0]], limit=1)
    assert [m.id for m in again.messages] == [old_ids[22]]
    last = notifier.claim_batch(store)
    assert [m.id for m in last.messages] == [old_ids[20], old_ids[21], old_ids[23], old_ids[24]]
    assert notifier.claim_batch(store) is None


def test_two_relays_racing_never_claim_the_same_row(setup):
    """Eight threads (two relays' worth) claim batches of seven at once until nothing is left: each claim takes at
    most seven, no row is claimed twice, every row once (PostgreSQL: SKIP LOCKED, the pick evaluated once)."""
    settings, store = setup(outbox_claim_batch=7)
    ids = queue(store, 300)
    notifier = Notifier(settings)
    start = threading.Barrier(8)
    claims: list[list[int]] = []
    errors: list[BaseException] = []

    def claimer():
        try:
            start.wait()
            while (claim := notifier.claim_batch(store)) is not None:
                claims.append([m.id for m in claim.messages])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=claimer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert all(1 <= len(c) <= 7 for c in claims)
    claimed = [i for c in claims for i in c]
    assert len(claimed) == len(set(claimed)) == 300 and set(claimed) == set(ids)
    assert {(r.status, r.attempts) for r in rows(store).values()} == {("sending", 1)}


def test_a_relay_killed_mid_batch_has_each_row_sent_once_after_the_lease(setup, phone):
    """A relay claims a batch and dies before sending any of it: inside the lease nobody takes the rows; after it,
    the next relay sends each exactly once — except a code that expired meanwhile, given up, never sent."""
    settings, store = setup(outbox_claim_batch=50, outbox_lease_seconds=60, notify_deadline_seconds=10)
    tickets = queue(store, 6)
    short = queue(store, 1, kind="otp", expires_in_s=30)  # expires inside the dead relay's lease
    codes = queue(store, 2, kind="otp", expires_in_s=600)
    notifier = Notifier(settings)
    dead = notifier.claim_batch(store)
    assert len(dead.messages) == 9
    now = utcnow()
    assert notifier.deliver(store, now=now + dt.timedelta(seconds=30)) == {"sent": 0, "failed": 0, "given_up": 0}
    assert notifier.deliver(store, now=now + dt.timedelta(seconds=61)) == {"sent": 8, "failed": 0, "given_up": 1}
    assert notifier.deliver(store, now=now + dt.timedelta(seconds=3600)) == {"sent": 0, "failed": 0, "given_up": 0}
    bodies = sent_ids(phone)
    assert len(bodies) == len(set(bodies)) == 8  # each once
    state = rows(store)
    assert state[short[0]].body not in bodies  # the expired code: never
    state = rows(store)
    assert all(state[i].status == "sent" and state[i].attempts == 2 for i in tickets + codes)
    assert state[short[0]].status == "given_up" and "expired" in state[short[0]].last_error
    assert state[short[0]].sent_at is None


class SlowBackend:
    """Accepts every message after `delay_s`; remembers what it accepted."""

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s
        self.accepted: list[int] = []

    def send(self, message) -> None:
        time.sleep(self.delay_s)
        self.accepted.append(message.id)


def test_a_code_that_expires_while_its_batch_is_sent_is_given_up(setup):
    """The batch's earlier sends are slow; the code behind them expires before its turn: given up, not sent."""
    settings, store = setup()
    first = queue(store, 2)
    code = queue(store, 1, kind="otp", expires_in_s=0.45)
    backend = SlowBackend(0.3)
    counts = Notifier(settings, backend).deliver(store)
    assert counts == {"sent": 2, "failed": 0, "given_up": 1}
    assert backend.accepted == first
    state = rows(store)
    assert state[code[0]].status == "given_up" and state[code[0]].attempts == 1


def test_a_batch_stops_sending_when_the_lease_would_not_cover_the_next_send(setup):
    """With 5 s of lease and a 2 s deadline, a batch whose sends take 1.2 s each hands the rest back (pending,
    attempts as before) once less than deadline + margin is left; they are sent by the next pass."""
    settings, store = setup(outbox_lease_seconds=5, notify_deadline_seconds=2)
    ids = queue(store, 4)
    backend = SlowBackend(1.2)
    notifier = Notifier(settings, backend)
    claim = notifier.claim_batch(store)
    outcomes = notifier.send_batch(store, claim)
    assert outcomes == ["sent", "released", "released", "released"]
    state = rows(store)
    assert [(state[i].status, state[i].attempts, state[i].claimed_by) for i in ids[1:]] == [("pending", 0, None)] * 3
    backend.delay_s = 0
    assert notifier.deliver(store)["sent"] == 3
    assert backend.accepted == ids


def test_a_sent_message_is_recorded_while_the_next_send_is_still_under_way(setup):
    """Outcomes are written together, but not held back by a slow send behind them: the first message is
    recorded `sent` within RECORD_WITHIN_S (+ the write) while the second send still hangs."""
    settings, store = setup()
    first, second = queue(store, 2)
    release = threading.Event()

    class Backend:
        def send(self, message):
            if message.id == second:
                release.wait(10)

    notifier = Notifier(settings, Backend())
    worker = threading.Thread(target=notifier.deliver, args=(store,))
    worker.start()
    try:
        ends = time.monotonic() + 5
        while rows(store)[first].status != "sent" and time.monotonic() < ends:
            time.sleep(0.05)
        state = rows(store)
        assert state[first].status == "sent" and state[second].status == "sending"
    finally:
        release.set()
        worker.join(10)
    assert rows(store)[second].status == "sent"


def count_commits(store: Store):
    counter = {"commits": 0}

    @event.listens_for(store.engine, "commit")
    def _commit(_conn):
        counter["commits"] += 1

    return counter


def test_the_relay_makes_a_fraction_of_a_write_transaction_per_notice(setup, phone):
    """200 notices, batches of 25: claims and records are one write transaction per batch each (plus the expiry
    sweep), not two per notice as with a claim per row — through `deliver` and through the running relay."""
    settings, store = setup(outbox_claim_batch=25, outbox_poll_seconds=0.05)
    queue(store, 200)
    counter = count_commits(store)
    assert Notifier(settings).deliver(store)["sent"] == 200
    # 8 claims + 8 records + 1 sweep (+1 when a record's timer fired mid-batch on a slow machine, per batch)
    assert counter["commits"] <= 2 * 8 + 1 + 8, counter

    queue(store, 200)
    counter["commits"] = 0
    relay = Relay(settings, store)
    runner = threading.Thread(target=relay.run)
    runner.start()
    try:
        ends = time.monotonic() + 30
        while any(r.status != "sent" for r in rows(store).values()) and time.monotonic() < ends:
            time.sleep(0.05)
    finally:
        relay.stop.set()
        runner.join(30)
    assert all(r.status == "sent" for r in rows(store).values())
    # Claims and records per batch, and while idle a sweep per poll: far below one per notice, while a claim per
    # row alone would be 200 (and its records another 200).
    assert counter["commits"] < 100, counter


def test_a_relay_stopping_hands_back_what_it_has_not_started(setup):
    """SIGTERM mid-batch: the send under way finishes and is recorded, the rest goes back to `pending` with its
    attempt count as before, for the next relay at once (not after the lease)."""
    settings, store = setup()
    ids = queue(store, 5)
    stop = threading.Event()

    class Backend:
        accepted: list[int] = []

        def send(self, message):
            self.accepted.append(message.id)
            stop.set()  # the signal arrives during the first send

    backend = Backend()
    notifier = Notifier(settings, backend)
    outcomes = notifier.send_batch(store, notifier.claim_batch(store), stop=stop)
    assert outcomes == ["sent"] + ["released"] * 4
    state = rows(store)
    assert state[ids[0]].status == "sent"
    assert [(state[i].status, state[i].attempts) for i in ids[1:]] == [("pending", 0)] * 4
    assert notifier.deliver(store)["sent"] == 4 and backend.accepted == ids


def test_a_sqlite_claim_updates_the_rows_its_pick_chose_by_their_ids(sqlite_url):
    """The claim holds SQLite's one write lock, which every webhook lock waits for: its UPDATE must find the picked
    rows by id. With `due` checked again outside the pick, SQLite walked every due row through the status index
    and tested each against the pick — a claim of 32 cost the whole backlog (2.4 ms at 3,000 queued)."""
    import datetime as dt
    import sqlite3

    from sqlalchemy.dialects import sqlite

    from notify.delivery import _claim_query

    store = Store(sqlite_url)
    queue(store, 50)
    store.dispose()
    compiled = _claim_query(False, None).compiled(sqlite.dialect())
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    with sqlite3.connect(store.url.removeprefix("sqlite:///")) as conn:
        plan = conn.execute("EXPLAIN QUERY PLAN " + compiled.sql, compiled.parameters(
            {"now": now, "limit": 32, "token": "t", "lease_until": now})).fetchall()
    outer = [detail for _id, parent, _n, detail in plan if parent == 0]
    assert outer[0] == "SEARCH outbox USING INTEGER PRIMARY KEY (rowid=?)", plan
    assert not any("MULTI-INDEX OR" in detail for detail in outer), plan


def _claim_steps(url: str, limit: int) -> int:
    """SQLite virtual-machine steps one claim of `limit` takes (counted, then rolled back)."""
    import sqlite3

    from sqlalchemy.dialects import sqlite

    from notify.delivery import _claim_query

    compiled = _claim_query(False, None).compiled(sqlite.dialect())
    now = utcnow()
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.set_progress_handler(count, 1)
        claimed = conn.execute(compiled.sql, compiled.parameters(
            {"now": now, "limit": limit, "token": "t", "lease_until": now + dt.timedelta(seconds=60)})).fetchall()
        conn.set_progress_handler(None, 1)
        conn.execute("ROLLBACK")
    finally:
        conn.close()
    assert len(claimed) == limit
    return steps[0]


def test_a_sqlite_claim_costs_the_same_at_any_backlog(sqlite_url):
    """The claim holds SQLite's one write lock, which every webhook lock waits for, and the relay claims a batch at
    a time however long the queue is. Picking the oldest due rows by sorting every due row on its id made a claim
    of 32 cost the whole backlog (~20 µs a queued row under load: 1.3 ms a batch at a few hundred queued). The pick
    walks the due index in its own order and stops at the batch: the same work at 100 queued and at 2,000 (counted
    in SQLite's virtual-machine steps, which a busy machine does not change)."""
    store = Store(sqlite_url)
    queue(store, 100)
    small = _claim_steps(sqlite_url, 32)
    queue(store, 1900)
    large = _claim_steps(sqlite_url, 32)
    store.dispose()
    assert large < 1.2 * small, (small, large)


def test_a_claim_takes_the_longest_due_first_whatever_the_row_waits_in(setup):
    """Pending rows, a retry whose back-off has passed and a row whose relay's lease lapsed are all due: the claim
    takes the ones due longest first, across the three, so a queue of fresh notices never starves a retry."""
    settings, store = setup(outbox_claim_batch=3)
    fresh = queue(store, 5)
    retry, lapsed, later_retry = queue(store, 3)
    long_ago = utcnow() - dt.timedelta(minutes=5)
    with store.unit_of_work() as uow:
        for message_id, status, due in ((retry, "failed", long_ago), (lapsed, "sending", long_ago - dt.timedelta(seconds=1)),
                                        (later_retry, "failed", utcnow() + dt.timedelta(minutes=5))):
            row = uow.session.get(OutboxMessage, message_id)
            row.status, row.next_attempt_at, row.attempts = status, due, 1
            if status == "sending":
                row.claimed_by, row.lease_until = "a-dead-relay", long_ago
        uow.commit()
    notifier = Notifier(settings)
    first = notifier.claim_batch(store)
    assert sorted(m.id for m in first.messages) == sorted([lapsed, retry, fresh[0]])
    second = notifier.claim_batch(store)
    assert [m.id for m in second.messages] == fresh[1:4]
    third = notifier.claim_batch(store)
    assert [m.id for m in third.messages] == [fresh[4]]  # the retry due in five minutes is not due yet
    assert notifier.claim_batch(store) is None


def test_the_largest_batch_is_claimed_and_recorded_in_one_statement_each(setup, phone):
    """OUTBOX_CLAIM_BATCH's ceiling (1,000): the claim binds its ids one by one and the record reads 1,000 ids back —
    within the databases' limits on parameters and expression depth."""
    settings, store = setup(outbox_claim_batch=1000)
    ids = queue(store, 1000)
    notifier = Notifier(settings)
    claim = notifier.claim_batch(store, ids)
    assert claim is not None and [m.id for m in claim.messages] == ids
    assert notifier.send_batch(store, claim) == ["sent"] * 1000
    assert {r.status for r in rows(store).values()} == {"sent"}
    assert len(sent_ids(phone)) == 1000
