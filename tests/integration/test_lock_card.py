"""Locking, reissuing and reactivation requests: allowed transitions only, idempotent retries, audit with every change."""
import pytest
from sqlalchemy import func, select

from cardstore.models import AuditEvent, Card, Customer, LockTicket, OutboxMessage
from tests.store_state import store_snapshot


def _card_status(store, phone_e164: str, last4: str) -> str:
    with store.unit_of_work() as uow:
        return uow.session.scalars(
            select(Card.status).join(Customer).where(Customer.phone_e164 == phone_e164, Card.last4 == last4)
        ).one()


@pytest.fixture
def hanako(caller):
    h = caller("09000001111")
    h.authenticate()
    return h


def lock(c, last4="4444", lock_type="inactive", reason="lost"):
    return c.call("lock_card", last_four_digit_of_card_number=last4, lock_type=lock_type, lock_reason=reason)


def test_a_retried_lock_returns_the_first_ticket(hanako, store):
    """CX retrying the same call gets the same ticket; one ticket, one audit row, one notice."""
    first = lock(hanako)
    assert lock(hanako) == first
    with store.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count(LockTicket.id))) == 1
        assert uow.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "card.locked")) == 1
        assert uow.session.scalar(
            select(func.count(OutboxMessage.id)).where(OutboxMessage.kind == "lock_ticket")) == 1


def test_temporary_then_permanent_is_allowed(hanako, store):
    """active -> inactive -> blocked: two tickets, the card ends blocked."""
    t1 = lock(hanako, lock_type="inactive")
    t2 = lock(hanako, lock_type="blocked", reason="stolen")
    assert t1["ticket_number"] != t2["ticket_number"] and t2["card_status"] == "blocked"
    assert _card_status(store, "+819000001111", "4444") == "blocked"


@pytest.mark.parametrize("start, lock_type", [("blocked", "inactive"), ("blocked", "blocked"),
                                              ("inactive", "inactive")])
def test_forbidden_transitions_change_nothing(caller, store, start, lock_type):
    """A blocked card cannot be locked again or unblocked; an inactive card is not re-locked temporarily."""
    first = caller("09000001111", session="first")
    first.authenticate()
    lock(first, lock_type=start) if start == "blocked" else lock(first, lock_type="inactive")
    later = caller("09000001111", session="later")
    later.authenticate()
    before = store_snapshot(store)
    assert lock(later, lock_type=lock_type)["webhook_error_code"] == "INVALID_TRANSITION"
    assert store_snapshot(store) == before


@pytest.mark.parametrize("lock_type", ["active", "reactivate", "unlock"])
def test_the_webhook_never_reactivates(hanako, store, lock_type):
    """Only inactive and blocked are lock types; 'active' (reactivation) is a human's job."""
    before = store_snapshot(store)
    assert lock(hanako, lock_type=lock_type)["webhook_error_code"] == "INVALID_PARAMETER"
    assert store_snapshot(store) == before


def test_an_unknown_reason_is_refused(hanako, store):
    """The reason must be one of damaged, stolen, lost, others."""
    before = store_snapshot(store)
    assert lock(hanako, reason="bored")["webhook_error_code"] == "INVALID_PARAMETER"
    assert store_snapshot(store) == before


def test_reissue_only_for_a_locked_card_and_to_the_registered_zip(hanako, store):
    """An active card is not reissued; a wrong zip code is refused; the right one gets an acknowledgement."""
    before = store_snapshot(store)
    assert hanako.call("reissue_card", last_four_digit_of_card_number="4444",
                       zip_code="12345")["webhook_error_code"] == "INVALID_TRANSITION"
    assert store_snapshot(store) == before
    lock(hanako, lock_type="blocked")
    before = store_snapshot(store)
    assert hanako.call("reissue_card", last_four_digit_of_card_number="4444",
                       zip_code="99999")["webhook_error_code"] == "INVALID_PARAMETER"
    assert store_snapshot(store) == before
    done = hanako.call("reissue_card", last_four_digit_of_card_number="4444", zip_code=12345.0)
    again = hanako.call("reissue_card", last_four_digit_of_card_number="4444", zip_code="12345")
    assert done == again and done["delivery_business_days"] == 3


def test_reactivation_handoff_only_for_a_temporarily_locked_card(caller, store):
    """Misaki's 1456 (inactive) gets one hand-off however often it is asked; her active 1457 gets none."""
    misaki = caller("09012345041")
    misaki.authenticate()
    first = misaki.call("request_reactivation", last_four_digit_of_card_number="1456")
    assert misaki.call("request_reactivation", last_four_digit_of_card_number="1456") == first
    before = store_snapshot(store)
    assert misaki.call("request_reactivation",
                       last_four_digit_of_card_number="1457")["webhook_error_code"] == "INVALID_TRANSITION"
    assert store_snapshot(store) == before


def test_every_change_has_its_audit_row_by_the_webhook(hanako, store):
    """The lock's audit row says who (system:webhook), which session, before and after."""
    result = lock(hanako, reason="stolen")
    with store.unit_of_work() as uow:
        event = uow.session.scalars(select(AuditEvent).where(AuditEvent.action == "card.locked")).one()
        uow.session.expunge(event)
    assert event.actor == "system:webhook" and event.session.endswith(hanako.session)
    assert event.before == {"status": "active"}
    assert event.after == {"status": "inactive", "reason": "stolen", "ticket_number": result["ticket_number"]}
