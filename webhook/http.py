"""The HTTP edge shared by both entry points: a Flask/Werkzeug request in, a JSON response out."""
from __future__ import annotations

import logging
import os

from flask import Request, Response, json

from webhook.dispatch import Outcome, Service
from webhook.logs import session_id

log = logging.getLogger("lockcard.webhook")
MAX_BODY_BYTES = 256 * 1024  # a CX WebhookRequest is a few KB; anything near this is not one


def json_response(status: int, body: dict) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, mimetype="application/json")


def serve(request: Request, service: Service) -> Response:
    """Decode, dispatch, log one line, answer. Never a 500, never a traceback in a body."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        return _answer(request, Outcome(413, _error("BODY_TOO_LARGE", f"body over {MAX_BODY_BYTES} bytes"),
                                        error_code="BODY_TOO_LARGE"))
    if not request.is_json:
        return _answer(request, Outcome(415, _error("UNSUPPORTED_MEDIA_TYPE", "Content-Type must be application/json"),
                                        error_code="UNSUPPORTED_MEDIA_TYPE"))
    raw = request.get_data(cache=False)
    if len(raw) > MAX_BODY_BYTES:
        return _answer(request, Outcome(413, _error("BODY_TOO_LARGE", f"body over {MAX_BODY_BYTES} bytes"),
                                        error_code="BODY_TOO_LARGE"))
    try:
        payload = json.loads(raw)
    except ValueError:
        return _answer(request, Outcome(400, _error("MALFORMED_REQUEST", "body is not valid JSON"),
                                        error_code="MALFORMED_REQUEST"))
    return _answer(request, service.handle(payload))


def _error(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def _answer(request: Request, outcome: Outcome) -> Response:
    extra = {
        "tag": outcome.tag,
        "session": session_id(outcome.session),
        "latency_ms": outcome.latency_ms,
        "status": outcome.status,
        "outcome": "error" if outcome.error_code else "ok",
        "error_code": outcome.error_code,
        "reason": outcome.extra.get("reason"),
        "logging.googleapis.com/trace": _trace(request),
    }
    log.info("webhook call", extra=extra)
    return json_response(outcome.status, outcome.body)


def _trace(request: Request) -> str | None:
    header = request.headers.get("X-Cloud-Trace-Context", "")
    trace_id = header.split("/", 1)[0].strip()
    if not trace_id or not trace_id.isalnum() or len(trace_id) > 64:
        return None
    project = os.environ.get("GOOGLE_CLOUD_PROJECT", "")
    return f"projects/{project}/traces/{trace_id}" if project else trace_id
