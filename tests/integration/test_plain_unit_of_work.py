"""The unit of work's plain transaction (`execute`, `write`, `commit` without the ORM), on real stores: one
transaction, kept only by commit(), rolled back otherwise, never beside a second one the ORM session would begin."""
from __future__ import annotations

import pytest
from sqlalchemy import bindparam, create_engine, func, insert, select, text
from sqlalchemy.exc import IntegrityError

from cardstore.errors import StoreUnavailable
from cardstore.models import AuditEvent, Card, LockTicket, utcnow
from cardstore.repository import PlainQuery
from cardstore.uow import PlainTransactionOpen, ReadOnlyUnitOfWork, Store

_A = AuditEvent.__table__
AUDIT = PlainQuery(insert(_A).values(at=bindparam("at", type_=_A.c.at.type), actor=bindparam("actor", type_=_A.c.actor.type),
                                     action=bindparam("action", type_=_A.c.action.type)).inline())
AUDITS_BY = PlainQuery(select(func.count()).select_from(_A).where(_A.c.actor == bindparam("actor")))
_T = LockTicket.__table__
TICKET = PlainQuery(insert(_T).values({c: bindparam(c, type_=_T.c[c].type) for c in (
    "number", "card_id", "session", "lock_type", "reason", "created_at", "card_status_version")}).inline())


def audits_by(store, actor: str) -> int:
    with store.unit_of_work(read_only=True) as uow:
        return uow.read(AUDITS_BY, {"actor": actor})[0][0]


def audit(actor: str) -> dict:
    return {"at": utcnow(), "actor": actor, "action": "test"}


def test_plain_writes_are_kept_by_commit_only(store):
    with store.unit_of_work() as uow:
        uow.write(AUDIT, audit("kept"))
        uow.commit()
    with store.unit_of_work() as uow:
        uow.write(AUDIT, audit("dropped"))  # queued, never committed
    with store.unit_of_work() as uow:
        assert uow.execute(AUDITS_BY, {"actor": "ignored"}) == [(0,)]
        uow.write(AUDIT, audit("dropped"))
        assert uow.execute(AUDITS_BY, {"actor": "dropped"}) == [(1,)]  # its own write, sent before the read
    assert (audits_by(store, "kept"), audits_by(store, "dropped")) == (1, 0)


def test_an_error_midway_rolls_back_the_plain_transaction(store):
    """Writes already sent (an execute after them) are undone when the unit ends without commit()."""
    with pytest.raises(RuntimeError):
        with store.unit_of_work() as uow:
            uow.write(AUDIT, audit("midway"))
            assert uow.execute(AUDITS_BY, {"actor": "midway"}) == [(1,)]
            raise RuntimeError("crash before commit")
    assert audits_by(store, "midway") == 0
    with store.unit_of_work() as uow:  # nothing is left holding the store (SQLite: the write lock was released)
        uow.write(AUDIT, audit("after"))
        uow.commit()
    assert audits_by(store, "after") == 1


def test_a_failing_write_fails_the_commit_with_an_integrity_error_and_keeps_nothing(store):
    with store.unit_of_work() as uow:
        card_id = uow.session.scalar(select(Card.id).limit(1))
    row = {"number": 7_654_321, "card_id": card_id, "session": "s", "lock_type": "inactive", "reason": "lost",
           "created_at": utcnow(), "card_status_version": 1}
    with pytest.raises(IntegrityError):
        with store.unit_of_work() as uow:
            uow.write(AUDIT, audit("before-the-duplicate"))
            uow.write(TICKET, row)
            uow.write(TICKET, row)  # the number is UNIQUE
            uow.commit()
    assert audits_by(store, "before-the-duplicate") == 0
    with store.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count()).select_from(_T)) == 0


def test_the_orm_session_cannot_open_beside_a_plain_transaction(store):
    """Begun plain (a statement sent, or only a write queued): asking for the session is a programming error, not
    a second transaction; the unit still rolls back cleanly."""
    with store.unit_of_work() as uow:
        uow.execute(AUDITS_BY, {"actor": "x"})
        with pytest.raises(PlainTransactionOpen):
            uow.session
    with store.unit_of_work() as uow:
        uow.write(AUDIT, audit("queued"))
        with pytest.raises(PlainTransactionOpen):
            uow.repo.customer_by_phone("+819000001111")
    assert audits_by(store, "queued") == 0


def test_with_the_session_open_plain_statements_join_its_transaction(store):
    with store.unit_of_work() as uow:
        uow.repo.audit("orm", "test")
        uow.session.flush()
        uow.write(AUDIT, audit("plain-in-session"))
        assert uow.execute(AUDITS_BY, {"actor": "plain-in-session"}) == [(1,)]
    assert (audits_by(store, "orm"), audits_by(store, "plain-in-session")) == (0, 0)
    with store.unit_of_work() as uow:
        uow.repo.audit("orm", "test")
        uow.write(AUDIT, audit("plain-in-session"))
        uow.commit()
    assert (audits_by(store, "orm"), audits_by(store, "plain-in-session")) == (1, 1)


