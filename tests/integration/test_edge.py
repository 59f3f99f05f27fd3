"""The WSGI edge in front of Flask (webhook.http.WebhookEdge): POST /webhook and /flexible/<tag> answered exactly as
the Flask routes behind it answer them, everything else left to Flask, and the call's log line the same bytes
whether it is written directly or through the logging module."""
from __future__ import annotations

import contextlib
import io
import json
import logging
import socket
import threading

import pytest
from werkzeug.serving import make_server
from werkzeug.test import Client

from tests.conftest import cx_request
from webhook import logs
from webhook.http import MAX_BODY_BYTES, WebhookEdge

TOKEN = "edge-test-token-0123456789abcdef"
AUTH = {"X-Webhook-Token": TOKEN}
HANAKO = "09000001111"


@pytest.fixture
def edge_app(make_app):
    return make_app(webhook_auth="header", webhook_header_name="X-Webhook-Token", webhook_header_value=TOKEN)


def behind_the_edge(app) -> Client:
    """A client on the Flask app itself, past the edge: what the routes answer."""
    edge = app.wsgi_app
    assert isinstance(edge, WebhookEdge)
    return Client(edge.wsgi_app)


def _verified_read(phone) -> dict:
    return cx_request("prebuilt_components_account_services:get_card_details", "edge-s1", phone_number=HANAKO)


# Each: (path, body bytes, headers). Reads and refusals only: both clients must find the store as it was.
CASES = {
    "a read before verification": ("/webhook", lambda: json.dumps(_verified_read(None)).encode(), AUTH),
    "an unknown tag": ("/webhook", lambda: json.dumps(cx_request("nope:nope", "edge-s2")).encode(), AUTH),
    "no credential": ("/webhook", lambda: b"{}", {}),
    "a wrong credential": ("/webhook", lambda: b"{}", {"X-Webhook-Token": "wrong"}),
    "not JSON": ("/webhook", lambda: b"{not json", AUTH),
    "a JSON array": ("/webhook", lambda: b"[]", AUTH),
    "a flexible call": ("/flexible/prebuilt_components_account_services:get_card_details",
                        lambda: json.dumps({"phone_number": HANAKO}).encode(), AUTH),
    "an unknown flexible tag": ("/flexible/nope", lambda: b"{}", AUTH),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_the_edge_answers_as_the_flask_route_does(edge_app, case):
    path, body, headers = CASES[case]
    through_edge = Client(edge_app).post(path, data=body(), headers={**headers, "Content-Type": "application/json"})
    through_flask = behind_the_edge(edge_app).post(path, data=body(),
                                                   headers={**headers, "Content-Type": "application/json"})
    assert through_edge.status == through_flask.status
    assert through_edge.get_data() == through_flask.get_data()
    for name in ("Content-Type", "Content-Length", "WWW-Authenticate", "Connection"):
        assert through_edge.headers.get(name) == through_flask.headers.get(name), name


@pytest.mark.parametrize("content_type, status", [
    ("application/json", 200), ("application/json; charset=utf-8", 200), ("Application/JSON", 200),
    ("application/cx+json", 200), ("text/plain", 415), ("", 415), ("application/jsonx", 415),
    ("application/x-www-form-urlencoded", 415),
])
def test_the_edge_takes_json_as_werkzeug_defines_it(edge_app, content_type, status):
    body = json.dumps(_verified_read(None)).encode()
    headers = {**AUTH, "Content-Type": content_type} if content_type else AUTH
    answer = Client(edge_app).post("/webhook", data=body, headers=headers)
    assert answer.status_code == status
    if status == 415:
        assert answer.get_json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_an_oversized_declared_body_is_refused_unread(edge_app):
    read = []

    class Input(io.BytesIO):
        def read(self, *args):
            read.append(args)
            return super().read(*args)

    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhook", "CONTENT_TYPE": "application/json",
               "CONTENT_LENGTH": str(MAX_BODY_BYTES + 1), "HTTP_X_WEBHOOK_TOKEN": TOKEN,
               "wsgi.input": Input(b"x" * 10), "SERVER_NAME": "localhost", "SERVER_PORT": "80",
               "wsgi.url_scheme": "http"}
    seen = []
    body = b"".join(edge_app(environ, lambda status, headers: seen.append(status)))
    assert seen == ["413 REQUEST ENTITY TOO LARGE"]
    assert json.loads(body)["error"]["code"] == "BODY_TOO_LARGE"
    assert read == []


