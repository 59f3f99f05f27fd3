"""Notifications: deliver outbox rows by SMS or e-mail through the backend `NOTIFY_BACKEND` names.

A row is written in the transaction that caused it (a code sent, a card locked); delivery happens after the
commit, here or later by `flask outbox deliver`. A row is claimed before sending (pending|failed -> sending), so
two deliverers never send it twice; a failure records the attempt and the error and schedules a retry.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
import sys
from email.message import EmailMessage
from typing import Iterable, Protocol

from sqlalchemy import select, update

from cardstore.models import OutboxMessage, utcnow
from cardstore.uow import Store
from settings import Settings

log = logging.getLogger("lockcard.notify")
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 30


class DeliveryError(Exception):
    """The backend could not hand the message over."""


class Backend(Protocol):
    def send(self, message: OutboxMessage) -> None: ...


class ConsoleBackend:
    """Development only: writes the message to stderr, as a phone would show it."""

    def send(self, message: OutboxMessage) -> None:
        print(f"[{message.channel} to {_masked(message)}] {message.body}", file=sys.stderr, flush=True)


class FileBackend:
    """Appends one JSON object per message to a file (like Django's file mail backend); tests read codes there."""

    def __init__(self, path) -> None:
        if path is None:
            raise DeliveryError("NOTIFY_FILE is not set")
        self.path = path

    def send(self, message: OutboxMessage) -> None:
        record = {"id": message.id, "kind": message.kind, "channel": message.channel, "to": message.to,
                  "subject": message.subject, "body": message.body, "at": utcnow().isoformat()}
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")


class SmtpBackend:
    """E-mail through a real SMTP server; SMS through an e-mail-to-SMS gateway domain when one is set."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings

    def send(self, message: OutboxMessage) -> None:
        if message.channel == "sms":
            if not self.s.smtp_sms_domain:
                raise DeliveryError("no SMS route: SMTP_SMS_DOMAIN is not set")
            to = f"{message.to.lstrip('+')}@{self.s.smtp_sms_domain}"
        else:
            to = message.to
        mail = EmailMessage()
        mail["From"] = self.s.smtp_from
        mail["To"] = to
        mail["Subject"] = message.subject
        mail.set_content(message.body)
        try:
            with smtplib.SMTP(self.s.smtp_host, self.s.smtp_port, timeout=self.s.smtp_timeout_seconds) as smtp:
                if self.s.smtp_starttls:
                    smtp.starttls()
                if self.s.smtp_user:
                    smtp.login(self.s.smtp_user, self.s.smtp_password or "")
                smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"{type(exc).__name__}: {exc}"[:300]) from exc


def _masked(message: OutboxMessage) -> str:
    from contact import mask_email, mask_phone

    return mask_email(message.to) if message.channel == "email" else mask_phone(message.to)


def backend_for(settings: Settings) -> Backend:
    if settings.notify_backend == "file":
        return FileBackend(settings.notify_file)
    if settings.notify_backend == "smtp":
        return SmtpBackend(settings)
    return ConsoleBackend()


class Notifier:
    def __init__(self, settings: Settings, backend: Backend | None = None) -> None:
        self.settings = settings
        self._backend = backend

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = backend_for(self.settings)
        return self._backend

    def deliver(self, store: Store, ids: Iterable[int] | None = None, *, now: dt.datetime | None = None) -> dict[str, int]:
        """Send the given rows (or every row due); returns counts of sent and failed."""
        now = now or utcnow()
        counts = {"sent": 0, "failed": 0}
        with store.unit_of_work() as uow:
            q = select(OutboxMessage.id).where(OutboxMessage.status.in_(("pending", "failed")))
            if ids is None:
                q = q.where(OutboxMessage.next_attempt_at <= now, OutboxMessage.attempts < MAX_ATTEMPTS)
            else:
                q = q.where(OutboxMessage.id.in_(list(ids)))
            due = list(uow.session.scalars(q.order_by(OutboxMessage.id)))
        for message_id in due:
            counts["sent" if self._deliver_one(store, message_id, now) else "failed"] += 1
        return counts

    def _deliver_one(self, store: Store, message_id: int, now: dt.datetime) -> bool:
        # Claim: only one deliverer moves a row to "sending"; the others see 0 rows updated and leave it.
        with store.unit_of_work() as uow:
            claimed = uow.session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.id == message_id, OutboxMessage.status.in_(("pending", "failed")))
                .values(status="sending", attempts=OutboxMessage.attempts + 1)
            ).rowcount
            uow.commit()
        if not claimed:
            return False
        with store.unit_of_work() as uow:
            message = uow.session.get(OutboxMessage, message_id)
            assert message is not None
            try:
                self.backend.send(message)
            except Exception as exc:  # noqa: BLE001 - any backend failure is a failed attempt, kept for retry
                message.status = "failed"
                message.last_error = str(exc)[:500]
                message.next_attempt_at = now + dt.timedelta(seconds=BACKOFF_BASE_S * 2 ** (message.attempts - 1))
                log.warning("notification not delivered", extra={"outbox_id": message_id, "error": message.last_error})
                uow.commit()
                return False
            message.status = "sent"
            message.sent_at = utcnow()
            message.last_error = None
            message.body = message.redacted_body  # a delivered code does not stay readable in the store
            uow.commit()
            return True
