"""Notifications: claim a due outbox row, hand it to the gateway, record the outcome — one attempt at a time.

The guarantee (README, "Delivering notices"): a queued notice ends `sent`, `given_up` with its reason, or `failed`
after MAX_ATTEMPTS, and is never lost. A claim is exclusive (`FOR UPDATE SKIP LOCKED` on PostgreSQL, one atomic
UPDATE on SQLite) and lasts OUTBOX_LEASE_SECONDS, at least twice the attempt's deadline, so two live relays never
hand the same notice over twice. Only a relay that stops between the gateway's acceptance and the `sent` commit
(killed, or the store gone for longer than the record retries) leaves a row in `sending` that another relay sends
again after the lease: at-least-once, with a duplicate possible only in that window.
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import time
import uuid
from typing import Iterable

from sqlalchemy import and_, func, or_, select, update

from cardstore.errors import StoreUnavailable
from cardstore.models import OutboxMessage, utcnow
from cardstore.uow import Store
from notify.backends import Backend, DeliveryError, backend_for, masked_recipient
from settings import Settings

log = logging.getLogger("lockcard.notify")
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 30
# Statuses of a notice not yet delivered nor given up: the backlog.
QUEUED = ("pending", "sending", "failed")
# Recording `sent` after the gateway accepted is the one write whose loss means a duplicate: try it a few times.
RECORD_TRIES = 3
RECORD_PAUSE_S = 0.5


_CLAIMED = (OutboxMessage.id, OutboxMessage.customer_id, OutboxMessage.kind, OutboxMessage.channel, OutboxMessage.to,
            OutboxMessage.subject, OutboxMessage.body, OutboxMessage.redacted_body, OutboxMessage.attempts,
            OutboxMessage.created_at, OutboxMessage.expires_at)


def _due(now: dt.datetime):
    """Rows a relay may claim now: queued and due, or left in `sending` by a relay whose lease ran out."""
    return or_(
        and_(OutboxMessage.status.in_(("pending", "failed")), OutboxMessage.next_attempt_at <= now,
             OutboxMessage.attempts < MAX_ATTEMPTS),
        and_(OutboxMessage.status == "sending", OutboxMessage.lease_until < now, OutboxMessage.attempts < MAX_ATTEMPTS),
    )


def relay_name() -> str:
    """Who holds a claim: host, process and a random part (a claim is one relay pass's, not one host's)."""
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Notifier:
    """Delivers due outbox rows through the settings' backend; `deliver` is one pass, the relay runs it in a loop."""

    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self._backend = backend

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = backend_for(self.settings)
        return self._backend

    def deliver(self, store: Store, ids: Iterable[int] | None = None, *, now: dt.datetime | None = None,
                limit: int | None = None) -> dict[str, int]:
        """Claim and send due rows (only `ids` when given) until none is left or `limit` were tried.

        Returns counts: sent, failed (kept for retry), given_up (expired codes, permanent errors)."""
        counts = {"sent": 0, "failed": 0, "given_up": 0}
        only = None if ids is None else list(ids)
        counts["given_up"] += self.give_up_expired(store, now=now)
        tried = 0
        while limit is None or tried < limit:
            claim = self.claim(store, only, now=now)
            if claim is None:
                break
            tried += 1
            counts[self.send(store, *claim, now=now)] += 1
        return counts

    def give_up_expired(self, store: Store, *, now: dt.datetime | None = None) -> int:
        """Queued codes past their expiry are given up, not sent: a late code only confuses the caller."""
        now = now or utcnow()
        with store.unit_of_work() as uow:
            expired = uow.session.execute(
                update(OutboxMessage)
                .where(_due(now), OutboxMessage.expires_at <= now)
                .values(status="given_up", last_error="the code expired before it could be delivered",
                        lease_until=None, claimed_by=None)
                .returning(OutboxMessage.id, OutboxMessage.kind, OutboxMessage.channel, OutboxMessage.attempts)
            ).all()
            uow.commit()
        for row in expired:
            log.warning("outbox delivery", extra={"outbox_id": row.id, "kind": row.kind, "channel": row.channel,
                                                  "outcome": "given_up", "attempt": row.attempts,
                                                  "reason": "expired before delivery"})
        return len(expired)

    def claim(self, store: Store, ids: list[int] | None = None, *, now: dt.datetime | None = None
              ) -> tuple[OutboxMessage, str] | None:
        """Take the oldest due row for this relay: `(message, claim token)` (the message detached, as claimed), or
        None when nothing is due."""
        now = now or utcnow()
        token = relay_name()
        pick = select(OutboxMessage.id).where(_due(now), or_(OutboxMessage.expires_at.is_(None),
                                                             OutboxMessage.expires_at > now))
        if ids is not None:
            pick = pick.where(OutboxMessage.id.in_(ids))
        # SKIP LOCKED: a relay passes over rows another relay is claiming instead of queueing behind it. SQLite has
        # no row locks (SQLAlchemy leaves the clause out): there the single UPDATE runs under the database's write
        # lock, which makes it just as exclusive. `id = (scalar subquery)`, not `id IN (…)`: PostgreSQL may run an
        # IN subquery once per outer row, and with SKIP LOCKED each run can pick another row (seen: two claimed).
        pick = pick.order_by(OutboxMessage.id).limit(1).with_for_update(skip_locked=True)
        with store.unit_of_work() as uow:
            claimed = uow.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == pick.scalar_subquery(), _due(now))
                .values(status="sending", attempts=OutboxMessage.attempts + 1, claimed_by=token,
                        lease_until=now + dt.timedelta(seconds=self.settings.outbox_lease_seconds))
                # The claimed row comes back with the claim: no second round trip to read it.
                .returning(*_CLAIMED)
            ).one_or_none()
            uow.commit()
        if claimed is None:
            return None
        return OutboxMessage(**{column.key: value for column, value in zip(_CLAIMED, claimed)}), token

    def send(self, store: Store, message: OutboxMessage, token: str, *, now: dt.datetime | None = None) -> str:
        """One attempt at a claimed message; returns its outcome: sent, failed or given_up."""
        message_id = message.id
        started = time.perf_counter()
        error: DeliveryError | None = None
        try:
            self.backend.send(message)
        except DeliveryError as exc:
            error = exc
        except Exception as exc:  # noqa: BLE001 - a backend bug is a failed attempt, kept for retry
            error = DeliveryError(f"{type(exc).__name__}: {exc}")
        send_ms = round((time.perf_counter() - started) * 1000, 1)
        finished = utcnow()
        if error is None:
            outcome = "sent"
            values = {"status": "sent", "sent_at": finished, "last_error": None, "lease_until": None,
                      # a delivered code does not stay readable in the store
                      "body": message.redacted_body}
        elif error.permanent or message.attempts >= MAX_ATTEMPTS:
            outcome = "given_up" if error.permanent else "failed"
            values = {"status": outcome, "last_error": str(error), "lease_until": None}
        else:
            outcome = "failed"
            backoff = dt.timedelta(seconds=BACKOFF_BASE_S * 2 ** (message.attempts - 1))
            values = {"status": "failed", "last_error": str(error), "lease_until": None,
                      "next_attempt_at": (now or finished) + backoff}
        recorded = self._record(store, message_id, token, values)
        log.log(logging.INFO if outcome == "sent" else logging.WARNING, "outbox delivery", extra={
            "outbox_id": message_id, "kind": message.kind, "channel": message.channel,
            "to": masked_recipient(message), "outcome": outcome if recorded else f"{outcome}-unrecorded",
            "attempt": message.attempts, "send_ms": send_ms,
            "queued_ms": round((finished - message.created_at).total_seconds() * 1000, 1),
            "error": None if error is None else str(error)})
        return outcome

    def _record(self, store: Store, message_id: int, token: str, values: dict) -> bool:
        """Write the outcome if this claim still holds the row; False if it could not be written."""
        for attempt in range(RECORD_TRIES):
            try:
                with store.unit_of_work() as uow:
                    done = uow.session.execute(
                        update(OutboxMessage)
                        .where(OutboxMessage.id == message_id, OutboxMessage.claimed_by == token,
                               OutboxMessage.status == "sending")
                        .values(**values)
                    ).rowcount
                    uow.commit()
                return bool(done)
            except StoreUnavailable:
                if attempt == RECORD_TRIES - 1:
                    return False  # the row stays `sending`; after its lease another relay sends it again
                time.sleep(RECORD_PAUSE_S)
        return False


def backlog(store: Store, *, now: dt.datetime | None = None) -> dict[str, object]:
    """What is queued and not yet delivered: how many, and the oldest one's age in seconds (None when empty)."""
    now = now or utcnow()
    with store.unit_of_work() as uow:
        count, oldest = uow.session.execute(
            select(func.count(OutboxMessage.id), func.min(OutboxMessage.created_at))
            .where(OutboxMessage.status.in_(QUEUED),
                   or_(OutboxMessage.status != "failed", OutboxMessage.attempts < MAX_ATTEMPTS))
        ).one()
    return {"queued": int(count or 0),
            "oldest_age_s": None if oldest is None else round(max(0.0, (now - oldest).total_seconds()), 1)}
