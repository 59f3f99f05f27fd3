"""The flexible endpoints as a bank's CX agent calls them: plain bodies with CX-rendered values, the seed's response
fields at top level with the seed's types, and failures as the HTTP statuses CX raises its webhook.error events on."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from cardstore.models import AuthToken, Card, Customer, LockTicket
from handlers.authentication import CREDENTIAL_SHAPE
from simulator.webhooks import event_for_status
from tests.conftest import Caller, cx_request
from tests.flexible import TAGS, FlexibleCaller
from webhook.app import service_of
from webhook.dispatch import ErrorCode
from webhook.flexible import CHALLENGE_SHAPE, CONTRACTS, STATUS
from webhook.registry import REGISTRY


@pytest.fixture
def flex(client, phone):
    """`flex(phone_number)`: one conversation of a bank's agent with the flexible endpoints."""
    return lambda phone_number="09000001111": FlexibleCaller(client, phone, phone_number)


def card_status(store, phone_e164: str, last4: str) -> str:
    with store.unit_of_work() as uow:
        return uow.session.scalar(select(Card.status).join(Customer).where(
            Customer.phone_e164 == phone_e164, Card.last4 == last4))


# --- one endpoint per tag --------------------------------------------------------------------------------------------

def test_every_tag_of_the_registry_has_a_flexible_endpoint(client):
    """POST /flexible/<tag> exists for every registered tag (an empty body is a 400 naming what is missing, or a
    200/403 where nothing is required), and only those: another tag is a 404 listing the known ones."""
    assert {REGISTRY[t].handler for t in REGISTRY.tags()} == set(CONTRACTS)
    for tag in REGISTRY.tags():
        r = client.post(f"/flexible/{tag}", json={})
        assert r.status_code in (200, 400, 403), (tag, r.status_code)
    r = client.post("/flexible/prebuilt_components_lock_card:unlock_everything", json={})
    assert r.status_code == 404
    assert r.get_json()["error"]["code"] == "UNKNOWN_TAG"
    assert "prebuilt_components_lock_card:validate_card" in r.get_json()["error"]["message"]


def test_verify_user_by_typed_number_and_by_caller_id(flex):
    """A typed number (full-width, hyphens) finds Hanako at auth_level -1; the caller ID alone finds her at 0; an
    unknown number is user_found=false, a 200 the flow routes on. Before a code is verified nothing about her
    account is disclosed (no card_count, no email_registered: issue 12); verify_otp answers them."""
    typed = flex("０９０－００００－１１１１").ok("verify_user")
    assert typed == {"user_found": True, "phone_number": "09000001111", "auth_level": -1,
                     "registered_phone_last4": "1111"}
    by_line = flex(None).ok("verify_user", caller_id="+819000001111")
    assert by_line["user_found"] is True and by_line["auth_level"] == 0
    assert flex("09099998888").ok("verify_user") == {"user_found": False}
    assert flex(None).ok("verify_user", caller_id=None) == {"user_found": False}


def test_send_and_verify_a_code_issue_a_credential(flex, phone, store):
    """send_otp answers an opaque otp_challenge; the code typed back (as CX's double) with it answers
    otp_verified=true and an auth_token, stored only as its hash."""
    hanako = flex()
    sent = hanako.send_code()
    assert sent == {"otp_sent": True, "otp_channel": "sms", "otp_destination_masked": "*********1111",
                    "otp_expires_in_s": 300, "otp_challenge": sent["otp_challenge"]}
    assert CHALLENGE_SHAPE.fullmatch(sent["otp_challenge"])
    code = phone.last_code()
    answer = hanako.type_code(float(code))
    assert answer["otp_verified"] is True and answer["auth_level"] == 1
    assert answer["card_count"] == 4 and answer["email_registered"] is True  # disclosed only after a right code
    assert CREDENTIAL_SHAPE.fullmatch(answer["auth_token"])
    with store.unit_of_work() as uow:
        hashes = list(uow.session.scalars(select(AuthToken.token_hash)))
    assert len(hashes) == 1 and answer["auth_token"] not in hashes[0]


