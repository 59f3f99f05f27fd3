"""Logs: one Cloud Logging JSON line per call (severity, message, trace, tag, session, latency), and never an OTP,
a full phone number or a full e-mail address anywhere in the output of a whole seed dialog."""
from __future__ import annotations

import json
import logging
import re

import pytest

from tests.conftest import Caller, cx_request
from webhook.logs import scrub

TRACE = "105445aa7843bc8bf206b12000100000"
HANAKO_FORMS = ("09000001111", "+819000001111", "819000001111", "9000001111", "090-0000-1111",
                "hanako.sato@example.jp", "hanako.sato")


class TracedCaller(Caller):
    """A caller whose requests carry Cloud Run's trace header, as they do in production."""

    def call(self, action: str, **params) -> dict:
        if self.phone_number is not None:
            params.setdefault("phone_number", self.phone_number)
        body = cx_request(self.TAGS[action], self.session, caller_id=self.caller_id, **params)
        response = self.client.post("/webhook", json=body, headers={"X-Cloud-Trace-Context": f"{TRACE}/1;o=1"})
        assert response.status_code == 200
        return response.get_json()["sessionInfo"]["parameters"]


def test_a_whole_seed_dialog_logs_no_code_no_phone_number_no_email(make_app, phone, log_lines, caplog, capfd):
    """Dialog 1 with both channels, a wrong code, failures and a lock: stdout, stderr and every log record hold
    neither the codes, nor Hanako's number in any form, nor her e-mail address."""
    caplog.set_level(logging.INFO)
    app = make_app(google_cloud_project="bank-prod")
    hanako = TracedCaller(app.test_client(), phone, "dialog-1-logs", None, caller_id="+819000001111")
    hanako.phone_number = hanako.call("verify_user")["phone_number"]
    hanako.call("send_otp", otp_channel="email")
    hanako.call("verify_otp", otp_code="000000" if phone.last_code() != "000000" else "111111")
    hanako.call("verify_otp", otp_code=phone.last_code())
    hanako.call("get_card_details")
    hanako.call("validate_card", last_four_digit_of_card_number=4444.0)
    hanako.call("send_otp", otp_channel="sms")
    hanako.call("verify_otp", otp_code=phone.last_code())
    hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive", lock_reason="damaged")
    hanako.call("reissue_card", last_four_digit_of_card_number="4444", zip_code="99999")
    hanako.call("send_otp", otp_channel="fax")

    codes = {code for m in phone.messages() if m["kind"] == "otp" for code in re.findall(r"\b\d{6}\b", m["body"])}
    assert len(codes) == 2  # one by e-mail, one by SMS
    out, err = capfd.readouterr()
    records = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    everything = "\n".join([out, err, records, json.dumps(log_lines(), ensure_ascii=False)])
    for secret in (*codes, *HANAKO_FORMS):
        assert secret not in everything, secret


def test_each_call_is_one_cloud_logging_line(make_app, phone, log_lines):
    """Each call logs severity, message, the trace under the project, the tag, the session id and the latency."""
    app = make_app(google_cloud_project="bank-prod")
    hanako = TracedCaller(app.test_client(), phone, "dialog-1-shape", "09000001111")
    hanako.call("verify_user")
    hanako.call("get_card_details")  # not verified: a webhook_error, logged as a warning
    ok, refused = log_lines()
    assert ok["severity"] == "INFO" and ok["message"] == "webhook call"
    assert ok["tag"] == "prebuilt_components_authentication:verify_user"
    assert ok["session"] and "dialog-1-shape" not in json.dumps(ok)  # a keyed hash of it (see below)
    assert ok["logging.googleapis.com/trace"] == f"projects/bank-prod/traces/{TRACE}"
    assert ok["logging.googleapis.com/spanId"] == "0000000000000001"
    assert ok["logging.googleapis.com/trace_sampled"] is True
    assert ok["latency_ms"] >= 0 and ok["httpRequest"]["latency"].endswith("s")
    assert ok["httpRequest"]["status"] == 200 and ok["httpRequest"]["requestMethod"] == "POST"
    assert refused["severity"] == "WARNING" and refused["error_code"] == "AUTH_REQUIRED"


