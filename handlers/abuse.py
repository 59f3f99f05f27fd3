"""Abuse limits for the Authentication component: who may send or check a code, and look numbers up, how often.

Policy (README "Abuse limits"): a customer's limits are kept per class of session — sessions that proved nothing
(`anonymous`), sessions calling from the registered number (`caller-id`), sessions that verified this customer
before (`verified`) — so strangers use up only the strangers' allowance, never the card holder's. Nothing here
ever disables a customer. Every count lives in the store (`throttle_counters`, row-locked), so it holds across
instances of the service.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
from dataclasses import dataclass

from cardstore.models import Customer, ThrottleCounter
from handlers.call import Call
from handlers.errors import LookupRateLimited, OtpRateLimited

log = logging.getLogger("lockcard.abuse")

ANONYMOUS, CALLER_ID, VERIFIED = "anonymous", "caller-id", "verified"
HOUR, DAY, MINUTE = 3600, 86_400, 60
SERVICE_SENDS = "otp-send:service"


@dataclass(frozen=True)
class Limit:
    """At most `limit` events per `window_s` under `key`; with `delayed`, growing delays after the free ones."""

    key: str
    limit: int
    window_s: int
    delayed: bool = False


def session_class(call: Call, customer: Customer) -> str:
    """What this session has shown about being the customer: verified before, calling from their line, or nothing."""
    if call.uow.repo.ever_verified(call.session, customer.id):
        return VERIFIED
    if call.caller_id_e164() == customer.phone_e164:
        return CALLER_ID
    return ANONYMOUS


def _session_key(session: str) -> str:
    # The CX session path can be 500 characters; the counters need a short stable key, not the path itself.
    return hashlib.sha256(session.encode()).hexdigest()[:40]


def send_limits(call: Call, customer: Customer, klass: str) -> list[Limit]:
    s = call.settings
    delayed = klass != VERIFIED
    return [
        Limit(f"otp-send:burst:{klass}:{customer.id}", s.otp_send_limit, s.otp_send_window_seconds),
        Limit(f"otp-send:day:{klass}:{customer.id}", s.otp_daily_send_limit, DAY, delayed),
        Limit(f"otp-send:session:{_session_key(call.session)}", s.otp_session_send_limit, HOUR, delayed),
    ]


def failure_limits(call: Call, customer: Customer, klass: str) -> list[Limit]:
    s = call.settings
    delayed = klass != VERIFIED
    return [
        Limit(f"otp-fail:day:{klass}:{customer.id}", s.otp_failure_limit, DAY, delayed),
        Limit(f"otp-fail:session:{_session_key(call.session)}", s.otp_session_failure_limit, HOUR, delayed),
    ]


def _service_limit(call: Call) -> Limit:
    return Limit(SERVICE_SENDS, call.settings.otp_global_send_limit_per_minute, MINUTE)


def delay_s(call: Call, count: int, free: int | None = None) -> float:
    """How long after the last event the next one must wait, once `count` events happened in the window: nothing
    for the first `free` (THROTTLE_FREE_EVENTS), then base, 2 x base, 4 x base ... up to the maximum."""
    s = call.settings
    over = count - (s.throttle_free_events if free is None else free)
    if over < 0:
        return 0.0
    return float(min(s.throttle_delay_base_seconds * 2 ** min(over, 30), s.throttle_delay_max_seconds))


def _counters(call: Call, limits: list[Limit]) -> dict[str, ThrottleCounter]:
    rows = call.uow.repo.throttle_counters([lim.key for lim in limits], call.now)
    for lim in limits:
        row = rows[lim.key]
        if call.now >= row.window_start + dt.timedelta(seconds=lim.window_s):
            row.window_start, row.count, row.last_at, row.refused = call.now, 0, None, 0
    return rows


def _blocked(call: Call, lim: Limit, row: ThrottleCounter) -> bool:
    if row.count >= lim.limit:
        return True
    return lim.delayed and _waiting(call, row, delay_s(call, row.count))


def _waiting(call: Call, row: ThrottleCounter, delay: float) -> bool:
    # delay > 0 first: a call that waited for the row lock can have a `now` a little before the last event's.
    return delay > 0 and row.last_at is not None and call.now < row.last_at + dt.timedelta(seconds=delay)


def _latest(last: dt.datetime | None, now: dt.datetime) -> dt.datetime:
    return now if last is None or now > last else last


def _refuse(call: Call, rows: dict[str, ThrottleCounter], blocked: list[Limit], error: type[Exception]) -> None:
    """Record the refusal (it is the defence's own bookkeeping, kept even though the call fails) and raise."""
    for lim in blocked:
        rows[lim.key].refused += 1
        if lim.key == SERVICE_SENDS and rows[lim.key].refused == 1:
            # The alarm: someone is pumping codes, or real traffic outgrew the setting. Once per window.
            log.error("service-wide code send limit reached: %d codes this minute; sends refused until the minute "
                      "ends (OTP_GLOBAL_SEND_LIMIT_PER_MINUTE)", lim.limit)
    call.uow.commit()
    raise error(", ".join(lim.key.split(":")[1] for lim in blocked) + " limit reached")


def check_and_count(call: Call, limits: list[Limit], error: type[Exception]) -> None:
    """Refuse with `error` if any limit is reached (or its delay not over); else count one event under each."""
    rows = _counters(call, limits)
    blocked = [lim for lim in limits if _blocked(call, lim, rows[lim.key])]
    if blocked:
        _refuse(call, rows, blocked, error)
    for lim in limits:
        rows[lim.key].count += 1
        rows[lim.key].last_at = _latest(rows[lim.key].last_at, call.now)


def check(call: Call, limits: list[Limit], error: type[Exception]) -> None:
    """Refuse with `error` if any limit is reached or waiting out its delay; count nothing."""
    rows = _counters(call, limits)
    blocked = [lim for lim in limits if _blocked(call, lim, rows[lim.key])]
    if blocked:
        _refuse(call, rows, blocked, error)


def count(call: Call, limits: list[Limit]) -> None:
    """Count one event under each limit (a wrong code, once it has been compared)."""
    rows = _counters(call, limits)
    for lim in limits:
        rows[lim.key].count += 1
        rows[lim.key].last_at = _latest(rows[lim.key].last_at, call.now)


def reset(call: Call, limits: list[Limit]) -> None:
    """A right code: the failures of this class (and session) start again from zero."""
    rows = _counters(call, limits)
    for lim in limits:
        rows[lim.key].count = 0
        rows[lim.key].last_at = None


def before_send(call: Call, customer: Customer, klass: str) -> None:
    """A code may go out: the class has not used up its wrong codes, and no send limit is reached. Counts the send."""
    check(call, failure_limits(call, customer, klass), OtpRateLimited)
    check_and_count(call, [*send_limits(call, customer, klass), _service_limit(call)], OtpRateLimited)


def lookup(call: Call) -> None:
    """An unverified session asks who a number belongs to: count it per session, and commit the count at once, so
    an answer that ends in an error (not found) is counted too."""
    limit = call.settings.lookup_session_limit
    free = max(limit // 2, 1)
    lim = Limit(f"lookup:session:{_session_key(call.session)}", limit, HOUR, delayed=True)
    rows = _counters(call, [lim])
    row = rows[lim.key]
    if row.count >= lim.limit or _waiting(call, row, delay_s(call, row.count, free)):
        _refuse(call, rows, [lim], LookupRateLimited)
    row.count += 1
    row.last_at = _latest(row.last_at, call.now)
    call.uow.commit()
