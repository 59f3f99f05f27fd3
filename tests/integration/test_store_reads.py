"""The read tags' statement on a store of any size (issue 15): its indexes, its plan, the connection's settings."""
import sqlite3

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from cardstore import fixtures, migrate
from cardstore.models import Base
from cardstore.repository import _READER
from cardstore.uow import SQLITE_MMAP_BYTES, SQLITE_PAGE_BYTES, Store

READ_INDEXES = {
    "cards": ("ix_cards_customer_views", ["customer_id", "id", "last4", "vendor", "status"], "ix_cards_customer_id"),
    "verified_sessions": ("ix_verified_sessions_session_customer", ["session", "customer_id", "verified_at"],
                          "ix_verified_sessions_session"),
}


def test_the_migrations_build_the_models_schema(store_url):
    """After `store upgrade` the database is what cardstore/models.py declares: no table, column or index apart."""
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    finally:
        engine.dispose()


def test_the_reads_covering_indexes_replace_the_narrow_ones(store_url):
    engine = create_engine(store_url)
    try:
        inspector = inspect(engine)
        for table, (name, columns, replaced) in READ_INDEXES.items():
            indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes(table)}
            assert indexes.get(name) == columns, (table, indexes)
            assert replaced not in indexes
    finally:
        engine.dispose()


def _plan(path, query=_READER, params=("session", "2000-01-01 00:00:00.000000", "+81000"), *,
          analyzed: bool = False) -> str:
    """SQLite's plan for `query` (a PlainQuery) on the store at `path`; `params` None: every parameter NULL."""
    conn = sqlite3.connect(path)
    try:
        if analyzed:
            conn.execute("ANALYZE")
        sql = query.compiled(Store(f"sqlite:///{path}").engine.dialect).sql
        rows = conn.execute("EXPLAIN QUERY PLAN " + sql, [None] * sql.count("?") if params is None else params)
        return "\n".join(row[3] for row in rows)
    finally:
        conn.close()


@pytest.mark.parametrize("analyzed", [False, True], ids=["no-stats", "analyzed"])
def test_the_read_searches_indexes_only_and_sorts_nothing(sqlite_url, tmp_path, analyzed):
    """The customer by its number's index; the cards and the verification from the covering indexes, never their
    tables; the cards come in id order from the index (no sort step) — with or without the planner's statistics."""
    plan = _plan(sqlite_url.removeprefix("sqlite:///"), analyzed=analyzed)
    assert "SEARCH customers USING INDEX sqlite_autoindex_customers_1 (phone_e164=?)" in plan, plan
    assert "SEARCH cards USING COVERING INDEX ix_cards_customer_views (customer_id=?)" in plan, plan
    assert ("SEARCH verified_sessions USING COVERING INDEX ix_verified_sessions_session_customer "
            "(session=? AND customer_id=? AND verified_at>?)") in plan, plan
    assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan


def test_a_store_connection_reads_the_file_through_a_memory_map(sqlite_url):
    store = Store(sqlite_url)
    try:
        with store.unit_of_work(read_only=True) as uow:
            assert uow.connection.exec_driver_sql("PRAGMA mmap_size").scalar() == SQLITE_MMAP_BYTES
            assert uow.connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        store.dispose()


# Every index on a table a lock writes to is one more B-tree page the lock's commit writes to the WAL (issue 15:
# 13 pages a lock). lock_tickets needs its ticket number unique, a retry's look-up of (session, card, lock type),
# and the card's tickets (the console, the foreign key's cascade): one index serves the last two, card first.
LOCK_TICKET_INDEXES = {"ix_lock_tickets_card_session": ["card_id", "session", "lock_type"]}


def test_a_lock_ticket_is_written_to_one_index_besides_its_unique_number(store_url):
    engine = create_engine(store_url)
    try:
        inspector = inspect(engine)
        # (PostgreSQL also lists the unique constraint's own index, marked as its duplicate.)
        indexes = {ix["name"]: ix["column_names"] for ix in inspector.get_indexes("lock_tickets")
                   if not ix.get("duplicates_constraint")}
        assert indexes == LOCK_TICKET_INDEXES
        assert [u["column_names"] for u in inspector.get_unique_constraints("lock_tickets")] == [["number"]]
    finally:
        engine.dispose()


def test_the_lock_finds_a_retrys_ticket_and_the_console_a_cards_tickets_through_that_index(sqlite_url):
    from sqlalchemy import bindparam, select

    from cardstore.models import LockTicket
    from cardstore.repository import _LOCK_TARGET, _LOCK_TARGET_BY_TEXT, PlainQuery

    # The console's `card_id IN (…)`, with the ids bound one by one (an expanding IN is only compiled when run).
    by_card = PlainQuery(select(LockTicket.id).where(LockTicket.card_id.in_([bindparam("a"), bindparam("b")])))
    newest = "SEARCH newest USING COVERING INDEX ix_lock_tickets_card_session (card_id=? AND session=? AND lock_type=?)"
    for query, wanted in ((_LOCK_TARGET, newest), (_LOCK_TARGET_BY_TEXT, newest),
                          (by_card, "SEARCH lock_tickets USING COVERING INDEX ix_lock_tickets_card_session (card_id=?)")):
        plan = _plan(sqlite_url.removeprefix("sqlite:///"), query, None)
        assert wanted in plan, plan
        assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan


# A lock's commit checksums and writes every B-tree page it changed, whole, to the WAL (issue 15: ~12 pages a lock):
# with 2 KiB pages that is half the bytes; the reads visit the same number of pages (sixth pass in the README).
def test_a_new_store_is_built_with_2_kib_pages(sqlite_url, tmp_path):
    with sqlite3.connect(sqlite_url.removeprefix("sqlite:///")) as conn:  # built by the migrations
        assert conn.execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_BYTES == 2048
    fresh = tmp_path / "fresh.sqlite3"  # a file the store itself creates
    store = Store(f"sqlite:///{fresh}")
    try:
        with store.unit_of_work() as uow:
            uow.connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
            uow.commit()
    finally:
        store.dispose()
    with sqlite3.connect(fresh) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 2048


def test_a_store_built_with_other_pages_keeps_them_and_works(tmp_path):
    """No silent rebuild: a store made before (4 KiB pages) is migrated, read and written as it is."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("PRAGMA journal_mode=WAL")
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    store = Store(url)
    try:
        fixtures.load(store)
        with store.unit_of_work(read_only=True) as uow:
            assert uow.connection.exec_driver_sql("SELECT count(*) FROM customers").scalar() > 0
    finally:
        store.dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
