"""The audit trail: who (the system or a named operator) changed what, and when — newest first."""
from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import aliased

from backoffice import records
from backoffice.errors import NotFound
from cardstore.models import AuditEvent, Card, Customer
from cardstore.uow import UnitOfWork
from contact import mask_phone


def list_events(uow: UnitOfWork, *, phone_e164: str | None = None, actor: str | None = None,
                since: dt.datetime | None = None, action: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Audit rows matching every filter given, newest first, at most `limit`."""
    card = aliased(Card)
    q = (select(AuditEvent, Customer.phone_e164, card)
         .outerjoin(Customer, Customer.id == AuditEvent.customer_id)
         .outerjoin(card, card.id == AuditEvent.card_id)
         .order_by(AuditEvent.id.desc()).limit(limit))
    if phone_e164 is not None:
        customer_id = uow.session.scalar(select(Customer.id).where(Customer.phone_e164 == phone_e164))
        if customer_id is None:
            raise NotFound(f"no customer with phone number {mask_phone(phone_e164)}")
        q = q.where(AuditEvent.customer_id == customer_id)
    if actor is not None:
        q = q.where(AuditEvent.actor == actor)
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    if action is not None:
        q = q.where(AuditEvent.action == action)
    return [records.audit(e, phone_e164=phone, card=c) for e, phone, c in uow.session.execute(q)]
