"""Hand-offs: requests the voice agent may not grant (reactivating a card), answered here by a named operator.

A hand-off is 未回答 (`unanswered`) until an operator answers it, once; reactivating a card happens only here.
Opening one (the caller's full number, for the call-back) is itself audited (`handoff.viewed`, seed 003).
"""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func, select, update

from backoffice import records
from backoffice.errors import BadInput, NotFound, Refused
from cardstore.models import (
    ACTIVE,
    INACTIVE,
    Card,
    Customer,
    Handoff,
    LockTicket,
    OtpChallenge,
    OutboxMessage,
    ReissueRequest,
    utcnow,
)
from cardstore.uow import UnitOfWork
from contact import national_digits
from handlers import notices
from safetext import has_controls

UNANSWERED, ANSWERED = "unanswered", "answered"
STATUSES = (UNANSWERED, ANSWERED)
REACTIVATED, REJECTED = "reactivated", "rejected"
RESOLUTIONS = (REACTIVATED, REJECTED)
MAX_NOTE = 2000  # handoffs.note


def list_handoffs(uow: UnitOfWork, status: str | None = None, *, zone: ZoneInfo | None = None,
                  now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The queue: 未回答 first, then answered; oldest first within each; with each one's age in seconds."""
    now = now or utcnow()
    unanswered_first = case((Handoff.status == UNANSWERED, 0), else_=1)
    q = (select(Handoff, Customer.phone_e164).join(Customer, Customer.id == Handoff.customer_id)
         .order_by(unanswered_first, Handoff.created_at, Handoff.id))
    if status is not None:
        q = q.where(Handoff.status == status)
    rows = []
    for h, phone in uow.session.execute(q):
        row = records.handoff(h, phone, zone)
        row["age_seconds"] = max(int((now - h.created_at).total_seconds()), 0)
        rows.append(row)
    return rows


def show(uow: UnitOfWork, handoff_id: int, viewer: str, *, zone: ZoneInfo | None = None) -> dict[str, Any]:
    """One hand-off with whom to call back (name, full number), the card then and now, and the conversation's
    tickets and notices. Opening it is recorded (`handoff.viewed`, signed by `viewer`) before it is shown."""
    s = uow.session
    handoff = s.get(Handoff, handoff_id)
    if handoff is None:
        raise NotFound(f"no hand-off {handoff_id}")
    customer = s.get(Customer, handoff.customer_id)
    assert customer is not None
    uow.repo.audit(viewer, "handoff.viewed", card=handoff.card, session=handoff.session,
                   after={"handoff_id": handoff_id, "fields": ["name", "phone_number"]})
    uow.commit()
    session = handoff.session
    tickets = list(s.scalars(select(LockTicket).where(LockTicket.session == session).order_by(LockTicket.id)))
    reissues = list(s.scalars(select(ReissueRequest).where(ReissueRequest.session == session)
                              .order_by(ReissueRequest.id)))
    # Notices carry no session: the conversation's are the customer's since its first record.
    first_code = s.scalar(select(func.min(OtpChallenge.created_at))
                          .where(OtpChallenge.session == session, OtpChallenge.customer_id == customer.id))
    started = min(m for m in [handoff.created_at, first_code, *(t.created_at for t in tickets),
                              *(r.created_at for r in reissues)] if m is not None)
    messages = list(s.scalars(select(OutboxMessage).where(OutboxMessage.customer_id == customer.id,
                                                          OutboxMessage.created_at >= started)
                              .order_by(OutboxMessage.id)))
    cards = {c.id: c for c in s.scalars(select(Card).where(Card.customer_id == customer.id))}
    return {
        "handoff": records.handoff(handoff, customer.phone_e164, zone),
        "customer": {"id": customer.id, "name": customer.name, "phone_number": customer.phone_e164,
                     "phone_national": national_digits(customer.phone_e164),
                     "deleted_at": records.when(customer.deleted_at, zone)},
        "lock_tickets": [{"number": t.number, "card": records.card_label(cards.get(t.card_id)),
                          "lock_type": records.lock_type(t.lock_type), "reason": t.reason,
                          "created_at": records.when(t.created_at, zone)} for t in tickets],
        "reissue_requests": [{"number": r.number, "card": records.card_label(cards.get(r.card_id)),
                              "created_at": records.when(r.created_at, zone)} for r in reissues],
        "notifications": [records.outbox(m, zone) for m in messages],
    }


def check_note(note: str | None) -> str:
    """The operator's note as it is stored: trimmed, present, bounded, no control characters but line breaks."""
    note = (note or "").strip()
    if not note:
        raise BadInput("--note TEXT is required: say what was decided and why")
    if len(note) > MAX_NOTE:
        raise BadInput(f"--note is longer than {MAX_NOTE} characters")
    if has_controls(note, multiline=True):
        raise BadInput("--note holds control characters (escape sequences): type it again as plain text")
    return note


def resolve(uow: UnitOfWork, handoff_id: int, operator: str, resolution: str, note: str,
            *, now: dt.datetime | None = None, zone: ZoneInfo | None = None) -> dict[str, Any]:
    """Answer a hand-off: reactivate the card (inactive -> active) or reject the request, with a note.

    Refused when the hand-off is already answered, or when reactivation no longer fits the card (it was blocked
    since, or the customer was deleted). The answer, the card's change, their audit rows and the SMS telling the
    customer the outcome (queued in the outbox) commit together. The result names the SMS (`outbox_id`).
    """
    if resolution not in RESOLUTIONS:
        raise BadInput("choose --reactivate or --reject")
    note = check_note(note)
    now = now or utcnow()
    s = uow.session
    handoff = s.scalars(select(Handoff).where(Handoff.id == handoff_id).with_for_update()).one_or_none()
    if handoff is None:
        raise NotFound(f"no hand-off {handoff_id}")
    if handoff.status != UNANSWERED:
        raise Refused(f"hand-off {handoff_id} was already answered ({handoff.resolution}) by {handoff.answered_by} "
                      f"at {records.when(handoff.answered_at, zone)}")
    card = s.scalars(select(Card).where(Card.id == handoff.card_id).with_for_update()).one()
    customer = s.get(Customer, handoff.customer_id)
    assert customer is not None
    if resolution == REACTIVATED:
        if customer.deleted_at is not None:
            raise Refused(f"the customer of hand-off {handoff_id} is deleted: a card is not reactivated for them")
        if card.status != INACTIVE:
            raise Refused(f"card {card.last4} is {card.status}: only a temporarily locked (inactive) card is "
                          "reactivated; reject the hand-off instead")
    # Conditional on the status still being unanswered: of two operators answering at once, one wins on every
    # store (SQLite ignores FOR UPDATE; this UPDATE's row count does not).
    won = s.execute(
        update(Handoff).where(Handoff.id == handoff_id, Handoff.status == UNANSWERED)
        .values(status=ANSWERED, answered_at=now, answered_by=operator, resolution=resolution, note=note)
        .execution_options(synchronize_session=False)
    ).rowcount
    if won != 1:
        raise Refused(f"hand-off {handoff_id} was answered by someone else just now")
    uow.repo.audit(operator, "handoff.answered", card=card, session=handoff.session,
                   before={"handoff_id": handoff_id, "status": UNANSWERED},
                   after={"handoff_id": handoff_id, "status": ANSWERED, "resolution": resolution})
    if resolution == REACTIVATED:
        card.status = ACTIVE
        uow.repo.audit(operator, "card.reactivated", card=card, session=handoff.session,
                       before={"status": INACTIVE}, after={"status": ACTIVE, "handoff_id": handoff_id})
    message = None
    if customer.deleted_at is None:
        # The customer hears the outcome by SMS, in Japanese (the hand-off does not keep the call's language).
        message = notices.enqueue(uow.repo, customer, f"handoff_{resolution}", "sms", "ja", last4=card.last4)
    uow.commit()
    s.refresh(handoff)
    answered = records.handoff(handoff, customer.phone_e164, zone)
    answered["outbox_id"] = message.id if message is not None else None
    return answered
