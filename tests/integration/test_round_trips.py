"""On PostgreSQL a read tag costs one round trip to the server — no pool ping, no BEGIN, no ROLLBACK around its
one statement — counted by libpq's own protocol trace: the server ends every exchange with one ReadyForQuery.
On both stores a read tag opens no ORM session."""
from __future__ import annotations

import pytest
from psycopg import pq
from sqlalchemy import event
from sqlalchemy.orm import Session

from tests.conftest import Caller, reset_postgres
from webhook.app import service_of


class ProtocolTrace:
    """libpq's trace (PQtrace) of every connection the store opens from now on, written to a file."""

    def __init__(self, store, path) -> None:
        self.path = path
        self._file = open(path, "w", encoding="utf-8")
        store.engine.pool.dispose()  # connections opened from here on are traced
        event.listen(store.engine, "connect", self._trace)
        self._mark = 0

    def _trace(self, dbapi_conn, _record) -> None:
        dbapi_conn.pgconn.trace(self._file.fileno())
        dbapi_conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)

    def mark(self) -> None:
        self._file.flush()
        self._mark = len(self._lines())

    def since_mark(self) -> list[str]:
        self._file.flush()
        return self._lines()[self._mark:]

    def close(self, store) -> None:
        event.remove(store.engine, "connect", self._trace)
        store.engine.pool.dispose()  # the traced connections close before their file does
        self._file.close()

    def round_trips(self) -> int:
        return sum(1 for line in self.since_mark() if line.startswith("B\t") and "\tReadyForQuery" in line)

    def _lines(self) -> list[str]:
        return self.path.read_text(encoding="utf-8").splitlines()


@pytest.fixture
def traced(make_app, phone, postgres_base_url, tmp_path):
    """Hanako, verified in her session, on a webhook over PostgreSQL whose every connection is traced."""
    reset_postgres(postgres_base_url)
    app = make_app(database_url=postgres_base_url, db_pool_size=1)
    hanako = Caller(app.test_client(), phone, "round-trips", "09000001111")
    hanako.authenticate()
    trace = ProtocolTrace(service_of(app).store, tmp_path / "libpq-trace.txt")
    # The new connection's first uses: psycopg prepares a statement server-side on its fifth run on a connection
    # (one extra exchange, once per connection); what is counted below is every call after that.
    for _ in range(6):
        hanako.call("get_card_details")
    yield hanako, trace
    trace.close(service_of(app).store)


@pytest.mark.postgres
@pytest.mark.parametrize("action, params", [
    ("get_card_details", {}),
    ("validate_card", {"last_four_digit_of_card_number": 4444.0}),
    ("validate_card", {"last_four_digit_of_card_number": "9999"}),  # not hers: still one statement
])
def test_a_read_tag_is_one_round_trip(traced, action, params):
    """Five calls of a read tag, five exchanges with the server: the statement, nothing before or after it."""
    hanako, trace = traced
    trace.mark()
    for _ in range(5):
        answer = hanako.call(action, **params)
        assert "webhook_error_code" not in answer
    assert trace.round_trips() == 5, "\n".join(trace.since_mark())


@pytest.mark.postgres
def test_an_unverified_read_is_one_round_trip_too(traced):
    """The refusal (AUTH_REQUIRED) comes from the same one statement."""
    hanako, trace = traced
    stranger = Caller(hanako.client, hanako.phone, "round-trips-stranger", "09000001111")
    trace.mark()
    assert stranger.call("get_card_details")["webhook_error_code"] == "AUTH_REQUIRED"
    assert trace.round_trips() == 1, "\n".join(trace.since_mark())


def _lock_exchanges(trace: ProtocolTrace) -> list[str]:
    """The trace of a lock call up to the server's answer to its COMMIT (what follows is the notice's delivery, not
    the lock): through the first ReadyForQuery after the COMMIT is sent, however the COMMIT went (a simple query,
    or in a pipeline with other statements before its Sync). It starts at the lock's first message: libpq's trace
    may still hold the end of the previous call's answer when the mark is taken."""
    lines = trace.since_mark()
    lines = lines[next(i for i, line in enumerate(lines) if line.startswith("F\t")):]
    commit = next(i for i, line in enumerate(lines) if line.startswith("F\t") and '"COMMIT"' in line)
    end = next(i for i in range(commit, len(lines)) if lines[i].startswith("B\t") and "\tReadyForQuery" in lines[i])
    return lines[:end + 1]


def _traced_lock(traced) -> list[str]:
    """Lock Hanako's card 4444 and return the protocol trace of that lock up to its COMMIT."""
    hanako, trace = traced
    trace.mark()
    locked = hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive",
                         lock_reason="lost")
    assert locked["card_status"] == "inactive"
    return _lock_exchanges(trace)


@pytest.mark.postgres
def test_a_lock_writes_in_one_transaction(traced):
    """The card's new status, the ticket, the audit row and the outbox row: between one BEGIN and one COMMIT."""
    lines = _traced_lock(traced)
    writes = [i for i, line in enumerate(lines) if line.startswith("F\t") and ('"INSERT ' in line or '"UPDATE ' in line)]
    begins = [i for i, line in enumerate(lines) if line.startswith("F\t") and '"BEGIN"' in line]
    ends = [i for i, line in enumerate(lines) if line.startswith("F\t") and ('"COMMIT"' in line or '"ROLLBACK"' in line)]
    assert len(writes) == 4 and len(begins) == 1 and begins[0] < writes[0], "\n".join(lines)
    assert len(ends) == 1 and '"COMMIT"' in lines[ends[0]] and writes[-1] < ends[0], "\n".join(lines)


@pytest.mark.postgres
def test_a_lock_takes_at_most_four_round_trips(traced):
    """Issue 15's target for a fresh lock: at most four exchanges with the server up to its COMMIT."""
    lines = _traced_lock(traced)
    assert sum(1 for line in lines if line.startswith("B\t") and "\tReadyForQuery" in line) <= 4, "\n".join(lines)


def test_a_read_tag_opens_no_orm_session(make_app, phone, store_url):
    """get_card_details and validate_card: the one statement on the pooled connection, no ORM session begun; a
    code check (a write) still goes through the ORM."""
    app = make_app(database_url=store_url)
    hanako = Caller(app.test_client(), phone, "no-session", "09000001111")
    hanako.authenticate()
    begun = []
    listener = lambda session, transaction, connection: begun.append(session)  # noqa: E731
    event.listen(Session, "after_begin", listener)
    try:
        assert hanako.call("get_card_details")["card_count"] >= 1
        assert hanako.call("validate_card", last_four_digit_of_card_number="4444")["card_found"] is True
        assert begun == []
        hanako.call("send_otp")
        assert begun
    finally:
        event.remove(Session, "after_begin", listener)
