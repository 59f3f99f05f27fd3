"""The card store's tables: SQLAlchemy 2 typed models. Persistence only; the rules live in the handlers,
except the card status transitions, which are a property of a card."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, UniqueConstraint, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.orm.base import NEVER_SET, NO_VALUE

from cardstore.errors import InvalidTransition


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


# Card statuses, as the seed's validate_card webhook reports them.
ACTIVE, INACTIVE, BLOCKED = "active", "inactive", "blocked"
CARD_STATUSES = (ACTIVE, INACTIVE, BLOCKED)
# What the webhook may do to a card. inactive -> active (reactivation) is an operator's act, never the webhook's.
WEBHOOK_TRANSITIONS = {(ACTIVE, INACTIVE), (ACTIVE, BLOCKED), (INACTIVE, BLOCKED)}
LOCK_REASONS = ("damaged", "stolen", "lost", "others")


def check_lock(last4: str, status: str, lock_type: str) -> None:
    """InvalidTransition unless the webhook may move a card from `status` to `lock_type` (inactive or blocked)."""
    if (status, lock_type) not in WEBHOOK_TRANSITIONS:
        raise InvalidTransition(f"card {last4}: {status} -> {lock_type} is not allowed")


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone_e164: Mapped[str] = mapped_column(String(20), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    zip_code: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[dt.datetime | None]
    # Consecutive wrong codes across challenges; past the limit OTP is disabled until an operator re-enables it.
    otp_failures: Mapped[int] = mapped_column(default=0)
    otp_disabled_at: Mapped[dt.datetime | None]

    cards: Mapped[list[Card]] = relationship(back_populates="customer", order_by="Card.id")


class Card(Base):
    __tablename__ = "cards"
    __table_args__ = (
        UniqueConstraint("customer_id", "last4"),
        # A customer's cards in id order with what a read tag shows of them: the read (repository._READER) never
        # visits the table (migration 0007). Also the foreign key's index.
        Index("ix_cards_customer_views", "customer_id", "id", "last4", "vendor", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    last4: Mapped[str] = mapped_column(String(4))
    vendor: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    # Counts status changes (by anyone: the webhook's locks, an operator's reactivation). A ticket records the
    # version it left the card at; while the card still has it, replaying that ticket's answer tells the truth.
    status_version: Mapped[int] = mapped_column(default=0, server_default="0")
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    customer: Mapped[Customer] = relationship(back_populates="cards")

    def lock(self, lock_type: str) -> None:
        """Move to `lock_type` (inactive or blocked) if the webhook may; else InvalidTransition."""
        check_lock(self.last4, self.status, lock_type)
        self.status = lock_type


@event.listens_for(Card.status, "set", active_history=True)
def _count_status_change(card: Card, value: str, old: object, _initiator: object) -> None:
    if old is not NO_VALUE and old is not NEVER_SET and old != value:
        card.status_version = (card.status_version or 0) + 1


class LockTicket(Base):
    __tablename__ = "lock_tickets"
    # A CX retry of the same request gets the newest ticket of (session, card, lock type) back while it is still
    # true (handlers/lock_card.py); a later request after the card changed gets a ticket of its own.
    # One index besides the number's (migration 0010): card first, it also serves the card's tickets and the cascade;
    # each index is one more page a lock's commit writes.
    __table_args__ = (Index("ix_lock_tickets_card_session", "card_id", "session", "lock_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    session: Mapped[str] = mapped_column(String(500))
    lock_type: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The card's status_version right after this lock.
    card_status_version: Mapped[int] = mapped_column(default=0, server_default="0")

    card: Mapped[Card] = relationship()


class ReissueRequest(Base):
    __tablename__ = "reissue_requests"
    __table_args__ = (Index("ix_reissue_requests_session_card", "session", "card_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(unique=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"), index=True)
    session: Mapped[str] = mapped_column(String(500))
    zip_code: Mapped[str] = mapped_column(String(16))
    delivery_business_days: Mapped[int] = mapped_column(default=3)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The card's status_version when the replacement was ordered.
    card_status_version: Mapped[int] = mapped_column(default=0, server_default="0")

    card: Mapped[Card] = relationship()


class OtpChallenge(Base):
    __tablename__ = "otp_challenges"
    __table_args__ = (Index("ix_otp_customer_created", "customer_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    session: Mapped[str] = mapped_column(String(500), index=True)
    channel: Mapped[str] = mapped_column(String(8))
    # HMAC-SHA256 of the code under the server's key: the code itself is never stored.
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime]
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=3)
    # pending -> verified | exhausted | superseded
    status: Mapped[str] = mapped_column(String(12), default="pending")


class VerifiedSession(Base):
    """This CX session proved, by a code, that it speaks for this customer, at verified_at."""

    __tablename__ = "verified_sessions"
    # The read's "has this session verified this customer since …" answered from the index alone (migration 0007).
    __table_args__ = (Index("ix_verified_sessions_session_customer", "session", "customer_id", "verified_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    session: Mapped[str] = mapped_column(String(500))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"))
    verified_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # The number as the verifying turn gave it (contact.phone_text) and the customer's number it stood for then: a
    # lock later in this session that sends the same text is matched here, without parsing it, while the customer
    # still has that number (issue 15). NULL in rows older than migration 0009 (their locks parse, as before).
    phone_text: Mapped[str | None] = mapped_column(String(40))
    phone_e164: Mapped[str | None] = mapped_column(String(20))


class AuthToken(Base):
    """A credential the flexible edge issued when a code was verified: a bearer token, stored only as its SHA-256.

    It stands for the verified session it was issued in (`session`), for the customer and the number they had then;
    it dies with the customer (deleted: cascade or `deleted_at`) and with a change of number (`phone_e164` differs).
    """

    __tablename__ = "auth_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    phone_e164: Mapped[str] = mapped_column(String(20))
    session: Mapped[str] = mapped_column(String(500))
    issued_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Handoff(Base):
    """A request only a human may answer (reactivating a card); 未回答 until an operator answers it."""

    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_session_card", "session", "card_id", "requested_action"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True)
    card_id: Mapped[int] = mapped_column(ForeignKey("cards.id", ondelete="CASCADE"))
    session: Mapped[str] = mapped_column(String(500))
    requested_action: Mapped[str] = mapped_column(String(20))
    # The card's status when the customer asked: the card's status now may differ once someone answered.
    card_status_at_request: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12), default="unanswered", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[dt.datetime | None]
    answered_by: Mapped[str | None] = mapped_column(String(100))
    resolution: Mapped[str | None] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(String(2000))
    # The card's status_version when the hand-off was asked for.
    card_status_version: Mapped[int] = mapped_column(default=0, server_default="0")

    card: Mapped[Card] = relationship()


class OutboxMessage(Base):
    """A notification to send. Written in the transaction that caused it; delivered after commit by a relay."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # otp | lock_ticket | reissue_ticket
    channel: Mapped[str] = mapped_column(String(8))  # sms | email
    to: Mapped[str] = mapped_column(String(254))
    subject: Mapped[str] = mapped_column(String(200), default="")
    body: Mapped[str] = mapped_column(String(2000))
    # What `body` becomes once sent, so a delivered code does not stay readable in the store.
    redacted_body: Mapped[str] = mapped_column(String(2000))
    # pending -> sending (claimed by a relay) -> sent | failed (retried after its backoff) | given_up (for good)
    status: Mapped[str] = mapped_column(String(8), default="pending")  # indexed by ix_outbox_due
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]
    # A claim: the relay that holds the row in `sending`, until when. Past it, another relay may take the row.
    lease_until: Mapped[dt.datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    # A one-time code's own expiry: past it the notice is given up, never sent late.
    expires_at: Mapped[dt.datetime | None]


class AuditEvent(Base):
    """Who changed what, when: `system:webhook` or an operator's name. Written with the change it records."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100), index=True)
    action: Mapped[str] = mapped_column(String(60))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id", ondelete="SET NULL"), index=True)
    card_id: Mapped[int | None] = mapped_column(ForeignKey("cards.id", ondelete="SET NULL"))
    session: Mapped[str | None] = mapped_column(String(500))
    before: Mapped[dict[str, Any] | None]
    after: Mapped[dict[str, Any] | None]


class ImportJob(Base):
    """A customer import started in the console: its file until it ran, its preview, its progress and result.

    Progress lives here, not in the web process, so a reloaded page (or another instance) shows where it is.
    """

    __tablename__ = "import_jobs"

    id: Mapped[int] = mapped_column(primary_key=True)
    token: Mapped[str] = mapped_column(String(64), unique=True)  # opaque: the job's URL names nothing else
    actor: Mapped[str] = mapped_column(String(100))
    filename: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12), default="checking")  # checking | previewed | running | done | failed
    phase: Mapped[str] = mapped_column(String(40), default="")
    total: Mapped[int] = mapped_column(default=0)
    done: Mapped[int] = mapped_column(default=0)
    # The uploaded file, kept only until the import ran (it holds personal data).
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    preview: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ThrottleCounter(Base):
    """One abuse limit's count in its current window (issue 12): codes sent, wrong codes, look-ups.

    Keyed by what is limited ("otp-send:customer:anonymous:42", "lookup:session:<hash>", "otp-send:service");
    read with FOR UPDATE, so every instance of the service counts on the same row.
    """

    __tablename__ = "throttle_counters"

    key: Mapped[str] = mapped_column(String(120), primary_key=True)
    window_start: Mapped[dt.datetime]
    count: Mapped[int] = mapped_column(default=0)
    # When the last counted event happened: growing delays are measured from it.
    last_at: Mapped[dt.datetime | None]
    # Requests refused in this window (the service-wide limit's alarm fires on the first).
    refused: Mapped[int] = mapped_column(default=0)
