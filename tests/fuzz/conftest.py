"""Fuzz fixtures: the local Google ID-token issuer, shared with the security suite."""
from tests.security.support import _certs_server, _signing_key, google_issuer  # noqa: F401 - fixtures
