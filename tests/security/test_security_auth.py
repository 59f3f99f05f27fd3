"""Who can call the webhook: each WEBHOOK_AUTH mode lets its caller in and keeps everyone else out, with JSON."""
from __future__ import annotations

import base64
import json
import time

import pytest

from tests.conftest import cx_request
from webhook.app import service_of

from tests.security.support import AUDIENCE, DIALOGFLOW_AGENT, new_rsa_key

VERIFY_USER = "prebuilt_components_authentication:verify_user"
LOCK = "prebuilt_components_lock_card:lock_card_ticket_number"
SECRET = "s3cret-shared-between-cx-and-us"


def post(client, headers=None, body=None, **kwargs):
    body = body if body is not None else cx_request(VERIFY_USER, phone_number="09000001111")
    return client.post("/webhook", json=body, headers=headers or {}, **kwargs)


def assert_refused(response, status: int, code: str) -> None:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == code
    assert "Traceback" not in response.get_data(as_text=True)


# --- header -------------------------------------------------------------------------------------------------------

@pytest.fixture
def header_client(make_app):
    return make_app(webhook_auth="header", webhook_header_value=SECRET).test_client()


def test_shared_header_lets_the_agent_in(header_client):
    """CX sends the shared secret in X-Webhook-Token: the call is served."""
    response = post(header_client, {"X-Webhook-Token": SECRET})
    assert response.status_code == 200
    assert response.get_json()["sessionInfo"]["parameters"]["user_found"] is True


@pytest.mark.parametrize("headers", [{}, {"X-Webhook-Token": ""}, {"X-Webhook-Token": SECRET[:-1]},
                                     {"X-Webhook-Token": SECRET + "x"}, {"X-Webhook-Token": "ＳＥＣＲＥＴ"},
                                     {"Authorization": SECRET}, {"X-Other-Token": SECRET}])
def test_shared_header_keeps_others_out(header_client, headers):
    """No secret, an empty, a shorter, a longer or a look-alike secret, or the right one elsewhere: 401 JSON."""
    assert_refused(post(header_client, headers), 401, "UNAUTHENTICATED")


def test_shared_header_name_is_configurable(make_app):
    """WEBHOOK_HEADER_NAME moves the secret to another header; the default one no longer counts."""
    client = make_app(webhook_auth="header", webhook_header_name="X-Bank-Key", webhook_header_value=SECRET).test_client()
    assert post(client, {"X-Bank-Key": SECRET}).status_code == 200
    assert_refused(post(client, {"X-Webhook-Token": SECRET}), 401, "UNAUTHENTICATED")


# --- basic --------------------------------------------------------------------------------------------------------

def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture
def basic_client(make_app):
    return make_app(webhook_auth="basic", webhook_basic_user="dialogflow", webhook_basic_password=SECRET).test_client()


def test_basic_auth_lets_the_agent_in(basic_client):
    """CX's webhook configured with user and password: the call is served."""
    assert post(basic_client, basic("dialogflow", SECRET)).status_code == 200


@pytest.mark.parametrize("headers", [
    {},
    basic("dialogflow", "wrong"),
    basic("someone", SECRET),
    basic("dialogflow", SECRET + ":"),
    basic("", ""),
    {"Authorization": "Basic !!!not-base64!!!"},
    {"Authorization": "Bearer " + SECRET},
    {"Authorization": "Basic"},
])
def test_basic_auth_keeps_others_out(basic_client, headers):
    """Missing, wrong user, wrong password, garbage or another scheme: 401 JSON with a Basic challenge."""
    response = post(basic_client, headers)
    assert_refused(response, 401, "UNAUTHENTICATED")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")


# --- google-id-token ------------------------------------------------------------------------------------------------

def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_dialogflow_service_agent_token_is_accepted(id_token_app, google_issuer):
    """The Dialogflow service agent's ID token for our URL: served."""
    response = post(id_token_app.test_client(), bearer(google_issuer.token()))
    assert response.status_code == 200


def test_google_certs_are_fetched_once_not_per_call(id_token_app, google_issuer):
    """Ten calls verify against keys fetched once (cached for their max-age), not ten round trips."""
    client = id_token_app.test_client()
    for _ in range(10):
        assert post(client, bearer(google_issuer.token())).status_code == 200
    assert google_issuer.certs_fetches == 1


