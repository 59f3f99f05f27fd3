"""The console's room: who is signed in, and what they may do.

In production Google Cloud IAP stands in front of the service and signs every request it lets through with
`x-goog-iap-jwt-assertion` (ES256). We verify it with google-auth against IAP's published keys, the audience from
settings and IAP's issuer; the verified e-mail is the audit actor. Roles come from settings, never from the request.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from settings import Settings
from webhook.auth import CachedCertsRequest

IAP_HEADER = "x-goog-iap-jwt-assertion"
IAP_ISSUER = "https://cloud.google.com/iap"
OPERATOR, SUPERVISOR = "operator", "supervisor"
MAX_ASSERTION = 8192
CLOCK_SKEW_S = 30


@dataclass(frozen=True)
class Identity:
    email: str
    role: str  # operator | supervisor

    @property
    def supervisor(self) -> bool:
        return self.role == SUPERVISOR


class NotSignedIn(Exception):
    """No identity could be verified: the message says why (for the log; the page says less)."""


class NoRole(Exception):
    """A verified identity that the roles setting does not name."""


def role_of(settings: Settings, email: str) -> str:
    email = email.lower()
    if email in settings.console_supervisors:
        return SUPERVISOR
    if email in settings.console_operators:
        return OPERATOR
    raise NoRole("not an operator or supervisor of the console (CONSOLE_OPERATORS / CONSOLE_SUPERVISORS)")


class IapVerifier:
    """Checks IAP's signed header: signature (IAP's keys), expiry, audience (CONSOLE_IAP_AUDIENCE), issuer."""

    def __init__(self, audience: str, certs_url: str, request=None) -> None:
        self.audience = audience
        self.certs_url = certs_url
        self._request = request

    @property
    def request(self):
        if self._request is None:
            self._request = CachedCertsRequest()
        return self._request

    def email(self, headers: Mapping[str, str]) -> str:
        from google.oauth2 import id_token

        assertion = headers.get(IAP_HEADER, "")
        if not assertion:
            raise NotSignedIn(f"no {IAP_HEADER} header: the request did not come through IAP")
        if len(assertion) > MAX_ASSERTION:
            raise NotSignedIn("the IAP assertion is too long")
        try:
            claims = id_token.verify_token(assertion, self.request, audience=self.audience,
                                           certs_url=self.certs_url, clock_skew_in_seconds=CLOCK_SKEW_S)
        except Exception as exc:  # noqa: BLE001 - whatever failed, nobody is signed in
            raise NotSignedIn(f"IAP assertion rejected: {type(exc).__name__}") from None
        if claims.get("iss") != IAP_ISSUER:
            raise NotSignedIn("IAP assertion has a wrong issuer")
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise NotSignedIn("IAP assertion has no e-mail")
        # IAP prefixes identities from its own providers ("accounts.google.com:alice@example.com").
        return email.rpartition(":")[2].lower()


class Identities:
    """Who is signed in for a request, under CONSOLE_AUTH (iap or development)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.iap = (IapVerifier(settings.console_iap_audience or "", settings.console_iap_certs_url)
                    if settings.console_auth == "iap" else None)

    def of(self, headers: Mapping[str, str]) -> Identity:
        if self.iap is None:
            # Development only (production refuses CONSOLE_AUTH=development): one fixed identity.
            return Identity(self.settings.console_dev_email.lower(), self.settings.console_dev_role)
        email = self.iap.email(headers)
        return Identity(email, role_of(self.settings, email))
