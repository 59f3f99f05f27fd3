"""Security suite fixtures: the store snapshot check and a local Google ID-token issuer (see support.py), so the
real google-auth verification code runs without the network."""
from __future__ import annotations

import json
import threading

import pytest

from tests.security.support import (AUDIENCE, DIALOGFLOW_AGENT, KEY_ID, TokenIssuer, _CertsHandler, _CertsServer,
                                    new_rsa_key, self_signed_cert, unchanged)


@pytest.fixture
def nothing_changes():
    """`with nothing_changes(store): ...` fails if any row of any table was added, removed or altered."""
    return unchanged


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


@pytest.fixture
def id_token_app(make_app, google_issuer):
    """The webhook, open only to the Dialogflow service agent's Google ID token for our audience."""
    return make_app(webhook_auth="google-id-token", webhook_audience=AUDIENCE,
                    webhook_allowed_service_accounts=DIALOGFLOW_AGENT,
                    webhook_id_token_certs_url=google_issuer.certs_url)