def test_a_wrong_code_is_an_answer_not_an_error(flex, phone):
    """A wrong code is 200 otp_verified=false with the attempts left, and no auth_token; the right one then works."""
    hanako = flex()
    hanako.send_code()
    wrong = "000000" if phone.last_code() != "000000" else "111111"
    answer = hanako.type_code(wrong)
    assert answer == {"otp_verified": False, "otp_attempts_left": 2}
    assert hanako.type_code(phone.last_code())["otp_verified"] is True


def test_a_resend_with_the_same_challenge_replaces_the_code(flex, phone):
    """Passing the earlier otp_challenge to send_otp keeps the handle and closes the earlier code, as a resend in a CX
    session does."""
    hanako = flex()
    first = hanako.send_code()["otp_challenge"]
    old_code = phone.last_code()
    again = hanako.ok("send_otp", otp_channel="sms", otp_challenge=first)
    assert again["otp_challenge"] == first
    new_code = phone.last_code()
    if old_code != new_code:
        assert hanako.type_code(old_code)["otp_verified"] is False
    assert hanako.type_code(new_code)["otp_verified"] is True


def test_a_code_is_bound_to_its_challenge(flex, phone):
    """The right code under another challenge handle verifies nothing."""
    hanako = flex()
    hanako.send_code()
    code = phone.last_code()
    hanako.otp_challenge = "lcoc_" + "A" * 32
    assert hanako.type_code(code) == {"otp_verified": False, "otp_attempts_left": 0}


def test_get_card_details_answers_the_seed_types(flex):
    """Lists of strings in the same order, an integer count."""
    hanako = flex()
    hanako.authenticate()
    cards = hanako.ok("get_card_details")
    assert cards == {"last_four_digit_of_all_cards": ["5555", "6666", "4444", "4449"],
                     "card_vendor_all": ["Visa", "Visa", "MasterCard", "Mastercard"], "card_count": 4}
    assert all(isinstance(x, str) for x in cards["last_four_digit_of_all_cards"] + cards["card_vendor_all"])
    assert type(cards["card_count"]) is int
    single = flex("09000002222")
    single.authenticate()
    assert single.ok("get_card_details")["last_four_digit_of_card_number"] == "4444"


@pytest.mark.parametrize("rendered", ["4444", 4444.0, "４４４４", 4444])
def test_validate_card_with_cx_rendered_values(flex, rendered):
    """The card's last four as a string, CX's double, full-width digits or an integer find the same card; strings out."""
    hanako = flex("０９０００００１１１１")
    hanako.authenticate()
    found = hanako.ok("validate_card", last_four_digit_of_card_number=rendered)
    assert found == {"card_found": True, "zip_code": "12345", "card_vendor": "MasterCard", "card_status": "active"}


def test_validate_card_with_a_card_that_is_not_theirs_is_card_found_false(flex):
    """A wrong card number is 200 card_found=false with the card's fields cleared (null), as the flow expects."""
    hanako = flex()
    hanako.authenticate()
    assert hanako.ok("validate_card", last_four_digit_of_card_number="1234") == {
        "card_found": False, "zip_code": None, "card_vendor": None, "card_status": None}


def test_lock_reissue_and_reactivation(flex, store, phone):
    """Dialog 1 and 2 through the flexible endpoints: a lock answers an integer ticket_number, a reissue an integer
    acknowledgement_number, a reactivation a handoff; CX retrying the lock gets the same ticket back."""
    hanako = flex()
    hanako.authenticate()
    locked = hanako.ok("lock_card", last_four_digit_of_card_number=4444.0, lock_type="inactive", lock_reason="lost",
                       language_code="en")
    assert type(locked["ticket_number"]) is int and 1_000_000 <= locked["ticket_number"] <= 9_999_999
    assert locked["card_status"] == "inactive"
    assert card_status(store, "+819000001111", "4444") == "inactive"
    assert hanako.ok("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive",
                     lock_reason="lost") == locked
    with store.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count(LockTicket.id))) == 1
    assert "request number is" in phone.messages()[-1]["body"]  # language_code=en reached the notice
    reissued = hanako.ok("reissue_card", last_four_digit_of_card_number="4444", zip_code="12345")
    assert type(reissued["acknowledgement_number"]) is int and reissued["delivery_business_days"] == 3
    handoff = hanako.ok("request_reactivation", last_four_digit_of_card_number="4444")
    assert type(handoff["handoff_id"]) is int


