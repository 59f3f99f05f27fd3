"""The audit trail: who (the system or a named operator) changed what, and when — newest first; and its export
to CSV that a spreadsheet opens as text, never as formulas."""
from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any, Iterable
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import aliased

from backoffice import records
from backoffice.errors import BadInput, NotFound
from cardstore.models import AuditEvent, Card, Customer
from cardstore.uow import UnitOfWork
from contact import mask_phone
from safetext import escaped

# Every action the software writes, for filters and for telling an operator the valid names.
ACTIONS = (
    "card.created", "card.locked", "card.reactivated", "card.reissue_requested",
    "customer.created", "customer.deleted", "customer.imported", "customer.merged", "customer.purged",
    "customer.revealed", "customer.viewed",
    "handoff.answered", "handoff.created", "handoff.viewed",
    "import.completed", "import.previewed", "import.started",
    "otp.disabled", "otp.enabled", "otp.expired", "otp.failed", "otp.sent", "otp.verified",
    "outbox.failed", "outbox.requeued", "outbox.sent",
    "audit.exported",
)
CSV_COLUMNS = ("id", "at", "actor", "action", "customer", "card", "changes")
# A cell a spreadsheet would run as a formula (OWASP "CSV injection"): these first characters, and tab/CR.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def check_action(value: str | None) -> str | None:
    """An action name as a filter, or BadInput listing the valid ones."""
    if value is None or value == "":
        return None
    if value not in ACTIONS:
        raise BadInput(f"{value!r} is not an audit action; valid actions: {', '.join(ACTIONS)}")
    return value


def list_events(uow: UnitOfWork, *, phone_e164: str | None = None, customer_id: int | None = None,
                actor: str | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
                action: str | None = None, limit: int = 200, zone: ZoneInfo | None = None) -> list[dict[str, Any]]:
    """Audit rows matching every filter given, newest first, at most `limit`."""
    action = check_action(action)
    card = aliased(Card)
    q = (select(AuditEvent, Customer.phone_e164, card)
         .outerjoin(Customer, Customer.id == AuditEvent.customer_id)
         .outerjoin(card, card.id == AuditEvent.card_id)
         .order_by(AuditEvent.id.desc()).limit(limit))
    if phone_e164 is not None:
        customer_id = uow.session.scalar(select(Customer.id).where(Customer.phone_e164 == phone_e164))
        if customer_id is None:
            raise NotFound(f"no customer with phone number {mask_phone(phone_e164)}")
    if customer_id is not None:
        q = q.where(AuditEvent.customer_id == customer_id)
    if actor is not None:
        q = q.where(AuditEvent.actor == actor)
    if since is not None:
        q = q.where(AuditEvent.at >= since)
    if until is not None:
        q = q.where(AuditEvent.at < until)
    if action is not None:
        q = q.where(AuditEvent.action == action)
    return [records.audit(e, phone_e164=phone, card=c, zone=zone) for e, phone, c in uow.session.execute(q)]


def csv_cell(value: Any) -> str:
    """A value as a CSV cell a spreadsheet shows as text: formula starts get a leading apostrophe, controls escaped."""
    raw = "" if value is None else str(value)
    text = escaped(raw, multiline=False)
    return "'" + text if raw.startswith(_FORMULA_START) else text


def to_csv(rows: Iterable[dict[str, Any]]) -> str:
    """Audit rows (as `list_events` gives them) as CSV text, one change per line inside the `changes` cell."""
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow([csv_cell("; ".join(row["changes"]) if key == "changes" else row.get(key))
                         for key in CSV_COLUMNS])
    return out.getvalue()
