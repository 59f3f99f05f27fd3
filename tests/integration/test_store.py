"""The unit of work and the store commands, on a real database."""
import pytest
from sqlalchemy import func, select

from cardstore import fixtures
from cardstore.errors import StoreUnavailable
from cardstore.models import AuditEvent, Card, Customer
from cardstore.uow import Store
from tests.conftest import Caller, cx_request
from tests.store_state import row_counts


def test_uncommitted_work_is_rolled_back(store):
    """Leaving a unit of work without commit() discards its changes."""
    with store.unit_of_work() as uow:
        uow.repo.add(Customer(phone_e164="+819011112222", zip_code="1000001"))
    with store.unit_of_work() as uow:
        assert uow.repo.customer_by_phone("+819011112222") is None


def test_committed_work_is_kept(store):
    """commit() keeps the change for the next unit of work."""
    with store.unit_of_work() as uow:
        uow.repo.add(Customer(phone_e164="+819011112222", zip_code="1000001"))
        uow.commit()
    with store.unit_of_work() as uow:
        assert uow.repo.customer_by_phone("+819011112222") is not None


def test_an_error_midway_rolls_back_the_whole_unit(store):
    """A failure after a change and before commit leaves no half-written state."""
    with pytest.raises(RuntimeError):
        with store.unit_of_work() as uow:
            card = uow.session.scalars(select(Card)).first()
            card.status = "blocked"
            uow.repo.audit("test", "card.locked", card=card)
            uow.session.flush()
            raise RuntimeError("crash before commit")
    with store.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count(Card.id)).where(Card.status == "blocked")) == 0
        assert uow.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.actor == "test")) == 0


def test_fixtures_load_idempotently(store):
    """Loading the seed fixtures again adds nothing."""
    before = row_counts(store)
    assert fixtures.load(store) == {"customers": 0, "cards": 0}
    assert row_counts(store) == before


@pytest.mark.parametrize("url", [
    "sqlite:////nonexistent-dir/lockcard/store.sqlite3",
    "postgresql+psycopg://postgres@127.0.0.1:1/test",
])
def test_an_unreachable_store_is_a_webhook_error_and_healthz_says_so(make_app, phone, url):
    """No database: the call answers webhook_error / STORE_UNAVAILABLE, /healthz is 503, nothing is sent."""
    app = make_app(database_url=url)
    client = app.test_client()
    body = cx_request("prebuilt_components_authentication:send_otp", phone_number="09000001111", otp_channel="sms")
    r = client.post("/webhook", json=body)
    assert r.status_code == 200
    assert r.get_json()["sessionInfo"]["parameters"] == {
        "transfer_reason": "webhook_error", "webhook_error_code": "STORE_UNAVAILABLE"}
    assert client.get("/healthz").status_code == 503
    assert phone.messages() == []
    with pytest.raises(StoreUnavailable):
        Store(url).ping()


def test_flask_store_commands_migrate_and_load(tmp_path, monkeypatch):
    """`flask store upgrade` and `flask store load-fixtures` (twice) on an empty database."""
    from webhook.app import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    app = create_app()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["store", "upgrade"]).exit_code == 0
    first = runner.invoke(args=["store", "load-fixtures"])
    assert "3 customers, 9 cards added" in first.output
    second = runner.invoke(args=["store", "load-fixtures"])
    assert "0 customers, 0 cards added" in second.output
    app.extensions["lockcard"].store.dispose()


def test_a_deleted_customer_is_unknown_to_the_webhook(client, store, phone):
    """A logically deleted customer is not found, so no code is sent and no card is shown."""
    import datetime as dt

    with store.unit_of_work() as uow:
        uow.repo.customer_by_phone("+819000002222").deleted_at = dt.datetime(2026, 1, 1)
        uow.commit()
    c = Caller(client, phone, "deleted", "09000002222")
    assert c.call("verify_user") == {"user_found": False}
    assert c.call("send_otp", otp_channel="sms")["webhook_error_code"] == "CUSTOMER_NOT_FOUND"


def test_flask_store_reset_brings_back_the_fixtures(tmp_path, monkeypatch):
    """`flask store reset --yes` after a lock: card 4444 is active again and nothing else is left."""
    from sqlalchemy import func, select

    from cardstore.models import Card, LockTicket
    from webhook.app import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'reset.sqlite3'}")
    app = create_app()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["store", "load-fixtures"]).exit_code == 0
    store = app.extensions["lockcard"].store
    with store.unit_of_work() as uow:
        card = uow.session.scalars(select(Card).where(Card.last4 == "4444").order_by(Card.id)).first()
        card.status = "inactive"
        uow.session.add(LockTicket(card_id=card.id, number=1234567, lock_type="inactive", reason="lost",
                                   session="s"))
        uow.commit()
    result = runner.invoke(args=["store", "reset", "--yes"])
    assert result.exit_code == 0, result.output
    with store.unit_of_work() as uow:
        assert set(uow.session.scalars(select(Card.status).where(Card.last4 == "4444"))) == {"active"}
        assert uow.session.scalar(select(func.count()).select_from(LockTicket)) == 0
        assert uow.session.scalar(select(func.count()).select_from(Card)) == 9
    store.dispose()