# --- failures CX can route on -------------------------------------------------------------------------------------

def test_no_failure_is_a_404_and_each_status_raises_the_documented_event():
    """Every domain error maps to a status whose CX event is not webhook.error.not-found (the component's
    webhook_not_found); the mapping is the README's table."""
    expected = {
        "INVALID_PARAMETER": "webhook.error.bad-request", "AUTH_REQUIRED": "webhook.error.rejected",
        "OTP_DISABLED": "webhook.error.rejected", "CUSTOMER_NOT_FOUND": "webhook.error",
        "CARD_NOT_FOUND": "webhook.error", "CHANNEL_NOT_REGISTERED": "webhook.error",
        "INVALID_TRANSITION": "webhook.error", "REISSUE_LIMIT_REACHED": "webhook.error",
        "OTP_RATE_LIMITED": "webhook.error", "RATE_LIMITED": "webhook.error",
        "STORE_UNAVAILABLE": "webhook.error.unavailable", "INTERNAL": "webhook.error",
    }
    assert set(STATUS) == set(ErrorCode)
    assert {code.value: event_for_status(STATUS[code]) for code in ErrorCode} == expected


def test_failures_answer_their_status_and_an_error_body(flex, make_app, phone, store):
    """Each failure the flows can meet, through the endpoint: status, {"error": {"code", "message"}}."""
    def error(response, status, code):
        assert response.status_code == status, response.get_data(as_text=True)
        assert response.get_json()["error"]["code"] == code
        assert response.get_json()["error"]["message"]

    hanako = flex()
    error(hanako.post("validate_card", last_four_digit_of_card_number="4444"), 403, "AUTH_REQUIRED")
    hanako.authenticate()
    error(hanako.post("lock_card", last_four_digit_of_card_number="1234", lock_type="blocked", lock_reason="lost"),
          422, "CARD_NOT_FOUND")
    error(hanako.post("lock_card", last_four_digit_of_card_number="4444", lock_type="sideways", lock_reason="lost"),
          400, "INVALID_PARAMETER")
    error(hanako.post("validate_card", last_four_digit_of_card_number="44444"), 400, "INVALID_PARAMETER")
    hanako.ok("lock_card", last_four_digit_of_card_number="5555", lock_type="blocked", lock_reason="stolen")
    error(hanako.post("lock_card", last_four_digit_of_card_number="5555", lock_type="inactive", lock_reason="lost"),
          409, "INVALID_TRANSITION")
    error(hanako.post("reissue_card", last_four_digit_of_card_number="6666", zip_code="12345"), 409,
          "INVALID_TRANSITION")
    # By e-mail an unverified conversation learns nothing (issue 12): the same 200 as for an address on file, no
    # mask, nothing sent; only the conversation that verified a code hears CHANNEL_NOT_REGISTERED.
    ichiro = flex("09000002222")
    sent_before = len(phone.messages())
    unverified = ichiro.send_code("email")
    assert unverified == {"otp_sent": True, "otp_channel": "email", "otp_destination_masked": None,
                          "otp_expires_in_s": 300, "otp_challenge": unverified["otp_challenge"]}
    assert len(phone.messages()) == sent_before
    ichiro.authenticate()
    error(ichiro.post("send_otp", otp_channel="email", otp_challenge=ichiro.otp_challenge), 422,
          "CHANNEL_NOT_REGISTERED")
    error(flex("09099998888").post("send_otp", otp_channel="sms"), 422, "CUSTOMER_NOT_FOUND")
    error(hanako.post("verify_otp", otp_code="123456"), 400, "MISSING_FIELD")
    error(hanako.post("verify_otp", otp_code="123456", otp_challenge="not-a-challenge"), 400, "INVALID_PARAMETER")
    error(hanako.client.post("/flexible/" + TAGS["verify_user"], data="[1]", content_type="application/json"),
          400, "MALFORMED_REQUEST")
    taro = flex("09012345041")
    for _ in range(3):  # THROTTLE_FREE_EVENTS: three codes free, then growing delays (Security -> Abuse limits)
        taro.send_code()
    error(taro.post("send_otp", otp_channel="sms"), 429, "OTP_RATE_LIMITED")


