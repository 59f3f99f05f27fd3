"""Attacks on the flexible endpoints: forged, expired, other customers', replayed-after-deletion and
after-number-change credentials; bodies with extra or missing fields; every parameter hostile. Each is refused with
a clear error and leaves the store exactly as it was; a credential never reaches a log line."""
from __future__ import annotations

import datetime as dt
import json
import logging
import secrets

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select, update

from backoffice import customers as backoffice_customers
from cardstore.models import AuthToken, Card, Customer, VerifiedSession
from tests.flexible import TAGS, FlexibleCaller
from tests.security.support import AUDIENCE, DIALOGFLOW_AGENT
from tests.store_state import unchanged
from webhook.app import service_of

LOCK = {"last_four_digit_of_card_number": "4444", "lock_type": "blocked", "lock_reason": "stolen"}


@pytest.fixture
def flex(client, phone):
    return lambda phone_number="09000001111": FlexibleCaller(client, phone, phone_number)


@pytest.fixture
def hanako(flex):
    """Hanako, verified a moment ago: her conversation holds a fresh auth_token."""
    caller = flex()
    caller.authenticate()
    return caller


def refused(response, status: int = 403, code: str = "AUTH_REQUIRED") -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.get_json()["error"]["code"] == code


def age_credentials(store, minutes: int) -> None:
    """Let `minutes` pass for every credential and verified session (their times move back)."""
    delta = dt.timedelta(minutes=minutes)
    with store.unit_of_work() as uow:
        for credential in uow.session.scalars(select(AuthToken)):
            credential.issued_at -= delta
        for verified in uow.session.scalars(select(VerifiedSession)):
            verified.verified_at -= delta
        uow.commit()


# --- forged and stolen credentials ---------------------------------------------------------------------------------

@pytest.mark.parametrize("token", [
    "lcat_" + "A" * 43,                          # well-formed, never issued
    "lcat_" + secrets.token_urlsafe(32),         # well-formed, random
    "lcat_short", "", "Bearer lcat_x", "' OR 1=1 --", "lcat_" + "A" * 43 + "\x00", "x" * 10_000,
], ids=["never-issued", "random", "short", "empty", "bearer-prefix", "sql", "nul", "huge"])
def test_a_forged_credential_reads_and_changes_nothing(flex, store, token):
    """A made-up auth_token is 403 AUTH_REQUIRED for a read and a lock, and the store is unchanged."""
    mallory = flex()
    mallory.authenticate()  # a real one exists: the forged one must not be taken for it
    with unchanged(store):
        refused(mallory.post("validate_card", auth_token=token, last_four_digit_of_card_number="4444"))
        refused(mallory.post("lock_card", auth_token=token, **LOCK))


def test_a_credential_that_is_not_a_string_is_a_bad_request(hanako, store):
    """auth_token as a number, list or object is 400 INVALID_PARAMETER, nothing changes."""
    with unchanged(store):
        for token in (1, 1.0, ["lcat_x"], {"token": "lcat_x"}, True):
            refused(hanako.post("lock_card", auth_token=token, **LOCK), 400, "INVALID_PARAMETER")


def test_an_expired_credential_is_refused(hanako, store):
    """Past the step-up window (10 min) a lock is refused but a read still works; past VERIFIED_SESSION_TTL (30 min)
    the read is refused too."""
    age_credentials(store, 11)
    with unchanged(store):
        refused(hanako.post("lock_card", **LOCK))
        refused(hanako.post("reissue_card", last_four_digit_of_card_number="4444", zip_code="12345"))
    assert hanako.ok("validate_card", last_four_digit_of_card_number="4444")["card_found"] is True
    age_credentials(store, 20)
    with unchanged(store):
        refused(hanako.post("validate_card", last_four_digit_of_card_number="4444"))
        refused(hanako.post("get_card_details"))
        refused(hanako.post("request_reactivation", last_four_digit_of_card_number="4444"))


