"""How store rows look to an operator: plain dicts (the JSON output and the console's pages), with cards and
e-mail masked, times in the operator's zone, lock types and audit changes in words, and the control characters a
stored text may hold (an imported name, a note, an SMTP error) escaped so a terminal shows them instead of acting
on them (ESC sequences, OSC 52 writing the clipboard, BEL)."""
from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

from cardstore.models import AuditEvent, Card, Handoff, OutboxMessage
from contact import mask_email, mask_in_text, mask_phone
from safetext import escaped

UTC = ZoneInfo("UTC")
# A lock ticket's type as the call centre says it (the webhook's values are the seed's card statuses).
LOCK_TYPES = {"inactive": "temporary", "blocked": "permanent"}


def shown(text: str | None) -> str | None:
    """Stored free text as an operator may see it."""
    return None if text is None else escaped(text)


def when(moment: dt.datetime | None, zone: ZoneInfo | None = None) -> str | None:
    """Store times are naive UTC. Without a zone: ISO 8601 with the Z that says so; with one, that zone's offset."""
    if moment is None:
        return None
    moment = moment.replace(microsecond=0)
    if zone is None:
        return moment.isoformat() + "Z"
    return moment.replace(tzinfo=dt.timezone.utc).astimezone(zone).isoformat()


def card_label(card: Card | None) -> str | None:
    """A card as an operator names it: vendor and last four only; the store holds nothing more."""
    return None if card is None else f"{shown(card.vendor)} **** {card.last4}"


def email(value: str | None, *, reveal: bool = False) -> str | None:
    if value is None or reveal:
        return shown(value)
    return mask_email(value)


def lock_type(value: str) -> str:
    return LOCK_TYPES.get(value, value)


def handoff(h: Handoff, phone_e164: str | None = None, zone: ZoneInfo | None = None) -> dict[str, Any]:
    return {
        "id": h.id,
        "status": h.status,
        "requested_action": h.requested_action,
        "customer": mask_phone(phone_e164) if phone_e164 else None,
        "card": card_label(h.card),
        # `card_status` is the card's status now; the request was made when it was `card_status_at_request`.
        "card_status": h.card.status,
        "card_status_at_request": h.card_status_at_request,
        "session": h.session,
        "created_at": when(h.created_at, zone),
        "answered_at": when(h.answered_at, zone),
        "answered_by": shown(h.answered_by),
        "resolution": h.resolution,
        "note": shown(h.note),
    }


def outbox(m: OutboxMessage, zone: ZoneInfo | None = None) -> dict[str, Any]:
    """A notification without its body (an unsent one may hold a one-time code); its error with addresses masked."""
    return {
        "id": m.id,
        "kind": m.kind,
        "channel": m.channel,
        "to": mask_email(m.to) if m.channel == "email" else mask_phone(m.to),
        "status": m.status,
        "attempts": m.attempts,
        "created_at": when(m.created_at, zone),
        "next_attempt_at": when(m.next_attempt_at, zone) if m.status in ("pending", "failed") else None,
        "sent_at": when(m.sent_at, zone),
        # A gateway's error quotes the recipient ("<09012345678@sms…>: unknown user").
        "last_error": shown(mask_in_text(m.last_error)) if m.last_error else m.last_error,
    }


def changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[str]:
    """An audit row's change in words: 'status: inactive → active', one entry per field (keys in order)."""
    before, after = before or {}, after or {}
    out = []
    for key in [*before, *(k for k in after if k not in before)]:
        old, new = before.get(key), after.get(key)
        if key in before and key in after:
            out.append(f"{key}: {_value(old)}" + ("" if old == new else f" → {_value(new)}"))
        elif key in after:
            out.append(f"{key}: {_value(new)}")
        else:
            out.append(f"{key}: {_value(old)} → (removed)")
    return out


def _value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def audit(e: AuditEvent, *, phone_e164: str | None = None, card: Card | None = None,
          zone: ZoneInfo | None = None) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": when(e.at, zone),
        "actor": shown(e.actor),
        "action": e.action,
        "customer": mask_phone(phone_e164) if phone_e164 else None,
        "card": card_label(card),
        "session": e.session,
        "before": e.before,
        "after": e.after,
        "changes": changes(e.before, e.after),
    }
