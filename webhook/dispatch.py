"""`Service.handle(payload)`: one CX WebhookRequest in, one (status, WebhookResponse body) out.

The one place where domain errors become `transfer_reason = "webhook_error"` and a `webhook_error_code`.
Both entry points (the Flask route and the functions-framework function) call this and nothing else.
"""
from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError

from cardstore.errors import InvalidTransition, StoreUnavailable
from cardstore.uow import Store
from handlers import errors as handler_errors
from handlers.authentication import credential_session
from handlers.call import Call
from notify import Notifier
from settings import Settings
from webhook.protocol import WebhookRequest, response
from webhook.registry import REGISTRY, Registry, Route, UnknownTag
from webhook.upstream import PARAMETER as UPSTREAM_PARAMETER, UpstreamVerifier

log = logging.getLogger("lockcard.webhook")


class ErrorCode(enum.StrEnum):
    """`webhook_error_code` values: why a call failed. Each comes with transfer_reason = webhook_error."""

    AUTH_REQUIRED = "AUTH_REQUIRED"
    INVALID_PARAMETER = "INVALID_PARAMETER"
    CUSTOMER_NOT_FOUND = "CUSTOMER_NOT_FOUND"
    CARD_NOT_FOUND = "CARD_NOT_FOUND"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    REISSUE_LIMIT_REACHED = "REISSUE_LIMIT_REACHED"
    CHANNEL_NOT_REGISTERED = "CHANNEL_NOT_REGISTERED"
    OTP_RATE_LIMITED = "OTP_RATE_LIMITED"
    RATE_LIMITED = "RATE_LIMITED"
    OTP_DISABLED = "OTP_DISABLED"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    INTERNAL = "INTERNAL"


ERROR_CODES: dict[type[Exception], ErrorCode] = {
    handler_errors.AuthRequired: ErrorCode.AUTH_REQUIRED,
    handler_errors.InvalidParameter: ErrorCode.INVALID_PARAMETER,
    handler_errors.CustomerNotFound: ErrorCode.CUSTOMER_NOT_FOUND,
    handler_errors.CardNotFound: ErrorCode.CARD_NOT_FOUND,
    handler_errors.ChannelNotRegistered: ErrorCode.CHANNEL_NOT_REGISTERED,
    handler_errors.OtpRateLimited: ErrorCode.OTP_RATE_LIMITED,
    handler_errors.LookupRateLimited: ErrorCode.RATE_LIMITED,
    handler_errors.OtpDisabled: ErrorCode.OTP_DISABLED,
    InvalidTransition: ErrorCode.INVALID_TRANSITION,
    handler_errors.ReissueLimitReached: ErrorCode.REISSUE_LIMIT_REACHED,
    StoreUnavailable: ErrorCode.STORE_UNAVAILABLE,
}
WEBHOOK_ERROR = "webhook_error"


def error_code(exc: Exception) -> ErrorCode:
    """The code for a domain error (or a subclass of one)."""
    for cls in type(exc).__mro__:
        if cls in ERROR_CODES:
            return ERROR_CODES[cls]
    return ErrorCode.INTERNAL


class BadRequest(Exception):
    """The body is not a WebhookRequest we can route: HTTP 400, nothing else happens."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Turn:
    """What one call asks of a handler, whichever edge it came in by."""

    session: str  # the CX session path, or the flexible edge's stand-in for one
    parameters: dict[str, Any]
    language: str = "ja"
    caller_id: str | None = None
    credential: str | None = None  # a flexible call's auth_token, checked in the handler's transaction
    issue_credential: bool = False  # a flexible verify_otp: issue one when the code is right


@dataclass
class Done:
    """A handler's result, or why there is none (`code`, and the `reason` for the log only)."""

    result: BaseModel | None = None
    code: ErrorCode | None = None
    reason: str | None = None
    session: str | None = None  # the session the handler worked in (a credential's, for a flexible call)


