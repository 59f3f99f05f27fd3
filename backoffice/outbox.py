"""The notification outbox as operators see it (送信済み or not), and a delivery run on demand or from cron.

Each message's own row is its record: status, attempts, last error, sent time, written by `notify.Notifier` in the
message's transaction. A delivery run adds one audit row per message it tried, signed by who ran it.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select

from backoffice import records
from cardstore.models import AuditEvent, OutboxMessage, utcnow
from cardstore.uow import Store, UnitOfWork
from notify import MAX_ATTEMPTS, Notifier

STATUSES = ("pending", "sending", "sent", "failed")
# Who delivers when no operator is named: the system, as the seed's "SystemAdmin" (000).
SYSTEM_ACTOR = "system:outbox"


def list_messages(uow: UnitOfWork, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """The newest messages first, without bodies (an unsent one may hold a one-time code)."""
    q = select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(limit)
    if status is not None:
        q = q.where(OutboxMessage.status == status)
    return [records.outbox(m) for m in uow.session.scalars(q)]


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
