"""One customer at a time: the history an agent needs on a transferred call, logical deletion and purge after
retention, re-enabling one-time codes. Each change is committed with its audit row, signed by the operator."""
from __future__ import annotations

import datetime as dt
import functools
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, func, select

from backoffice import records
from backoffice.errors import BadInput, NotFound, Refused
from cardstore.models import (
    AuditEvent,
    Card,
    Customer,
    Handoff,
    LockTicket,
    OutboxMessage,
    ReissueRequest,
    utcnow,
)
from cardstore.uow import Store, UnitOfWork
from contact import mask_phone, national_digits

AUDIT_ROWS_SHOWN = 20


def _customer(uow: UnitOfWork, phone_e164: str, *, for_update: bool = False) -> Customer:
    q = select(Customer).where(Customer.phone_e164 == phone_e164)
    if for_update:
        q = q.with_for_update()
    customer = uow.session.scalars(q).one_or_none()
    if customer is None:
        raise NotFound(f"no customer with phone number {mask_phone(phone_e164)}")
    return customer


def find(uow: UnitOfWork, phone_e164: str) -> int:
    """The internal id of the customer with this number (the console's pages name customers by it, not by phone)."""
    return _customer(uow, phone_e164).id


def phone_of(uow: UnitOfWork, customer_id: int) -> str:
    phone = uow.session.scalar(select(Customer.phone_e164).where(Customer.id == customer_id))
    if phone is None:
        raise NotFound(f"no customer {customer_id}")
    return phone


def show(uow: UnitOfWork, phone_e164: str, *, reveal_by: str | None = None, viewer: str | None = None,
         audit_rows: int = AUDIT_ROWS_SHOWN, zone: ZoneInfo | None = None) -> dict[str, Any]:
    """The customer, their cards, tickets, reissues, hand-offs, notifications and latest audit rows.

    The e-mail address is masked unless `reveal_by` names the operator, which is itself audited; `viewer` records
    who opened the record (`customer.viewed`, the console). Logically deleted customers are shown too (marked),
    until they are purged. Times in `zone` (UTC if none).
    """
    customer = _customer(uow, phone_e164)
    if viewer is not None:
        uow.repo.audit(viewer, "customer.viewed", customer=customer, after={"fields": ["name", "phone_number"]})
    if reveal_by is not None:
        uow.repo.audit(reveal_by, "customer.revealed", customer=customer, after={"fields": ["email"]})
    if viewer is not None or reveal_by is not None:
        uow.commit()
    s = uow.session
    cards = {c.id: c for c in s.scalars(select(Card).where(Card.customer_id == customer.id).order_by(Card.id))}
    ids = list(cards)
    tickets = list(s.scalars(select(LockTicket).where(LockTicket.card_id.in_(ids)).order_by(LockTicket.id)))
    reissues = list(s.scalars(select(ReissueRequest).where(ReissueRequest.card_id.in_(ids)).order_by(ReissueRequest.id)))
    handoffs = list(s.scalars(select(Handoff).where(Handoff.customer_id == customer.id).order_by(Handoff.id)))
    messages = list(s.scalars(select(OutboxMessage).where(OutboxMessage.customer_id == customer.id)
                              .order_by(OutboxMessage.id)))
    events = list(s.scalars(select(AuditEvent).where(AuditEvent.customer_id == customer.id)
                            .order_by(AuditEvent.id.desc()).limit(audit_rows)))
    when = functools.partial(records.when, zone=zone)
    return {
        "customer": {
            "id": customer.id,
            "phone_number": customer.phone_e164,
            "phone_national": national_digits(customer.phone_e164),
            "name": records.shown(customer.name),
            "email": records.email(customer.email, reveal=reveal_by is not None),
            "zip_code": customer.zip_code,
            "created_at": when(customer.created_at),
            "deleted_at": when(customer.deleted_at),
            "otp_failures": customer.otp_failures,
            "otp_disabled_at": when(customer.otp_disabled_at),
        },
        "cards": [{"card": records.card_label(c), "last4": c.last4, "vendor": c.vendor, "status": c.status,
                   "updated_at": when(c.updated_at)} for c in cards.values()],
        "lock_tickets": [{"number": t.number, "card": records.card_label(cards[t.card_id]),
                          "lock_type": records.lock_type(t.lock_type), "reason": t.reason, "session": t.session, "created_at": when(t.created_at)}
                         for t in tickets],
        "reissue_requests": [{"number": r.number, "card": records.card_label(cards[r.card_id]),
                              "delivery_business_days": r.delivery_business_days, "session": r.session,
                              "created_at": when(r.created_at)} for r in reissues],
        "handoffs": [records.handoff(h, zone=zone) for h in handoffs],
        "notifications": [records.outbox(m, zone) for m in messages],
        "audit": [records.audit(e, card=cards.get(e.card_id), zone=zone) for e in events],
    }