# Claims are built when the test runs, not when the file is collected: a long suite run must not age them.
@pytest.mark.parametrize("claims", [
    lambda now: {"exp": now - 120, "iat": now - 3720},  # expired two minutes ago
    lambda now: {"iat": now + 600, "exp": now + 4200},  # issued in the future
    lambda now: {"exp": None},  # no expiry
    lambda now: {"aud": "https://someone-else.a.run.app"},
    lambda now: {"aud": AUDIENCE + "/webhook"},
    lambda now: {"iss": "https://evil.example.com"},
    lambda now: {"iss": "https://securetoken.google.com/project"},
], ids=["expired", "future", "no-exp", "other-audience", "audience-with-path", "other-issuer", "firebase-issuer"])
def test_tokens_that_do_not_verify_are_refused(id_token_app, google_issuer, claims, nothing_changes):
    """Expired, not yet valid, for another audience or from another issuer: 401, and nothing happens."""
    claims = claims(int(time.time()))
    client = id_token_app.test_client()
    body = cx_request(LOCK, phone_number="09000001111", last_four_digit_of_card_number="4444",
                      lock_type="blocked", lock_reason="stolen")
    with nothing_changes(service_of(id_token_app).store):
        response = post(client, bearer(google_issuer.token(**claims)), body=body)
    assert_refused(response, 401, "UNAUTHENTICATED")
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_token_signed_with_another_key_is_refused(id_token_app, google_issuer):
    """A token signed by a key Google did not publish, even under a published key id: 401."""
    forged = google_issuer.token(key_pem=new_rsa_key())
    assert_refused(post(id_token_app.test_client(), bearer(forged)), 401, "UNAUTHENTICATED")


def test_token_with_unknown_key_id_is_refused(id_token_app, google_issuer):
    """A key id that is not among Google's published keys: 401."""
    assert_refused(post(id_token_app.test_client(), bearer(google_issuer.token(key_id="other"))), 401,
                   "UNAUTHENTICATED")


def _unsigned(claims: dict, alg: str) -> str:
    def part(obj) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    return f"{part({'alg': alg, 'typ': 'JWT', 'kid': 'test-key-1'})}.{part(claims)}."


@pytest.mark.parametrize("alg", ["none", "HS256"])
def test_unsigned_or_symmetric_tokens_are_refused(id_token_app, alg):
    """`alg: none` and HS256 (signed with the public cert as a secret) tokens: 401."""
    now = int(time.time())
    claims = {"iss": "accounts.google.com", "aud": AUDIENCE, "email": DIALOGFLOW_AGENT, "email_verified": True,
              "iat": now, "exp": now + 600}
    assert_refused(post(id_token_app.test_client(), bearer(_unsigned(claims, alg))), 401, "UNAUTHENTICATED")


@pytest.mark.parametrize("header", ["Bearer", "Bearer ", "Bearer not.a.jwt", "Bearer a.b.c.d", "Basic abc",
                                    "Bearer " + "A" * 9000, "Bearer ey\u00e9.ey.x"])
def test_garbage_authorization_is_refused(id_token_app, header):
    """Malformed, over-long or non-Bearer Authorization headers: 401, never a 500."""
    assert_refused(post(id_token_app.test_client(), {"Authorization": header}), 401, "UNAUTHENTICATED")


def test_missing_token_is_refused(id_token_app):
    """No Authorization header at all: 401."""
    assert_refused(post(id_token_app.test_client()), 401, "UNAUTHENTICATED")


@pytest.mark.parametrize("claims", [{"email": "someone@gmail.com"},
                                    {"email": "attacker@evil-project.iam.gserviceaccount.com"},
                                    {"email_verified": False}, {"email": None}])
def test_valid_token_of_a_caller_not_allowed_is_forbidden(id_token_app, google_issuer, claims):
    """A genuine Google token, right audience, but not the allow-listed service agent (or unverified): 403."""
    assert_refused(post(id_token_app.test_client(), bearer(google_issuer.token(**claims))), 403,
                   "PERMISSION_DENIED")