def test_a_read_only_unit_cannot_write(store):
    with store.unit_of_work(read_only=True) as uow:
        with pytest.raises(ReadOnlyUnitOfWork):
            uow.write(AUDIT, audit("read-only"))
        assert uow.read(AUDITS_BY, {"actor": "read-only"}) == [(0,)]
        assert not uow.has_session


@pytest.mark.postgres
def test_the_connection_goes_back_to_the_pool_as_it_came(postgres_base_url):
    """After a plain unit, committed or not, the pooled connection is out of autocommit and idle."""
    store = Store(postgres_base_url, pool_size=1)
    try:
        for commit in (True, False):
            with store.unit_of_work() as uow:
                uow.execute(AUDITS_BY, {"actor": "x"})
                uow.write(AUDIT, audit("pooled"))
                if commit:
                    uow.commit()
            raw = store.engine.raw_connection()
            try:
                assert raw.dbapi_connection.autocommit is False
                assert raw.dbapi_connection.info.transaction_status.name == "IDLE"
            finally:
                raw.close()
        assert audits_by(store, "pooled") == 1
    finally:
        store.dispose()


@pytest.mark.postgres
def test_a_connection_lost_in_a_plain_transaction_is_store_unavailable_and_replaced(postgres_base_url):
    store = Store(postgres_base_url, pool_size=1)
    killer = create_engine(postgres_base_url)
    reached = []
    try:
        with pytest.raises(StoreUnavailable) as raised:
            with store.unit_of_work() as uow:
                uow.write(AUDIT, audit("lost"))
                pid = uow.execute(PlainQuery(select(func.pg_backend_pid())), {})[0][0]
                with killer.begin() as conn:
                    assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
                reached.append(True)
                uow.commit()
        assert reached and raised.value.__cause__ is not None and raised.value.__cause__.connection_invalidated
        with store.unit_of_work() as uow:  # the pool (of one) gives a new connection
            uow.write(AUDIT, audit("after"))
            uow.commit()
        assert (audits_by(store, "lost"), audits_by(store, "after")) == (0, 1)
    finally:
        killer.dispose()
        store.dispose()


# --- SQLite's DATETIME parameters (issue 15: isoformat instead of SQLAlchemy's % template) ---------------------------

def _datetimes():
    import datetime as dt
    import random

    rng = random.Random(15)
    start = dt.datetime(1, 1, 1)
    span = int((dt.datetime(9999, 12, 31, 23, 59, 59) - start).total_seconds())
    yield from (dt.datetime(2026, 12, 2, 20, 3, 49), dt.datetime(2026, 12, 2, 20, 3, 49, 1), dt.datetime(1, 1, 1),
                dt.datetime(999, 1, 1, 0, 0, 0, 999999), dt.datetime(9999, 12, 31, 23, 59, 59, 999999))
    for _ in range(2000):
        yield start + dt.timedelta(seconds=rng.randrange(span), microseconds=rng.choice((0, rng.randrange(10**6))))


def test_a_sqlite_datetime_parameter_is_the_text_sqlalchemy_would_bind():
    """The plain path's DATETIME parameter equals SQLAlchemy's own, for naive datetimes across the whole range (with and
    without microseconds); an aware datetime, a date and None go through SQLAlchemy's processor as before."""
    import datetime as dt

    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    theirs = _A.c.at.type.dialect_impl(dialect).bind_processor(dialect)
    compiled = AUDIT.compiled(dialect)
    at = compiled.sql.split("(")[1].split(")")[0].split(", ").index("at")
    for value in [*_datetimes(), dt.datetime(2026, 12, 2, 20, 3, 49, tzinfo=dt.timezone(dt.timedelta(hours=9))),
                  dt.date(2026, 12, 2), None]:
        assert compiled.parameters({"at": value, "actor": "a", "action": "b"})[at] == theirs(value), value


def test_a_datetime_stored_in_another_format_keeps_sqlalchemys_processor():
    """A DATETIME with its own storage format (no microseconds here) is bound exactly as SQLAlchemy binds it."""
    import datetime as dt

    from sqlalchemy import Column, DateTime, MetaData, Table
    from sqlalchemy.dialects import sqlite

    short = sqlite.DATETIME(storage_format="%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d")
    table = Table("t", MetaData(), Column("at", DateTime().with_variant(short, "sqlite")))
    query = PlainQuery(insert(table).values(at=bindparam("at", type_=table.c.at.type)))
    value = dt.datetime(2026, 12, 2, 20, 3, 49, 315123)
    assert query.compiled(sqlite.dialect()).parameters({"at": value}) == ("2026-12-02 20:03",)
