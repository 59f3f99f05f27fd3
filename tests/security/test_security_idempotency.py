"""Idempotency that cannot lie: a replayed lock, reissue or hand-off answer comes back only while it is still true
(the card is as the ticket left it; the hand-off is unanswered) and within IDEMPOTENCY_WINDOW_SECONDS; otherwise
the request is processed as new or refused with the code that says why. Chat integrations keep one session id per
user, so "the same session asks again later" is an everyday case, not an exotic one."""
from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from backoffice import handoffs
from cardstore.models import AuditEvent, Card, Handoff, LockTicket, OutboxMessage, ReissueRequest
from tests.store_state import unchanged

MISAKI, MISAKI_E164 = "09012345041", "+819012345041"


@pytest.fixture
def misaki(caller):
    """Misaki's chat session, verified by a code: the one session id her chat integration always uses."""
    m = caller(MISAKI, session="misaki-chat")
    assert m.authenticate()["otp_verified"] is True
    return m


def lock(c, lock_type="inactive", last4="1457", reason="lost"):
    return c.call("lock_card", last_four_digit_of_card_number=last4, lock_type=lock_type, lock_reason=reason)


def operator_answers(store, handoff_id: int, resolution: str) -> None:
    """What `flask handoffs resolve` does: the back office's own service function."""
    with store.unit_of_work() as uow:
        handoffs.resolve(uow, handoff_id, "sato", resolution, "本人確認済み")


def card_status(store, last4: str = "1457") -> str:
    with store.unit_of_work() as uow:
        return uow.session.scalar(select(Card.status).where(Card.last4 == last4))


def count(store, model, *where) -> int:
    with store.unit_of_work() as uow:
        return uow.session.scalar(select(func.count()).select_from(model).where(*where))


def test_a_lock_asked_again_after_the_card_was_reactivated_is_a_new_lock(misaki, store, phone):
    """Lock 1457 temporarily, ask for reactivation, an operator reactivates, the same session locks again: a new
    ticket, a new audit row, a new SMS, and the card really is locked — never the first ticket with an active card."""
    first = lock(misaki)
    assert first["card_status"] == "inactive"
    handoff = misaki.call("request_reactivation", last_four_digit_of_card_number="1457")["handoff_id"]
    operator_answers(store, handoff, handoffs.REACTIVATED)
    assert card_status(store) == "active"

    again = lock(misaki)
    assert again["card_status"] == "inactive" and card_status(store) == "inactive"
    assert again["ticket_number"] != first["ticket_number"]
    assert count(store, LockTicket) == 2
    assert count(store, AuditEvent, AuditEvent.action == "card.locked") == 2
    assert count(store, OutboxMessage, OutboxMessage.kind == "lock_ticket") == 2
    assert str(again["ticket_number"]) in [m for m in phone.messages() if m["kind"] == "lock_ticket"][-1]["body"]
    # A CX retry of the new lock gets the new ticket back, as before.
    assert lock(misaki) == again


def test_a_reactivation_asked_again_after_a_rejection_is_a_new_handoff(misaki, store):
    """The operator said no; later the same session asks again: a new hand-off a human must answer."""
    lock(misaki)
    first = misaki.call("request_reactivation", last_four_digit_of_card_number="1457")["handoff_id"]
    operator_answers(store, first, handoffs.REJECTED)
    second = misaki.call("request_reactivation", last_four_digit_of_card_number="1457")
    assert second.get("handoff_id") not in (None, first), second
    with store.unit_of_work() as uow:
        assert uow.session.get(Handoff, second["handoff_id"]).status == "unanswered"
    assert count(store, AuditEvent, AuditEvent.action == "handoff.created") == 2


def test_a_reactivation_asked_again_after_the_card_was_reactivated_is_refused(misaki, store, phone):
    """The card is active again: a second request is INVALID_TRANSITION, not the answered hand-off's id."""
    lock(misaki)
    first = misaki.call("request_reactivation", last_four_digit_of_card_number="1457")["handoff_id"]
    operator_answers(store, first, handoffs.REACTIVATED)
    # The relay delivers the operator's notice first (as the running one would have): the test's relay pass after
    # the refused call must not be mistaken for a change the call made.
    phone.deliver()
    with unchanged(store):
        again = misaki.call("request_reactivation", last_four_digit_of_card_number="1457")
    assert again == {"transfer_reason": "webhook_error", "webhook_error_code": "INVALID_TRANSITION"}


def test_a_reissue_asked_again_after_the_card_changed_is_a_new_request(misaki, store):
    """Temporary lock, replacement ordered, reactivated by an operator, locked again, replacement asked again: a new
    acknowledgement (with its audit row and SMS), not the one for the earlier lock."""
    lock(misaki)
    first = misaki.call("reissue_card", last_four_digit_of_card_number="1457", zip_code="12345")
    assert misaki.call("reissue_card", last_four_digit_of_card_number="1457", zip_code="12345") == first
    handoff = misaki.call("request_reactivation", last_four_digit_of_card_number="1457")["handoff_id"]
    operator_answers(store, handoff, handoffs.REACTIVATED)
    lock(misaki)
    second = misaki.call("reissue_card", last_four_digit_of_card_number="1457", zip_code="12345")
    assert second["acknowledgement_number"] != first["acknowledgement_number"]
    assert count(store, ReissueRequest) == 2
    assert count(store, AuditEvent, AuditEvent.action == "card.reissue_requested") == 2
    assert count(store, OutboxMessage, OutboxMessage.kind == "reissue_ticket") == 2


def test_a_replay_is_bounded_in_time(misaki, store, app):
    """Past IDEMPOTENCY_WINDOW_SECONDS the first ticket is not replayed: a blocked card asked to be blocked again
    is INVALID_TRANSITION, and nothing changes."""
    from webhook.app import service_of

    window = service_of(app).settings.idempotency_window_seconds
    first = lock(misaki, "blocked", reason="stolen")
    assert lock(misaki, "blocked", reason="stolen") == first
    with store.unit_of_work() as uow:
        for ticket in uow.session.scalars(select(LockTicket)):
            ticket.created_at -= dt.timedelta(seconds=window + 1)
        uow.commit()
    with unchanged(store):
        late = lock(misaki, "blocked", reason="stolen")
    assert late == {"transfer_reason": "webhook_error", "webhook_error_code": "INVALID_TRANSITION"}
