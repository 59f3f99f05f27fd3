"""The store breaks mid-dialog — stopped, frozen, or slowed by a lock — on a real PostgreSQL cluster of our own:
the webhook answers webhook_error / STORE_UNAVAILABLE (never hangs the CX turn), /healthz says 503, and
nothing is partially written. When the store is back the same request succeeds."""
from __future__ import annotations

import os
import signal
import threading

import pytest
from sqlalchemy import create_engine, event, text

from tests.conftest import Caller
from tests.store_state import store_snapshot
from webhook.app import service_of

HANAKO = "09000001111"
LOCK_4444 = {"last_four_digit_of_card_number": "4444", "lock_type": "blocked", "lock_reason": "stolen"}
STORE_DOWN = {"transfer_reason": "webhook_error", "webhook_error_code": "STORE_UNAVAILABLE"}
GUARD_S = 30  # a hung call fails the test after this long (a guard against hanging CI, not a timing assertion)


def answered(fn, *args, **kwargs):
    """Run `fn` in a thread; its result, or a test failure if it is still waiting after GUARD_S seconds."""
    outcome: dict = {}

    def run():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(GUARD_S)
    if thread.is_alive():
        pytest.fail(f"no answer within {GUARD_S} s: the webhook hung on the store")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


@pytest.fixture
def verified_hanako(make_app, phone, faulty_store_url):
    """Hanako, verified by a code in this session, talking to a webhook on the throwaway cluster."""
    app = make_app(database_url=faulty_store_url)
    hanako = Caller(app.test_client(), phone, "fault-dialog", HANAKO)
    hanako.authenticate()
    return app, hanako


def test_store_stopped_mid_dialog(verified_hanako, pg_cluster):
    """The database goes away between the code and the lock: STORE_UNAVAILABLE, /healthz 503, nothing written;
    once it is back the same lock goes through."""
    app, hanako = verified_hanako
    store = service_of(app).store
    before = store_snapshot(store)
    pg_cluster.stop()
    assert answered(hanako.call, "lock_card", **LOCK_4444) == STORE_DOWN
    health = hanako.client.get("/healthz")
    assert health.status_code == 503 and health.get_json()["status"] == "unavailable"
    pg_cluster.start()
    assert hanako.client.get("/healthz").status_code == 200  # the probe finds it back (and closes the breaker)
    assert store_snapshot(store) == before
    locked = hanako.call("lock_card", **LOCK_4444)
    assert locked["card_status"] == "blocked"


def test_store_frozen_mid_dialog(verified_hanako, pg_cluster):
    """Every server process frozen (a hung host: sockets open, nothing answers): the webhook does not wait for
    it — STORE_UNAVAILABLE and /healthz 503 — and nothing is written."""
    app, hanako = verified_hanako
    store = service_of(app).store
    before = store_snapshot(store)
    pg_cluster.freeze()
    try:
        assert answered(hanako.call, "lock_card", **LOCK_4444) == STORE_DOWN
        assert answered(hanako.client.get, "/healthz").status_code == 503
    finally:
        pg_cluster.thaw()
    assert hanako.client.get("/healthz").status_code == 200
    assert store_snapshot(store) == before
    assert hanako.call("lock_card", **LOCK_4444)["card_status"] == "blocked"


def test_store_frozen_between_the_ticket_and_its_audit_row(verified_hanako, pg_cluster):
    """The server freezes right after the lock's ticket row is handed to the driver, before the audit row and the
    commit (the card already row-locked, its UPDATE queued): the call fails as STORE_UNAVAILABLE and the ticket is
    rolled back with everything else — no half-made lock.

    The lock's writes go straight to the driver (a psycopg pipeline, no SQLAlchemy execution events), so the
    freeze is set off by a cursor of the connection's own: psycopg's `cursor_factory`."""
    import psycopg

    app, hanako = verified_hanako
    store = service_of(app).store
    before = store_snapshot(store)
    frozen = []

    class FreezingCursor(psycopg.Cursor):
        def execute(self, query, params=None, **kwargs):
            result = super().execute(query, params, **kwargs)
            if not frozen and str(query).lstrip().upper().startswith("INSERT INTO LOCK_TICKETS"):
                frozen.append(True)
                pg_cluster.freeze()
            return result

    def freezing_cursors(dbapi_conn, _record, _proxy):
        dbapi_conn.cursor_factory = FreezingCursor

    event.listen(store.engine, "checkout", freezing_cursors)
    try:
        assert answered(hanako.call, "lock_card", **LOCK_4444) == STORE_DOWN
    finally:
        event.remove(store.engine, "checkout", freezing_cursors)
        pg_cluster.thaw()
        store.engine.pool.dispose()  # no connection keeps the freezing cursors
    assert frozen, "the lock never reached the ticket insert"
    assert hanako.client.get("/healthz").status_code == 200
    assert store_snapshot(store) == before
    assert hanako.call("lock_card", **LOCK_4444)["card_status"] == "blocked"


def test_store_slowed_by_a_held_lock(verified_hanako, faulty_store_url):
    """A maintenance job holds the cards table: the lock call gives up (client deadline and lock_timeout, well
    inside CX's 5 s) with STORE_UNAVAILABLE instead of holding the turn; released, it succeeds."""
    app, hanako = verified_hanako
    store = service_of(app).store
    before = store_snapshot(store)
    maintenance = create_engine(faulty_store_url)
    try:
        with maintenance.connect() as conn:
            conn.execute(text("BEGIN"))
            conn.execute(text("LOCK TABLE cards IN ACCESS EXCLUSIVE MODE"))
            assert answered(hanako.call, "lock_card", **LOCK_4444) == STORE_DOWN
            conn.execute(text("ROLLBACK"))
    finally:
        maintenance.dispose()
    assert store_snapshot(store) == before
    assert hanako.call("lock_card", **LOCK_4444)["card_status"] == "blocked"


def test_one_frozen_connection_does_not_take_the_service_down(verified_hanako, pg_cluster):
    """Only the backend behind a pooled connection freezes (the server itself is fine): the webhook drops that
    connection at its deadline, opens a new one and answers normally."""
    app, hanako = verified_hanako
    store = service_of(app).store
    store.engine.pool.dispose()  # start from one pooled connection: the one we freeze
    with store.engine.connect() as conn:
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
    os.kill(backend, signal.SIGSTOP)
    try:
        result = answered(hanako.call, "validate_card", last_four_digit_of_card_number="4444")
    finally:
        os.kill(backend, signal.SIGCONT)
    assert result["card_found"] is True and result["card_status"] == "active"


def test_a_down_store_is_not_waited_on_by_every_call(verified_hanako, pg_cluster):
    """After a failed connection attempt calls fail at once (the breaker), even if the store is back, until a
    health probe (or the breaker's window) finds it answering again."""
    app, hanako = verified_hanako
    store = service_of(app).store
    pg_cluster.stop()
    store.engine.pool.dispose()  # no pooled connection: the next call must connect
    assert answered(hanako.call, "validate_card", last_four_digit_of_card_number="4444") == STORE_DOWN
    assert store.breaker.is_open()
    pg_cluster.start()
    # Back, but not yet probed: still refused without a connection attempt.
    assert hanako.call("validate_card", last_four_digit_of_card_number="4444") == STORE_DOWN
    assert hanako.client.get("/healthz").status_code == 200
    assert not store.breaker.is_open()
    assert hanako.call("validate_card", last_four_digit_of_card_number="4444")["card_found"] is True
