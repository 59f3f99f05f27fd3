"""The Lock card component: check a card, lock it, order a replacement, hand a reactivation to a human.

Every change is made with its audit row and its notice in one transaction. A retry is answered from the record
of the first request, per (session, card, action), only while that answer is still true — the card still has the
status version the request left it at (a hand-off: still unanswered) — and within IDEMPOTENCY_WINDOW_SECONDS;
otherwise the request is processed as new, and refused if the card's state does not allow it.
"""
from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict

from cardstore.models import (BLOCKED, INACTIVE, LOCK_REASONS, WEBHOOK_TRANSITIONS, Card, Customer, Handoff,
                              ReissueRequest, check_lock)
from cardstore.errors import InvalidTransition
from cardstore.repository import LockTarget
from handlers import notices
from handlers.call import Call
from handlers.errors import CardNotFound, InvalidParameter, ReissueLimitReached
from handlers.values import Last4, PhoneAsGiven, PhoneE164, SmallInt, Word, ZipCode

DELIVERY_BUSINESS_DAYS = 3


class CardParams(BaseModel):
    model_config = ConfigDict(extra="ignore")
    phone_number: PhoneE164
    last_four_digit_of_card_number: Last4


def _card_to_change(params: CardParams, call: Call, *, step_up: bool) -> tuple[Customer, Card]:
    """The customer and their card, row-locked for the change, once the session has the right to make it."""
    customer = call.step_up_customer(params.phone_number) if step_up else call.verified_customer(params.phone_number)
    card = call.uow.repo.card(customer.id, params.last_four_digit_of_card_number, for_update=True)
    if card is None:
        raise CardNotFound("no such card for this customer")
    return customer, card


def _still_true(call: Call, card: Card | LockTarget, made_at: dt.datetime, card_status_version: int) -> bool:
    """May an earlier answer about this card be replayed? Only if the card has not changed since, and recently."""
    window = dt.timedelta(seconds=call.settings.idempotency_window_seconds)
    return card.status_version == card_status_version and call.now - made_at <= window


class ValidateCardParams(CardParams):
    auth_level: SmallInt | None = None


class ValidateCardResult(BaseModel):
    card_found: bool
    zip_code: str | None = None
    card_vendor: str | None = None
    card_status: str | None = None


def validate_card(params: ValidateCardParams, call: Call) -> ValidateCardResult:
    """Is this one of the caller's cards, and in which state? A wrong number is an answer, not an error."""
    customer = call.verified_customer(params.phone_number, upstream_auth_level=params.auth_level)
    card = call.uow.repo.card_view(customer.id, params.last_four_digit_of_card_number)
    if card is None:
        # Clear what a previously validated card left behind, so the flow cannot act on it.
        return ValidateCardResult(card_found=False, zip_code=None, card_vendor=None, card_status=None)
    return ValidateCardResult(card_found=True, zip_code=customer.zip_code, card_vendor=card.vendor,
                              card_status=card.status)


class LockParams(CardParams):
    # As the turn gave it: matched first against the text this session verified with (see lock_card_ticket_number).
    phone_number: PhoneAsGiven
    lock_type: Word
    lock_reason: Word


class LockResult(BaseModel):
    ticket_number: int
    card_status: str


def lock_card_ticket_number(params: LockParams, call: Call) -> LockResult:
    """Lock the card temporarily (inactive) or permanently (blocked) and issue a ticket.

    The hot write (issue 15): one statement reads the card (row-locked), the step-up, the ticket a retry may get
    back and a free ticket number; the card's change, the ticket, the audit row and the notice follow with the
    commit. A refusal reads again before it is given (see below) and writes nothing."""
    if params.lock_type not in (INACTIVE, BLOCKED):
        raise InvalidParameter("lock_type must be inactive or blocked")
    if params.lock_reason not in LOCK_REASONS:
        raise InvalidParameter("lock_reason must be one of " + ", ".join(LOCK_REASONS))
    repo, last4 = call.uow.repo, params.last_four_digit_of_card_number

    def read(phone_e164: str | None = None) -> LockTarget:
        if phone_e164 is None:
            # The number as this session's verifying turn gave it: the same text is the same customer, and nothing
            # is parsed (issue 15). Otherwise (written differently, an older session, a stranger) it is parsed.
            target = repo.lock_target_by_text(params.phone_number, last4, call.session, call.step_up_since,
                                              params.lock_type)
            if target is not None:
                return target
            phone_e164 = call.phone_e164(params.phone_number)
        target = repo.lock_target(phone_e164, last4, call.session, call.step_up_since, params.lock_type)
        if target is None:
            call.step_up_customer(phone_e164)  # AuthRequired: a stranger, or not verified recently
            raise CardNotFound("no such card for this customer")
        return target

    def replay(target: LockTarget) -> LockResult | None:
        if target.ticket_number is not None and target.status == params.lock_type and _still_true(
                call, target, target.ticket_created_at, target.ticket_card_status_version):
            return LockResult(ticket_number=target.ticket_number, card_status=target.status)
        return None

    target = read()
    done = replay(target)
    if done is not None:
        return done
    if (target.status, params.lock_type) not in WEBHOOK_TRANSITIONS:
        # On PostgreSQL a lock that waited for the card's row lock sees the card as the other lock left it, but the
        # rest as it was when it started: a concurrent delivery of this same request finds its twin's ticket only
        # by reading again (the row lock is held now, so this read is current).
        target = read(target.phone_e164)
        done = replay(target)
        if done is not None:
            return done
        check_lock(last4, target.status, params.lock_type)
    number = target.free_number if target.free_number is not None else repo.free_lock_number()
    notice = notices.notice(target.customer_id, target.phone_e164, "lock_ticket", "sms", call.language,
                            last4=last4, number=number)
    repo.lock(target, lock_type=params.lock_type, reason=params.lock_reason, number=number, session=call.session,
              actor=call.actor, now=call.now, notice=notice)
    call.uow.commit()
    return LockResult(ticket_number=number, card_status=params.lock_type)


