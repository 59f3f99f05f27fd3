"""The notification outbox as operators see it (送信済み or not), and a delivery run on demand or from cron.

Each message's own row is its record: status, attempts, last error, sent time, written by `notify.Notifier` in the
message's transaction. A delivery run adds one audit row per message it tried, signed by who ran it.
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select

from backoffice import records
from backoffice.errors import NotFound, Refused
from cardstore.models import AuditEvent, OutboxMessage, utcnow
from cardstore.uow import Store, UnitOfWork
from notify import MAX_ATTEMPTS, Notifier

STATUSES = ("pending", "sending", "sent", "failed", "given_up")
# Who delivers when no operator is named: the system, as the seed's "SystemAdmin" (000).
SYSTEM_ACTOR = "system:outbox"


def list_messages(uow: UnitOfWork, status: str | None = None, limit: int = 200, *,
                  zone: ZoneInfo | None = None) -> list[dict[str, Any]]:
    """The newest messages first, without bodies (an unsent one may hold a one-time code), errors masked."""
    q = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status is not None:
        q = q.where(OutboxMessage.status == status)
    return [records.outbox(m, zone) for m in uow.session.scalars(q)]


def backlog(uow: UnitOfWork) -> dict[str, int]:
    """How many messages are in each status (pending and failed ones are the backlog)."""
    counts = dict(uow.session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
    return {status: int(counts.get(status, 0)) for status in STATUSES}


def requeueable(message: dict[str, Any]) -> bool:
    """Whether `requeue` would take this message (as `list_messages` shows it): the console shows the button then."""
    return message["kind"] != "otp" and (message["status"] == "sending"
                                         or (message["status"] == "failed" and message["attempts"] >= MAX_ATTEMPTS))


def deliver(store: Store, notifier: Notifier, actor: str, *, now: dt.datetime | None = None) -> dict[str, int]:
    """Send every message that is due (new, or failed and past its backoff); audit each attempt.

    The notifier claims a row before sending it, so a message is never sent twice, even by two runs at once.
    """
    now = now or utcnow()
    with store.unit_of_work() as uow:
        due = {m.id: m.attempts for m in uow.session.scalars(
            select(OutboxMessage).where(OutboxMessage.status.in_(("pending", "failed")),
                                        OutboxMessage.next_attempt_at <= now,
                                        OutboxMessage.attempts < MAX_ATTEMPTS))}
    counts = {"due": len(due), "sent": 0, "failed": 0}
    if not due:
        return counts
    notifier.deliver(store, list(due), now=now)
    with store.unit_of_work() as uow:
        for m in uow.session.scalars(select(OutboxMessage).where(OutboxMessage.id.in_(list(due)))
                                     .order_by(OutboxMessage.id)):
            if m.attempts == due[m.id]:
                continue  # another deliverer had it: not this run's attempt
            outcome = "sent" if m.status == "sent" else "failed"
            counts[outcome] += 1
            # The error stays on the message row (it may quote an address); the audit row says what happened.
            uow.repo.add(AuditEvent(actor=actor, action=f"outbox.{outcome}", customer_id=m.customer_id,
                                    after={"outbox_id": m.id, "kind": m.kind, "channel": m.channel,
                                           "attempts": m.attempts}))
        uow.commit()
    return counts


def requeue(store: Store, message_id: int, actor: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Put a message that delivery gave up on (failed MAX_ATTEMPTS times) or left in `sending` (its deliverer died
    mid-send) back in the queue, once the operator has checked with the gateway that it did not arrive.

    One-time codes are refused: a late code is useless and a new one is a call away. Audited with the operator.
    """
    now = now or utcnow()
    with store.unit_of_work() as uow:
        message = uow.session.get(OutboxMessage, message_id, with_for_update=True)
        if message is None:
            raise NotFound(f"no outbox message {message_id}")
        if message.kind == "otp":
            raise Refused(f"message {message_id} is a one-time code: the customer asks for a new one instead")
        stuck = message.status == "sending"
        exhausted = (message.status == "failed" and message.attempts >= MAX_ATTEMPTS) or message.status == "given_up"
        if not (stuck or exhausted):
            raise Refused(f"message {message_id} is {message.status} with {message.attempts} attempts: "
                          "only a message stuck in sending, or failed for good, is requeued")
        before = {"status": message.status, "attempts": message.attempts}
        message.status = "pending"
        message.attempts = 0
        message.next_attempt_at = now
        message.lease_until = None
        uow.repo.add(AuditEvent(actor=actor, action="outbox.requeued", customer_id=message.customer_id,
                                before=before, after={"outbox_id": message.id, "status": "pending"}))
        uow.commit()
        return records.outbox(message)
