"""Notifications: the outbox relay, a long-running process of its own (`flask --app main outbox relay`).

Worker threads claim due rows and send them (notify.delivery); between passes they sleep until woken. On PostgreSQL
a listener connection waits on `LISTEN lockcard_outbox` (the outbox trigger NOTIFYs at commit), so a new code
reaches the gateway as soon as it is committed; OUTBOX_POLL_SECONDS is the fallback (a lost connection, a missed
notification) and, on SQLite, the only wake-up. Any number of relays may run against one store: claims are
exclusive. On SQLite the relay also checkpoints the store's WAL (CHECKPOINT_SECONDS), so the webhook's commits
need not. With `health_port`, a small HTTP server answers /healthz (the loop is alive) and /healthz/outbox
(503 when the backlog is older than OUTBOX_BACKLOG_ALERT_SECONDS).
"""
from __future__ import annotations

import json
import logging
import signal
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from sqlalchemy import make_url

from cardstore.errors import StoreUnavailable
from cardstore.uow import Store
from notify.delivery import Notifier, backlog
from settings import Settings

log = logging.getLogger("lockcard.notify.relay")
CHANNEL = "lockcard_outbox"
# SQLite: how often the relay checkpoints the store's WAL. The webhook's commits leave that to the relay (the
# backstop is cardstore.uow.SQLITE_WAL_AUTOCHECKPOINT): a checkpoint copies pages into the database file and
# fsyncs it, work no caller should wait for. Four times a second keeps the WAL near SQLite's own 1,000-page mark
# at a few hundred locks a second.
CHECKPOINT_SECONDS = 0.25


def backlog_health(store: Store, settings: Settings) -> tuple[bool, dict[str, object]]:
    """(fine, report): not fine when the oldest undelivered notice is older than OUTBOX_BACKLOG_ALERT_SECONDS."""
    report = backlog(store)
    age = report["oldest_age_s"]
    stale = age is not None and age > settings.outbox_backlog_alert_seconds
    return not stale, {**report, "alert_after_s": settings.outbox_backlog_alert_seconds, "stale": stale}