def test_flask_store_reset_refuses_production(tmp_path, monkeypatch):
    """In production the reset is refused with a one-line reason and the store keeps its rows."""
    from webhook.app import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'prod.sqlite3'}")
    app = create_app()
    service = app.extensions["lockcard"]
    monkeypatch.setattr(service, "settings", service.settings.model_copy(update={"app_env": "production"}))
    result = app.test_cli_runner().invoke(args=["store", "reset", "--yes"])
    assert result.exit_code != 0 and "refuses APP_ENV=production" in result.output


# --- the kept reader connection (SQLite): one-statement reads skip the pool ------------------------------------

def _lock_through_another_connection(url: str, last4: str) -> None:
    """Change a card as another process would: its own engine, its own commit."""
    other = Store(url)
    try:
        with other.unit_of_work() as uow:
            uow.session.execute(Card.__table__.update().where(Card.last4 == last4).values(status="inactive"))
            uow.commit()
    finally:
        other.dispose()


def test_a_read_sees_a_change_committed_just_before_it(make_app, phone, sqlite_url):
    """Truth: the kept connection holds no snapshot between reads — a card locked elsewhere reads as locked at once."""
    app = make_app()
    hanako = Caller(app.test_client(), phone, "kept-reader", "09000001111")
    hanako.authenticate()
    assert hanako.call("validate_card", last_four_digit_of_card_number="4444")["card_status"] == "active"
    _lock_through_another_connection(sqlite_url, "4444")
    assert hanako.call("validate_card", last_four_digit_of_card_number="4444")["card_status"] == "inactive"


def test_reads_reuse_one_connection_per_thread_outside_the_pool(make_app, phone):
    """Ten read tags after the first: no pool checkout at all, and the pool's slots stay free for the writers."""
    from sqlalchemy import event

    app = make_app()
    hanako = Caller(app.test_client(), phone, "kept-reader-pool", "09000001111")
    hanako.authenticate()
    hanako.call("get_card_details")  # this thread's first read opens its connection
    store = app.extensions["lockcard"].store
    checkouts = []
    listener = lambda *args: checkouts.append(1)  # noqa: E731
    event.listen(store.engine, "checkout", listener)
    try:
        for _ in range(5):
            assert hanako.call("get_card_details")["card_count"] >= 1
            assert hanako.call("validate_card", last_four_digit_of_card_number="4444")["card_found"] is True
    finally:
        event.remove(store.engine, "checkout", listener)
    assert checkouts == []
    assert store.engine.pool.checkedout() == 0


def test_a_broken_reader_connection_is_replaced_and_the_read_still_answers(make_app, phone):
    """The kept connection dies (closed under it): the read opens a new one and answers; nothing hands over."""
    app = make_app()
    hanako = Caller(app.test_client(), phone, "kept-reader-broken", "09000001111")
    hanako.authenticate()
    store = app.extensions["lockcard"].store
    assert hanako.call("get_card_details")["card_count"] >= 1
    broken = store.reader_connection()
    broken.dbapi_connection.close()
    answer = hanako.call("get_card_details")
    assert "webhook_error_code" not in answer and answer["card_count"] >= 1
    assert store.reader_connection() is not broken


def test_dispose_closes_the_kept_reader_connections(make_app, phone):
    """Store.dispose closes every thread's kept connection (a test, a reload or a shutdown leaves no file open)."""
    import sqlite3

    app = make_app()
    hanako = Caller(app.test_client(), phone, "kept-reader-dispose", "09000001111")
    hanako.authenticate()
    hanako.call("get_card_details")
    store = app.extensions["lockcard"].store
    kept = store.reader_connection().dbapi_connection
    store.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        kept.execute("SELECT 1")
    assert hanako.call("get_card_details")["card_count"] >= 1  # a new one, on the next read


# --- who checkpoints SQLite's WAL ---------------------------------------------------------------------------------

def _write_pages(store: Store, pages: int) -> None:
    """Commit audit rows holding about `pages` 4 KiB pages of text, in one transaction."""
    with store.unit_of_work() as uow:
        for n in range(pages):
            uow.session.add(AuditEvent(actor="test", action="test.filler", after={"filler": f"{n:06d}" * 680}))
        uow.commit()