@dataclass
class Outcome:
    """What one call came to, for the HTTP edge and the log line."""

    status: int
    body: dict[str, Any]
    tag: str | None = None
    session: str | None = None
    error_code: str | None = None
    latency_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class Service:
    """The webhook service: settings, the card store, the notifier (for the back office and the relay, never used
    while answering CX) and the tag registry, wired once."""

    def __init__(self, settings: Settings, store: Store, *, registry: Registry = REGISTRY) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.notifier = Notifier(settings)
        self.upstream = UpstreamVerifier.from_settings(settings)

    def handle(self, payload: Any) -> Outcome:
        """Route one WebhookRequest (already decoded JSON) by its tag; never raises."""
        started = time.perf_counter()
        try:
            outcome = self._handle(payload)
        except BadRequest as exc:
            outcome = Outcome(400, {"error": {"code": exc.code, "message": exc.message}}, error_code=exc.code)
        outcome.latency_ms = round((time.perf_counter() - started) * 1000, 2)
        return outcome

    def _handle(self, payload: Any) -> Outcome:
        if not isinstance(payload, dict):
            raise BadRequest("MALFORMED_REQUEST", "body must be a JSON object (a CX WebhookRequest)")
        try:
            request = WebhookRequest.model_validate(payload)
        except ValidationError as exc:
            where = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise BadRequest("MALFORMED_REQUEST", "not a CX WebhookRequest; bad or missing: " + ", ".join(where))
        tag = request.fulfillment_info.tag
        try:
            route = self.registry[tag]
        except UnknownTag as exc:
            raise BadRequest("UNKNOWN_TAG", str(exc)) from None
        session = request.session_info.session
        if not session:
            raise BadRequest("MALFORMED_REQUEST", "sessionInfo.session is required")
        done = self.run(route, Turn(session=session, parameters=request.parameters(),
                                    language=request.language_code, caller_id=request.caller_id()))
        if done.code is not None:
            return self._failure(tag, session, done.code, done.reason or "")
        return Outcome(200, response(done.result.model_dump(exclude_unset=True)), tag=tag, session=session)

    def run(self, route: Route, turn: Turn) -> Done:
        """Validate the parameters and run the tag's handler in one unit of work, whichever edge the call came by.

        Never raises: a domain error (or an unexpected one) comes back as `Done.code` with the reason for the log.
        A presented credential (`turn.credential`, the flexible edge) is checked in the same transaction as the
        handler's work, and replaces `turn.session` by the verified session it stands for.
        """
        context = {"region": self.settings.default_region}
        parameters = turn.parameters
        try:
            params = route.params.model_validate(parameters, context=context)
        except ValidationError as exc:
            names = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            return Done(code=ErrorCode.INVALID_PARAMETER, reason="invalid parameter: " + ", ".join(names))
        upstream_phone = None
        if self.upstream is not None and UPSTREAM_PARAMETER in parameters:
            upstream_phone, why = self.upstream.vouched_phone(parameters[UPSTREAM_PARAMETER], turn.session)
            if upstream_phone is None:
                log.warning("upstream assertion refused: %s", why, extra={"tag": route.tag})

        tag = route.tag
        result: BaseModel | None = None
        # A unique-key race (two deliveries of the same CX retry) loses once; the second run reads the winner's row.
        for attempt in (1, 2):
            try:
                with self.store.unit_of_work(read_only=route.read_only) as uow:
                    call = Call(uow=uow, settings=self.settings, session=turn.session, language=turn.language,
                                caller_id=turn.caller_id, issue_credential=turn.issue_credential,
                                upstream_phone=upstream_phone)
                    if turn.credential is not None:
                        # The lock keeps the turn's text (values.PhoneText): a credential speaks for an E.164 number.
                        phone = call.phone_e164(getattr(params, "phone_number", ""))
                        call.session = credential_session(turn.credential, phone, call)
                    result = route.handler(params, call)
                break
            except IntegrityError:
                if attempt == 2:
                    log.exception("integrity error after retry", extra={"tag": tag})
                    return Done(code=ErrorCode.INTERNAL, reason="integrity error")
            except tuple(ERROR_CODES) as exc:
                return Done(code=error_code(exc), reason=str(exc))
            except Exception:  # noqa: BLE001 - the edge: log it, answer webhook_error, never a traceback in a body
                log.exception("unexpected error", extra={"tag": tag})
                return Done(code=ErrorCode.INTERNAL, reason="unexpected error")
        # A notice the handler queued is committed with its change; the outbox relay delivers it. Nothing between
        # the commit and this answer touches a gateway: a stalled SMS provider cannot hold a CX turn.
        return Done(result=result, session=call.session)

    def _failure(self, tag: str, session: str, code: ErrorCode, reason: str) -> Outcome:
        body = response({"transfer_reason": WEBHOOK_ERROR, "webhook_error_code": code.value})
        return Outcome(200, body, tag=tag, session=session, error_code=code.value, extra={"reason": reason})
