"""The HTTP edge shared by both entry points: a WSGI request in, a JSON answer out.

Order matters: the caller is authenticated before the body is read, so an unauthenticated caller learns nothing
about what the service would do with its body.
"""
from __future__ import annotations

import functools
import logging
import re
import time
from typing import IO, Any, Callable, NamedTuple
from weakref import WeakKeyDictionary

import orjson
from flask import Request, Response, json
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES, parse_options_header
from werkzeug.wsgi import get_content_length, get_input_stream, get_path_info

from webhook.auth import Authenticator, Denied, authenticator_for
from webhook.dispatch import Outcome, Service
from webhook import logs

log = logging.getLogger("lockcard.webhook")
MAX_BODY_BYTES = 256 * 1024  # a CX WebhookRequest is a few KB; anything near this is not one
# webhook_error_codes that mean the service, not the caller, is in trouble: logged as ERROR.
_SERVICE_FAULTS = {"STORE_UNAVAILABLE", "INTERNAL", "AUTH_UNAVAILABLE"}
_TRACE_CONTEXT = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d{1,20}))?(?:;o=([01]))?$")
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

# One authenticator per service, built from its settings on first use: every Service is checked, none can be
# served without the check its settings name.
_authenticators: WeakKeyDictionary[Service, Authenticator] = WeakKeyDictionary()


def authenticator(service: Service) -> Authenticator:
    """The caller check for this service (`WEBHOOK_AUTH`)."""
    found = _authenticators.get(service)
    if found is None:
        found = _authenticators[service] = authenticator_for(service.settings)
    return found


def json_response(status: int, body: dict, headers: dict[str, str] | None = None) -> Response:
    return Response(json_bytes(body), status=status, mimetype="application/json", headers=headers)


def json_bytes(body: dict) -> bytes:
    try:
        return orjson.dumps(body)  # UTF-8, as ensure_ascii=False; several times faster than the json module
    except TypeError:  # what orjson refuses (an int past 64 bits): the json module writes it
        return json.dumps(body, ensure_ascii=False).encode()


class Answer(NamedTuple):
    """What `serve` answers: a status, a JSON body, and the response headers (Content-Type and -Length first)."""

    status: int
    body: bytes
    headers: list[tuple[str, str]]

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTP_STATUS_CODES.get(self.status, 'Unknown').upper()}"  # as Werkzeug writes it