def test_a_webhook_commit_leaves_the_checkpoint_to_the_relay(sqlite_url):
    """A commit that takes the WAL past SQLite's default 1,000 pages does not copy them into the database file (a
    checkpoint, with its fsync) on the caller's time: the file is unchanged until the store is checkpointed."""
    from pathlib import Path

    store = Store(sqlite_url)  # migrated and loaded (the fixture's copy)
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    store.checkpoint()
    before = database.stat().st_size
    _write_pages(store, 1500)
    assert database.stat().st_size == before
    log, copied = store.checkpoint()
    assert log >= 1500 and copied == log
    assert database.stat().st_size >= before + 1500 * 4096
    store.dispose()


def test_a_store_nobody_checkpoints_is_checkpointed_by_its_writers_past_the_backstop(sqlite_url):
    """No relay running: past SQLITE_WAL_AUTOCHECKPOINT pages, a commit checkpoints after all (the WAL stays bounded)."""
    from pathlib import Path

    from cardstore.uow import SQLITE_WAL_AUTOCHECKPOINT

    store = Store(sqlite_url)
    database = Path(sqlite_url.removeprefix("sqlite:///"))
    store.checkpoint()
    before = database.stat().st_size
    _write_pages(store, SQLITE_WAL_AUTOCHECKPOINT + 500)
    assert database.stat().st_size > before + SQLITE_WAL_AUTOCHECKPOINT * 4096
    store.dispose()


@pytest.mark.postgres
def test_checkpoint_is_nothing_to_do_on_postgresql(postgres_base_url):
    store = Store(postgres_base_url)
    assert store.checkpoint() is None
    store.dispose()


def test_a_json_column_keeps_what_was_written(store):
    """Audit rows' JSON (written by orjson, or the json module for what orjson refuses) reads back as written."""
    values = [{"status": "inactive", "reason": "紛失", "ticket_number": 1234567, "nested": {"a": [1, 2.5, None, True]}},
              {"big": 2 ** 70}, {1: "an int key the json module writes as a string"}]
    with store.unit_of_work() as uow:
        ids = []
        for value in values:
            row = AuditEvent(actor="test", action="test.json", after=value)
            uow.session.add(row)
            uow.session.flush()
            ids.append(row.id)
        uow.commit()
    with store.unit_of_work() as uow:
        back = [uow.session.get(AuditEvent, i).after for i in ids]
    assert back == [values[0], values[1], {"1": "an int key the json module writes as a string"}]


# --- SQLite's write lock: taken by retrying, not by SQLite's coarse busy handler -----------------------------------

def _sqlite_pair(sqlite_url):
    import sqlite3

    path = sqlite_url.removeprefix("sqlite:///")
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    store = Store(sqlite_url)
    waiter = store.engine.raw_connection()  # with the store's pragmas (busy timeout …)
    return holder, store, waiter


def test_a_writer_gets_the_lock_once_the_writer_before_it_commits(sqlite_url):
    import threading

    from cardstore.uow import SQLITE_BUSY_TIMEOUT_MS, begin_immediate

    holder, store, waiter = _sqlite_pair(sqlite_url)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE cards SET status = 'inactive' WHERE last4 = '4444'")
    release = threading.Timer(0.05, lambda: holder.execute("COMMIT"))
    release.start()
    begin_immediate(waiter.dbapi_connection)  # waits for the COMMIT, then holds the lock
    status = waiter.dbapi_connection.execute("SELECT status FROM cards WHERE last4 = '4444' LIMIT 1").fetchone()
    assert status == ("inactive",)  # what the writer before it committed: its read is not stale
    waiter.dbapi_connection.execute("ROLLBACK")
    release.join()
    assert waiter.dbapi_connection.execute("PRAGMA busy_timeout").fetchone() == (SQLITE_BUSY_TIMEOUT_MS,)
    waiter.close()
    holder.close()
    store.dispose()


def test_a_writer_that_never_gets_the_lock_fails_as_the_busy_timeout_would(sqlite_url, monkeypatch):
    import sqlite3

    from cardstore import uow as uow_module

    holder, store, waiter = _sqlite_pair(sqlite_url)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(uow_module, "SQLITE_BUSY_TIMEOUT_MS", 200)
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        uow_module.begin_immediate(waiter.dbapi_connection)
    assert not waiter.dbapi_connection.in_transaction
    assert waiter.dbapi_connection.execute("PRAGMA busy_timeout").fetchone() == (200,)  # its own, put back
    holder.execute("ROLLBACK")
    waiter.close()
    holder.close()
    store.dispose()


