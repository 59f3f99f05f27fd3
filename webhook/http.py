"""The HTTP edge shared by both entry points: a Flask/Werkzeug request in, a JSON response out.

Order matters: the caller is authenticated before the body is read, so an unauthenticated caller learns nothing
about what the service would do with its body.
"""
from __future__ import annotations

import logging
import re
import time
from typing import Any, Callable
from weakref import WeakKeyDictionary

import orjson
from flask import Request, Response, json

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
    try:
        data = orjson.dumps(body)  # UTF-8, as ensure_ascii=False; several times faster than the json module
    except TypeError:  # what orjson refuses (an int past 64 bits): the json module writes it
        data = json.dumps(body, ensure_ascii=False)
    return Response(data, status=status, mimetype="application/json", headers=headers)


def serve(request: Request, service: Service, handle: Callable[[Any], Outcome] | None = None) -> Response:
    """Authenticate, decode, dispatch, log one line, answer. Never a 500, never a traceback in a body.

    `handle` turns the decoded body into an Outcome: the standard webhook's `service.handle` unless an edge (the
    flexible endpoints) passes its own; the caller check, the size and type limits and the log line are the same.
    """
    started = time.perf_counter()
    denied = authenticator(service).check(request.headers)
    if denied is not None:
        return _deny(request, service, denied, started)
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _answer(request, service, _refuse(413, "BODY_TOO_LARGE", f"body over {MAX_BODY_BYTES} bytes"), started)
    if not request.is_json:
        return _answer(request, service,
                       _refuse(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json"), started)
    raw = read_bounded(request, MAX_BODY_BYTES)
    if raw is None:
        # Connection: close — the rest of the body is never read, so this connection cannot carry another request.
        return _answer(request, service, _refuse(413, "BODY_TOO_LARGE", f"body over {MAX_BODY_BYTES} bytes"), started,
                       {"Connection": "close"})
    try:
        # orjson: strict JSON (no NaN, no lone surrogates, nesting capped at 1,024) and 4× faster than the json module.
        payload = orjson.loads(raw)
    except (ValueError, RecursionError):
        return _answer(request, service, _refuse(400, "MALFORMED_REQUEST", "body is not valid JSON"), started)
    return _answer(request, service, (handle or service.handle)(payload), started)


def serve_any_path(request: Request, service: Service) -> Response:
    """functions-framework sends every path to one function: /flexible/<tag> to that edge, anything else (as
    before) to the standard webhook."""
    from webhook import flexible

    tag = flexible.tag_of_path(request.path)
    if tag is None:
        return serve(request, service)
    return serve(request, service, lambda payload: flexible.handle(service, tag, payload))


def read_bounded(request: Request, limit: int) -> bytes | None:
    """The body, read at most `limit` + 1 bytes far; None when it is longer. A chunked body has no Content-Length to
    refuse up front: it is cut off here, while it is read, instead of being buffered whole first."""
    from werkzeug.exceptions import RequestEntityTooLarge

    chunks, total = [], 0
    try:
        while total <= limit:
            chunk = request.stream.read(min(64 * 1024, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
    except RequestEntityTooLarge:  # MAX_CONTENT_LENGTH on our own Flask app cut the stream first
        return None
    return None


def _refuse(status: int, code: str, message: str) -> Outcome:
    return Outcome(status, {"error": {"code": code, "message": message}}, error_code=code)


def _deny(request: Request, service: Service, denied: Denied, started: float) -> Response:
    outcome = Outcome(denied.status, denied.body(), error_code=denied.code, extra={"reason": denied.reason})
    headers = {"WWW-Authenticate": denied.challenge} if denied.challenge else None
    return _answer(request, service, outcome, started, headers)


def _answer(request: Request, service: Service, outcome: Outcome, started: float,
            headers: dict[str, str] | None = None) -> Response:
    latency_s = time.perf_counter() - started
    settings = service.settings
    key = logs.session_key(settings.log_session_key and settings.log_session_key.get_secret_value(),
                           settings.otp_hash_key)
    fields = logs.call_fields(
        tag=outcome.tag, session=logs.session_ref(outcome.session, key), latency_s=latency_s,
        status=outcome.status, error_code=outcome.error_code, reason=outcome.extra.get("reason"),
        method=request.method, path=request.path, user_agent=request.environ.get("HTTP_USER_AGENT"),
        trace=trace_fields(request, settings.google_cloud_project))
    if outcome.error_code in _SERVICE_FAULTS:
        level = logging.ERROR
    elif outcome.status >= 400 or outcome.error_code:
        level = logging.WARNING
    else:
        level = logging.INFO
    log.log(level, "webhook call", extra={logs.CALL_FIELDS: fields})
    return json_response(outcome.status, outcome.body, headers)


def trace_fields(request: Request, project: str | None) -> dict[str, object]:
    """Cloud Logging's trace, spanId and trace_sampled, from X-Cloud-Trace-Context or W3C traceparent."""
    trace_id = span_id = None
    sampled = False
    # The WSGI environ, not request.headers: most calls carry neither header, and this is the cheap way to see that.
    environ = request.environ
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