@pytest.mark.parametrize("method, path, status", [
    ("GET", "/webhook", 405), ("PUT", "/webhook", 405), ("POST", "/webhook/", 404), ("POST", "/flexible/", 404),
    ("POST", "/webhooks", 404), ("GET", "/healthz", 200),
])
def test_what_the_edge_does_not_take_flask_still_answers(edge_app, method, path, status):
    answer = Client(edge_app).open(path, method=method, data=b"{}", headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status_code == status
    expected = behind_the_edge(edge_app).open(path, method=method, data=b"{}",
                                              headers={**AUTH, "Content-Type": "application/json"})
    assert answer.status == expected.status


@pytest.fixture
def served(edge_app):
    server = make_server("127.0.0.1", 0, edge_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port
    server.shutdown()
    thread.join(10)


def test_a_body_shorter_than_declared_is_a_bad_request_not_a_hang_or_a_500(served):
    """A rude client declares 1,000 bytes, sends 20 and stops writing: the edge reads what came, answers 400."""
    with socket.create_connection(("127.0.0.1", served), timeout=10) as sock:
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n"
                     + f"X-Webhook-Token: {TOKEN}\r\n\r\n".encode() + b'{"fulfillmentInfo": ')
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"400"
    assert json.loads(body)["error"]["code"] == "MALFORMED_REQUEST"


# --- the call's log line -----------------------------------------------------------------------------------------

FIELDS = logs.call_fields(tag="prebuilt_components_account_services:get_card_details", session="0123456789abcdef",
                          latency_s=0.0042, status=200, error_code=None, reason="call 090-1234-5678 back",
                          method="POST", path="/webhook", user_agent="Google-Dialogflow", trace={})


@contextlib.contextmanager
def only_our_handler():
    """The logging set-up a served process has: our stdout handler alone on "lockcard". (pytest attaches its
    capture handlers to every non-propagating logger while a test runs, so a test otherwise takes the logging
    path.)"""
    logs.configure()
    root = logging.getLogger("lockcard")
    kept = root.handlers
    root.handlers = [h for h in kept if getattr(h, "_lockcard", False)]
    try:
        yield root.handlers[0]
    finally:
        root.handlers = kept


def test_the_direct_line_is_the_formatters_line(capsys):
    logger = logging.getLogger("lockcard.webhook")
    with only_our_handler():
        assert logs._direct_handler(logger, logging.INFO) is not None  # the direct path is the one under test
        logs.log_call(logger, logging.WARNING, FIELDS)
    direct = capsys.readouterr().out
    record = logger.makeRecord(logger.name, logging.WARNING, "", 0, "webhook call", (), None,
                               extra={logs.CALL_FIELDS: FIELDS})
    formatted = logs.CloudLoggingFormatter().format(record) + "\n"
    first, second = json.loads(direct), json.loads(formatted)
    assert first.pop("time")[:16] == second.pop("time")[:16]  # same minute: written a moment apart
    assert direct.count("\n") == 1
    assert first == second
    assert list(first) == list(second)  # the same keys in the same order
    assert "090-1234-5678" not in direct


@pytest.mark.parametrize("change", ["another handler", "a logger filter", "a handler filter", "level raised",
                                    "logging disabled"])
def test_anything_else_in_the_way_takes_the_logging_path(capsys, change):
    with only_our_handler() as ours:
        _log_with(capsys, ours, change)


def _log_with(capsys, ours, change):
    root = logging.getLogger("lockcard")
    logger = logging.getLogger("lockcard.webhook")
    assert logs._direct_handler(logger, logging.WARNING) is ours
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record)

    def deny(record):
        seen.append(record)
        return False

    undo = []
    if change == "another handler":
        extra = Keep()
        root.addHandler(extra)
        undo.append(lambda: root.removeHandler(extra))
    elif change == "a logger filter":
        logger.addFilter(deny)
        undo.append(lambda: logger.removeFilter(deny))
    elif change == "a handler filter":
        ours.addFilter(deny)
        undo.append(lambda: ours.removeFilter(deny))
    elif change == "level raised":
        logger.setLevel(logging.ERROR)
        undo.append(lambda: logger.setLevel(logging.NOTSET))
    else:
        logging.disable(logging.WARNING)
        undo.append(lambda: logging.disable(logging.NOTSET))
    try:
        assert logs._direct_handler(logger, logging.WARNING) is None
        logs.log_call(logger, logging.WARNING, FIELDS)
    finally:
        for step in undo:
            step()
    out = capsys.readouterr().out
    if change == "another handler":
        assert len(seen) == 1 and json.loads(out)["tag"] == FIELDS["tag"]  # both handlers got the line
    elif change in ("a logger filter", "a handler filter"):
        assert len(seen) == 1 and out == ""  # the filter saw the record, and refused it
    else:
        assert out == "" and seen == []


@pytest.mark.parametrize("environ", [
    {}, {"CONTENT_LENGTH": "12"}, {"CONTENT_LENGTH": "0012"}, {"CONTENT_LENGTH": "+12"}, {"CONTENT_LENGTH": " 12"},
    {"CONTENT_LENGTH": "1_2"}, {"CONTENT_LENGTH": "²"}, {"CONTENT_LENGTH": "٣"}, {"CONTENT_LENGTH": "-1"},
    {"CONTENT_LENGTH": ""}, {"CONTENT_LENGTH": "99999999999999999999"},
    {"CONTENT_LENGTH": "12", "HTTP_TRANSFER_ENCODING": "chunked"},
    {"CONTENT_LENGTH": "12", "HTTP_TRANSFER_ENCODING": "gzip, chunked"},
    {"CONTENT_LENGTH": "12", "HTTP_TRANSFER_ENCODING": "gzip"},
])
def test_the_declared_length_is_read_as_werkzeug_reads_it(environ):
    from werkzeug.wsgi import get_content_length

    from webhook.http import _content_length

    assert _content_length(environ) == get_content_length(environ)
