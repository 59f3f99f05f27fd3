"""One-time codes: expiry, single use, attempts, sends per window, channels, test numbers."""

from sqlalchemy import select, update

from cardstore.models import Customer, OtpChallenge
from tests.conftest import Caller
from tests.store_state import row_counts, store_snapshot


def test_an_expired_code_is_refused(caller, store, phone):
    """A correct code entered after five minutes does not verify the session."""
    hanako = caller("09000001111")
    hanako.call("send_otp", otp_channel="sms")
    with store.unit_of_work() as uow:
        uow.session.execute(update(OtpChallenge).values(expires_at=OtpChallenge.created_at))
        uow.commit()
    result = hanako.call("verify_otp", otp_code=phone.last_code())
    assert result == {"otp_verified": False, "otp_attempts_left": 0, "otp_expired": True}
    assert hanako.call("get_card_details")["webhook_error_code"] == "AUTH_REQUIRED"


def test_a_used_code_cannot_be_replayed(caller, phone):
    """The code that verified the session does not verify it (or another session) again."""
    hanako = caller("09000001111")
    assert hanako.authenticate()["otp_verified"] is True
    code = phone.last_code()
    assert hanako.call("verify_otp", otp_code=code) == {"otp_verified": False, "otp_attempts_left": 0}
    other = caller("09000001111", session="replayer")
    assert other.call("verify_otp", otp_code=code)["otp_verified"] is False


def test_three_wrong_codes_kill_the_challenge(caller, phone):
    """After max_otp_retry_count wrong codes even the right one fails, and the flow is told max_no_match."""
    hanako = caller("09000001111")
    hanako.call("send_otp", otp_channel="sms")
    right = phone.last_code()
    wrong = "000000" if right != "000000" else "111111"
    assert hanako.call("verify_otp", otp_code=wrong) == {"otp_verified": False, "otp_attempts_left": 2}
    assert hanako.call("verify_otp", otp_code=wrong) == {"otp_verified": False, "otp_attempts_left": 1}
    assert hanako.call("verify_otp", otp_code=wrong) == {
        "otp_verified": False, "otp_attempts_left": 0, "transfer_reason": "max_no_match"}
    assert hanako.call("verify_otp", otp_code=right)["otp_verified"] is False


def test_the_flow_may_lower_the_attempts_but_not_raise_them(caller, phone):
    """max_otp_retry_count from the flow is capped by the server's OTP_MAX_ATTEMPTS."""
    many = caller("09000001111")
    many.call("send_otp", otp_channel="sms", max_otp_retry_count=50.0)
    assert many.call("verify_otp", otp_code="999999" if phone.last_code() != "999999" else "888888")[
        "otp_attempts_left"] == 2
    one = caller("09000001111")
    one.call("send_otp", otp_channel="sms", max_otp_retry_count=1.0)
    wrong = "999999" if phone.last_code() != "999999" else "888888"
    assert one.call("verify_otp", otp_code=wrong)["transfer_reason"] == "max_no_match"


def test_a_new_code_replaces_the_old_one(caller, phone):
    """Asking for a code again closes the previous challenge: only the newest code works."""
    hanako = caller("09000001111")
    hanako.call("send_otp", otp_channel="sms")
    first = phone.last_code()
    hanako.call("send_otp", otp_channel="sms")
    second = phone.last_code()
    if first != second:
        assert hanako.call("verify_otp", otp_code=first)["otp_verified"] is False
    assert hanako.call("verify_otp", otp_code=second)["otp_verified"] is True


def test_at_most_five_sends_per_ten_minutes(make_app, phone):
    """The sixth code within the window is refused with OTP_RATE_LIMITED and nothing is sent (growing delays and the
    per-session limit set aside here: tests/security/test_security_abuse.py has those)."""
    app = make_app(throttle_free_events=20, otp_session_send_limit=20)
    hanako = Caller(app.test_client(), phone, "burst", "09000001111")
    for _ in range(5):
        assert hanako.call("send_otp", otp_channel="sms")["otp_sent"] is True
    from webhook.app import service_of

    before = store_snapshot(service_of(app).store)
    assert hanako.call("send_otp", otp_channel="sms")["webhook_error_code"] == "OTP_RATE_LIMITED"
    after = store_snapshot(service_of(app).store)
    assert {k: v for k, v in after.items() if k != "throttle_counters"} == \
        {k: v for k, v in before.items() if k != "throttle_counters"}


