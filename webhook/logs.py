"""Structured JSON log lines on stdout, in the shape Cloud Logging reads: `severity`, `message`, `time`,
`httpRequest`, `logging.googleapis.com/trace` / `spanId` / `trace_sampled`, plus our own fields (tag, session,
latency_ms, outcome, error_code, reason).

Nothing personal goes in: callers log masked values only (contact.mask_phone / mask_email), only the
fields below are written, and as a last line of defence every text value is scrubbed of anything shaped like an
e-mail address, a phone number or a one-time code before it is written.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys

_FIELDS = ("tag", "session", "latency_ms", "status", "outcome", "error_code", "reason", "outbox_id", "error",
           "httpRequest", "kind", "channel", "to", "attempt", "send_ms", "queued_ms")
# Cloud Logging's own keys: ids, never personal, and must reach it unchanged.
_TRACE_FIELDS = ("logging.googleapis.com/trace", "logging.googleapis.com/spanId",
                 "logging.googleapis.com/trace_sampled")

_EMAIL = re.compile(r"[\w.+-]+@([\w-]+\.)+[\w-]+", re.UNICODE)
# A phone number: 10 or more digits, optionally after '+', with spaces, dots or hyphens between them.
_PHONE = re.compile(r"\+?\d(?:[\s.\-]?\d){9,}")
# A one-time code is exactly six digits standing alone.
_CODE = re.compile(r"(?<![\w.])\d{6}(?![\w.])")
# The flexible edge's bearer credential (lcat_…) and challenge handle (lcoc_…): never logged, even by mistake.
_BEARER = re.compile(r"\b(lcat|lcoc)_[A-Za-z0-9_-]+")


def scrub(text: str) -> str:
    """`text` with e-mail addresses, phone numbers, six-digit codes and the flexible edge's tokens masked."""
    text = _BEARER.sub(lambda m: m.group(1) + "_***", text)
    text = _EMAIL.sub(lambda m: m.group(0)[:1] + "***@" + m.group(0).rsplit("@", 1)[1], text)
    text = _PHONE.sub(lambda m: "***" + re.sub(r"\D", "", m.group(0))[-4:], text)
    return _CODE.sub("******", text)


def _scrubbed(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


class CloudLoggingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": record.levelname,
            "message": scrub(record.getMessage()),
            "time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
            "logger": record.name,
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = _scrubbed(value)
        for name in _TRACE_FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            # The exception type only: a traceback can quote parameter values.
            entry["exception"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure() -> None:
    """Route the service's loggers to stdout as JSON, once."""
    root = logging.getLogger("lockcard")
    if any(getattr(h, "_lockcard", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(CloudLoggingFormatter())
    handler._lockcard = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


def session_id(session_path: str | None) -> str | None:
    """The last segment of a CX session path: enough to correlate, without the project path."""
    return session_path.rsplit("/", 1)[-1] if session_path else None
