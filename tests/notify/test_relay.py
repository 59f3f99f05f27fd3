"""The outbox relay: what the webhook queued is delivered by a relay process of its own — promptly (woken by
LISTEN/NOTIFY on PostgreSQL), once even with two relays racing, never lost when a relay is killed mid-send, never
a code after it expired; every attempt within its deadline; one JSON log line per delivery; a stale backlog seen."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import update

from cardstore.models import OutboxMessage, utcnow
from notify import Notifier
from tests.conftest import TEST_KEY, cx_request
from tests.local_servers import SilentServer, free_port
from tests.notify.conftest import outbox_rows
from webhook.app import service_of

ROOT = Path(__file__).resolve().parents[2]
HANAKO, ICHIRO, MISAKI = "09000001111", "09000002222", "09012345041"
FIXED = {HANAKO: "135790", ICHIRO: "135791", MISAKI: "135792"}


def post(app, tag: str, session: str, phone_number: str, **params) -> dict:
    response = app.test_client().post("/webhook", json=cx_request(tag, session, phone_number=phone_number, **params))
    assert response.status_code == 200
    return response.get_json()["sessionInfo"]["parameters"]


def send_code(app, phone_number: str = HANAKO, session: str = "relay", channel: str = "sms") -> None:
    assert post(app, "prebuilt_components_authentication:send_otp", session, phone_number,
                otp_channel=channel)["otp_sent"] is True


def lock_card(app, phone_number: str = HANAKO, session: str = "relay-lock") -> int:
    """A verified caller locks a card (fixed code): returns the ticket number; its SMS is queued."""
    send_code(app, phone_number, session, "email" if phone_number == HANAKO else "sms")
    assert post(app, "prebuilt_components_authentication:verify_otp", session, phone_number,
                otp_code=FIXED[phone_number])["otp_verified"] is True
    last4 = "4444" if phone_number in (HANAKO, ICHIRO) else "5041"
    locked = post(app, "prebuilt_components_lock_card:lock_card_ticket_number", session, phone_number,
                  last_four_digit_of_card_number=last4, lock_type="inactive", lock_reason="lost")
    return locked["ticket_number"]


def relay_pass(app, *, later_s: float = 0) -> dict[str, int]:
    service = service_of(app)
    return Notifier(service.settings).deliver(service.store, now=utcnow() + dt.timedelta(seconds=later_s))


def wait_for(condition, what: str, within_s: float = 30):
    """Wait until `condition()` is true (a bound for a hung test, not a speed requirement)."""
    ends = time.monotonic() + within_s
    while time.monotonic() < ends:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"still waiting for {what}")


class RelayProcess:
    """`flask --app main outbox relay`, a real process with the settings given as its environment."""

    def __init__(self, tmp_path: Path, url: str, notify_file: Path, **settings: object) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("PORT",)}
        env.update({"DATABASE_URL": url, "NOTIFY_BACKEND": "file", "NOTIFY_FILE": str(notify_file),
                    "OTP_HASH_KEY": TEST_KEY})
        env.update({k.upper(): str(v) for k, v in settings.items()})
        self.log = tmp_path / f"relay-{time.monotonic_ns()}.log"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "main", "outbox", "relay"],
                                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.startswith("{")]

    def started(self) -> bool:
        return any(line["message"] == "outbox relay started" for line in self.lines())

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)


@pytest.fixture
def relays(tmp_path):
    started: list[RelayProcess] = []

    def start(url: str, notify_file: Path, **settings) -> RelayProcess:
        relay = RelayProcess(tmp_path, url, notify_file, **settings)
        started.append(relay)
        wait_for(lambda: relay.started() or relay.process.poll() is not None, "the relay to start")
        assert relay.process.poll() is None, relay.log.read_text()
        return relay

    yield start
    for relay in started:
        if relay.process.poll() is None:
            relay.kill()


def test_the_relay_process_delivers_a_code_committed_after_it_started(make_app, store_url, phone, relays):
    """A relay runs beside the webhook; Hanako asks for a code; the relay delivers it (on PostgreSQL woken by
    NOTIFY: its poll here is a minute, so only the wake-up can deliver it), and stops cleanly on SIGTERM."""
    app = make_app(database_url=store_url)
    poll = 60 if store_url.startswith("postgresql") else 0.2
    relay = relays(store_url, phone.path, outbox_poll_seconds=poll, outbox_relay_threads=2)
    send_code(app)
    wait_for(lambda: outbox_rows(app)[0].status == "sent", "the code delivered")
    assert phone.path.exists() and "otp" in phone.path.read_text()
    (row,) = outbox_rows(app)
    assert row.status == "sent" and row.attempts == 1 and row.claimed_by and "******" in row.body
    assert relay.stop() == 0


def test_two_relays_racing_send_each_notice_once(make_app, store_url, phone, relays, twilio):
    """Two relay processes (four sending threads each) over the same store while fifteen codes are asked for:
    every code reaches the SMS gateway exactly once (claims are exclusive: SKIP LOCKED on PostgreSQL)."""
    # Five codes each for three customers: the race is the relays', so the abuse limits' delays are off here.
    app = make_app(database_url=store_url, throttle_free_events=100, **twilio.settings())
    for _ in range(2):
        relays(store_url, phone.path, outbox_poll_seconds=0.1, **twilio.settings())
    for n in range(5):
        for number in (HANAKO, ICHIRO, MISAKI):
            send_code(app, number, f"race-{n}")
    wait_for(lambda: all(r.status == "sent" for r in outbox_rows(app)), "every code sent")
    rows = outbox_rows(app)
    assert len(rows) == 15 and all(r.attempts == 1 for r in rows)
    assert len(twilio.received) == 15 and len(twilio.accepted) == 15
    assert len({(m["To"], m["Body"]) for m in twilio.accepted}) == 15


def test_a_relay_killed_mid_send_does_not_lose_the_notice(make_app, store_url, phone, relays, twilio):
    """The relay is killed while the gateway holds its request (nothing accepted): the ticket SMS stays claimed in
    `sending`; no other relay takes it while the lease may still be its sender's; after the lease it is sent,
    and the gateway has accepted it exactly once."""
    app = make_app(database_url=store_url, otp_test_numbers=FIXED, **twilio.settings())
    twilio.mode = "stall"
    relay = relays(store_url, phone.path, outbox_lease_seconds=60, notify_deadline_seconds=30, **twilio.settings())
    ticket = lock_card(app, HANAKO)  # her code goes by e-mail (the file); the ticket SMS to the stalled gateway
    wait_for(twilio.stalled.is_set, "the relay's request at the gateway")
    wait_for(lambda: outbox_rows(app)[0].status == "sent", "her code recorded as sent")  # only the ticket in flight
    relay.kill()
    wait_for(lambda: not twilio.stalled.is_set(), "the gateway to see the relay gone")
    tickets = [r for r in outbox_rows(app) if r.kind == "lock_ticket"]
    assert [(r.status, r.attempts) for r in tickets] == [("sending", 1)]
    twilio.mode = "ok"
    assert relay_pass(app, later_s=30)["sent"] == 0  # inside the lease: the killed relay might still be sending
    assert relay_pass(app, later_s=61)["sent"] == 1  # the lease ran out: another relay takes it
    assert relay_pass(app, later_s=3600)["sent"] == 0
    assert [m["Body"] for m in twilio.accepted if str(ticket) in m["Body"]] != []
    assert len([m for m in twilio.accepted if str(ticket) in m["Body"]]) == 1
    (row,) = [r for r in outbox_rows(app) if r.kind == "lock_ticket"]
    assert row.status == "sent" and row.attempts == 2


def test_a_code_that_expired_in_the_queue_is_given_up_not_sent(make_app, store_url, phone):
    """Hanako's code waited in the outbox past its five minutes (the gateway was down): the relay gives it up with
    the reason and never sends it; a ticket notice of the same age is still sent."""
    app = make_app(database_url=store_url, otp_test_numbers=FIXED)
    lock_card(app, ICHIRO)  # a code (by SMS) and a ticket notice, both queued
    counts = relay_pass(app, later_s=301)
    assert counts == {"sent": 1, "failed": 0, "given_up": 1}
    kinds = {r.kind: r for r in outbox_rows(app)}
    assert kinds["otp"].status == "given_up" and "expired" in kinds["otp"].last_error
    assert kinds["lock_ticket"].status == "sent"
    assert [m["kind"] for m in phone.messages()] == ["lock_ticket"]


def test_an_smtp_gateway_that_drips_is_cut_at_the_deadline(make_app, store_url):
    """An SMTP server that sends its greeting a byte at a time never trips a per-read timeout: the attempt still
    ends at NOTIFY_DEADLINE_SECONDS, failed for retry, and the notice stays queued."""
    server = SilentServer("drip", every_s=0.2)
    try:
        app = make_app(database_url=store_url, notify_backend="smtp", smtp_port=server.port,
                       smtp_sms_domain="sms.bank.example", notify_deadline_seconds=1)
        send_code(app)
        assert relay_pass(app)["failed"] == 1
        (row,) = outbox_rows(app)
        assert row.status == "failed" and "NOTIFY_DEADLINE_SECONDS" in row.last_error and row.lease_until is None
    finally:
        server.close()


def test_one_json_log_line_per_delivery_without_the_code_or_the_number(make_app, phone, log_lines):
    """Each attempt is one line: id, kind, channel, masked recipient, outcome, attempt, times — never the code, the
    full number or the address."""
    app = make_app(otp_test_numbers=FIXED)
    lock_card(app, ICHIRO)
    relay_pass(app)
    lines = [line for line in log_lines() if line["message"] == "outbox delivery"]
    assert [(line["kind"], line["outcome"], line["attempt"]) for line in lines] == [
        ("otp", "sent", 1), ("lock_ticket", "sent", 1)]
    assert all(line["to"] == "*********2222" and line["channel"] == "sms" and "queued_ms" in line for line in lines)
    text = json.dumps(log_lines())
    assert FIXED[ICHIRO] not in text and "9000002222" not in text


def test_a_backlog_older_than_the_threshold_is_reported(make_app, store_url):
    """/healthz/outbox answers 200 while notices are fresh, 503 once the oldest undelivered one is older than
    OUTBOX_BACKLOG_ALERT_SECONDS (a stuck relay pages someone), 200 again once the relay caught up; `outbox list`
    prints the backlog's age."""
    app = make_app(database_url=store_url, outbox_backlog_alert_seconds=60)
    client = app.test_client()
    send_code(app)
    fresh = client.get("/healthz/outbox")
    assert fresh.status_code == 200 and fresh.get_json()["outbox"]["queued"] == 1
    with service_of(app).store.unit_of_work() as uow:
        uow.session.execute(update(OutboxMessage).values(created_at=utcnow() - dt.timedelta(seconds=200),
                                                         expires_at=utcnow() + dt.timedelta(seconds=100)))
        uow.commit()
    stale = client.get("/healthz/outbox")
    assert stale.status_code == 503 and stale.get_json()["outbox"]["stale"] is True
    assert stale.get_json()["outbox"]["oldest_age_s"] >= 200
    listing = app.test_cli_runner().invoke(args=["outbox", "list"]).output
    assert re.search(r"backlog: 1 not yet delivered, the oldest queued 2\d\d s ago", listing)
    relay_pass(app)
    caught_up = client.get("/healthz/outbox")
    assert caught_up.status_code == 200 and caught_up.get_json()["outbox"] == {
        "queued": 0, "oldest_age_s": None, "alert_after_s": 60, "stale": False}


