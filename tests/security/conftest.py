"""Security suite fixtures: the store snapshot check and a local Google ID-token issuer (see support.py), so the
real google-auth verification code runs without the network."""
from __future__ import annotations

import pytest

from tests.security.support import AUDIENCE, DIALOGFLOW_AGENT
from tests.store_state import unchanged
from tests.security.support import _certs_server, _signing_key, google_issuer  # noqa: F401 - fixtures


@pytest.fixture
def nothing_changes():
    """`with nothing_changes(store): ...` fails if any row of any table was added, removed or altered."""
    return unchanged


@pytest.fixture
def id_token_app(make_app, google_issuer):
    """The webhook, open only to the Dialogflow service agent's Google ID token for our audience."""
    return make_app(webhook_auth="google-id-token", webhook_audience=AUDIENCE,
                    webhook_allowed_service_accounts=DIALOGFLOW_AGENT,
                    webhook_id_token_certs_url=google_issuer.certs_url)