def test_an_unreachable_store_is_503_unavailable(make_app, phone):
    """A store that does not answer is 503 STORE_UNAVAILABLE (CX webhook.error.unavailable), not a 500."""
    app = make_app(database_url="postgresql+psycopg://nobody@127.0.0.1:1/none")
    r = FlexibleCaller(app.test_client(), phone).post("verify_user")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "STORE_UNAVAILABLE"


def test_the_caller_check_guards_the_flexible_endpoints_too(make_app, phone):
    """With WEBHOOK_AUTH=header, a flexible call without the header is 401 and reaches no handler."""
    app = make_app(webhook_auth="header", webhook_header_value="a-long-enough-secret-value")
    bank = FlexibleCaller(app.test_client(), phone)
    assert bank.post("verify_user").status_code == 401
    ok = bank.post("verify_user", headers={"X-Webhook-Token": "a-long-enough-secret-value"})
    assert ok.status_code == 200 and ok.get_json()["user_found"] is True


# --- the standard webhook is untouched ----------------------------------------------------------------------------

def test_the_standard_webhook_issues_no_credential(caller, store):
    """verify_otp through POST /webhook answers no auth_token and stores no credential; after a right code it answers
    card_count and email_registered, which verify_user no longer discloses (issue 12)."""
    hanako = caller()
    verified = hanako.authenticate()
    assert verified == {"otp_verified": True, "otp_attempts_left": 3, "auth_level": 1, "email_registered": True,
                        "card_count": 4}
    with store.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count(AuthToken.id))) == 0


def test_a_flexible_credential_means_nothing_to_the_standard_webhook(flex, client, phone):
    """A CX session that sends a flexible auth_token as a session parameter is not verified by it."""
    hanako = flex()
    token = hanako.authenticate()
    r = client.post("/webhook", json=cx_request(TAGS["validate_card"], "s-token", phone_number="09000001111",
                                                 last_four_digit_of_card_number="4444", auth_token=token))
    assert r.get_json()["sessionInfo"]["parameters"]["webhook_error_code"] == "AUTH_REQUIRED"


def test_functions_framework_routes_flexible_paths(make_app, monkeypatch, phone):
    """`functions-framework --target=webhook` receives every path: /flexible/<tag> reaches the flexible edge,
    any other path the standard webhook as before."""
    from functions_framework import create_app as ff_create_app

    monkeypatch.setenv("DATABASE_URL", make_app().extensions["lockcard"].store.url)
    monkeypatch.setenv("NOTIFY_BACKEND", "file")
    monkeypatch.setenv("NOTIFY_FILE", str(phone.path))
    import main

    monkeypatch.setattr(main, "app", main.LazyApp())
    ff_client = ff_create_app(target="webhook", source="main.py").test_client()
    r = ff_client.post("/flexible/" + TAGS["verify_user"], json={"phone_number": "09000001111"})
    assert r.status_code == 200 and r.get_json()["user_found"] is True
    standard = ff_client.post("/", json=cx_request(TAGS["verify_user"], caller_id="+819000001111"))
    assert standard.get_json()["sessionInfo"]["parameters"]["user_found"] is True
    assert ff_client.post("/flexible/nope", json={}).status_code == 404


