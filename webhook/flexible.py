"""The flexible edge: `POST /flexible/<tag>`, one URL per webhook of Google's prebuilt components, over the same
handlers as `POST /webhook`.

A CX *flexible* webhook sends the JSON its request-body template renders (the seed's parameter names at top level)
and maps fields of our JSON answer back into parameters. So here: a plain object in, the handler's result at top
level out; a failure is a non-2xx status, because that is what raises the `webhook.error*` events Google's flows
branch on (a 200 with `transfer_reason` would look like success to them). No CX session travels with the body:
`send_otp` answers an opaque `otp_challenge` the code is bound to, `verify_otp` answers an `auth_token` (a
credential, see handlers/authentication.py) when the code is right, and every read and change presents it.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any, Callable

from handlers import account_services, authentication, lock_card
from webhook.dispatch import BadRequest, Done, ErrorCode, Outcome, Service, Turn
from webhook.registry import UnknownTag

# Failure -> HTTP status. CX raises webhook.error.bad-request for 400, .rejected for 401/403, .unavailable for
# 502/503/504, .not-found for 404 and an unreachable URL, and plain webhook.error for any other non-2xx. A domain
# "not found" (no such customer, no such card) is never 404: Google's flows report .not-found as a missing webhook.
STATUS: dict[str, int] = {
    ErrorCode.INVALID_PARAMETER: 400,
    ErrorCode.AUTH_REQUIRED: 403,
    ErrorCode.OTP_DISABLED: 403,
    ErrorCode.CUSTOMER_NOT_FOUND: 422,
    ErrorCode.CARD_NOT_FOUND: 422,
    ErrorCode.CHANNEL_NOT_REGISTERED: 422,
    ErrorCode.INVALID_TRANSITION: 409,
    ErrorCode.REISSUE_LIMIT_REACHED: 409,
    ErrorCode.OTP_RATE_LIMITED: 429,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.STORE_UNAVAILABLE: 503,
    ErrorCode.INTERNAL: 500,
}
# What the body says for each: fixed words, never the reason (that goes to the log line only).
MESSAGES: dict[str, str] = {
    ErrorCode.AUTH_REQUIRED: "the auth_token does not allow this call (missing, unknown, expired, or not this "
                             "customer's): verify a code again",
    ErrorCode.OTP_DISABLED: "one-time codes are disabled for this customer; an operator must re-enable them",
    ErrorCode.CUSTOMER_NOT_FOUND: "no customer has that phone number",
    ErrorCode.CARD_NOT_FOUND: "the customer has no card with those last four digits",
    ErrorCode.CHANNEL_NOT_REGISTERED: "the customer has no destination registered for that channel",
    ErrorCode.INVALID_TRANSITION: "the card's status does not allow this",
    ErrorCode.REISSUE_LIMIT_REACHED: "this card has had as many replacements as may be ordered by phone",
    ErrorCode.OTP_RATE_LIMITED: "too many codes sent or wrong codes typed; try again later",
    ErrorCode.RATE_LIMITED: "too many look-ups from this conversation; try again later",
    ErrorCode.STORE_UNAVAILABLE: "the card store did not answer",
    ErrorCode.INTERNAL: "unexpected error",
}

# The otp_challenge a flexible send_otp answers: a random handle that stands in for the CX session the code is
# bound to (the challenge row and the code's HMAC are keyed by the session string derived from it).
CHALLENGE_PREFIX = "lcoc_"
CHALLENGE_SHAPE = re.compile(r"lcoc_[A-Za-z0-9_-]{32}")
_LANGUAGE = re.compile(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8}){0,3}")
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_EDGE = "flexible/"  # the stand-in sessions' prefix: a CX session path starts with projects/


@dataclass(frozen=True)
class Contract:
    """The top-level fields one flexible endpoint takes: required ones, optional ones, and how it authenticates."""

    required: frozenset[str]
    optional: frozenset[str] = frozenset()
    credential: bool = True  # needs the auth_token of a verified code


def _contract(required: set[str], optional: set[str] = frozenset(), *, credential: bool = True) -> Contract:
    if credential:
        # Not "required": a template whose session has no auth_token yet renders null, and that caller is not
        # authenticated (403, webhook.error.rejected) rather than sending a malformed body (400).
        optional = {*optional, "auth_token"}
    # auth_level is accepted (the standard webhook's table lists it) and ignored: the credential decides.
    return Contract(frozenset(required), frozenset({*optional, "language_code"}), credential)


CARD = {"phone_number", "last_four_digit_of_card_number"}
# Keyed by handler: the tag strings live in the registry only.
CONTRACTS: dict[Callable[..., Any], Contract] = {
    authentication.verify_user: _contract(set(), {"phone_number", "caller_id"}, credential=False),
    authentication.send_otp: _contract({"phone_number"}, {"otp_channel", "max_otp_retry_count", "otp_challenge"},
                                       credential=False),
    authentication.verify_otp: _contract({"phone_number", "otp_challenge", "otp_code"}, credential=False),
    account_services.get_card_details: _contract({"phone_number"}, {"auth_level"}),
    lock_card.validate_card: _contract(CARD, {"auth_level"}),
    lock_card.lock_card_ticket_number: _contract(CARD | {"lock_type", "lock_reason"}),
    lock_card.reissue_card_number: _contract(CARD | {"zip_code"}),
    lock_card.request_reactivation: _contract(CARD),
}
_EDGE_FIELDS = {"auth_token", "otp_challenge", "caller_id", "language_code", "auth_level"}


def challenge_session(handle: str) -> str:
    """The session string a challenge handle stands for: its SHA-256, so the store never holds the handle."""
    return _EDGE + "otp/" + hashlib.sha256(handle.encode()).hexdigest()


PATH_PREFIX = "/flexible/"


def tag_of_path(path: str) -> str | None:
    """The tag a /flexible/<tag> path names (None for any other path)."""
    return path[len(PATH_PREFIX):] if path.startswith(PATH_PREFIX) else None


def handle(service: Service, tag: str, payload: Any) -> Outcome:
    """One flexible call: the body a CX request-body template rendered, for the webhook named `tag`."""
    try:
        route = service.registry[tag]
    except UnknownTag as exc:
        # A wrong URL really is a webhook that is not there: 404, CX's webhook.error.not-found.
        return _error(404, "UNKNOWN_TAG", str(exc), tag=None)
    contract = CONTRACTS[route.handler]
    try:
        fields = _fields(payload, contract)
        turn, extra = _turn(route.handler, fields)
    except BadRequest as exc:
        return _error(400, exc.code, exc.message, tag=tag)
    done = service.run(route, turn)
    return _outcome(tag, done, extra)


def _fields(payload: Any, contract: Contract) -> dict[str, Any]:
    """The body's fields, once it is an object holding exactly the contract's names; null counts as absent."""
    if not isinstance(payload, dict):
        raise BadRequest("MALFORMED_REQUEST", "body must be a JSON object")
    unknown = set(payload) - contract.required - contract.optional
    if unknown:
        raise BadRequest("UNKNOWN_FIELD", "fields not taken by this endpoint: " + _names(unknown)
                         + "; it takes " + ", ".join(sorted(contract.required | contract.optional)))
    fields = {k: v for k, v in payload.items() if v is not None}
    missing = contract.required - set(fields)
    if missing:
        raise BadRequest("MISSING_FIELD", "required fields missing or null: " + ", ".join(sorted(missing)))
    return fields


def _names(names: set[str]) -> str:
    # Field names are the caller's text: shown only when they look like names, never echoed at length.
    safe = sorted(n for n in names if _SAFE_NAME.fullmatch(n))
    others = len(names) - len(safe)
    return ", ".join(safe[:10] + ([f"{others} other(s)"] if others else []))


def _string(fields: dict[str, Any], name: str, shape: re.Pattern[str] | None = None, max_len: int = 200) -> str | None:
    value = fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > max_len or (shape is not None and not shape.fullmatch(value)):
        raise BadRequest("INVALID_PARAMETER", f"invalid parameter: {name}")
    return value


def _turn(handler: Callable[..., Any], fields: dict[str, Any]) -> tuple[Turn, dict[str, Any]]:
    """The Turn for the handler, and what the edge adds to the answer (a send_otp's otp_challenge)."""
    language = _string(fields, "language_code", _LANGUAGE, 35) or "ja"
    caller_id = _string(fields, "caller_id", max_len=40)
    # A bearer credential is shaped by us; any other string is simply not one (403 below, not 400).
    token = fields.get("auth_token")
    if token is not None and not isinstance(token, str):
        raise BadRequest("INVALID_PARAMETER", "invalid parameter: auth_token")
    challenge = _string(fields, "otp_challenge", CHALLENGE_SHAPE)
    parameters = {k: v for k, v in fields.items() if k not in _EDGE_FIELDS}
    extra: dict[str, Any] = {}
    if handler is authentication.verify_user:
        # Nothing to remember between calls: a fresh stand-in session, never a verified one.
        session = _EDGE + "anonymous/" + secrets.token_hex(16)
        return Turn(session=session, parameters=parameters, language=language, caller_id=caller_id), extra
    if handler is authentication.send_otp:
        # A resend in the same conversation passes the earlier handle back: the new code replaces the old one.
        challenge = challenge or CHALLENGE_PREFIX + secrets.token_urlsafe(24)
        extra["otp_challenge"] = challenge
        return Turn(session=challenge_session(challenge), parameters=parameters, language=language), extra
    if handler is authentication.verify_otp:
        assert challenge is not None  # required by its contract
        return Turn(session=challenge_session(challenge), parameters=parameters, language=language,
                    issue_credential=True), extra
    # Reads and changes: the session is the one the credential stands for (Service.run looks it up).
    return Turn(session=_EDGE + "credential", parameters=parameters, language=language, credential=token or ""), extra


def _outcome(tag: str, done: Done, extra: dict[str, Any]) -> Outcome:
    if done.code is not None:
        status = STATUS.get(done.code, 500)
        message = MESSAGES.get(done.code) or done.reason or done.code.value
        outcome = _error(status, done.code.value, message, tag=tag, session=done.session)
        outcome.extra["reason"] = done.reason
        return outcome
    assert done.result is not None
    body = {**done.result.model_dump(exclude_unset=True), **extra}
    return Outcome(200, body, tag=tag, session=done.session)


def _error(status: int, code: str, message: str, *, tag: str | None, session: str | None = None) -> Outcome:
    return Outcome(status, {"error": {"code": code, "message": message}}, tag=tag, session=session, error_code=code,
                   extra={"reason": message})