def delete_customer(uow: UnitOfWork, phone_e164: str, operator: str, *, now: dt.datetime | None = None) -> dt.datetime:
    """Delete logically: the webhook no longer knows the customer; the record stays until purged."""
    customer = _customer(uow, phone_e164, for_update=True)
    if customer.deleted_at is not None:
        raise Refused(f"customer {mask_phone(phone_e164)} was already deleted at {records.when(customer.deleted_at)}")
    customer.deleted_at = now or utcnow()
    uow.repo.audit(operator, "customer.deleted", customer=customer, before={"deleted_at": None},
                   after={"deleted_at": records.when(customer.deleted_at)})
    uow.commit()
    return customer.deleted_at


def otp_enable(uow: UnitOfWork, phone_e164: str, operator: str) -> dict[str, Any]:
    """Let a customer locked out by wrong codes receive codes again, with the failure count reset."""
    customer = _customer(uow, phone_e164, for_update=True)
    if customer.deleted_at is not None:
        raise Refused(f"customer {mask_phone(phone_e164)} is deleted")
    if customer.otp_disabled_at is None and customer.otp_failures == 0:
        raise Refused(f"one-time codes are not disabled for customer {mask_phone(phone_e164)}: nothing to do")
    before = {"otp_disabled_at": records.when(customer.otp_disabled_at), "otp_failures": customer.otp_failures}
    customer.otp_disabled_at = None
    customer.otp_failures = 0
    after = {"otp_disabled_at": None, "otp_failures": 0}
    uow.repo.audit(operator, "otp.enabled", customer=customer, before=before, after=after)
    uow.commit()
    return before


def purge(store: Store, older_than: dt.timedelta, operator: str, *, phone_e164: str | None = None,
          floor: dt.timedelta | None = None, now: dt.datetime | None = None) -> list[int]:
    """Remove for good the customers deleted longer ago than `older_than`; returns their former ids.

    Cards, tickets, reissues, hand-offs, codes and sessions go with the customer (ON DELETE CASCADE), and so do
    the notifications, whose recipient and body are personal data. Audit rows stay, detached from the customer
    (ON DELETE SET NULL); each purge adds one that holds counts and the former internal id, nothing personal.
    Given a phone number, purges that customer only, and refuses one not deleted or not past retention.
    A retention shorter than `floor` (RETENTION_FLOOR_DAYS) is refused: `--older-than 1h` is a slip, not a policy.
    """
    if floor is not None and older_than < floor:
        raise BadInput(f"--older-than must be at least {floor.days} days (RETENTION_FLOOR_DAYS): "
                       "a shorter retention would purge customers deleted by mistake before anyone notices")
    now = now or utcnow()
    cutoff = now - older_than
    if phone_e164 is not None:
        with store.unit_of_work() as uow:
            customer = _customer(uow, phone_e164)
            if customer.deleted_at is None:
                raise Refused(f"customer {mask_phone(phone_e164)} is not deleted: delete it first "
                              "(customers delete), then purge after the retention period")
            if customer.deleted_at > cutoff:
                raise Refused(f"customer {mask_phone(phone_e164)} was deleted at {records.when(customer.deleted_at)},"
                              f" within the retention period: not purged")
            candidates = [customer.id]
    else:
        with store.unit_of_work() as uow:
            candidates = list(uow.session.scalars(
                select(Customer.id).where(Customer.deleted_at.is_not(None), Customer.deleted_at <= cutoff)
                .order_by(Customer.id)))
    purged = []
    for customer_id in candidates:
        # One transaction per customer: the deletion and its audit row commit together or not at all.
        with store.unit_of_work() as uow:
            if _purge_one(uow, customer_id, cutoff, operator, older_than):
                uow.commit()
                purged.append(customer_id)
    return purged


def _purge_one(uow: UnitOfWork, customer_id: int, cutoff: dt.datetime, operator: str,
               older_than: dt.timedelta) -> bool:
    s = uow.session
    customer = s.scalars(select(Customer).where(Customer.id == customer_id).with_for_update()).one_or_none()
    if customer is None or customer.deleted_at is None or customer.deleted_at > cutoff:
        return False  # gone or changed since it was selected
    card_ids = select(Card.id).where(Card.customer_id == customer_id).scalar_subquery()

    def count(model, where) -> int:
        return int(s.scalar(select(func.count()).select_from(model).where(where)) or 0)

    removed = {
        "cards": count(Card, Card.customer_id == customer_id),
        "lock_tickets": count(LockTicket, LockTicket.card_id.in_(card_ids)),
        "reissue_requests": count(ReissueRequest, ReissueRequest.card_id.in_(card_ids)),
        "handoffs": count(Handoff, Handoff.customer_id == customer_id),
        "notifications": count(OutboxMessage, OutboxMessage.customer_id == customer_id),
    }
    deleted_at = records.when(customer.deleted_at)
    s.expunge(customer)
    s.execute(delete(OutboxMessage).where(OutboxMessage.customer_id == customer_id))
    s.execute(delete(Customer).where(Customer.id == customer_id))
    uow.repo.audit(operator, "customer.purged",
                   before={"customer_ref": customer_id, "deleted_at": deleted_at, **removed},
                   after={"retention_days": round(older_than.total_seconds() / 86400, 2)})
    return True