def test_certs_endpoint_down_is_a_503_not_a_401(make_app, google_issuer):
    """When Google's keys cannot be fetched the fault is ours: 503 JSON, so CX does not see a rejection."""
    app = make_app(webhook_auth="google-id-token", webhook_audience=AUDIENCE,
                   webhook_allowed_service_accounts=DIALOGFLOW_AGENT,
                   webhook_id_token_certs_url="http://127.0.0.1:9/oauth2/v1/certs")
    assert_refused(post(app.test_client(), bearer(google_issuer.token())), 503, "AUTH_UNAVAILABLE")


# --- the edge as a whole ---------------------------------------------------------------------------------------------

def test_caller_is_checked_before_the_body_is_read(header_client):
    """An unauthenticated 2 MB body or a wrong content type gets 401, not 413/415: strangers learn nothing."""
    big = b"{" + b" " * (2 * 1024 * 1024) + b"}"
    assert_refused(header_client.post("/webhook", data=big, content_type="application/json"), 401,
                   "UNAUTHENTICATED")
    assert_refused(header_client.post("/webhook", data="x", content_type="text/plain"), 401, "UNAUTHENTICATED")


def test_health_check_needs_no_credentials(header_client):
    """Cloud Run's health check has no secret: /healthz answers without one."""
    assert header_client.get("/healthz").status_code == 200


def test_functions_framework_entry_point_checks_the_caller_too(monkeypatch, tmp_path):
    """`functions-framework --target=webhook` serves through the same edge: no secret, 401; the secret, 200."""
    import functions_framework
    from pathlib import Path

    for name, value in {"WEBHOOK_AUTH": "header", "WEBHOOK_HEADER_VALUE": SECRET,
                        "DATABASE_URL": f"sqlite:///{tmp_path / 'ff.sqlite3'}", "NOTIFY_BACKEND": "file",
                        "NOTIFY_FILE": str(tmp_path / "n.jsonl")}.items():
        monkeypatch.setenv(name, value)
    main_py = Path(__file__).resolve().parents[2] / "main.py"
    client = functions_framework.create_app(target="webhook", source=str(main_py)).test_client()
    body = cx_request(VERIFY_USER, phone_number="09000001111")
    assert_refused(client.post("/", json=body), 401, "UNAUTHENTICATED")
    assert_refused(client.post("/", json=body, headers={"X-Webhook-Token": "nope"}), 401, "UNAUTHENTICATED")
    # Past the check the request reaches dispatch (the empty store has no customers: a webhook_error, not a 401).
    answered = client.post("/", json=body, headers={"X-Webhook-Token": SECRET})
    assert answered.status_code == 200
    assert answered.get_json()["sessionInfo"]["parameters"]["transfer_reason"] == "webhook_error"


@pytest.mark.parametrize("overrides, named", [
    ({"webhook_auth": "google-id-token", "webhook_allowed_service_accounts": DIALOGFLOW_AGENT}, "WEBHOOK_AUDIENCE"),
    ({"webhook_auth": "google-id-token", "webhook_audience": AUDIENCE}, "WEBHOOK_ALLOWED_SERVICE_ACCOUNTS"),
    ({"webhook_auth": "basic", "webhook_basic_user": "dialogflow"}, "WEBHOOK_BASIC_PASSWORD"),
    ({"webhook_auth": "header"}, "WEBHOOK_HEADER_VALUE"),
])
def test_incomplete_auth_settings_fail_at_start(make_app, overrides, named):
    """A mode without what it needs does not start, and says which setting is missing."""
    with pytest.raises(ValueError, match=named):
        make_app(**overrides)


def test_sessions_are_independent_of_credentials(id_token_app, google_issuer):
    """A token authenticates CX, not a customer: an unverified session still gets AUTH_REQUIRED."""
    body = cx_request(LOCK, phone_number="09000001111", last_four_digit_of_card_number="4444",
                      lock_type="blocked", lock_reason="stolen")
    response = post(id_token_app.test_client(), bearer(google_issuer.token()), body=body)
    params = response.get_json()["sessionInfo"]["parameters"]
    assert params == {"transfer_reason": "webhook_error", "webhook_error_code": "AUTH_REQUIRED"}
