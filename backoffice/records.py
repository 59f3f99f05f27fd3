"""How store rows look to an operator: plain dicts (the JSON output), with cards and e-mail masked, and the control
characters a stored text may hold (an imported name, a note, an SMTP error) escaped so the terminal shows them
instead of acting on them (ESC sequences, OSC 52 writing the clipboard, BEL)."""
from __future__ import annotations

import datetime as dt
from typing import Any

from cardstore.models import AuditEvent, Card, Handoff, OutboxMessage
from contact import mask_email, mask_phone
from controls import escape_controls


def shown(text: str | None) -> str | None:
    """Stored free text as an operator may see it."""
    return None if text is None else escape_controls(text)


def when(moment: dt.datetime | None) -> str | None:
    """Store times are naive UTC; operators get ISO 8601 with the Z that says so."""
    return None if moment is None else moment.replace(microsecond=0).isoformat() + "Z"


def card_label(card: Card | None) -> str | None:
    """A card as an operator names it: vendor and last four only; the store holds nothing more."""
    return None if card is None else f"{shown(card.vendor)} **** {card.last4}"


def email(value: str | None, *, reveal: bool = False) -> str | None:
    if value is None or reveal:
        return shown(value)
    return mask_email(value)


def handoff(h: Handoff, phone_e164: str | None = None) -> dict[str, Any]:
    return {
        "id": h.id,
        "status": h.status,
        "requested_action": h.requested_action,
        "customer": mask_phone(phone_e164) if phone_e164 else None,
        "card": card_label(h.card),
        "card_status": h.card.status,
        "session": h.session,
        "created_at": when(h.created_at),
        "answered_at": when(h.answered_at),
        "answered_by": shown(h.answered_by),
        "resolution": h.resolution,
        "note": shown(h.note),
    }


def outbox(m: OutboxMessage) -> dict[str, Any]:
    """A notification without its body: an unsent one may hold a one-time code."""
    return {
        "id": m.id,
        "kind": m.kind,
        "channel": m.channel,
        "to": mask_email(m.to) if m.channel == "email" else mask_phone(m.to),
        "status": m.status,
        "attempts": m.attempts,
        "created_at": when(m.created_at),
        "next_attempt_at": when(m.next_attempt_at) if m.status in ("pending", "failed") else None,
        "sent_at": when(m.sent_at),
        "last_error": shown(m.last_error),
    }


def audit(e: AuditEvent, *, phone_e164: str | None = None, card: Card | None = None) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": when(e.at),
        "actor": shown(e.actor),
        "action": e.action,
        "customer": mask_phone(phone_e164) if phone_e164 else None,
        "card": card_label(card),
        "session": e.session,
        "before": e.before,
        "after": e.after,
    }
