"""Ground floor: phone numbers and e-mail addresses — parsing, canonical forms and masking — for every room
(the webhook's handlers, the store's fixtures, notices, the back office)."""
from __future__ import annotations

import functools
import math
import re
import unicodedata
from typing import Any

import phonenumbers

from safetext import escaped


def phone_text(value: Any) -> str:
    """The text `parse_phone` gives phonenumbers for a value (a double, whose leading zero is lost, as its digits;
    NFKC, stripped): the same value always gives the same text. ValueError for what cannot be a number at all."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and value > 0:
        value = str(int(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("phone number is not a phone number")
    return unicodedata.normalize("NFKC", value).strip()


def parse_phone(value: Any, region: str) -> phonenumbers.PhoneNumber:
    """A phone number parsed with `phonenumbers`; a double (leading zero lost) is read as national digits."""
    text = phone_text(value)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        raise ValueError("phone number is not a phone number") from None
    # "possible", not "valid": validity metadata lags newly allocated ranges, and a bank's records come first.
    if not phonenumbers.is_possible_number(number):
        raise ValueError("phone number is not a phone number")
    return number


def e164(number: phonenumbers.PhoneNumber) -> str:
    """The number in E.164 ('+819012345041'). Remembers which parsed number it wrote (see `phone_type`)."""
    text = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if text not in _RECENT:
        if len(_RECENT) >= _RECENT_MAX:
            try:
                del _RECENT[next(iter(_RECENT))]  # the oldest (dicts keep insertion order)
            except (KeyError, RuntimeError, StopIteration):  # another thread evicted it, or is adding one
                pass
        _RECENT[text] = number
    return text


# The parsed number behind each E.164 string `e164` wrote lately (it parsed nothing itself: its callers did). A
# lock's notice goes to the number the caller just gave: `phone_type` then reads the type off that parse instead of
# parsing the same number again (~60 µs, issue 15). Nobody changes a PhoneNumber once parsed.
_RECENT: dict[str, phonenumbers.PhoneNumber] = {}
_RECENT_MAX = 4096


def national_digits(phone_e164: str) -> str:
    """The number as the seed's output wants it: without country code, e.g. '09012345041'."""
    number = phonenumbers.parse(phone_e164)
    national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    return "".join(ch for ch in national if ch.isdigit())


def mask_phone(phone_e164: str) -> str:
    """Only the last four digits, for logs and destination prompts: '*******5041'."""
    return "*" * max(len(phone_e164) - 4, 0) + phone_e164[-4:]


def mask_email(email: str) -> str:
    """'hanako.sato@example.jp' -> 'h***@example.jp'; control characters a stored address may hold are escaped."""
    local, _, domain = email.partition("@")
    return escaped(f"{local[:1]}***@{domain}", multiline=False)


_EMAIL_IN_TEXT = re.compile(r"[^\s@<>\"'(),;:]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
# Seven or more digits, possibly split by spaces, hyphens, dots or a leading +: a phone number (or worse).
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_NUMBER_IN_TEXT = re.compile(r"\+?\d(?:[\d\s().-]{5,}\d)")


def mask_in_text(text: str) -> str:
    """Free text (an SMTP server's error) with e-mail addresses and long digit runs masked as elsewhere."""
    text = _EMAIL_IN_TEXT.sub(lambda m: mask_email(m.group(0)), text)

    def number(m: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", m.group(0))
        if len(digits) < 7 or _DATE.fullmatch(m.group(0).strip()):
            return m.group(0)
        return mask_phone(digits)

    return _NUMBER_IN_TEXT.sub(number, text)


# What phonenumbers calls a number that can take a text message. Everything else — premium-rate, shared-cost,
# toll-free, UAN, pager, voicemail, VoIP, personal, plain fixed line, and numbers it cannot classify — is never
# texted: SMS pumping earns its money on exactly those ranges (issue 12).
SMS_TYPES = frozenset({phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE})
# Ranges that cost the sender money or send the revenue to the range's owner: a customer record with one of these
# is refused by the importer, not merely never texted.
COST_RISK_TYPES = frozenset({
    phonenumbers.PhoneNumberType.PREMIUM_RATE, phonenumbers.PhoneNumberType.SHARED_COST,
    phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.UAN,
})


_TYPE_NAMES = {v: k for k, v in vars(phonenumbers.PhoneNumberType).items() if k.isupper()}


@functools.lru_cache(maxsize=4096)  # a pure function of the string; a caller's number recurs over a session's turns
def phone_type(phone_e164: str) -> str:
    """What phonenumbers makes of a number, by name ('MOBILE', 'PREMIUM_RATE', 'UNKNOWN', ...)."""
    number = _RECENT.get(phone_e164)
    if number is None:
        try:
            number = phonenumbers.parse(phone_e164)
        except phonenumbers.NumberParseException:
            return "UNKNOWN"
    return _TYPE_NAMES.get(phonenumbers.number_type(number), "UNKNOWN")


def sms_capable(phone_e164: str, *, allow_unknown: bool = False) -> bool:
    """May a text message go to this number? MOBILE or FIXED_LINE_OR_MOBILE only; an unclassified number only when
    `allow_unknown` (development: the demo customers' 090-0000 numbers are not allocated ranges)."""
    kind = getattr(phonenumbers.PhoneNumberType, phone_type(phone_e164))
    if kind in SMS_TYPES:
        return True
    return allow_unknown and kind == phonenumbers.PhoneNumberType.UNKNOWN


def cost_risk(phone_e164: str) -> str | None:
    """The type's name when a number is premium-rate, shared-cost, toll-free or UAN (never a customer's); else None."""
    name = phone_type(phone_e164)
    return name if getattr(phonenumbers.PhoneNumberType, name) in COST_RISK_TYPES else None