def test_another_customers_credential_opens_nothing(flex, store):
    """Taro verifies his own number, then sends his auth_token with Hanako's number: refused, nothing changes."""
    taro = flex("09000002222")
    taro_token = taro.authenticate()
    victim = flex("09000001111")
    with unchanged(store):
        refused(victim.post("get_card_details", auth_token=taro_token))
        refused(victim.post("validate_card", auth_token=taro_token, last_four_digit_of_card_number="5555"))
        refused(victim.post("lock_card", auth_token=taro_token, **LOCK))
        refused(victim.post("reissue_card", auth_token=taro_token, last_four_digit_of_card_number="4444",
                            zip_code="12345"))
        refused(victim.post("request_reactivation", auth_token=taro_token, last_four_digit_of_card_number="4444"))


def test_a_credential_never_reaches_another_customers_card(flex, store):
    """With his own credential and number, Taro asking for Hanako's card 5555 finds nothing and locks nothing."""
    taro = flex("09000002222")
    taro.authenticate()
    with unchanged(store):
        assert taro.ok("validate_card", last_four_digit_of_card_number="5555")["card_found"] is False
        refused(taro.post("lock_card", last_four_digit_of_card_number="5555", lock_type="blocked",
                          lock_reason="stolen"), 422, "CARD_NOT_FOUND")


def test_a_credential_replayed_after_the_customer_is_deleted_is_dead(hanako, store):
    """Hanako is deleted by an operator; her auth_token, replayed, reads and changes nothing."""
    with store.unit_of_work() as uow:
        backoffice_customers.delete_customer(uow, "+819000001111", "operator:test")
    with unchanged(store):
        refused(hanako.post("validate_card", last_four_digit_of_card_number="4444"))
        refused(hanako.post("lock_card", **LOCK))


def test_a_credential_replayed_after_a_number_change_is_dead(hanako, store):
    """Hanako's number changes after she verified: her auth_token is dead with the old number and with the new one
    (whoever holds the old number now must not inherit her session, nor the token follow the customer)."""
    with store.unit_of_work() as uow:
        uow.session.execute(update(Customer).where(Customer.phone_e164 == "+819000001111")
                            .values(phone_e164="+819000003333"))
        uow.commit()
    with unchanged(store):
        refused(hanako.post("lock_card", **LOCK))
        hanako.phone_number = "09000003333"
        refused(hanako.post("validate_card", last_four_digit_of_card_number="4444"))
        refused(hanako.post("lock_card", **LOCK))


def test_a_credential_replayed_after_the_number_is_given_to_someone_else_is_dead(hanako, store):
    """Hanako leaves and her old number is registered to a new customer: her auth_token opens nothing of theirs."""
    with store.unit_of_work() as uow:
        uow.session.execute(update(Customer).where(Customer.phone_e164 == "+819000001111")
                            .values(phone_e164="+819000003333"))
        new = uow.repo.add(Customer(phone_e164="+819000001111", name="new", zip_code="54321"))
        uow.repo.flush()
        uow.repo.add(Card(customer_id=new.id, last4="4444", vendor="Visa"))
        uow.commit()
    with unchanged(store):
        refused(hanako.post("validate_card", last_four_digit_of_card_number="4444"))
        refused(hanako.post("lock_card", **LOCK))


def test_a_code_verified_on_the_standard_webhook_gives_no_flexible_credential(caller, flex, store):
    """A CX session verified through POST /webhook cannot be used as a flexible credential (there is none to send)."""
    caller().authenticate()
    with store.unit_of_work() as uow:
        assert uow.session.scalars(select(AuthToken)).first() is None
    with unchanged(store):
        refused(flex().post("lock_card", auth_token=None, **LOCK))


# --- bodies with extra or missing fields ---------------------------------------------------------------------------