def test_email_codes_go_to_the_registered_address_only(caller, phone, store):
    """Hanako gets her code by e-mail (the masked address is shown once her session is verified); Ichiro, verified
    and with no e-mail on file, is refused and nothing is queued."""
    hanako = caller("09000001111")
    assert hanako.call("send_otp", otp_channel="email")["otp_destination_masked"] is None  # not verified yet
    assert phone.messages("hanako.sato@example.jp")[-1]["channel"] == "email"
    hanako.call("verify_otp", otp_code=phone.last_code())
    assert hanako.call("send_otp", otp_channel="email")["otp_destination_masked"] == "h***@example.jp"
    ichiro = caller("09000002222")
    ichiro.authenticate()
    before = row_counts(store)
    assert ichiro.call("send_otp", otp_channel="email")["webhook_error_code"] == "CHANNEL_NOT_REGISTERED"
    assert ichiro.call("send_otp", otp_channel="fax")["webhook_error_code"] == "INVALID_PARAMETER"
    assert row_counts(store) == before


def test_repeated_failures_across_challenges_throttle_but_never_disable_otp(make_app, store_url, phone):
    """Past OTP_FAILURE_LIMIT wrong codes from sessions that proved nothing, such sessions get no new code; the
    customer is not disabled, and her call from her registered number still gets one."""
    app = make_app(database_url=store_url, otp_failure_limit=4, throttle_free_events=20)
    hanako = Caller(app.test_client(), phone, "brute", "09000001111")
    for _ in range(2):
        hanako.call("send_otp", otp_channel="sms")
        wrong = "000000" if phone.last_code() != "000000" else "111111"
        hanako.call("verify_otp", otp_code=wrong)
        hanako.call("verify_otp", otp_code=wrong)
    assert hanako.call("send_otp", otp_channel="sms")["webhook_error_code"] == "OTP_RATE_LIMITED"
    assert Caller(app.test_client(), phone, "fresh", "09000001111").call(
        "send_otp", otp_channel="sms")["webhook_error_code"] == "OTP_RATE_LIMITED"
    real = Caller(app.test_client(), phone, "real", "09000001111", caller_id="+819000001111")
    assert real.authenticate()["otp_verified"] is True
    from webhook.app import service_of

    with service_of(app).store.unit_of_work() as uow:
        customer = uow.session.scalars(select(Customer).where(Customer.phone_e164 == "+819000001111")).one()
        assert customer.otp_disabled_at is None


def test_test_numbers_get_their_fixed_code(make_app, sqlite_url, phone):
    """With OTP_TEST_NUMBERS, the seed's 123456 works for that number (and only for it)."""
    app = make_app(otp_test_numbers={"09000002222": "123456"})
    ichiro = Caller(app.test_client(), phone, "fixed", "09000002222")
    ichiro.call("send_otp", otp_channel="sms")
    assert phone.last_code() == "123456"
    assert ichiro.call("verify_otp", otp_code=123456.0)["otp_verified"] is True
    hanako = Caller(app.test_client(), phone, "random", "09000001111")
    hanako.call("send_otp", otp_channel="sms")
    assert hanako.call("verify_otp", otp_code="123456")["otp_verified"] is (phone.last_code() == "123456")


def test_codes_are_random(caller, phone):
    """Twenty codes sent are not all the same (a CSPRNG, not a constant)."""
    codes = set()
    for i in range(4):
        c = caller("09000001111", session=f"rand-{i}")
        c.call("send_otp", otp_channel="sms")
        codes.add(phone.last_code())
    assert len(codes) > 1
