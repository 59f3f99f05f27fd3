"""The shapes CX values arrive in, and their canonical forms.

CX sends every number as a double (`4444.0`; `42.0` for card "0042"; `1.0` for auth level 1); callers type
full-width digits (`４４４４`) and phone numbers with spaces or hyphens. These types accept all of that and
nothing else: a control character anywhere (ESC, BEL, a trailing newline…) refuses the value rather than being
stripped or folded away, since no CX value we read legitimately holds one.
"""
from __future__ import annotations

import functools
import math
import unicodedata
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainValidator, ValidationInfo

from contact import e164, parse_phone, phone_text
from safetext import has_controls

MAX_TEXT = 200  # no CX parameter we read is longer; longer input is refused, not truncated


def _digits(value: Any, width: int, name: str) -> str:
    """A fixed-width digit string from a str, int or integral float; zero-padded on the left."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be {width} digits")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value) or value < 0:
            raise ValueError(f"{name} must be {width} digits")
        value = str(int(value))
    elif isinstance(value, int):
        if value < 0:
            raise ValueError(f"{name} must be {width} digits")
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_TEXT or has_controls(value):
        raise ValueError(f"{name} must be {width} digits")
    text = unicodedata.normalize("NFKC", value).strip().replace(" ", "").replace("-", "")
    if text.endswith(".0") and text[:-2].isdigit():
        text = text[:-2]
    if not (text.isascii() and text.isdigit()) or len(text) > width:
        raise ValueError(f"{name} must be {width} digits")
    return text.zfill(width)


def last4(value: Any) -> str:
    return _digits(value, 4, "last four digits")


def otp_code(value: Any) -> str:
    return _digits(value, 6, "code")


def small_int(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be a whole number")
    if isinstance(value, str):
        if has_controls(value):
            raise ValueError("must be a whole number")
        value = unicodedata.normalize("NFKC", value).strip()
        if len(value) > 10:
            raise ValueError("must be a whole number")
        try:
            value = float(value)
        except ValueError:
            raise ValueError("must be a whole number") from None
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError("must be a whole number")
        value = int(value)
    if not isinstance(value, int) or abs(value) > 1_000_000:
        raise ValueError("must be a whole number")
    return value


def word(value: Any) -> str:
    """An enum-like word: case and width folded, e.g. 'SMS' / 'ｓｍｓ' -> 'sms'."""
    if not isinstance(value, str) or len(value) > MAX_TEXT or has_controls(value):
        raise ValueError("must be text")
    return unicodedata.normalize("NFKC", value).strip().casefold()


def zip_code(value: Any) -> str:
    """A postal code as digits (JP '123-4567' -> '1234567'); CX may send it as a double."""
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and value >= 0:
        value = str(int(value))
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > 20 or has_controls(value):
        raise ValueError("zip code must be digits")
    text = unicodedata.normalize("NFKC", value).strip().replace("-", "").replace(" ", "").replace("〒", "")
    if not (text.isascii() and text.isdigit() and 3 <= len(text) <= 10):
        raise ValueError("zip code must be digits")
    return text


Last4 = Annotated[str, BeforeValidator(last4)]
OtpCode = Annotated[str, BeforeValidator(otp_code)]
SmallInt = Annotated[int, BeforeValidator(small_int)]
Word = Annotated[str, BeforeValidator(word)]
ZipCode = Annotated[str, BeforeValidator(zip_code)]


def _phone_e164(value: Any, info: ValidationInfo) -> str:
    region = (info.context or {}).get("region", "JP")
    if isinstance(value, str) and has_controls(value):
        raise ValueError("phone number is not a phone number")
    if isinstance(value, (str, int, float)):  # hashable: one caller's number recurs on every turn of a session
        return _e164_of(value, region)
    return e164(parse_phone(value, region))


# Sized for the sessions one worker has in flight at full load (~1,500 calls/s, a session's ~10 calls over ~2 min:
# ~16k callers), ~290 bytes an entry (~5 MB); typed: True and 1, "1" and 1 stay apart; errors are not cached.
@functools.lru_cache(maxsize=16384, typed=True)
def _e164_of(value: str | int | float, region: str) -> str:
    # phonenumbers.parse is ~20–40 µs, the largest single cost of validating a webhook's parameters.
    return e164(parse_phone(value, region))


# Validate with `context={"region": settings.default_region}`; the value becomes E.164.
PhoneE164 = Annotated[str, BeforeValidator(_phone_e164)]


class PhoneText(str):
    """A phone number as a turn gave it, not parsed: `contact.phone_text` of the value (no control character, at most
    40 characters, NFKC, stripped). A lock first matches it against the text its session verified with (issue 15:
    phonenumbers is the largest cost of a lock by a caller this process has not seen); `e164` parses it."""

    __slots__ = ()

    def e164(self, region: str) -> str:
        """The number in E.164 (ValueError when it is not a phone number)."""
        return _e164_of(str(self), region)


def _phone_as_given(value: Any) -> PhoneText:
    if isinstance(value, str) and has_controls(value):
        raise ValueError("phone number is not a phone number")
    return PhoneText(phone_text(value))


# The value stays the caller's text (a PhoneText); nothing is parsed.
PhoneAsGiven = Annotated[str, PlainValidator(_phone_as_given)]
