"""Operator input: names, durations, dates and phone numbers, checked once and turned into canonical values."""
from __future__ import annotations

import datetime as dt
import re
import unicodedata

from backoffice.errors import BadInput
from contact import e164, mask_phone, parse_phone

# Actors the software itself writes ("system:webhook", "system:fixtures" …): a person may not sign as one.
SYSTEM_PREFIX = "system:"
MAX_OPERATOR = 100  # audit_events.actor
_DURATION = re.compile(r"^\s*(\d{1,5})\s*([hdwy])\s*$")
_UNITS = {"h": dt.timedelta(hours=1), "d": dt.timedelta(days=1), "w": dt.timedelta(weeks=1),
          "y": dt.timedelta(days=365)}


def operator(value: str | None) -> str:
    """The operator's name as it goes into the audit trail: trimmed, printable, not a system actor."""
    name = unicodedata.normalize("NFKC", value or "").strip()
    if not name:
        raise BadInput("--operator NAME is required: every change records who made it")
    if len(name) > MAX_OPERATOR or not name.isprintable():
        raise BadInput(f"--operator must be a printable name of at most {MAX_OPERATOR} characters")
    if name.casefold().startswith(SYSTEM_PREFIX):
        raise BadInput(f"--operator may not start with {SYSTEM_PREFIX!r}: those names are the system's own")
    # 'ѕystem:webhook' (Cyrillic ѕ) reads as the webhook in the audit trail: Latin letters mixed with Cyrillic or
    # Greek ones are refused (no one's name is spelt that way; look-alikes are).
    scripts = {_script(ch) for ch in name if ch.isalpha()}
    if "LATIN" in scripts and scripts & {"CYRILLIC", "GREEK"}:
        raise BadInput("--operator mixes Latin letters with Cyrillic or Greek look-alikes: type the name again")
    return name


def _script(ch: str) -> str:
    return unicodedata.name(ch, "?").split(" ", 1)[0]


def duration(value: str) -> dt.timedelta:
    """'180d', '26w', '1y', '12h' -> a timedelta (a year is 365 days; months are ambiguous and not accepted)."""
    match = _DURATION.match(value or "")
    if not match:
        raise BadInput(f"{value!r} is not a duration: use a number and a unit, h d w or y (e.g. 180d)")
    amount = int(match.group(1))
    if amount == 0:
        raise BadInput("a duration must be longer than zero")
    return amount * _UNITS[match.group(2)]


def since(value: str, now: dt.datetime, zone: dt.tzinfo | None = None) -> dt.datetime:
    """A date or time ('2026-11-23', '2026-11-23T09:30': in `zone`, UTC if none), or a duration back from now
    ('7d'); as the store keeps times, naive UTC."""
    text = (value or "").strip()
    if _DURATION.match(text):
        return now - duration(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"{value!r} is not a date: use YYYY-MM-DD, YYYY-MM-DDTHH:MM or a duration like 7d") from None
    if moment.tzinfo is None and zone is not None:
        moment = moment.replace(tzinfo=zone)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return moment


def phone(value: str, region: str) -> str:
    """A phone number as the store keys it (E.164), or BadInput naming what was wrong."""
    try:
        return e164(parse_phone(value, region))
    except ValueError:
        raise BadInput(f"{value!r} is not a phone number") from None


def masked_phone(phone_e164: str) -> str:
    return mask_phone(phone_e164)
