"""Fuzz: hypothesis-made webhook bodies, CX-shaped and garbage. Never a 500, never a traceback in a body, and
every 200 parses strictly as the official WebhookResponse (the test client checks each one).

Two hundred bodies per strategy in the default run; `pytest -m fuzz_long tests/fuzz` sends >= 10,000 each.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from tests.conftest import SESSION, Caller, assert_official_webhook_response
from tests.security.support import AUDIENCE, DIALOGFLOW_AGENT
from webhook.registry import REGISTRY

DEFAULT_EXAMPLES = 200
LONG_EXAMPLES = 10_000
SECRET = "fuzz-shared-secret-0123456789"

PARAM_NAMES = ["phone_number", "otp_channel", "otp_code", "max_otp_retry_count", "auth_level",
               "last_four_digit_of_card_number", "lock_type", "lock_reason", "zip_code", "card_status",
               "otp_verified", "transfer_reason"]

# --- values ------------------------------------------------------------------------------------------------------

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
                | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=60))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
plausible = st.one_of(
    st.sampled_from(["09000001111", "09000002222", "09012345041", "+819000001111", "090-0000-1111",
                     "０９０００００１１１１", "9000001111.0", "0", ""]),
    st.sampled_from(["4444", "1456", "5555", "０４４４", "44 44", "4444.0", "42", "-1"]),
    st.sampled_from([4444.0, 42.0, 1.0, 0.0, -0.0, 1e16, 9000001111.0, 12345.0]),
    st.sampled_from(["sms", "email", "SMS", "ｅｍａｉｌ", "inactive", "blocked", "active", "stolen", "lost",
                     "damaged", "others", "12345", "123-45", "〒12345", "000000", "123456"]),
    st.from_regex(r"\A[0-9０-９ \-.+]{0,16}\Z"),
)
param_values = plausible | json_values


@st.composite
def cx_bodies(draw) -> dict:
    """A WebhookRequest-shaped body: a real or odd tag, a session, parameters, maybe form and telephony parts."""
    tag = draw(st.sampled_from(REGISTRY.tags()) | st.text(max_size=40))
    session = draw(st.sampled_from([SESSION + "fuzz-verified", SESSION + "fuzz-other", ""]) | st.text(max_size=80))
    params = draw(st.dictionaries(st.sampled_from(PARAM_NAMES) | st.text(max_size=12), param_values, max_size=6))
    body: dict = {"fulfillmentInfo": {"tag": tag}, "sessionInfo": {"session": session, "parameters": params}}
    if draw(st.booleans()):
        body["languageCode"] = draw(st.sampled_from(["ja", "en", "en-US", ""]) | st.text(max_size=8))
    if draw(st.booleans()):
        infos = draw(st.lists(st.fixed_dictionaries({
            "displayName": st.sampled_from(PARAM_NAMES) | st.text(max_size=10),
            "value": param_values,
        }, optional={"required": st.booleans(), "state": st.sampled_from(["FILLED", "INVALID", "EMPTY"]),
                     "justCollected": json_values}), max_size=4))
        body["pageInfo"] = {"currentPage": "projects/p/locations/l/agents/a/flows/f/pages/p",
                            "formInfo": {"parameterInfo": infos}}
    if draw(st.booleans()):
        body["payload"] = {"telephony": {"caller_id": draw(plausible | json_values)}}
    # Now and then break the shape itself: a wrong type where an object belongs.
    if draw(st.integers(0, 9)) == 0:
        key = draw(st.sampled_from(["fulfillmentInfo", "sessionInfo", "pageInfo", "payload"]))
        body[key] = draw(json_values)
    return body


garbage_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v, allow_nan=True).encode()),
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
)


# --- the checks ----------------------------------------------------------------------------------------------------

def check_answer(response) -> None:
    text = response.get_data(as_text=True)
    assert response.status_code in (200, 400, 401, 403, 413, 415), (response.status_code, text)
    assert "Traceback" not in text and "File \"" not in text
    assert response.mimetype == "application/json"
    body = json.loads(text)
    if response.status_code == 200:
        assert_official_webhook_response(text)
        assert "sessionInfo" in body
    else:
        assert set(body) == {"error"} and isinstance(body["error"]["code"], str)


@pytest.fixture
def fuzz_client(make_app, phone):
    """One app for all examples of a run (a fresh SQLite store), with a verified session to reach deep code."""
    client = make_app().test_client()
    Caller(client, phone, "fuzz-verified", "09000001111").authenticate()
    return client


def fuzz_cx_bodies(client, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(cx_bodies())
    def one(body):
        check_answer(client.post("/webhook", data=json.dumps(body, allow_nan=True), content_type="application/json"))

    one()


def fuzz_garbage(client, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(garbage_bodies, st.sampled_from(["application/json", "application/json; charset=utf-8",
                                            "text/plain", "application/octet-stream"]))
    def one(raw, content_type):
        check_answer(client.post("/webhook", data=raw, content_type=content_type))

    one()


def fuzz_credentials(client, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.one_of(st.text(max_size=300), st.from_regex(r"\ABearer [A-Za-z0-9_\-.=]{0,400}\Z"),
                     st.from_regex(r"\ABasic [A-Za-z0-9+/=]{0,80}\Z")))
    def one(authorization):
        # HTTP header values cannot carry CR/LF or non-Latin-1 text; the client would refuse to send them.
        value = authorization.encode("latin-1", "replace").decode("latin-1").replace("\r", "").replace("\n", "")
        headers = {"Authorization": value}
        body = {"fulfillmentInfo": {"tag": REGISTRY.tags()[0]}, "sessionInfo": {"session": SESSION + "f"}}
        response = client.post("/webhook", json=body, headers=headers)
        check_answer(response)
        assert response.status_code == 401

    one()


def test_cx_shaped_bodies_never_break_the_webhook(fuzz_client):
    """Two hundred CX-shaped bodies with odd tags, sessions and values: a clean answer every time."""
    fuzz_cx_bodies(fuzz_client, DEFAULT_EXAMPLES)


def test_garbage_bodies_never_break_the_webhook(fuzz_client):
    """Two hundred arbitrary JSON values, bytes and texts under various content types: a clean 4xx or 200."""
    fuzz_garbage(fuzz_client, DEFAULT_EXAMPLES)


def test_garbage_credentials_are_always_a_401(make_app, google_issuer):
    """Arbitrary Authorization headers against the Google ID-token check: 401 JSON, never a 500."""
    app = make_app(webhook_auth="google-id-token", webhook_audience=AUDIENCE,
                   webhook_allowed_service_accounts=DIALOGFLOW_AGENT,
                   webhook_id_token_certs_url=google_issuer.certs_url)
    fuzz_credentials(app.test_client(), 200)


@pytest.mark.fuzz_long
def test_ten_thousand_cx_shaped_bodies(fuzz_client):
    """fuzz_long: 10,000 CX-shaped bodies."""
    fuzz_cx_bodies(fuzz_client, LONG_EXAMPLES)


@pytest.mark.fuzz_long
def test_ten_thousand_garbage_bodies(fuzz_client):
    """fuzz_long: 10,000 garbage bodies."""
    fuzz_garbage(fuzz_client, LONG_EXAMPLES)


@pytest.mark.fuzz_long
def test_ten_thousand_garbage_credentials(make_app, google_issuer):
    """fuzz_long: 10,000 Authorization headers against the Google ID-token check."""
    app = make_app(webhook_auth="google-id-token", webhook_audience=AUDIENCE,
                   webhook_allowed_service_accounts=DIALOGFLOW_AGENT,
                   webhook_id_token_certs_url=google_issuer.certs_url)
    fuzz_credentials(app.test_client(), LONG_EXAMPLES)
