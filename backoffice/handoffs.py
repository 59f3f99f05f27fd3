"""Hand-offs: requests the voice agent may not grant (reactivating a card), answered here by a named operator.

A hand-off is 未回答 (`unanswered`) until an operator answers it, once; reactivating a card happens only here.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update

from backoffice import records
from backoffice.errors import BadInput, NotFound, Refused
from cardstore.models import ACTIVE, INACTIVE, Card, Customer, Handoff, utcnow
from cardstore.uow import UnitOfWork

UNANSWERED, ANSWERED = "unanswered", "answered"
STATUSES = (UNANSWERED, ANSWERED)
REACTIVATED, REJECTED = "reactivated", "rejected"
MAX_NOTE = 2000  # handoffs.note


def list_handoffs(uow: UnitOfWork, status: str | None = None) -> list[dict[str, Any]]:
    """Hand-offs oldest first (the queue order), optionally only those with `status`."""
    q = select(Handoff, Customer.phone_e164).join(Customer, Customer.id == Handoff.customer_id).order_by(Handoff.id)
    if status is not None:
        q = q.where(Handoff.status == status)
    return [records.handoff(h, phone) for h, phone in uow.session.execute(q)]


def resolve(uow: UnitOfWork, handoff_id: int, operator: str, resolution: str, note: str,
            *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Answer a hand-off: reactivate the card (inactive -> active) or reject the request, with a note.

    Refused when the hand-off is already answered, or when reactivation no longer fits the card (it was blocked
    since, or the customer was deleted). The answer, the card's change and their audit rows commit together.
    """
    if resolution not in (REACTIVATED, REJECTED):
        raise BadInput("choose --reactivate or --reject")
    note = (note or "").strip()
    if not note:
        raise BadInput("--note TEXT is required: say what was decided and why")
    if len(note) > MAX_NOTE:
        raise BadInput(f"--note is longer than {MAX_NOTE} characters")
    now = now or utcnow()
    s = uow.session
    handoff = s.scalars(select(Handoff).where(Handoff.id == handoff_id).with_for_update()).one_or_none()
    if handoff is None:
        raise NotFound(f"no hand-off {handoff_id}")
    if handoff.status != UNANSWERED:
        raise Refused(f"hand-off {handoff_id} was already answered ({handoff.resolution}) by {handoff.answered_by} "
                      f"at {records.when(handoff.answered_at)}")
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
    uow.commit()
    s.refresh(handoff)
    return records.handoff(handoff, customer.phone_e164)
