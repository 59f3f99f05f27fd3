"""Structured JSON log lines on stdout, in the shape Cloud Logging reads (severity, message, trace).

Nothing personal goes in: callers log masked values only (handlers.values.mask_phone / mask_email), and the
fields below are the only ones a webhook line carries.
"""
from __future__ import annotations

import json
import logging
import sys

_FIELDS = ("tag", "session", "latency_ms", "status", "outcome", "error_code", "reason", "outbox_id", "error",
           "logging.googleapis.com/trace")


class CloudLoggingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"severity": record.levelname, "message": record.getMessage(), "logger": record.name}
        for name in _FIELDS:
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