def test_seed_dialog_1_through_flexible_endpoints(flex, store, phone):
    """Dialog 1 (lost card, temporary lock, reissue) the way Google's component calls the webhooks."""
    hanako = flex(None)
    found = hanako.ok("verify_user", caller_id="+819000001111")
    hanako.phone_number = found["phone_number"]
    hanako.authenticate()
    cards = hanako.ok("get_card_details")
    assert "4444" in cards["last_four_digit_of_all_cards"]
    assert hanako.ok("validate_card", last_four_digit_of_card_number=4444.0)["card_status"] == "active"
    ticket = hanako.ok("lock_card", last_four_digit_of_card_number=4444.0, lock_type="inactive", lock_reason="lost")
    assert ticket["card_status"] == "inactive"
    assert hanako.ok("reissue_card", last_four_digit_of_card_number=4444.0, zip_code=12345.0)["acknowledgement_number"]
    assert card_status(store, "+819000001111", "4444") == "inactive"


def test_both_edges_share_the_send_limit(make_app, store_url, phone):
    """Codes sent through /webhook and /flexible count against one OTP_SEND_LIMIT per customer and class: the same
    handler functions apply the same rules (growing delays and the per-session limit set aside here)."""
    app = make_app(database_url=store_url, throttle_free_events=20, otp_session_send_limit=20)
    client = app.test_client()
    standard = Caller(client, phone, "shared-sends", "09012345041")
    flexible = FlexibleCaller(client, phone, "09012345041")
    for _ in range(3):
        assert standard.call("send_otp", otp_channel="sms")["otp_sent"] is True
    flexible.send_code()
    flexible.send_code()
    limited = flexible.post("send_otp", otp_channel="sms")
    assert limited.status_code == 429 and limited.get_json()["error"]["code"] == "OTP_RATE_LIMITED"
    assert standard.call("send_otp", otp_channel="sms")["webhook_error_code"] == "OTP_RATE_LIMITED"


def test_wrong_codes_on_both_edges_count_toward_one_throttle(make_app, store_url, phone):
    """With OTP_FAILURE_LIMIT=4, two wrong codes on each edge (neither reaching the limit alone) throttle new codes
    for anonymous sessions on both edges together; the customer is not disabled (issue 12), and her own line still
    gets and uses a code."""
    app = make_app(database_url=store_url, otp_failure_limit=4, throttle_free_events=20)
    client = app.test_client()
    standard = Caller(client, phone, "shared-failures", "09000001111")
    flexible = FlexibleCaller(client, phone)
    standard.call("send_otp", otp_channel="sms")
    wrong = "000000" if phone.last_code() != "000000" else "111111"
    assert standard.call("verify_otp", otp_code=wrong)["otp_verified"] is False
    assert standard.call("verify_otp", otp_code=wrong)["otp_verified"] is False
    flexible.send_code()  # two wrong codes so far: below the limit
    wrong = "000000" if phone.last_code() != "000000" else "111111"
    assert flexible.type_code(wrong) == {"otp_verified": False, "otp_attempts_left": 2}
    assert flexible.type_code(wrong) == {"otp_verified": False, "otp_attempts_left": 1}  # the fourth, compared
    refused = flexible.post("send_otp", otp_channel="sms")
    assert refused.status_code == 429 and refused.get_json()["error"]["code"] == "OTP_RATE_LIMITED"
    assert Caller(client, phone, "fresh", "09000001111").call(
        "send_otp", otp_channel="sms")["webhook_error_code"] == "OTP_RATE_LIMITED"
    with service_of(app).store.unit_of_work() as uow:
        assert uow.session.scalar(select(Customer.otp_disabled_at).where(
            Customer.phone_e164 == "+819000001111")) is None
    real = Caller(client, phone, "real", "09000001111", caller_id="+819000001111")
    assert real.authenticate()["otp_verified"] is True
