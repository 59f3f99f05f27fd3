"""Hostile input that is not a wrong value: a huge chunked body, terminal control sequences in and out, endless
replacement cards, and tools pointed at a database that holds data."""
from __future__ import annotations

import http.client
import io
import json
import threading

import pytest
from sqlalchemy import select, update
from werkzeug.serving import make_server

from cardstore.models import Customer
from tests.conftest import Caller, cx_request
from tests.store_state import unchanged
from webhook.app import service_of
from webhook.http import MAX_BODY_BYTES

HANAKO, MISAKI = "09000001111", "09012345041"
# ESC, an OSC 52 "set the clipboard" sequence ended by BEL, a C1 CSI, DEL: what a terminal would act on.
CONTROL_SEQUENCES = ["\x1b[2J", "\x1b]52;c;ZXZpbA==\x07", "\x07", "\x9b31m", "\x7f", "\x00", "\r", "\n", "\t"]


class CountingInput(io.RawIOBase):
    """wsgi.input as the application sees it (already de-chunked by the server), counting what it reads."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.inner.read(len(buffer))
        buffer[:len(data)] = data
        self.count += len(data)
        return len(data)


@pytest.fixture
def real_server(make_app):
    """The webhook app behind werkzeug's real HTTP server on a free loopback port: `(host, port, inputs)`, where
    `inputs` are the request bodies as the application read them."""
    app = make_app()
    inputs: list[CountingInput] = []

    def counting(environ, start_response):
        environ["wsgi.input"] = CountingInput(environ["wsgi.input"])
        inputs.append(environ["wsgi.input"])
        return app(environ, start_response)

    server = make_server("127.0.0.1", 0, counting, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "127.0.0.1", server.server_port, inputs
    server.shutdown()
    thread.join(10)


def test_a_huge_chunked_body_is_refused_while_it_is_read(real_server):
    """64 MiB sent with Transfer-Encoding: chunked (no Content-Length to refuse up front): the application answers
    413 after reading just past the limit, instead of buffering the whole body first. (The server itself then
    discards the rest, 10 MB at a time, so the client sees the 413.)"""
    host, port, inputs = real_server
    total = 64 * 1024 * 1024
    chunk = b"[" + b"0," * (32 * 1024)

    def body():
        for _ in range(total // len(chunk)):
            yield chunk

    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.request("POST", "/webhook", body=body(), headers={"Content-Type": "application/json"},
                     encode_chunked=True)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server hung up before the whole body went: fine, its answer is already there
    response = conn.getresponse()
    assert response.status == 413
    assert json.loads(response.read())["error"]["code"] == "BODY_TOO_LARGE"
    conn.close()
    assert len(inputs) == 1
    assert inputs[0].count <= MAX_BODY_BYTES + 128 * 1024, f"the application read {inputs[0].count} bytes"


@pytest.mark.parametrize("sequence", CONTROL_SEQUENCES)
@pytest.mark.parametrize("parameter", ["otp_channel", "lock_reason", "lock_type", "zip_code",
                                       "last_four_digit_of_card_number", "phone_number"])
def test_control_characters_in_a_parameter_are_refused(caller, store, sequence, parameter):
    """A control sequence inside any value the webhook reads is INVALID_PARAMETER (not silently folded away), and
    nothing changes."""
    hanako = caller(HANAKO)
    hanako.authenticate()
    params = {"last_four_digit_of_card_number": "4444", "lock_type": "blocked", "lock_reason": "stolen",
              "zip_code": "12345", "otp_channel": "sms", "phone_number": HANAKO}
    params[parameter] = params[parameter] + sequence  # where strip() or a lenient parser might drop it
    tag = {"otp_channel": "send_otp", "zip_code": "reissue_card"}.get(parameter, "lock_card")
    hanako.phone_number = None
    with unchanged(store):
        answer = hanako.call(tag, **params)
    assert answer == {"transfer_reason": "webhook_error", "webhook_error_code": "INVALID_PARAMETER"}


def test_a_stored_address_with_control_sequences_reaches_no_output_raw(caller, store, phone):
    """An e-mail address stored with an OSC 52 sequence (an old import, a hand edit): the masked destination the
    webhook answers and the mask the back office prints carry it escaped, never as live control characters."""
    from contact import mask_email

    evil = "hanako.sato@exa\x1b]52;c;ZXZpbA==\x07mple.jp"
    with store.unit_of_work() as uow:
        uow.session.execute(update(Customer).where(Customer.phone_e164 == "+819000001111").values(email=evil))
        uow.commit()
    masked = mask_email(evil)
    assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) <= 0x9f for ch in masked), repr(masked)
    hanako = caller(HANAKO)
    hanako.authenticate()
    sent = hanako.call("send_otp", otp_channel="email")
    shown = json.dumps(sent, ensure_ascii=False)
    assert "\x1b" not in shown and "\x07" not in shown, shown


def test_replacement_cards_per_card_are_capped(make_app, phone):
    """Misaki's blocked card: session after session asks for a replacement; only REISSUE_LIMIT_PER_CARD (2) are
    ordered, the next is REISSUE_LIMIT_REACHED and changes nothing."""
    from settings import Settings

    # Three sessions each need a code for Misaki: lift the growing delay between sends, which is not tested here.
    relaxed = {"throttle_free_events": 10} if "throttle_free_events" in Settings.model_fields else {}
    app = make_app(**relaxed)
    sessions = [Caller(app.test_client(), phone, f"reissue-{n}", MISAKI) for n in range(3)]
    for session in sessions:
        assert session.authenticate()["otp_verified"] is True
    sessions[0].call("lock_card", last_four_digit_of_card_number="1457", lock_type="blocked", lock_reason="stolen")
    numbers = [s.call("reissue_card", last_four_digit_of_card_number="1457", zip_code="12345")
               .get("acknowledgement_number") for s in sessions[:2]]
    assert None not in numbers and len(set(numbers)) == 2
    with unchanged(service_of(app).store):
        answer = sessions[2].call("reissue_card", last_four_digit_of_card_number="1457", zip_code="12345")
    assert answer == {"transfer_reason": "webhook_error", "webhook_error_code": "REISSUE_LIMIT_REACHED"}


@pytest.mark.parametrize("tool", ["bench", "backoffice.bench_import"])
def test_tools_that_recreate_a_database_refuse_one_with_rows(sqlite_url, tool):
    """Pointed at a store that holds customers, `python -m bench` and `python -m backoffice.bench_import` stop
    before dropping anything and say --force would; the store keeps its rows. (`loadtest`: tests/load.)"""
    from cardstore.uow import Store
    from cardstore.wipe import NotEmpty, rows_in

    before = rows_in(sqlite_url)
    assert before
    if tool == "bench":
        from bench.__main__ import main

        argv = ["--postgres-url", sqlite_url, "--skip", "sqlite", "tmpfs", "growth", "import"]
    else:
        from backoffice.bench_import import main

        argv = ["--rows", "10", "--database-url", sqlite_url]
    with pytest.raises(NotEmpty, match="--force"):
        main(argv)
    assert rows_in(sqlite_url) == before
    store = Store(sqlite_url)
    with store.unit_of_work(read_only=True) as uow:
        assert uow.session.scalars(select(Customer)).first() is not None
    store.dispose()


def test_stored_text_with_control_sequences_reaches_the_operators_terminal_escaped(store, app):
    """A name and a hand-off note holding ESC / OSC 52 / BEL (an old import, a pasted note): `customers show` and
    `handoffs list` print them written out, never as live control characters."""
    from click.testing import CliRunner

    from cardstore.models import Card, Handoff

    evil = "鈴木\x1b]52;c;ZXZpbA==\x07\x1b[2J"
    with store.unit_of_work() as uow:
        misaki = uow.session.scalars(select(Customer).where(Customer.phone_e164 == "+819012345041")).one()
        misaki.name = evil
        card = uow.session.scalars(select(Card).where(Card.customer_id == misaki.id, Card.last4 == "1456")).one()
        uow.repo.add(Handoff(customer_id=misaki.id, card_id=card.id, session="s", requested_action="reactivate",
                             note=evil))
        uow.commit()
    runner = app.test_cli_runner(mix_stderr=False) if "mix_stderr" in CliRunner.__init__.__code__.co_varnames \
        else app.test_cli_runner()
    for args in (["customers", "show", MISAKI], ["handoffs", "list"], ["customers", "show", MISAKI, "--json"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        assert "\x1b" not in result.output and "\x07" not in result.output, (args, result.output)
        assert "\\x1b" in result.output or "\\u001b" in result.output