def test_the_relay_serves_its_own_health(make_app, tmp_path, phone, relays, sqlite_url):
    """`outbox relay` on Cloud Run listens on $PORT: /healthz says the loop is alive, /healthz/outbox the backlog."""
    import urllib.request

    port = free_port()
    relays(sqlite_url, phone.path, port=port, outbox_poll_seconds=0.2)

    def get(path):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
                return response.status, json.loads(response.read())
        except OSError:
            return None

    status, body = wait_for(lambda: get("/healthz"), "the relay's health endpoint")
    assert status == 200 and body == {"status": "ok"}
    assert get("/healthz/outbox")[1]["queued"] == 0


def test_bad_relay_settings_stop_it_at_start_up(tmp_path, sqlite_url):
    """A lease shorter than twice the deadline could let two live relays send one notice: refused, named."""
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "main", "outbox", "relay", "--once"], cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": sqlite_url, "OUTBOX_LEASE_SECONDS": "10",
                                 "NOTIFY_DEADLINE_SECONDS": "10"}, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "OUTBOX_LEASE_SECONDS" in result.stderr + result.stdout


def test_the_relay_checkpoints_the_sqlite_store_the_webhook_writes(tmp_path, phone, relays, sqlite_url):
    """The webhook's commits leave the WAL's checkpoint (a copy into the database file and an fsync) to the relay
    process beside it: pages a commit left in the WAL reach the database file without anyone else asking."""
    from cardstore.models import AuditEvent
    from cardstore.uow import Store

    database = Path(sqlite_url.removeprefix("sqlite:///"))
    store = Store(sqlite_url)
    store.checkpoint()
    before = database.stat().st_size
    relays(sqlite_url, phone.path, outbox_poll_seconds=5)
    with store.unit_of_work() as uow:
        for n in range(1500):
            uow.session.add(AuditEvent(actor="test", action="test.filler", after={"filler": f"{n:06d}" * 680}))
        uow.commit()
    assert database.stat().st_size == before  # the commit itself copied nothing
    wait_for(lambda: database.stat().st_size >= before + 1500 * 4096, "the relay's checkpoint")
    store.dispose()
