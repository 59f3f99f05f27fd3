"""Security suite helpers: a local stand-in for Google's ID-token signer (our own RSA key, its certificate served
over HTTP the way Google serves its certs). The store snapshot helpers are in tests/store_state.py."""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

AUDIENCE = "https://lockcard-webhook-abc123-an.a.run.app"
DIALOGFLOW_AGENT = "service-123456789@gcp-sa-dialogflow.iam.gserviceaccount.com"
KEY_ID = "test-key-1"


# --- a Google ID-token issuer of our own ---------------------------------------------------------------------------

class TokenIssuer:
    """Signs ID tokens like Google's token service, with a key whose certificate `certs_url` serves."""

    def __init__(self, key_pem: bytes, cert_pem: bytes, certs_url: str, server: "_CertsServer") -> None:
        self.key_pem = key_pem
        self.cert_pem = cert_pem
        self.certs_url = certs_url
        self._server = server

    @property
    def certs_fetches(self) -> int:
        return self._server.hits

    def token(self, *, key_pem: bytes | None = None, key_id: str = KEY_ID, **claims) -> str:
        """A token for the Dialogflow service agent and our audience, valid for an hour, unless `claims` say else."""
        from google.auth import crypt, jwt

        now = int(time.time())
        payload = {"iss": "https://accounts.google.com", "aud": AUDIENCE, "azp": "1234567890",
                   "email": DIALOGFLOW_AGENT, "email_verified": True, "sub": "1234567890",
                   "iat": now, "exp": now + 3600}
        payload.update(claims)
        payload = {k: v for k, v in payload.items() if v is not None}
        signer = crypt.RSASigner.from_string(key_pem or self.key_pem, key_id=key_id)
        return jwt.encode(signer, payload).decode()


def new_rsa_key() -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def self_signed_cert(key_pem: bytes) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(key_pem, password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-google-id-token-signer")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


class _CertsServer(ThreadingHTTPServer):
    daemon_threads = True
    body = b"{}"
    hits = 0


class _CertsHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        self.server.hits += 1
        body = self.server.body
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Cache-Control", "public, max-age=300, must-revalidate, no-transform")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


# --- fixtures (imported by the conftest.py of each suite that needs them) -------------------------------------

@pytest.fixture(scope="session")
def _signing_key() -> tuple[bytes, bytes]:
    key = new_rsa_key()
    return key, self_signed_cert(key)


@pytest.fixture(scope="session")
def _certs_server(_signing_key):
    key_pem, cert_pem = _signing_key
    server = _CertsServer(("127.0.0.1", 0), _CertsHandler)
    server.body = json.dumps({KEY_ID: cert_pem.decode()}).encode()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def google_issuer(_signing_key, _certs_server):
    """A token issuer and a local certs endpoint in Google's `{key id: PEM certificate}` format."""
    key_pem, cert_pem = _signing_key
    _certs_server.hits = 0
    url = f"http://127.0.0.1:{_certs_server.server_address[1]}/oauth2/v1/certs"
    return TokenIssuer(key_pem, cert_pem, url, _certs_server)