class ReissueParams(CardParams):
    zip_code: ZipCode


class ReissueResult(BaseModel):
    acknowledgement_number: int
    delivery_business_days: int


def reissue_card_number(params: ReissueParams, call: Call) -> ReissueResult:
    """Order a replacement for a locked card, delivered to the registered address only."""
    customer, card = _card_to_change(params, call, step_up=True)
    repo = call.uow.repo
    done = repo.reissue_request(call.session, card.id)
    if done is not None and _still_true(call, card, done.created_at, done.card_status_version):
        return ReissueResult(acknowledgement_number=done.number, delivery_business_days=done.delivery_business_days)
    if card.status not in (INACTIVE, BLOCKED):
        raise InvalidTransition(f"card {card.last4} is {card.status}: only a locked card is reissued")
    if params.zip_code != customer.zip_code:
        raise InvalidParameter("zip_code is not the registered one: a change of address needs a human")
    if repo.reissues_of_card(card.id) >= call.settings.reissue_limit_per_card:
        raise ReissueLimitReached(f"card {card.last4} already has {call.settings.reissue_limit_per_card} "
                                  "replacements ordered")
    request = repo.add(ReissueRequest(number=repo.new_number(ReissueRequest), card_id=card.id, session=call.session,
                                      zip_code=customer.zip_code, delivery_business_days=DELIVERY_BUSINESS_DAYS,
                                      created_at=call.now, card_status_version=card.status_version))
    repo.audit(call.actor, "card.reissue_requested", card=card, session=call.session,
               after={"acknowledgement_number": request.number, "card_status": card.status})
    notices.enqueue(repo, customer, "reissue_ticket", "sms", call.language, last4=card.last4, number=request.number,
                    days=DELIVERY_BUSINESS_DAYS)
    call.uow.commit()
    return ReissueResult(acknowledgement_number=request.number, delivery_business_days=DELIVERY_BUSINESS_DAYS)


class ReactivationResult(BaseModel):
    handoff_id: int


REACTIVATE: Literal["reactivate"] = "reactivate"
UNANSWERED = "unanswered"  # a hand-off's status until an operator answers it


def request_reactivation(params: CardParams, call: Call) -> ReactivationResult:
    """Record that a human must decide on reactivating a temporarily locked card (未回答 until answered)."""
    customer, card = _card_to_change(params, call, step_up=False)
    repo = call.uow.repo
    done = repo.handoff(call.session, card.id, REACTIVATE)
    if done is not None and done.status == UNANSWERED and _still_true(call, card, done.created_at,
                                                                       done.card_status_version):
        return ReactivationResult(handoff_id=done.id)
    if card.status != INACTIVE:
        raise InvalidTransition(f"card {card.last4} is {card.status}: only a temporarily locked card is reactivated")
    handoff = repo.add(Handoff(customer_id=customer.id, card_id=card.id, session=call.session,
                               requested_action=REACTIVATE, card_status_at_request=card.status,
                               created_at=call.now, card_status_version=card.status_version))
    repo.flush()
    repo.audit(call.actor, "handoff.created", card=card, session=call.session,
               after={"handoff_id": handoff.id, "requested_action": REACTIVATE, "status": handoff.status})
    call.uow.commit()
    return ReactivationResult(handoff_id=handoff.id)
