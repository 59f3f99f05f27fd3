"""Console fixtures: a local stand-in for Google Cloud IAP (our own ES256 key, its public key served the way IAP
serves its keys), apps signed in through it, and a test client that fills in each form's CSRF token."""
from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webhook.app import service_of

AUDIENCE = "/projects/123456789/global/backendServices/987654321"
KEY_ID = "iap-test-key"
OPERATOR = "operator@bank.example"
SUPERVISOR = "supervisor@bank.example"
OUTSIDER = "someone@gmail.com"


def new_ec_key() -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


class Iap:
    """Signs `x-goog-iap-jwt-assertion` headers like IAP, with a key whose public half `certs_url` serves."""

    def __init__(self, key_pem: bytes, certs_url: str) -> None:
        self.key_pem = key_pem
        self.certs_url = certs_url

    def assertion(self, email: str, *, key_pem: bytes | None = None, **claims) -> str:
        from google.auth import crypt, jwt

        now = int(time.time())
        payload = {"iss": "https://cloud.google.com/iap", "aud": AUDIENCE, "sub": f"accounts.google.com:{email}",
                   "email": f"accounts.google.com:{email}", "iat": now, "exp": now + 3600}
        payload.update(claims)
        signer = crypt.ES256Signer.from_string(key_pem or self.key_pem, key_id=KEY_ID)
        return jwt.encode(signer, payload).decode()

    def headers(self, email: str, **claims) -> dict[str, str]:
        return {"x-goog-iap-jwt-assertion": self.assertion(email, **claims)}


def locked_and_handed_off(app, phone, last4="5555") -> int:
    """Hanako (09000001111) verifies by SMS, locks card `last4` temporarily and asks for reactivation."""
    from tests.conftest import Caller

    hanako = Caller(app.test_client(), phone, f"call-{last4}", "09000001111")
    hanako.authenticate()
    hanako.call("lock_card", last_four_digit_of_card_number=last4, lock_type="inactive", lock_reason="lost")
    return hanako.call("request_reactivation", last_four_digit_of_card_number=last4)["handoff_id"]


class _KeysHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "public, max-age=300")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def iap():
    """IAP's signer and a loopback server publishing its public key as {key id: PEM} (IAP's `public_key` format)."""
    private, public = new_ec_key()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _KeysHandler)
    server.daemon_threads = True
    server.body = json.dumps({KEY_ID: public.decode()}).encode()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield Iap(private, f"http://127.0.0.1:{server.server_address[1]}/iap/verify/public_key")
    server.shutdown()
    server.server_close()


def _console_factory(make_app, iap, database_url: str | None):
    def factory(**overrides):
        values = {"console_auth": "iap", "console_iap_audience": AUDIENCE, "console_iap_certs_url": iap.certs_url,
                  "console_operators": OPERATOR, "console_supervisors": SUPERVISOR}
        if database_url is not None:
            values["database_url"] = database_url
        values.update(overrides)
        app = make_app(**values)
        app.testing = True  # a view's exception fails the test with its traceback, not as a 500 page
        return app

    return factory


@pytest.fixture
def console_app(make_app, iap, store_url):
    """`console_app(**overrides)`: the service with its console behind (our) IAP, one operator and one supervisor,
    on each store backend in turn."""
    return _console_factory(make_app, iap, store_url)


@pytest.fixture
def browser_console_app(make_app, iap):
    """The same on SQLite only, for the browser tests (what they check does not depend on the store)."""
    return _console_factory(make_app, iap, None)


_TOKEN = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


class Operator:
    """One person at the console through a test client: every request carries their IAP assertion; `post` takes
    the CSRF token from the page the form is on, as a browser would."""

    def __init__(self, app, iap: Iap, email: str) -> None:
        self.app = app
        self.email = email
        self.client = app.test_client()
        self.client.environ_base.update({"HTTP_X_GOOG_IAP_JWT_ASSERTION": iap.assertion(email)})

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def token(self, page: str) -> str:
        html = self.get(page).get_data(as_text=True)
        match = _TOKEN.search(html)
        assert match, f"no CSRF token on {page}"
        return match.group(1) or match.group(2)

    def post(self, path: str, data: dict | None = None, *, form_on: str, **kwargs):
        return self.client.post(path, data={**(data or {}), "csrf_token": self.token(form_on)}, **kwargs)

    @property
    def store(self):
        return service_of(self.app).store


@pytest.fixture
def operator(iap):
    """`operator(app, email)`: that person signed in (through IAP) at the app's console."""
    return lambda app, email=OPERATOR: Operator(app, iap, email)
