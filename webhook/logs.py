"""Structured JSON log lines on stdout, in the shape Cloud Logging reads: `severity`, `message`, `time`,
`httpRequest`, `logging.googleapis.com/trace` / `spanId` / `trace_sampled`, plus our own fields (tag, session,
latency_ms, outcome, error_code, reason).

Nothing personal goes in: callers log masked values only (contact.mask_phone / mask_email), only the
fields below are written, and as a last line of defence every text value that can carry free text is scrubbed of
anything shaped like an e-mail address, a phone number or a one-time code before it is written. The CX session
id is never written: a session that has verified a caller reads their cards, so the log carries a keyed hash of
it (`session_ref`), enough to correlate one session's lines and useless to whoever reads the logs.

The line of an ordinary webhook call is built by the caller as one dict (`call_fields`) and serialised once with
orjson; only its free-text values go through the scrubber.
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import logging
import math
import re
import sys
import time
from typing import NamedTuple

import orjson

_FIELDS = ("tag", "session", "latency_ms", "status", "outcome", "error_code", "reason", "outbox_id", "error",
           "httpRequest", "kind", "channel", "to", "attempt", "send_ms", "queued_ms")
# Cloud Logging's own keys: ids, never personal, and must reach it unchanged.
_TRACE_FIELDS = ("logging.googleapis.com/trace", "logging.googleapis.com/spanId",
                 "logging.googleapis.com/trace_sampled")
# The record attribute that carries a prebuilt line (see `call_fields`).
CALL_FIELDS = "lockcard_fields"

_EMAIL = re.compile(r"[\w.+-]+@([\w-]+\.)+[\w-]+", re.UNICODE)
# A phone number: 10 or more digits, optionally after '+', with spaces, dots or hyphens between them.
_PHONE = re.compile(r"\+?\d(?:[\s.\-]?\d){9,}")
# A one-time code is exactly six digits standing alone.
_CODE = re.compile(r"(?<![\w.])\d{6}(?![\w.])")
# The flexible edge's bearer credential (lcat_…) and challenge handle (lcoc_…): never logged, even by mistake.
_BEARER = re.compile(r"\b(lcat|lcoc)_[A-Za-z0-9_-]+")
# Text none of the other patterns can match (no '@', fewer than six digits): most reasons, user agents, messages.
_DIGIT = re.compile(r"\d")


def scrub(text: str) -> str:
    """`text` with e-mail addresses, phone numbers, six-digit codes and the flexible edge's tokens masked."""
    if "lcat_" in text or "lcoc_" in text:
        text = _BEARER.sub(lambda m: m.group(1) + "_***", text)
    if "@" not in text and len(_DIGIT.findall(text)) < 6:
        return text
    text = _EMAIL.sub(lambda m: m.group(0)[:1] + "***@" + m.group(0).rsplit("@", 1)[1], text)
    text = _PHONE.sub(lambda m: "***" + re.sub(r"\D", "", m.group(0))[-4:], text)
    return _CODE.sub("******", text)


class _Second(NamedTuple):
    epoch: int
    text: str  # "2026-12-02T07:34:56"


_second = _Second(-1, "")


def iso_time(created: float) -> str:
    """`created` (a LogRecord's time.time()) as `datetime.fromtimestamp(created, timezone.utc).isoformat(
    timespec="milliseconds")` writes it, e.g. "2026-12-02T07:34:56.077+00:00" — with the date and time of day
    formatted once per second instead of once per line (they are most of a log line's formatting cost)."""
    global _second
    # fromtimestamp's own rounding: the fraction to the nearest microsecond (half to even), carried into the second.
    fraction, whole = math.modf(created)
    epoch, micros = int(whole), round(fraction * 1e6)
    if micros >= 1_000_000:
        epoch, micros = epoch + 1, micros - 1_000_000
    elif micros < 0:  # before 1970: modf gives a negative fraction
        epoch, micros = epoch - 1, micros + 1_000_000
    second = _second
    if second.epoch != epoch:
        text = dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        second = _second = _Second(epoch, text)  # one tuple, swapped whole: safe to share between threads
    return f"{second.text}.{micros // 1000:03d}+00:00"


def _scrubbed(value: object) -> object:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v) for v in value]
    return value


def _dumps(entry: dict[str, object]) -> str:
    return orjson.dumps(entry, default=str).decode()


class CloudLoggingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "severity": record.levelname,
            "message": scrub(record.getMessage()),
            "time": iso_time(record.created),
            "logger": record.name,
        }
        fields = record.__dict__.get(CALL_FIELDS)
        if fields is not None:
            # A webhook call's line: built by call_fields, its free text already scrubbed there.
            entry.update(fields)
            return _dumps(entry)
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
        return _dumps(entry)