@pytest.mark.parametrize("action, body, code", [
    ("lock_card", {**LOCK, "session": "projects/p/sessions/s"}, "UNKNOWN_FIELD"),
    ("lock_card", {**LOCK, "sessionInfo": {"session": "x"}}, "UNKNOWN_FIELD"),
    ("lock_card", {**LOCK, "verified": True}, "UNKNOWN_FIELD"),
    ("validate_card", {"last_four_digit_of_card_number": "4444", "customer_id": 1}, "UNKNOWN_FIELD"),
    ("lock_card", {"last_four_digit_of_card_number": "4444", "lock_type": "blocked"}, "MISSING_FIELD"),
    ("lock_card", {**LOCK, "lock_reason": None}, "MISSING_FIELD"),
    ("reissue_card", {"last_four_digit_of_card_number": "4444"}, "MISSING_FIELD"),
    ("verify_otp", {"otp_code": "123456"}, "MISSING_FIELD"),
    ("send_otp", {"phone_number": None}, "MISSING_FIELD"),
])
def test_extra_or_missing_fields_are_a_bad_request(hanako, store, action, body, code):
    """A field the endpoint does not take, or a required one absent or null, is 400 naming it; nothing changes."""
    with unchanged(store):
        response = hanako.post(action, **body)
        refused(response, 400, code)
        assert response.get_json()["error"]["message"]


@pytest.mark.parametrize("body", [[], "lcat_x", 1, None, [{"phone_number": "09000001111"}]])
def test_a_body_that_is_not_an_object_is_a_bad_request(client, store, body):
    """JSON that is not an object is 400 MALFORMED_REQUEST."""
    with unchanged(store):
        refused(client.post("/flexible/" + TAGS["lock_card"], data=json.dumps(body), content_type="application/json"),
                400, "MALFORMED_REQUEST")


# --- every parameter hostile ---------------------------------------------------------------------------------------

hostile = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=80),
    st.sampled_from(["\x00", "'; DROP TABLE cards; --", "4444\x00", "９" * 300, "lcat_" + "A" * 43, "0" * 10_000,
                     "lcoc_" + "A" * 32, "+819000002222", "{{7*7}}", "$session.params.auth_token", "inactive"]),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
FIELDS = {
    "lock_card": ["phone_number", "last_four_digit_of_card_number", "lock_type", "lock_reason", "auth_token",
                  "language_code"],
    "reissue_card": ["phone_number", "last_four_digit_of_card_number", "zip_code", "auth_token"],
    "request_reactivation": ["phone_number", "last_four_digit_of_card_number", "auth_token"],
    "validate_card": ["phone_number", "last_four_digit_of_card_number", "auth_token", "auth_level"],
    "get_card_details": ["phone_number", "auth_token"],
    "send_otp": ["phone_number", "otp_channel", "otp_challenge", "max_otp_retry_count", "language_code"],
    "verify_otp": ["phone_number", "otp_challenge", "otp_code"],
    "verify_user": ["phone_number", "caller_id"],
}
VALID = {"phone_number": "09000001111", "last_four_digit_of_card_number": "4444", "lock_type": "blocked",
         "lock_reason": "stolen", "zip_code": "99999", "otp_channel": "fax", "otp_code": "000000",
         "language_code": "ja", "auth_level": 1, "max_otp_retry_count": 3, "caller_id": None,
         "otp_challenge": "lcoc_" + "B" * 32}


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_every_parameter_hostile_is_a_clear_error_or_a_harmless_answer(hanako, store, action, data):
    """One field at a time made hostile, the others such that no call can complete a change (a reissue to the wrong
    zip, an unknown channel, a forged credential, an active card to reactivate): never a 5xx, an error body on every
    refusal, and the store unchanged but for the throttles' counters."""
    field = data.draw(st.sampled_from(FIELDS[action]))
    value = data.draw(hostile)
    body = {k: VALID.get(k) for k in FIELDS[action] if k != "auth_token"}
    body["auth_token"] = hanako.auth_token
    body[field] = value
    # A hostile value may happen to be a valid one (null is "absent": otp_channel then defaults to sms), so the call
    # is kept one a valid value cannot complete: a lock with a forged credential, a code to nobody's number.
    if action == "lock_card" and field not in ("auth_token", "phone_number"):
        body["auth_token"] = "lcat_" + "Z" * 43
    if action == "send_otp" and field != "phone_number":
        body["phone_number"] = "09099998888"
    body = {k: v for k, v in body.items() if k in FIELDS[action]}
    # The abuse throttles count even a refused call (issue 12): their counters are the one table that may change, and
    # a throttled call is a 429 with its error body (VALID's fixed otp_challenge is one session across examples).
    with unchanged(store, except_tables=("throttle_counters",)):
        response = hanako.client.post(f"/flexible/{TAGS[action]}", json=body)
        assert response.status_code in (200, 400, 403, 409, 422, 429), response.get_data(as_text=True)
        if response.status_code != 200:
            assert set(response.get_json()) == {"error"} and response.get_json()["error"]["code"]
        else:
            assert "error" not in response.get_json()
        assert "Traceback" not in response.get_data(as_text=True)