def serve(environ: dict[str, Any], path: str, service: Service,
          handle: Callable[[Any], Outcome] | None = None, *, stream: IO[bytes] | None = None) -> Answer:
    """Authenticate, decode, dispatch, log one line, answer. Never a 500, never a traceback in a body.

    Works on the WSGI environ of the request (`path` is its decoded path, for the log line), so both edges share it
    whole: the WSGI middleware in front of the Flask app (`WebhookEdge`) and the functions-framework function,
    which hands over a Flask request (`respond`, which passes its `stream`: the body is read through it, so what
    else reads that request afterwards finds it consumed, not cut short).

    `handle` turns the decoded body into an Outcome: the standard webhook's `service.handle` unless an edge (the
    flexible endpoints) passes its own; the caller check, the size and type limits and the log line are the same.
    """
    started = time.perf_counter()
    denied = authenticator(service).check(EnvironHeaders(environ))
    if denied is not None:
        return _deny(environ, path, service, denied, started)
    length = _content_length(environ)  # None for a chunked body (or none at all)
    if length is not None and length > MAX_BODY_BYTES:
        return _answer(environ, path, service, _refuse(413, "BODY_TOO_LARGE", f"body over {MAX_BODY_BYTES} bytes"),
                       started)
    if not is_json(environ.get("CONTENT_TYPE", "")):
        return _answer(environ, path, service,
                       _refuse(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json"), started)
    raw = read_bounded(environ, length, MAX_BODY_BYTES, stream)
    if raw is None:
        # Connection: close — the rest of the body is never read, so this connection cannot carry another request.
        return _answer(environ, path, service, _refuse(413, "BODY_TOO_LARGE", f"body over {MAX_BODY_BYTES} bytes"),
                       started, {"Connection": "close"})
    try:
        # orjson: strict JSON (no NaN, no lone surrogates, nesting capped at 1,024) and 4× faster than the json module.
        payload = orjson.loads(raw)
    except (ValueError, RecursionError):
        return _answer(environ, path, service, _refuse(400, "MALFORMED_REQUEST", "body is not valid JSON"), started)
    return _answer(environ, path, service, (handle or service.handle)(payload), started)


def _content_length(environ: dict[str, Any]) -> int | None:
    """Werkzeug's `get_content_length`, with the common case — plain ASCII digits, no Transfer-Encoding — read
    directly (Werkzeug's parse goes through a regular expression and a header-set parser on every call)."""
    declared = environ.get("CONTENT_LENGTH")
    if declared and "HTTP_TRANSFER_ENCODING" not in environ and declared.isascii() and declared.isdigit():
        return int(declared)
    return get_content_length(environ)


@functools.lru_cache(maxsize=64)  # a caller sends the same Content-Type on every call
def is_json(content_type: str) -> bool:
    """Werkzeug's `Request.is_json` for a Content-Type header: application/json or application/*+json."""
    mimetype = parse_options_header(content_type)[0].lower()
    return mimetype == "application/json" or (mimetype.startswith("application/") and mimetype.endswith("+json"))


class WebhookEdge:
    """WSGI middleware in front of the Flask app (`app.wsgi_app`): POST /webhook and POST /flexible/<tag> are served
    by `serve` straight from the environ; every other request goes on to Flask.

    Flask's request context, URL map, signals and Response object cost a webhook call as much as its own work
    (issue 15): these two routes need none of them — no session, no blueprint hook, no template — and Flask still
    answers everything else on these paths (GET → 405, /webhook/ → 404, a merged slash → its redirect).
    """

    def __init__(self, service: Service, wsgi_app: Callable) -> None:
        self.service = service
        self.wsgi_app = wsgi_app

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") != "POST":
            return self.wsgi_app(environ, start_response)
        path = get_path_info(environ)
        if path == "/webhook":
            handle = None
        else:
            tag = flexible_tag(path)
            if tag is None:
                return self.wsgi_app(environ, start_response)
            handle = flexible_handle(self.service, tag)
        answer = serve(environ, path, self.service, handle)
        start_response(answer.status_line, answer.headers)
        return [answer.body]


def flexible_tag(path: str) -> str | None:
    """The tag of a /flexible/<tag> path as Flask's `<path:tag>` rule takes it: not empty, no empty segment (Flask
    redirects a doubled slash), no trailing slash; None for any other path."""
    from webhook import flexible

    tag = flexible.tag_of_path(path)
    if not tag or tag.endswith("/") or "//" in tag:
        return None
    return tag


def flexible_handle(service: Service, tag: str) -> Callable[[Any], Outcome]:
    """The `handle` of a /flexible/<tag> call: the flexible edge's dispatch for that tag."""
    from webhook import flexible

    return lambda payload: flexible.handle(service, tag, payload)


def respond(request: Request, service: Service, handle: Callable[[Any], Outcome] | None = None) -> Response:
    """`serve` for a Flask request (the functions-framework function, and the Flask routes behind the edge)."""
    answer = serve(request.environ, request.path, service, handle, stream=request.stream)
    return Response(answer.body, status=answer.status, headers=answer.headers)


def serve_any_path(request: Request, service: Service) -> Response:
    """functions-framework sends every path to one function: /flexible/<tag> to that edge, anything else (as
    before) to the standard webhook."""
    from webhook import flexible

    tag = flexible.tag_of_path(request.path)
    if tag is None:
        return respond(request, service)
    return respond(request, service, flexible_handle(service, tag))


def read_bounded(environ: dict[str, Any], length: int | None, limit: int,
                 stream: IO[bytes] | None = None) -> bytes | None:
    """The body, read at most `limit` + 1 bytes far; None when it is longer. A chunked body has no Content-Length to
    refuse up front: it is cut off here, while it is read, instead of being buffered whole first.

    `stream` is a framework's own view of the body (a Werkzeug request's); without one the body is read from the
    WSGI input: exactly the declared length (gunicorn's reader stops there; Werkzeug's limited stream would add
    nothing when the length is known and within the limit — a body shorter than declared comes back short and fails
    to parse, 400), or a chunked body through Werkzeug's stream, which the server frames."""
    if length is not None and length > limit:
        return None
    if stream is None:
        if length is not None:
            return environ["wsgi.input"].read(length) if length else b""
        stream = get_input_stream(environ, max_content_length=limit)  # an empty stream unless the server frames it
    chunks, total = [], 0
    try:
        while total <= limit:
            chunk = stream.read(min(64 * 1024, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
    except RequestEntityTooLarge:  # the framework's own limit (MAX_CONTENT_LENGTH) cut the stream first
        return None
    return None


def _refuse(status: int, code: str, message: str) -> Outcome:
    return Outcome(status, {"error": {"code": code, "message": message}}, error_code=code)


def _deny(environ: dict[str, Any], path: str, service: Service, denied: Denied, started: float) -> Answer:
    outcome = Outcome(denied.status, denied.body(), error_code=denied.code, extra={"reason": denied.reason})
    headers = {"WWW-Authenticate": denied.challenge} if denied.challenge else None
    return _answer(environ, path, service, outcome, started, headers)


def _answer(environ: dict[str, Any], path: str, service: Service, outcome: Outcome, started: float,
            headers: dict[str, str] | None = None) -> Answer:
    latency_s = time.perf_counter() - started
    settings = service.settings
    key = logs.session_key(settings.log_session_key and settings.log_session_key.get_secret_value(),
                           settings.otp_hash_key)
    fields = logs.call_fields(
        tag=outcome.tag, session=logs.session_ref(outcome.session, key), latency_s=latency_s,
        status=outcome.status, error_code=outcome.error_code, reason=outcome.extra.get("reason"),
        method=environ.get("REQUEST_METHOD", "POST"), path=path, user_agent=environ.get("HTTP_USER_AGENT"),
        trace=trace_fields(environ, settings.google_cloud_project))
    if outcome.error_code in _SERVICE_FAULTS:
        level = logging.ERROR
    elif outcome.status >= 400 or outcome.error_code:
        level = logging.WARNING
    else:
        level = logging.INFO
    logs.log_call(log, level, fields)
    body = json_bytes(outcome.body)
    out = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if headers:
        out.extend(headers.items())
    return Answer(outcome.status, body, out)


def trace_fields(environ: dict[str, Any], project: str | None) -> dict[str, object]:
    """Cloud Logging's trace, spanId and trace_sampled, from X-Cloud-Trace-Context or W3C traceparent."""
    trace_id = span_id = None
    sampled = False
    # The WSGI environ, not a headers object: most calls carry neither header, and this is the cheap way to see that.
    legacy_header = environ.get("HTTP_X_CLOUD_TRACE_CONTEXT")
    w3c_header = environ.get("HTTP_TRACEPARENT")
    if not legacy_header and not w3c_header:
        return {}
    legacy = _TRACE_CONTEXT.match(legacy_header.strip()) if legacy_header else None
    w3c = _TRACEPARENT.match(w3c_header.strip()) if w3c_header else None
    if legacy:
        trace_id = legacy.group(1).lower()
        span = int(legacy.group(2)) if legacy.group(2) else 0
        span_id = format(span, "016x") if 0 < span < 2**64 else None
        sampled = legacy.group(3) == "1"
    elif w3c:
        trace_id, span_id = w3c.group(1), w3c.group(2)
        sampled = bool(int(w3c.group(3), 16) & 1)
    if trace_id is None:
        return {}
    fields: dict[str, object] = {
        "logging.googleapis.com/trace": f"projects/{project}/traces/{trace_id}" if project else trace_id,
        "logging.googleapis.com/trace_sampled": sampled,
    }
    if span_id:
        fields["logging.googleapis.com/spanId"] = span_id
    return fields