def call_fields(*, tag: str | None, session: str | None, latency_s: float, status: int, error_code: str | None,
                reason: str | None, method: str, path: str, user_agent: str | None,
                trace: dict[str, object]) -> dict[str, object]:
    """The fields of one webhook call's log line (pass as `extra={CALL_FIELDS: …}`).

    `session` must already be a `session_ref`; `tag`, `error_code`, `status` and the trace fields are ours or
    validated; `reason` and the user agent are free text and are scrubbed here.
    """
    fields: dict[str, object] = {"latency_ms": round(latency_s * 1000, 2), "status": status,
                                 "outcome": "error" if error_code else "ok"}
    if tag is not None:
        fields["tag"] = tag
    if session is not None:
        fields["session"] = session
    if error_code is not None:
        fields["error_code"] = error_code
    if reason is not None:
        fields["reason"] = scrub(reason)
    http: dict[str, object] = {"requestMethod": method, "requestUrl": scrub(path), "status": status,
                               "latency": f"{latency_s:.6f}s"}
    if user_agent:
        http["userAgent"] = scrub(user_agent[:200])
    fields["httpRequest"] = http
    if trace:
        fields.update(trace)
    return fields


def log_call(logger: logging.Logger, level: int, fields: dict[str, object]) -> None:
    """Log one webhook call's line (`fields` from `call_fields`) as "webhook call" at `level`.

    When the line's only destination is the stdout handler `configure` installed, it is formatted and written there
    directly — the same bytes `CloudLoggingFormatter` writes, under the handler's lock — without a LogRecord and
    the logging module's dispatch (two thirds of the line's cost, issue 15). Anything else (another handler or a
    filter added, the level raised, logging disabled) takes the logging module's path.
    """
    handler = _direct_handler(logger, level)
    if handler is None:
        logger.log(level, "webhook call", extra={CALL_FIELDS: fields})
        return
    entry: dict[str, object] = {"severity": logging.getLevelName(level), "message": "webhook call",
                                "time": iso_time(time.time()), "logger": logger.name}
    entry.update(fields)
    line = _dumps(entry) + "\n"
    with handler.lock:  # type: ignore[union-attr]
        try:
            stream = sys.stdout
            stream.write(line)
            stream.flush()
        except Exception:  # noqa: BLE001 - as logging's emit: a failed write must not fail the call
            handler.handleError(None)  # type: ignore[arg-type]


def _direct_handler(logger: logging.Logger, level: int) -> _StdoutHandler | None:
    """The one handler a line from `logger` at `level` reaches, if it is ours and nothing else is in the way."""
    if logger.disabled or logging.root.manager.disable >= level:
        return None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        if current.level and current.level > level:
            return None
        if current.handlers:
            if len(current.handlers) != 1 or current.propagate:
                return None
            handler = current.handlers[0]
            if (not isinstance(handler, _StdoutHandler) or handler.filters or handler.level > level
                    or type(handler.formatter) is not CloudLoggingFormatter):
                return None
            return handler
        if not current.propagate:
            return None
        current = current.parent  # type: ignore[assignment]
    return None


class _StdoutHandler(logging.StreamHandler):
    """Writes to whatever sys.stdout is at the time (not the object it was when configured: a test's capture, a
    reopened stream); and when a write fails, says so without the record's arguments, which logging's own
    handleError prints to stderr — the unscrubbed values of a careless log call."""

    def __init__(self) -> None:
        super().__init__(sys.stdout)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stdout

    @stream.setter
    def stream(self, _value) -> None:
        pass

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if logging.raiseExceptions and sys.stderr:
            error = sys.exc_info()[1]
            sys.stderr.write(f"lockcard log line not written: {type(error).__name__}\n")


def configure() -> None:
    """Route the service's loggers to stdout as JSON, once."""
    root = logging.getLogger("lockcard")
    if any(getattr(h, "_lockcard", False) for h in root.handlers):
        return
    # The logging HOWTO's "Optimization": no caller lookup (a stack walk), thread, process or multiprocessing names
    # on each record — our lines never show them, and every webhook call writes one (a third of logging's cost).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = _StdoutHandler()
    handler.setFormatter(CloudLoggingFormatter())
    handler._lockcard = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


@functools.lru_cache(maxsize=8)
def session_key(log_session_key: str | None, otp_hash_key: str) -> bytes:
    """The 32-byte key of session_ref: from LOG_SESSION_KEY, or derived from OTP_HASH_KEY (already a production
    secret). (BLAKE2b takes a key of 64 bytes at most; LOG_SESSION_KEY may be longer: it is hashed to one.)"""
    if log_session_key:
        return hashlib.blake2b(log_session_key.encode(), digest_size=32, person=b"lockcard-logref").digest()
    return hmac.new(otp_hash_key.encode(), b"lockcard log session reference", hashlib.sha256).digest()


def session_ref(session_path: str | None, key: bytes) -> str | None:
    """A keyed hash of a CX session path: stable for one session, unlinkable to it without the key (64 bits)."""
    if not session_path:
        return None
    return _session_ref(session_path, key)


@functools.lru_cache(maxsize=16384)  # a session's turns follow each other: one hash per session, not per call
def _session_ref(session_path: str, key: bytes) -> str:
    # Keyed BLAKE2b (RFC 7693's MAC mode, hashlib's own code): a PRF as HMAC-SHA256 is, for ~1/10 of the work.
    # OpenSSL 3's one-shot HMAC looks the digest up by name on every call: ~23,000 instructions, ~3 % of a lock by
    # a session not seen before (bench.instructions; callgrind's EVP_Q_mac).
    return hashlib.blake2b(session_path.encode(), key=key, digest_size=8).hexdigest()
