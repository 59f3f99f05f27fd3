"""Upstream authentication at the CX protocol edge: a signed assertion from the bank's own authenticator (its IVR).

A session parameter proves nothing — any DetectIntent client can set `auth_level`. An upstream that has
authenticated the caller proves it by signing a short-lived JWT (RS256 or ES256) that the service verifies with the
upstream's public keys (`UPSTREAM_ASSERTION_KEYS`), passed in the session parameter `upstream_auth_assertion`:

    {"iss": UPSTREAM_ASSERTION_ISSUER, "aud": UPSTREAM_ASSERTION_AUDIENCE,
     "phone_number": "+819000002222",               # the customer it authenticated (E.164)
     "sid": "projects/…/sessions/…",                # the CX session it authenticated them in: no other session
     "iat": …, "exp": …}                            # exp - iat <= UPSTREAM_ASSERTION_MAX_LIFETIME_SECONDS

A verified assertion lets that session read that customer's cards (as a code verified in the session does); it
never stands in for the card holder's code a lock or a reissue needs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from contact import e164, parse_phone
from settings import Settings, load_upstream_keys

PARAMETER = "upstream_auth_assertion"
MAX_ASSERTION = 4096  # a JWT with a few claims is ~600 bytes; longer is not one of ours
CLOCK_SKEW_S = 10


@dataclass(frozen=True)
class UpstreamVerifier:
    keys: dict[str, str]
    issuer: str
    audience: str
    max_lifetime_s: int
    region: str = "JP"

    @classmethod
    def from_settings(cls, settings: Settings) -> UpstreamVerifier | None:
        """The verifier UPSTREAM_ASSERTION_* configure, or None when upstream assertions are not in use."""
        if not settings.upstream_assertion_keys:
            return None
        assert settings.upstream_assertion_issuer and settings.upstream_assertion_audience
        return cls(load_upstream_keys(settings.upstream_assertion_keys), settings.upstream_assertion_issuer,
                   settings.upstream_assertion_audience, settings.upstream_assertion_max_lifetime_seconds,
                   settings.default_region)

    def vouched_phone(self, token: Any, session: str) -> tuple[str | None, str]:
        """The customer's number (E.164) the assertion vouches for in `session`, or None and why not (for the log)."""
        from google.auth import jwt

        if not isinstance(token, str) or not token or len(token) > MAX_ASSERTION:
            return None, "assertion is not a JWT"
        try:
            # Signature (RS256/ES256 only: google-auth has no "none"), iat and exp present and current, audience.
            claims = jwt.decode(token, certs=self.keys, audience=self.audience, clock_skew_in_seconds=CLOCK_SKEW_S)
        except Exception as exc:  # noqa: BLE001 - whatever fails to verify is simply not a proof
            return None, f"assertion rejected: {type(exc).__name__}"
        if claims.get("iss") != self.issuer:
            return None, "assertion has a wrong issuer"
        if claims.get("sid") != session:
            return None, "assertion was made for another session"
        lifetime = claims.get("exp", 0) - claims.get("iat", 0)
        if not isinstance(lifetime, (int, float)) or lifetime > self.max_lifetime_s:
            return None, "assertion lives longer than UPSTREAM_ASSERTION_MAX_LIFETIME_SECONDS"
        try:
            return e164(parse_phone(claims.get("phone_number"), self.region)), "ok"
        except ValueError:
            return None, "assertion names no phone number"


def sign_assertion(key_pem: bytes | str, *, key_id: str, issuer: str, audience: str, phone_number: str,
                   session: str, lifetime_s: int = 300, now: float | None = None, **claims: Any) -> str:
    """What the upstream does after authenticating a caller (its side, for tests and the development stand-in)."""
    from google.auth import crypt, jwt

    issued = int(now if now is not None else time.time())
    payload = {"iss": issuer, "aud": audience, "phone_number": phone_number, "sid": session,
               "iat": issued, "exp": issued + lifetime_s, **claims}
    signer = crypt.RSASigner.from_string(key_pem, key_id=key_id)
    return jwt.encode(signer, payload).decode()
