"""The Authentication component: who is calling, send a one-time code, check it.

A session parameter proves nothing; only `verify_otp` makes a session verified, and it records that in the store.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from typing import Any

import pyotp
from pydantic import BaseModel, ConfigDict, model_validator

from cardstore.models import AuthToken, Customer, OtpChallenge, VerifiedSession
from contact import e164, mask_email, mask_phone, national_digits, parse_phone, sms_capable
from handlers import abuse, notices
from handlers.call import Call
from handlers.errors import (
    AuthRequired, ChannelNotRegistered, CustomerNotFound, InvalidParameter, OtpDisabled, OtpRateLimited,
)
from handlers.values import OtpCode, PhoneAsGiven, PhoneE164, SmallInt, Word

CHANNELS = ("sms", "email")


class Params(BaseModel):
    model_config = ConfigDict(extra="ignore")


class VerifyUserParams(Params):
    phone_number: PhoneE164 | None = None


class VerifyUserResult(BaseModel):
    user_found: bool
    phone_number: str | None = None
    auth_level: int | None = None
    registered_phone_last4: str | None = None
    email_registered: bool | None = None
    card_count: int | None = None


def verify_user(params: VerifyUserParams, call: Call) -> VerifyUserResult:
    """Identify the caller by the number they gave, or by the caller ID the telephony gateway passed.

    Before this session has verified the customer it learns only what the caller could guess: found or not (the
    flow re-asks the number when not), the number itself and its last four digits. Card count and e-mail presence
    come once a code is verified (here, or from verify_otp).
    """
    ani = call.caller_id_e164()
    phone = params.phone_number or ani
    if phone is None:
        # A withheld caller ID and no number given yet is normal: the flow asks the caller for the number.
        return VerifyUserResult(user_found=False)
    customer, verified = call.identified_customer(phone)
    if not verified:
        abuse.lookup(call)
    if customer is None:
        return VerifyUserResult(user_found=False)
    if verified:
        level = 1
    elif ani is not None and ani == customer.phone_e164:
        level = 0  # identified by the line it calls from; a code is still needed for anything that matters
    else:
        level = -1
    result = VerifyUserResult(
        user_found=True,
        phone_number=national_digits(customer.phone_e164),
        auth_level=level,
        registered_phone_last4=customer.phone_e164[-4:],
    )
    if verified:
        result.email_registered = bool(customer.email)
        result.card_count = len(customer.cards)
    return result


class SendOtpParams(Params):
    phone_number: PhoneE164
    otp_channel: Word = "sms"
    max_otp_retry_count: SmallInt | None = None


class SendOtpResult(BaseModel):
    otp_sent: bool
    otp_channel: str
    otp_destination_masked: str | None
    otp_expires_in_s: int


def send_otp(params: SendOtpParams, call: Call) -> SendOtpResult:
    """Open a new challenge for this session (closing any older one) and queue the code to the customer.

    Counted against the abuse limits (handlers/abuse.py) of this session's class before anything is sent. Before
    verification an e-mail request answers alike whether or not an address is on file (without one, nothing is
    sent) and names no address.
    """
    if params.otp_channel not in CHANNELS:
        raise InvalidParameter("otp_channel must be sms or email")
    customer, verified = call.identified_customer(params.phone_number)
    if not verified:
        abuse.lookup(call)
    if customer is None:
        raise CustomerNotFound("no customer with that phone number")
    # Row lock: parallel sends see each other's counts, so the send limits hold across sessions.
    customer = call.uow.repo.customer_for_update(customer.id)
    if customer.otp_disabled_at is not None:
        raise OtpDisabled("OTP is disabled for this customer")
    settings = call.settings
    channel = params.otp_channel
    # No address on file: a verified session is told; an unverified one gets the answer an address would give, and
    # nothing is sent (the caller declined a text; an e-mail has nowhere to go), so it learns nothing either way.
    undeliverable = channel == "email" and not customer.email
    if undeliverable and verified:
        raise ChannelNotRegistered("no e-mail address registered")
    if channel == "sms" and not sms_capable(customer.phone_e164, allow_unknown=settings.sms_to_unclassified):
        raise ChannelNotRegistered("the registered number cannot take a text message")
    abuse.before_send(call, customer, abuse.session_class(call, customer))

    repo = call.uow.repo
    for old in repo.challenges_in_session(customer.id, call.session):
        if old.status == "pending":
            old.status = "superseded"
    code = _new_code(customer, settings.otp_test_numbers, settings.default_region)
    max_attempts = settings.otp_max_attempts
    if params.max_otp_retry_count is not None:
        max_attempts = max(1, min(max_attempts, params.max_otp_retry_count))
    challenge = repo.add(
        OtpChallenge(
            customer_id=customer.id,
            session=call.session,
            channel=channel,
            code_hash=code_hash(settings.otp_hash_key, customer.id, call.session, code),
            created_at=call.now,
            expires_at=call.now + dt.timedelta(seconds=settings.otp_ttl_seconds),
            max_attempts=max_attempts,
        )
    )
    if undeliverable:
        masked = None
    else:
        masked = mask_email(customer.email) if channel == "email" else mask_phone(customer.phone_e164)
        notices.enqueue(repo, customer, "otp", channel, call.language, secret=code,
                        minutes=settings.otp_ttl_seconds // 60, expires_at=challenge.expires_at)
    repo.flush()
    repo.audit(
        call.actor, "otp.sent" if masked else "otp.undeliverable", customer=customer, session=call.session,
        after={"challenge_id": challenge.id, "channel": channel, "destination": masked},
    )
    call.uow.commit()
    # The phone's last four the caller gave; an address only to a session that already proved who it is.
    shown = masked if params.otp_channel == "sms" or verified else None
    return SendOtpResult(
        otp_sent=True,
        otp_channel=params.otp_channel,
        otp_destination_masked=shown,
        otp_expires_in_s=settings.otp_ttl_seconds,
    )


def _new_code(customer: Customer, test_numbers: dict[str, str], region: str) -> str:
    for number, fixed in test_numbers.items():
        if e164(parse_phone(number, region)) == customer.phone_e164:
            return fixed
    # A fresh random secret from the OS CSPRNG each time; HOTP turns it into 6 digits.
    return pyotp.HOTP(pyotp.random_base32()).at(0)


def code_hash(key: str, customer_id: int, session: str, code: str) -> str:
    """Keyed hash of a code, bound to the customer and the session it was sent for."""
    message = f"{customer_id}\x1f{session}\x1f{code}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


class VerifyOtpParams(Params):
    phone_number: PhoneE164
    otp_code: OtpCode
    # phone_number as this turn gave it, kept with the verified session: a lock later in the session that sends the
    # same text is matched to the session's customer without parsing it again (handlers.lock_card, issue 15).
    phone_text: PhoneAsGiven | None = None

    @model_validator(mode="before")
    @classmethod
    def _phone_as_given(cls, data: Any) -> Any:
        if isinstance(data, dict) and "phone_number" in data:
            return {**data, "phone_text": data["phone_number"]}
        return data


class VerifyOtpResult(BaseModel):
    otp_verified: bool
    otp_attempts_left: int
    auth_level: int | None = None
    otp_expired: bool | None = None
    transfer_reason: str | None = None
    auth_token: str | None = None  # only when the edge asked for a credential (Call.issue_credential)
    # Once verified, what verify_user keeps from an unverified session (the flow picks channels and pages by them).
    email_registered: bool | None = None
    card_count: int | None = None


def verify_otp(params: VerifyOtpParams, call: Call) -> VerifyOtpResult:
    """Check a code against this session's open challenge. Wrong codes count per challenge, and per customer and
    class and per session in the abuse limits (which throttle; they never disable the customer)."""
    nothing_to_check = VerifyOtpResult(otp_verified=False, otp_attempts_left=0)
    customer, _ = call.identified_customer(params.phone_number)
    if customer is None:
        return nothing_to_check  # a stranger's number answers as a customer's without a code sent in this session
    # Row lock: sessions guessing in parallel must each count on the failures the previous one left (no lost update).
    customer = call.uow.repo.customer_for_update(customer.id)
    if customer.otp_disabled_at is not None:
        raise OtpDisabled("OTP is disabled for this customer")
    repo = call.uow.repo
    challenge = repo.open_challenge(customer.id, call.session)
    if challenge is None:
        # Never sent, already used (a replay), or used up: nothing to check against.
        return nothing_to_check
    if call.now >= challenge.expires_at:
        challenge.status = "expired"
        repo.audit(call.actor, "otp.expired", customer=customer, session=call.session,
                   after={"challenge_id": challenge.id})
        call.uow.commit()
        return VerifyOtpResult(otp_verified=False, otp_attempts_left=0, otp_expired=True)
    limits = abuse.failure_limits(call, customer, abuse.session_class(call, customer))
    abuse.check(call, limits, OtpRateLimited)  # before the code is compared: a throttled guess is no guess

    expected = challenge.code_hash
    given = code_hash(call.settings.otp_hash_key, customer.id, call.session, params.otp_code)
    if pyotp.utils.strings_equal(expected, given):
        challenge.status = "verified"
        customer.otp_failures = 0
        abuse.reset(call, limits)
        repo.add(VerifiedSession(session=call.session, customer_id=customer.id, verified_at=call.now,
                                 phone_text=params.phone_text, phone_e164=customer.phone_e164))
        after: dict[str, object] = {"challenge_id": challenge.id}
        token = None
        if call.issue_credential:
            token, credential = _new_credential(customer, call)
            after["credential_id"] = credential.id
        repo.audit(call.actor, "otp.verified", customer=customer, session=call.session, after=after)
        call.uow.commit()
        result = VerifyOtpResult(otp_verified=True, otp_attempts_left=challenge.max_attempts - challenge.attempts,
                                 auth_level=1, email_registered=bool(customer.email), card_count=len(customer.cards))
        if token is not None:
            result.auth_token = token
        return result

    challenge.attempts += 1
    customer.otp_failures += 1  # for operators (customers show): wrong codes in a row, whoever typed them
    abuse.count(call, limits)
    left = max(challenge.max_attempts - challenge.attempts, 0)
    repo.audit(call.actor, "otp.failed", customer=customer, session=call.session,
               after={"challenge_id": challenge.id, "attempts_left": left, "consecutive_failures": customer.otp_failures})
    if left == 0:
        challenge.status = "exhausted"
    call.uow.commit()
    if left == 0:
        return VerifyOtpResult(otp_verified=False, otp_attempts_left=0, transfer_reason="max_no_match")
    return VerifyOtpResult(otp_verified=False, otp_attempts_left=left)


# --- the credential of the flexible edge ------------------------------------------------------------------------
# A flexible call carries no CX session, so the session a code was verified in travels as a bearer token: 32 random
# bytes from the OS CSPRNG, prefixed so that a leaked one is recognisable (and scrubbed from logs), stored only as
# its SHA-256 (a token this long needs no key or salt: it cannot be guessed, only stolen).
CREDENTIAL_PREFIX = "lcat_"
CREDENTIAL_SHAPE = re.compile(r"lcat_[A-Za-z0-9_-]{43}")


def credential_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_credential(customer: Customer, call: Call) -> tuple[str, AuthToken]:
    token = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    credential = call.uow.repo.add(AuthToken(token_hash=credential_hash(token), customer_id=customer.id,
                                             phone_e164=customer.phone_e164, session=call.session,
                                             issued_at=call.now))
    call.uow.repo.flush()
    return token, credential


def credential_session(token: str, phone_e164: str, call: Call) -> str:
    """The verified session a flexible call's credential stands for, if it still speaks for this number's owner.

    AuthRequired when it is malformed or unknown, older than VERIFIED_SESSION_TTL_SECONDS, issued to another
    customer or another number, or its customer was deleted or has changed number since. The handler then applies
    the standard rules to that session (the verified window for reads, the step-up window for changes).
    """
    if not token:
        raise AuthRequired("no credential presented")
    if not isinstance(token, str) or CREDENTIAL_SHAPE.fullmatch(token) is None:
        raise AuthRequired("credential malformed")
    credential = call.uow.repo.auth_token(credential_hash(token))
    if credential is None:
        raise AuthRequired("credential unknown")
    customer = call.uow.repo.customer(credential.customer_id)
    if customer is None or customer.deleted_at is not None:
        raise AuthRequired("credential of a deleted customer")
    if customer.phone_e164 != credential.phone_e164:
        raise AuthRequired("credential issued before the customer's number changed")
    if phone_e164 != credential.phone_e164:
        raise AuthRequired("credential issued to another customer")
    if call.now - credential.issued_at > dt.timedelta(seconds=call.settings.verified_session_ttl_seconds):
        raise AuthRequired("credential expired")
    return credential.session
