"""Authentication is the webhook's job: session parameters prove nothing, the store's records do."""
import datetime as dt

from sqlalchemy import select

from cardstore.models import AuditEvent, OtpChallenge, VerifiedSession
from tests.conftest import Caller
from tests.store_state import store_snapshot


def test_a_forged_auth_level_reads_no_cards(caller, store):
    """A client that sets auth_level=1 itself gets AUTH_REQUIRED and no card data."""
    before = store_snapshot(store)
    result = caller("09000001111").call("get_card_details", auth_level=1.0)
    assert result == {"transfer_reason": "webhook_error", "webhook_error_code": "AUTH_REQUIRED"}
    assert store_snapshot(store) == before


def test_a_forged_phone_number_cannot_lock_another_customers_card(caller, store):
    """Verified as Hanako, the session names Ichiro's number: the lock is refused and nothing changes."""
    hanako = caller("09000001111", session="shared")
    hanako.authenticate()
    before = store_snapshot(store)
    intruder = caller("09000002222", session="shared")
    result = intruder.call("lock_card", last_four_digit_of_card_number="4444", lock_type="blocked",
                           lock_reason="stolen")
    assert result["webhook_error_code"] == "AUTH_REQUIRED"
    assert intruder.call("get_card_details")["webhook_error_code"] == "AUTH_REQUIRED"
    assert store_snapshot(store) == before


def test_a_verified_session_does_not_carry_over_to_another_session(caller, store):
    """The verification belongs to the CX session that entered the code, not to the customer."""
    caller("09000001111", session="first").authenticate()
    before = store_snapshot(store)
    result = caller("09000001111", session="second").call("get_card_details")
    assert result["webhook_error_code"] == "AUTH_REQUIRED"
    assert store_snapshot(store) == before


def test_another_customers_card_is_not_found_for_this_customer(caller, store):
    """Hanako's session asks about 1456, Misaki's card: not found, and a lock of it is refused."""
    hanako = caller("09000001111")
    hanako.authenticate()
    assert hanako.call("validate_card", last_four_digit_of_card_number="1456") == {
        "card_found": False, "zip_code": None, "card_vendor": None, "card_status": None}
    before = store_snapshot(store)
    result = hanako.call("lock_card", last_four_digit_of_card_number="1456", lock_type="inactive",
                         lock_reason="lost")
    assert result["webhook_error_code"] == "CARD_NOT_FOUND"
    assert store_snapshot(store) == before


def test_a_lock_needs_a_fresh_code(caller, store):
    """Verified 11 minutes ago: reading cards still works, a lock needs a new code."""
    hanako = caller("09000001111")
    hanako.authenticate()
    with store.unit_of_work() as uow:
        for row in uow.session.scalars(select(VerifiedSession)):
            row.verified_at -= dt.timedelta(minutes=11)
        uow.commit()
    assert hanako.call("get_card_details")["card_count"] == 4
    before = store_snapshot(store)
    result = hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive",
                         lock_reason="lost")
    assert result["webhook_error_code"] == "AUTH_REQUIRED"
    assert store_snapshot(store) == before
    hanako.authenticate()
    assert hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive",
                       lock_reason="lost")["card_status"] == "inactive"


def test_upstream_auth_level_is_trusted_only_when_configured_and_never_for_changes(make_app, store_url, phone):
    """With TRUST_UPSTREAM_AUTH_LEVEL a session auth_level reads cards, but a lock still needs a code."""
    app = make_app(database_url=store_url, trust_upstream_auth_level=True)
    ichiro = Caller(app.test_client(), phone, "upstream", "09000002222")
    assert ichiro.call("get_card_details", auth_level=1)["card_count"] == 1
    assert ichiro.call("get_card_details", auth_level=0)["webhook_error_code"] == "AUTH_REQUIRED"
    result = ichiro.call("lock_card", auth_level=1, last_four_digit_of_card_number="4444", lock_type="blocked",
                         lock_reason="damaged")
    assert result["webhook_error_code"] == "AUTH_REQUIRED"


def test_caller_id_identifies_but_does_not_authenticate(caller):
    """An ANI match gives auth_level 0; a typed number gives -1; only a code gives 1."""
    by_line = caller(phone_number=None, caller_id="+819012345041")
    assert by_line.call("verify_user")["auth_level"] == 0
    typed = caller("09012345041", caller_id="+819000002222")
    assert typed.call("verify_user")["auth_level"] == -1
    typed.authenticate()
    assert typed.call("verify_user")["auth_level"] == 1


def test_an_unknown_number_is_simply_not_found(caller, store):
    """verify_user for a number that is no customer says user_found=false and reveals nothing else; the store
    changes only by the session's look-up count."""
    before = store_snapshot(store)
    assert caller("09099999999").call("verify_user") == {"user_found": False}
    after = store_snapshot(store)
    assert {k: v for k, v in after.items() if k != "throttle_counters"} == \
        {k: v for k, v in before.items() if k != "throttle_counters"}


def test_a_withheld_caller_id_is_not_an_error(caller):
    """No phone number and no caller ID (非通知): user_found=false, so the flow asks for the number."""
    assert caller(phone_number=None).call("verify_user") == {"user_found": False}
    assert caller(phone_number=None, caller_id="anonymous").call("verify_user") == {"user_found": False}


def test_the_code_is_stored_only_as_a_keyed_hash(caller, store, phone):
    """The store holds an HMAC of the code; the delivered code appears nowhere in the challenge row."""
    hanako = caller("09000001111")
    hanako.call("send_otp", otp_channel="sms")
    code = phone.last_code()
    with store.unit_of_work() as uow:
        challenge = uow.session.scalars(select(OtpChallenge)).one()
        assert code not in challenge.code_hash and len(challenge.code_hash) == 64
        audit = uow.session.scalars(select(AuditEvent).where(AuditEvent.action == "otp.sent")).one()
        assert code not in repr(audit.after)
