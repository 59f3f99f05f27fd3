"""Queries the handlers and commands need, over one SQLAlchemy session. Knows no CX."""
from __future__ import annotations

import datetime as dt
import secrets
from typing import Any, Sequence, TypeVar

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from cardstore.models import (
    AuditEvent,
    Base,
    Card,
    Customer,
    Handoff,
    LockTicket,
    OtpChallenge,
    OutboxMessage,
    ReissueRequest,
    VerifiedSession,
)

T = TypeVar("T", bound=Base)


class Repository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self.new_outbox: list[OutboxMessage] = []

    def add(self, obj: T) -> T:
        self.session.add(obj)
        return obj

    def flush(self) -> None:
        self.session.flush()

    def insert_rows(self, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
        """Bulk loading (generated data, imports): many rows of `model` in one executemany, no objects built."""
        if rows:
            self.session.execute(insert(model), list(rows))

    # customers and cards
    def customer_by_phone(self, phone_e164: str, *, include_deleted: bool = False) -> Customer | None:
        q = select(Customer).where(Customer.phone_e164 == phone_e164)
        if not include_deleted:
            q = q.where(Customer.deleted_at.is_(None))
        return self.session.scalars(q).one_or_none()

    def customer(self, customer_id: int) -> Customer | None:
        return self.session.get(Customer, customer_id)

    def cards_of(self, customer_id: int) -> list[Card]:
        return list(self.session.scalars(select(Card).where(Card.customer_id == customer_id).order_by(Card.id)))

    def card(self, customer_id: int, last4: str, *, for_update: bool = False) -> Card | None:
        q = select(Card).where(Card.customer_id == customer_id, Card.last4 == last4)
        if for_update:
            q = q.with_for_update()
        return self.session.scalars(q).one_or_none()

    # one-time codes and verified sessions
    def open_challenge(self, customer_id: int, session: str) -> OtpChallenge | None:
        """The newest challenge of this customer in this CX session that still takes codes."""
        q = (
            select(OtpChallenge)
            .where(
                OtpChallenge.customer_id == customer_id,
                OtpChallenge.session == session,
                OtpChallenge.status == "pending",
            )
            .order_by(OtpChallenge.id.desc())
            .limit(1)
            .with_for_update()
        )
        return self.session.scalars(q).one_or_none()

    def challenges_in_session(self, customer_id: int, session: str) -> list[OtpChallenge]:
        q = select(OtpChallenge).where(OtpChallenge.customer_id == customer_id, OtpChallenge.session == session)
        return list(self.session.scalars(q))

    def count_challenges_since(self, customer_id: int, since: dt.datetime) -> int:
        q = select(func.count(OtpChallenge.id)).where(
            OtpChallenge.customer_id == customer_id, OtpChallenge.created_at >= since
        )
        return int(self.session.scalar(q) or 0)

    def verified_since(self, session: str, customer_id: int, since: dt.datetime) -> VerifiedSession | None:
        q = (
            select(VerifiedSession)
            .where(
                VerifiedSession.session == session,
                VerifiedSession.customer_id == customer_id,
                VerifiedSession.verified_at >= since,
            )
            .order_by(VerifiedSession.id.desc())
            .limit(1)
        )
        return self.session.scalars(q).one_or_none()

    # requests made in a session (each unique per session, card and action)
    def lock_ticket(self, session: str, card_id: int, lock_type: str) -> LockTicket | None:
        q = select(LockTicket).where(
            LockTicket.session == session, LockTicket.card_id == card_id, LockTicket.lock_type == lock_type
        )
        return self.session.scalars(q).one_or_none()

    def reissue_request(self, session: str, card_id: int) -> ReissueRequest | None:
        q = select(ReissueRequest).where(ReissueRequest.session == session, ReissueRequest.card_id == card_id)
        return self.session.scalars(q).one_or_none()

    def handoff(self, session: str, card_id: int, action: str) -> Handoff | None:
        q = select(Handoff).where(
            Handoff.session == session, Handoff.card_id == card_id, Handoff.requested_action == action
        )
        return self.session.scalars(q).one_or_none()

    def new_number(self, model: type[LockTicket] | type[ReissueRequest]) -> int:
        """A random 7-digit number not yet used by `model`."""
        while True:
            number = 1_000_000 + secrets.randbelow(9_000_000)
            if self.session.scalar(select(model.id).where(model.number == number)) is None:
                return number

    # side records written with every change
    def audit(
        self,
        actor: str,
        action: str,
        *,
        customer: Customer | None = None,
        card: Card | None = None,
        session: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> AuditEvent:
        return self.add(
            AuditEvent(
                actor=actor,
                action=action,
                customer_id=customer.id if customer else (card.customer_id if card else None),
                card_id=card.id if card else None,
                session=session,
                before=before,
                after=after,
            )
        )

    def enqueue(self, message: OutboxMessage) -> OutboxMessage:
        self.new_outbox.append(message)
        return self.add(message)
