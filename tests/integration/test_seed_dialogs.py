"""The webhook calls behind the seed's three sample dialogs (004), in order, on each store backend."""
from sqlalchemy import func, select

from cardstore.models import AuditEvent, Card, Handoff, LockTicket, ReissueRequest


def test_unauthenticated_caller_with_several_cards_locks_one_temporarily(caller, phone, store):
    """Dialog 1: identified by caller ID, verified by SMS code, picks 4444, locks it temporarily for damage."""
    hanako = caller(phone_number=None, caller_id="+819000001111")
    found = hanako.call("verify_user")
    assert found["user_found"] is True and found["auth_level"] == 0
    assert "card_count" not in found  # told only once a code is verified (issue 12: nothing to enumerate)
    hanako.phone_number = found["phone_number"]
    assert hanako.phone_number == "09000001111"

    verified = hanako.authenticate()
    assert verified["auth_level"] == 1 and verified["card_count"] == 4
    cards = hanako.call("get_card_details")
    assert cards["last_four_digit_of_all_cards"] == ["5555", "6666", "4444", "4449"]
    assert cards["card_vendor_all"] == ["Visa", "Visa", "MasterCard", "Mastercard"]
    assert "last_four_digit_of_card_number" not in cards

    card = hanako.call("validate_card", last_four_digit_of_card_number=4444.0)
    assert card == {"card_found": True, "zip_code": "12345", "card_vendor": "MasterCard", "card_status": "active"}

    hanako.authenticate()  # the seed sends a code again before the lock (card holder authentication)
    locked = hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive",
                         lock_reason="damaged")
    assert locked["card_status"] == "inactive"
    assert 1_000_000 <= locked["ticket_number"] <= 9_999_999

    with store.unit_of_work() as uow:
        ticket = uow.session.scalars(select(LockTicket)).one()
        assert ticket.number == locked["ticket_number"] and ticket.reason == "damaged"
        assert uow.session.get(Card, ticket.card_id).status == "inactive"
    shared = [m for m in phone.messages("+819000001111") if m["kind"] == "lock_ticket"]
    assert str(locked["ticket_number"]) in shared[0]["body"]  # 登録携帯電話番号に共有されました


def test_authenticated_caller_with_one_card_locks_permanently_and_orders_a_new_card(make_app, store_url, phone):
    """Dialog 2: authenticated upstream (trusted auth_level), one card, permanent lock, reissue to zip 12345."""
    from tests.conftest import Caller

    app = make_app(database_url=store_url, trust_upstream_auth_level=True)
    ichiro = Caller(app.test_client(), phone, "dialog-2", "09000002222")
    cards = ichiro.call("get_card_details", auth_level=1.0)
    assert cards["card_count"] == 1 and cards["last_four_digit_of_card_number"] == "4444"

    ichiro.authenticate()
    locked = ichiro.call("lock_card", last_four_digit_of_card_number="4444", lock_type="blocked",
                         lock_reason="damaged")
    assert locked["card_status"] == "blocked"
    card = ichiro.call("validate_card", last_four_digit_of_card_number="4444", auth_level=1)
    assert card["zip_code"] == "12345"
    reissued = ichiro.call("reissue_card", last_four_digit_of_card_number="4444", zip_code=card["zip_code"])
    assert reissued["delivery_business_days"] == 3
    assert reissued["acknowledgement_number"] != locked["ticket_number"]

    from webhook.app import service_of

    with service_of(app).store.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count(ReissueRequest.id))) == 1
        actions = list(uow.session.scalars(select(AuditEvent.action).where(AuditEvent.actor == "system:webhook")))
    assert actions.count("card.locked") == 1 and actions.count("card.reissue_requested") == 1


def test_reactivation_is_handed_to_a_human(caller, store):
    """Dialog 3: code to the phone ending 5041, picks 1456 (already locked), asks to reactivate: a hand-off."""
    misaki = caller(phone_number=None, caller_id="+819012345041")
    found = misaki.call("verify_user")
    assert found["registered_phone_last4"] == "5041"
    misaki.phone_number = found["phone_number"]
    sent = misaki.call("send_otp", otp_channel="sms")
    assert sent["otp_destination_masked"].endswith("5041")
    assert misaki.call("verify_otp", otp_code=misaki.phone.last_code())["otp_verified"] is True

    cards = misaki.call("get_card_details")
    assert cards["last_four_digit_of_all_cards"] == ["1456", "1457", "1345", "3456"]
    assert misaki.call("validate_card", last_four_digit_of_card_number="1456")["card_status"] == "inactive"
    handoff = misaki.call("request_reactivation", last_four_digit_of_card_number="1456")

    with store.unit_of_work() as uow:
        row = uow.session.get(Handoff, handoff["handoff_id"])
        assert row.status == "unanswered" and row.requested_action == "reactivate"
        assert uow.session.get(Card, row.card_id).status == "inactive"  # only a human reactivates