class Relay:
    """Delivers the outbox of one store until `stop` is set."""

    def __init__(self, settings: Settings, store: Store, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.store = store
        self.notifier = notifier or Notifier(settings)
        self.notifier.backend  # noqa: B018 - a backend that cannot work fails here, at start-up
        self.stop = threading.Event()
        self._wake = threading.Condition()
        self._generation = 0
        self.heartbeat = time.monotonic()
        self._swept = 0.0

    def wake(self, *, everyone: bool = False) -> None:
        """Have a worker (or every worker) look for due rows now. One notice needs one worker: waking all four for
        each would cost three empty claims per notice, which a busy machine feels."""
        with self._wake:
            self._generation += 1
            if everyone:
                self._wake.notify_all()
            else:
                self._wake.notify()

    def drain(self) -> dict[str, int]:
        """One pass in this thread: every due row is tried once. (Tests, `outbox deliver`, `outbox relay --once`.)"""
        return self.notifier.deliver(self.store)

    def alive(self) -> bool:
        """Whether the workers made progress recently (a send may take up to NOTIFY_DEADLINE_SECONDS)."""
        limit = self.settings.notify_deadline_seconds + self.settings.outbox_poll_seconds + 30
        return time.monotonic() - self.heartbeat < limit

    def _work(self) -> None:
        seen = -1
        while not self.stop.is_set():
            try:
                if time.monotonic() - self._swept >= self.settings.outbox_poll_seconds:
                    self._swept = time.monotonic()  # one sweep per poll interval for the whole relay is enough
                    self.notifier.give_up_expired(self.store)
                while not self.stop.is_set():
                    claim = self.notifier.claim_batch(self.store)
                    self.heartbeat = time.monotonic()
                    if claim is None:
                        break
                    if len(claim.messages) == self.settings.outbox_claim_batch:
                        self.wake()  # a full batch: more may be due, another worker (if any) takes the next one
                    self.notifier.send_batch(self.store, claim, stop=self.stop, progress=self._beat)
                    self.heartbeat = time.monotonic()
                    if len(claim.messages) < self.settings.outbox_claim_batch:
                        break  # the claim took every due row: no second, empty claim (a write transaction)
            except StoreUnavailable as exc:
                log.warning("outbox relay: store unavailable", extra={"reason": str(exc)})
            except Exception:  # noqa: BLE001 - a bad row or a bug must not stop the relay; the row keeps its lease
                log.exception("outbox relay: pass failed")
            with self._wake:
                if self._generation == seen:
                    self._wake.wait(self.settings.outbox_poll_seconds)
                seen = self._generation

    def _checkpoint(self) -> None:
        """SQLite: checkpoint the WAL every CHECKPOINT_SECONDS, off the webhook's request path."""
        while not self.stop.wait(CHECKPOINT_SECONDS):
            try:
                self.store.checkpoint()
            except StoreUnavailable as exc:
                log.warning("outbox relay: checkpoint failed", extra={"reason": str(exc)})

    def _beat(self) -> None:
        self.heartbeat = time.monotonic()

    @property
    def workers(self) -> int:
        """Claiming threads: OUTBOX_RELAY_THREADS on PostgreSQL; one on SQLite, where every claim and record takes
        the database's single write lock — more threads would only queue on it (and on the webhook's locks)."""
        return self.settings.outbox_relay_threads if self._postgres else 1

    def _listen(self) -> None:
        """Wake the workers on every NOTIFY; reconnect (polling meanwhile) when the connection drops."""
        import psycopg

        conninfo = make_url(self.store.url).set(drivername="postgresql").render_as_string(hide_password=False)
        while not self.stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=2) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self.wake(everyone=True)  # rows committed while nobody listened
                    while not self.stop.is_set():
                        # A short wait, so a SIGTERM is acted on promptly; the workers keep their own poll.
                        for _ in conn.notifies(timeout=min(1.0, self.settings.outbox_poll_seconds), stop_after=1):
                            self.wake()
            except psycopg.Error as exc:
                log.warning("outbox relay: LISTEN connection lost; polling", extra={"reason": type(exc).__name__})
                self.stop.wait(self.settings.outbox_poll_seconds)

    def run(self, *, health_port: int | None = None) -> None:
        """Deliver until `self.stop` is set; then finish the sends under way and return."""
        workers = [threading.Thread(target=self._work, name=f"relay-{n}", daemon=True)
                   for n in range(self.workers)]
        if not self._postgres:
            workers.append(threading.Thread(target=self._checkpoint, name="relay-checkpoint", daemon=True))
        for w in workers:
            w.start()
        server = self._serve_health(health_port) if health_port is not None else None
        log.info("outbox relay started", extra={"reason": f"{len(workers)} workers, "
                                                          f"{'LISTEN/NOTIFY' if self._postgres else 'polling'}"})
        try:
            if self._postgres:
                self._listen()
            else:
                self.stop.wait()
        finally:
            self.stop.set()
            self.wake(everyone=True)
            for w in workers:
                w.join(self.settings.notify_deadline_seconds + 5)
            if server is not None:
                server.shutdown()
            log.info("outbox relay stopped")

    @property
    def _postgres(self) -> bool:
        return self.store.url.startswith("postgresql")

    def _serve_health(self, port: int) -> ThreadingHTTPServer:
        relay = self

        class Health(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's hook name
                if self.path == "/healthz":
                    ok, body = relay.alive(), {"status": "ok" if relay.alive() else "stalled"}
                elif self.path == "/healthz/outbox":
                    try:
                        ok, body = backlog_health(relay.store, relay.settings)
                    except StoreUnavailable as exc:
                        ok, body = False, {"status": "unavailable", "store": str(exc)}
                else:
                    ok, body = False, {"error": "not found"}
                data = json.dumps(body).encode()
                self.send_response(200 if ok else (404 if "error" in body else 503))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass  # probes every few seconds would drown the delivery lines

        server = ThreadingHTTPServer(("0.0.0.0", port), Health)
        threading.Thread(target=server.serve_forever, name="relay-health", daemon=True).start()
        return server


def main(settings: Settings, store: Store, *, once: bool = False, health_port: int | None = None) -> dict | None:
    """The `outbox relay` command: one pass with `once`, else until SIGTERM or Ctrl-C."""
    relay = Relay(settings, store)
    if once:
        return relay.drain()

    def stop(_signum, _frame) -> None:
        relay.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    relay.run(health_port=health_port)
    return None