# --- logs -----------------------------------------------------------------------------------------------------------



def test_a_credential_never_appears_in_a_log_line(flex, phone, log_lines, capfd):
    """A whole flexible dialog, with refusals: neither the auth_token nor the otp_challenge (nor the code) is in any
    log line, stdout or stderr; a careless log call that quotes a token is scrubbed by the formatter."""
    hanako = flex()
    token = hanako.authenticate()
    challenge, code = hanako.otp_challenge, phone.last_code()
    hanako.ok("get_card_details")
    hanako.ok("lock_card", **LOCK)
    refused(flex("09000002222").post("lock_card", auth_token=token, **LOCK))
    refused(hanako.post("lock_card", extra_field=token, **LOCK), 400, "UNKNOWN_FIELD")
    logging.getLogger("lockcard.webhook").warning("stray %s", token)
    out, err = capfd.readouterr()
    lines = "\n".join(json.dumps(line, ensure_ascii=False) for line in log_lines())
    assert lines.count("\n") >= 6 and "lcat_***" in lines
    for secret in (token, token[5:], challenge, challenge[5:], code):
        for written in (lines, out, err):
            assert secret not in written


# --- the caller check on flexible URLs ------------------------------------------------------------------------------

@pytest.mark.parametrize("configured", [AUDIENCE, AUDIENCE + "/", AUDIENCE + "/webhook"],
                         ids=["service-url", "trailing-slash", "webhook-url-as-cloudbuild-sets-it"])
def test_the_service_agents_token_for_a_flexible_url_is_accepted(make_app, google_issuer, phone, configured):
    """CX's service-agent ID token names the URL it calls: for /flexible/<tag> that is the configured service URL
    (with or without /webhook) plus the flexible path, and it is served."""
    app = make_app(webhook_auth="google-id-token", webhook_audience=configured,
                   webhook_allowed_service_accounts=DIALOGFLOW_AGENT,
                   webhook_id_token_certs_url=google_issuer.certs_url)
    url = AUDIENCE + "/flexible/" + TAGS["verify_user"]
    bank = FlexibleCaller(app.test_client(), phone)
    response = bank.post("verify_user", headers={"Authorization": "Bearer " + google_issuer.token(aud=url)})
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize("aud", ["https://someone-else.a.run.app/flexible/" + TAGS["lock_card"],
                                 AUDIENCE + "/flexible/prebuilt_components_lock_card:unlock_all",
                                 AUDIENCE + "/flexible/", AUDIENCE + "/elsewhere/" + TAGS["lock_card"]],
                         ids=["other-service", "unknown-tag", "no-tag", "other-path"])
def test_a_token_for_another_url_is_refused_on_flexible_endpoints(id_token_app, google_issuer, phone, aud):
    """A genuine service-agent token for another service, or for a path that is no webhook of ours: 401, nothing
    changes."""
    bank = FlexibleCaller(id_token_app.test_client(), phone)
    with unchanged(service_of(id_token_app).store):
        response = bank.post("lock_card", headers={"Authorization": "Bearer " + google_issuer.token(aud=aud)},
                             auth_token="lcat_" + "A" * 43, **LOCK)
    refused(response, 401, "UNAUTHENTICATED")