def test_w3c_traceparent_is_understood(make_app, log_lines):
    """Cloud Run's newer `traceparent` header gives the same trace field."""
    client = make_app().test_client()
    client.post("/webhook", json=cx_request(Caller.TAGS["verify_user"], phone_number="09000001111"),
                headers={"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"})
    line = log_lines()[-1]
    assert line["logging.googleapis.com/trace"] == TRACE
    assert line["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"


@pytest.mark.parametrize("header", ["", "not-a-trace", "../../x", "x" * 500, TRACE + "/99999999999999999999999"])
def test_a_garbage_trace_header_is_ignored_or_kept_harmless(make_app, log_lines, header):
    """A caller-controlled trace header never breaks the call nor writes arbitrary text into the trace field."""
    client = make_app().test_client()
    response = client.post("/webhook", json=cx_request(Caller.TAGS["verify_user"], phone_number="09000001111"),
                           headers={"X-Cloud-Trace-Context": header})
    assert response.status_code == 200
    trace = log_lines()[-1].get("logging.googleapis.com/trace")
    assert trace in (None, TRACE)


def test_store_outage_and_denials_are_logged_at_their_severity(make_app, log_lines, tmp_path):
    """A caller refused by auth is a WARNING; a store that is down is an ERROR (what an alert should page on)."""
    client = make_app(webhook_auth="header", webhook_header_value="a-shared-secret-of-some-length").test_client()
    client.post("/webhook", json=cx_request(Caller.TAGS["verify_user"], phone_number="09000001111"))
    down = make_app(database_url=f"sqlite:///{tmp_path}/missing-dir/none.sqlite3").test_client()
    down.post("/webhook", json=cx_request(Caller.TAGS["verify_user"], phone_number="09000001111"))
    denied, outage = log_lines()
    assert denied["severity"] == "WARNING" and denied["status"] == 401
    assert outage["severity"] == "ERROR" and outage["error_code"] == "STORE_UNAVAILABLE"


@pytest.mark.parametrize("text, hidden", [
    ("SMTPRecipientsRefused({'hanako.sato@example.jp': (550, b'no')})", "hanako.sato@example.jp"),
    ("sent to +81 90-0000-1111", "90-0000-1111"),
    ("code 123456 expired", "123456"),
    ("09000001111", "09000001111"),
])
def test_the_formatter_scrubs_what_slipped_into_a_message(text, hidden):
    """Last line of defence: an e-mail, a phone number or a six-digit code inside any logged text is masked."""
    assert hidden not in scrub(text)


def test_the_formatter_keeps_ordinary_values():
    """Ticket numbers (7 digits), last fours, latencies and session ids survive the scrub."""
    assert scrub("ticket 1234567 for card 4444 in 12.5 ms, session dialog-1") == \
        "ticket 1234567 for card 4444 in 12.5 ms, session dialog-1"


def test_a_log_reader_cannot_replay_a_session_it_sees_in_the_logs(make_app, phone, log_lines):
    """A CX session id is the only identity a turn carries: whoever reads the logs must not learn it. The log
    holds a keyed hash of it instead — the same on every line of one session (lines still correlate), different
    for another session, and not computable without the server's key."""
    app = make_app()
    hanako = TracedCaller(app.test_client(), phone, "dialog-1-secret-session", "09000001111")
    hanako.call("verify_user")
    hanako.call("get_card_details")
    TracedCaller(app.test_client(), phone, "dialog-1-other-session", "09000001111").call("verify_user")
    first, second, other = log_lines()
    for line in (first, second, other):
        text = json.dumps(line, ensure_ascii=False)
        assert "secret-session" not in text and "other-session" not in text and "/sessions/" not in text
    assert first["session"] == second["session"] != other["session"]
    # Keyed: another deployment's key gives another value for the same session.
    rekeyed = make_app(log_session_key="another-deployment-key-0123456789")
    TracedCaller(rekeyed.test_client(), phone, "dialog-1-secret-session", "09000001111").call("verify_user")
    assert log_lines()[-1]["session"] != first["session"]


def test_any_length_of_log_session_key_keys_the_reference(make_app, phone, log_lines):
    """LOG_SESSION_KEY is the operator's text, of any length; the reference's keyed BLAKE2b takes 64 bytes at most.
    A key of 200 characters serves (no error, no fallback to another key), and two keys that share their first
    64 bytes still give two references."""
    long_key = "k" * 64 + "-one-deployment-" + "x" * 120
    refs = []
    for key in (long_key, long_key.replace("one", "two")):
        app = make_app(log_session_key=key)
        caller = TracedCaller(app.test_client(), phone, "dialog-7-secret-session", "09000001111")
        caller.call("verify_user")
        line = log_lines()[-1]
        assert line["outcome"] == "ok" and len(line["session"]) == 16
        refs.append(line["session"])
    assert refs[0] != refs[1]


def test_a_log_line_that_cannot_be_written_spills_nothing(capfd, monkeypatch):
    """Standard output closed under the service (a broken pipe, a closed capture): logging's own error report would
    print the record's arguments to stderr unscrubbed; ours names the failure and nothing else."""
    import io
    import logging

    from webhook.logs import configure

    configure()
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr("sys.stdout", closed)
    logging.getLogger("lockcard.webhook").warning("stray %s", "lcat_c0w0eVXTHeNa-fOd2GIVYGhioMM")
    monkeypatch.undo()
    err = capfd.readouterr().err
    assert "lockcard log line not written: ValueError" in err
    assert "lcat_" not in err and "stray" not in err


@pytest.mark.parametrize("created", [0.0, 1.5, -1.5, -0.0000004, 1764660896.0769999, 1764660896.9999996,
                                     1764660896.0000004, 1764660896.0005, 1764660896.9995, 1764660896.999499,
                                     4102444799.9999995])
def test_the_log_time_is_what_datetime_writes(created):
    """The per-second cache of the line's time writes exactly what datetime.isoformat writes, rounding included."""
    import datetime as dt

    from webhook.logs import iso_time

    expected = dt.datetime.fromtimestamp(created, dt.timezone.utc).isoformat(timespec="milliseconds")
    assert iso_time(created) == expected
    assert iso_time(created + 1) == dt.datetime.fromtimestamp(created + 1, dt.timezone.utc).isoformat(
        timespec="milliseconds")  # the next second is formatted anew, not served from the cache


def test_the_log_time_matches_datetime_over_many_random_instants():
    """100,000 random instants across 1970–2100, alternating seconds so the cache is both hit and missed."""
    import datetime as dt
    import random

    from webhook.logs import iso_time

    rng = random.Random(15)
    for _ in range(100_000):
        created = rng.uniform(0, 4_102_444_800)
        assert iso_time(created) == dt.datetime.fromtimestamp(created, dt.timezone.utc).isoformat(
            timespec="milliseconds"), created


def test_a_served_process_writes_each_call_line_itself_and_no_secret(tmp_path):
    """Under gunicorn (the set-up the direct log path is for: our stdout handler alone), every call is one JSON line
    on stdout, and neither the caller's number in any form, nor a code they typed, nor the token is in it."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time
    import urllib.request
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "served-log-token-0123456789abcdef"
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}", "NOTIFY_BACKEND": "file",
           "NOTIFY_FILE": str(tmp_path / "notify.jsonl"), "APP_ENV": "development", "WEBHOOK_AUTH": "header",
           "WEBHOOK_HEADER_NAME": "X-Webhook-Token", "WEBHOOK_HEADER_VALUE": token, "CONSOLE_AUTH": "off"}
    flask = [sys.executable, "-m", "flask", "--app", "main", "store"]
    for command in ("upgrade", "load-fixtures"):
        subprocess.run([*flask, command], cwd=root, env=env, check=True, capture_output=True)
    out = tmp_path / "stdout"
    with out.open("wb") as sink:
        server = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}",
                                   "main:app"], cwd=root, env=env, stdout=sink, stderr=subprocess.DEVNULL)
    calls = [("verify_user", {}), ("send_otp", {"otp_channel": "sms"}), ("verify_otp", {"otp_code": "271828"}),
             ("get_card_details", {}), ("validate_card", {"last_four_digit_of_card_number": "4444"})]
    tags = Caller.TAGS
    try:
        for n, (action, params) in enumerate(calls):
            body = json.dumps(cx_request(tags[action], "served-logs", phone_number="09000001111",
                                         caller_id="+819000001111", **params)).encode()
            request = urllib.request.Request(f"http://127.0.0.1:{port}/webhook", data=body, method="POST", headers={
                "Content-Type": "application/json", "X-Webhook-Token": token})
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        assert answer.status == 200
                    break
                except OSError:  # gunicorn still starting (the first call only)
                    if n or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    call_lines = [line for line in lines if line.get("message") == "webhook call"]
    assert [line["tag"] for line in call_lines] == [tags[action] for action, _ in calls]
    assert all(line["logger"] == "lockcard.webhook" and line["httpRequest"]["requestUrl"] == "/webhook"
               for line in call_lines)
    text = out.read_text()
    for secret in (*HANAKO_FORMS, "271828", token):
        assert secret not in text, secret
