"""Upstream authentication must be proved, not claimed: production refuses TRUST_UPSTREAM_AUTH_LEVEL, and a signed
assertion (UPSTREAM_ASSERTION_*) opens reads for one customer in one session only, never a change."""
from __future__ import annotations

import json
import time

import pytest

from settings import ProductionRefused, Settings
from tests.conftest import SESSION, Caller
from tests.security.support import new_rsa_key
from tests.security.test_security_production import SAFE
from tests.store_state import unchanged
from webhook.app import service_of
from webhook.upstream import sign_assertion

HANAKO, ICHIRO = "09000001111", "09000002222"
ISSUER, AUDIENCE = "https://ivr.bank.example", "lockcard-webhook"


def public_pem(key_pem: bytes) -> str:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(key_pem, password=None)
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


@pytest.fixture(scope="module")
def ivr_key() -> bytes:
    return new_rsa_key()


@pytest.fixture
def ivr_keys_file(tmp_path, ivr_key):
    path = tmp_path / "ivr-keys.json"
    path.write_text(json.dumps({"ivr-1": public_pem(ivr_key)}))
    return path


@pytest.fixture
def upstream_app(make_app, ivr_keys_file):
    """The webhook trusting assertions signed by the bank's IVR key, and nothing else upstream."""
    return make_app(upstream_assertion_keys=ivr_keys_file, upstream_assertion_issuer=ISSUER,
                    upstream_assertion_audience=AUDIENCE)


def assertion(key_pem: bytes, *, session: str, phone: str = "+819000001111", key_id: str = "ivr-1",
              **changes) -> str:
    claims = {"issuer": ISSUER, "audience": AUDIENCE, "phone_number": phone, "session": SESSION + session}
    lifetime = changes.pop("lifetime_s", 300)
    now = changes.pop("now", None)
    claims.update(changes)
    return sign_assertion(key_pem, key_id=key_id, lifetime_s=lifetime, now=now, **claims)


def test_with_trust_upstream_auth_level_a_fresh_session_reads_another_customers_cards(make_app, phone):
    """The attack TRUST_UPSTREAM_AUTH_LEVEL allows: auth_level=1 from a fresh session reads Ichiro's cards. So
    production refuses the setting, naming it."""
    app = make_app(trust_upstream_auth_level=True)
    mallory = Caller(app.test_client(), phone, "mallory-fresh", ICHIRO)
    assert mallory.call("get_card_details", auth_level=1)["last_four_digit_of_all_cards"] == ["4444"]
    with pytest.raises(ProductionRefused, match="TRUST_UPSTREAM_AUTH_LEVEL"):
        Settings(**{**SAFE, "trust_upstream_auth_level": True})


def test_production_accepts_upstream_assertions_but_not_the_development_key(ivr_keys_file):
    """A real upstream key is fine in production; the development key (its private half is in the repository)
    is refused, and so is a keys file that is not one."""
    upstream = {"upstream_assertion_issuer": ISSUER, "upstream_assertion_audience": AUDIENCE}
    Settings(**SAFE, upstream_assertion_keys=ivr_keys_file, **upstream)
    with pytest.raises(ProductionRefused, match="development key"):
        Settings(**SAFE, upstream_assertion_keys="fixtures/upstream/development-keys.json", **upstream)
    ivr_keys_file.write_text("not json")
    with pytest.raises(ProductionRefused, match="UPSTREAM_ASSERTION_KEYS"):
        Settings(**SAFE, upstream_assertion_keys=ivr_keys_file, **upstream)
    with pytest.raises(ValueError, match="UPSTREAM_ASSERTION_ISSUER"):
        Settings(upstream_assertion_keys=ivr_keys_file)


def test_a_signed_assertion_lets_its_session_read_its_customer(upstream_app, phone, ivr_key):
    """The IVR authenticated Hanako in this session and says so, signed: the session reads her cards, with no code
    and no trusted auth_level. It still cannot lock one: that needs the card holder's code in this session."""
    hanako = Caller(upstream_app.test_client(), phone, "ivr-hanako", HANAKO)
    token = assertion(ivr_key, session="ivr-hanako")
    assert hanako.call("get_card_details", upstream_auth_assertion=token)["card_count"] == 4
    assert hanako.call("validate_card", last_four_digit_of_card_number="4444",
                       upstream_auth_assertion=token)["card_found"] is True
    with unchanged(service_of(upstream_app).store):
        locked = hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="blocked",
                             lock_reason="stolen", upstream_auth_assertion=token)
    assert locked["webhook_error_code"] == "AUTH_REQUIRED"


@pytest.mark.parametrize("case", ["other session", "other customer", "expired", "wrong issuer", "wrong audience",
                                  "foreign key", "unknown key id", "too long-lived", "garbage", "auth_level only"])
def test_an_assertion_that_does_not_prove_this_customer_in_this_session_opens_nothing(upstream_app, phone, ivr_key,
                                                                                        case):
    """Every way an assertion can fail to prove the caller: AUTH_REQUIRED for reads, nothing written."""
    mallory = Caller(upstream_app.test_client(), phone, "mallory", ICHIRO if case == "other customer" else HANAKO)
    tokens = {  # built on demand: a fresh RSA key is slow to make
        "other session": lambda: assertion(ivr_key, session="ivr-hanako"),  # Hanako's, replayed from elsewhere
        "other customer": lambda: assertion(ivr_key, session="mallory"),  # Hanako's, used for Ichiro's number
        "expired": lambda: assertion(ivr_key, session="mallory", now=time.time() - 3600),
        "wrong issuer": lambda: assertion(ivr_key, session="mallory", issuer="https://evil.example"),
        "wrong audience": lambda: assertion(ivr_key, session="mallory", audience="another-service"),
        "foreign key": lambda: assertion(new_rsa_key(), session="mallory"),
        "unknown key id": lambda: assertion(new_rsa_key(), session="mallory", key_id="ivr-2"),
        "too long-lived": lambda: assertion(ivr_key, session="mallory", lifetime_s=24 * 3600),
        "garbage": lambda: "eyJhbGciOiJub25lIn0.eyJzaWQiOiJ4In0.",
        "auth_level only": lambda: None,
    }
    token = tokens[case]()
    params = {"auth_level": 1}
    if token is not None:
        params["upstream_auth_assertion"] = token
    with unchanged(service_of(upstream_app).store):
        assert mallory.call("get_card_details", **params)["webhook_error_code"] == "AUTH_REQUIRED"
        assert mallory.call("validate_card", last_four_digit_of_card_number="4444",
                            **params)["webhook_error_code"] == "AUTH_REQUIRED"