def test_a_unit_of_work_waits_for_the_lock_and_locks_through_it(make_app, phone, sqlite_url):
    """Through the webhook: a lock arriving while another writer holds the write lock waits for it and locks."""
    import threading

    holder, store, waiter = _sqlite_pair(sqlite_url)
    waiter.close()
    store.dispose()
    app = make_app()
    hanako = Caller(app.test_client(), phone, "waits-for-the-lock", "09000001111")
    hanako.authenticate()
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.2, lambda: holder.execute("COMMIT"))
    release.start()
    answer = hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive",
                         lock_reason="lost")
    release.join()
    assert answer.get("ticket_number") and "webhook_error_code" not in answer
    holder.close()


# --- the kept writer connection (SQLite, plain write transactions) --------------------------------------------------

def _plain_audit(store: Store, actor: str, *, commit: bool = True, fail: bool = False) -> None:
    from tests.integration.test_plain_unit_of_work import AUDIT, audit

    with store.unit_of_work() as uow:
        uow.write(AUDIT, audit(actor))
        if fail:
            uow.execute(AUDIT_FAILS, {})
        if commit:
            uow.commit()


def test_plain_writes_reuse_one_connection_per_thread_outside_the_pool(sqlite_url):
    from sqlalchemy import event

    store = Store(sqlite_url)
    _plain_audit(store, "first")  # this thread's first plain write opens its connection
    kept = store.writer_connection()
    checkouts = []
    listener = lambda *args: checkouts.append(1)  # noqa: E731
    event.listen(store.engine, "checkout", listener)
    try:
        for n in range(5):
            _plain_audit(store, f"w{n}")
    finally:
        event.remove(store.engine, "checkout", listener)
    assert checkouts == [] and store.engine.pool.checkedout() == 0
    assert store.writer_connection() is kept and not kept.dbapi_connection.in_transaction
    store.dispose()


def test_the_kept_writer_runs_without_a_busy_timeout_and_still_waits_for_the_write_lock(sqlite_url):
    """Its BEGIN waits for another writer by begin_immediate's own short retries (no PRAGMA around it), and the
    statements after it — which hold the write lock — need no busy timeout: the unit commits once the lock is free."""
    import sqlite3
    import threading

    from tests.integration.test_plain_unit_of_work import audits_by

    store = Store(sqlite_url)
    _plain_audit(store, "opens-the-writer")
    kept = store.writer_connection()
    assert kept.dbapi_connection.execute("PRAGMA busy_timeout").fetchone() == (0,)
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    release = threading.Timer(0.1, lambda: holder.execute("COMMIT"))
    release.start()
    _plain_audit(store, "waited-for-the-lock")
    release.join()
    assert kept.dbapi_connection.execute("PRAGMA busy_timeout").fetchone() == (0,)
    assert audits_by(store, "waited-for-the-lock") == 1
    holder.close()
    store.dispose()


def test_a_unit_that_stops_midway_leaves_the_kept_writer_with_no_transaction(sqlite_url):
    from tests.integration.test_plain_unit_of_work import AUDITS_BY, audits_by

    store = Store(sqlite_url)
    with pytest.raises(RuntimeError):
        with store.unit_of_work() as uow:
            _ = uow.execute(AUDITS_BY, {"actor": "x"})  # BEGIN IMMEDIATE on the kept writer
            raise RuntimeError("a bug after the BEGIN")
    assert not store.writer_connection().dbapi_connection.in_transaction  # no write lock left held
    _plain_audit(store, "after", commit=False)  # queued, never committed: rolled back on the way out
    _plain_audit(store, "kept")
    assert (audits_by(store, "after"), audits_by(store, "kept")) == (0, 1)
    store.dispose()


def test_a_failed_write_drops_the_kept_writer_and_the_next_unit_gets_a_fresh_one(sqlite_url):
    from tests.integration.test_plain_unit_of_work import audits_by

    store = Store(sqlite_url)
    _plain_audit(store, "first")
    broken = store.writer_connection()
    with pytest.raises(StoreUnavailable):  # an OperationalError, as the store reports one
        _plain_audit(store, "failing", fail=True)
    assert store.writer_connection() is not broken
    _plain_audit(store, "next")
    assert (audits_by(store, "failing"), audits_by(store, "next")) == (0, 1)
    store.dispose()


def test_dispose_closes_the_kept_writer(sqlite_url):
    import sqlite3

    store = Store(sqlite_url)
    _plain_audit(store, "first")
    kept = store.writer_connection().dbapi_connection
    store.dispose()
    with pytest.raises(sqlite3.ProgrammingError):
        kept.execute("SELECT 1")
    _plain_audit(store, "again")  # a new one, on the next write
    store.dispose()


from cardstore.repository import PlainQuery  # noqa: E402
from sqlalchemy import text as _text  # noqa: E402

AUDIT_FAILS = PlainQuery(_text("SELECT * FROM no_such_table"))  # an error the store raises mid-transaction
