"""Caller authentication at the HTTP edge: who may call POST /webhook (`WEBHOOK_AUTH`).

Runs before the body is read, for both entry points. A refusal is `Denied(status, code, message)`, answered as
JSON: 401 when the credentials are missing or do not verify, 403 when they verify but name a caller that is not
allowed, 503 when the keys to verify with cannot be fetched (our fault, not the caller's). The reason a check
failed goes to the log line, never to the caller.
"""
from __future__ import annotations

import base64
import binascii
import hmac
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from contact import mask_email
from settings import Settings

GOOGLE_ISSUERS = ("accounts.google.com", "https://accounts.google.com")
# Cloud clocks are NTP-synced; a few seconds cover the hop from the token service to us.
CLOCK_SKEW_S = 10
CERTS_TIMEOUT_S = 2.0
CERTS_MAX_AGE_S = 3600  # refetch at least hourly even if the response says to keep it longer
MAX_AUTHORIZATION = 8192  # a Google ID token is ~1 KB; longer is not one


@dataclass(frozen=True)
class Denied:
    status: int
    code: str
    message: str
    reason: str  # for the log line only
    challenge: str | None = None  # WWW-Authenticate

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def _missing(reason: str, challenge: str | None = None) -> Denied:
    return Denied(401, "UNAUTHENTICATED", "credentials are required", reason, challenge)


def _invalid(reason: str, challenge: str | None = None) -> Denied:
    return Denied(401, "UNAUTHENTICATED", "credentials are not valid", reason, challenge)


class Authenticator(Protocol):
    def check(self, headers: Mapping[str, str]) -> Denied | None:
        """None when the caller may proceed, else why not."""


class NoAuth:
    """`none`: everyone may call (development only; production refuses it)."""

    def check(self, headers: Mapping[str, str]) -> Denied | None:
        return None


class SharedHeader:
    """`header`: a shared secret in a header, compared in constant time."""

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self._expected = value.encode()

    def check(self, headers: Mapping[str, str]) -> Denied | None:
        given = headers.get(self.name)
        if not given:
            return _missing(f"no {self.name} header")
        if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), self._expected):
            return _invalid(f"wrong {self.name} value")
        return None


class BasicAuth:
    """`basic`: HTTP Basic user and password, both compared in constant time (no early exit on the user)."""

    CHALLENGE = 'Basic realm="lockcard-webhook", charset="UTF-8"'

    def __init__(self, user: str, password: str) -> None:
        self._user = user.encode()
        self._password = password.encode()

    def check(self, headers: Mapping[str, str]) -> Denied | None:
        header = headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        if not header:
            return _missing("no Authorization header", self.CHALLENGE)
        if scheme.lower() != "basic" or len(header) > MAX_AUTHORIZATION:
            return _invalid("Authorization is not Basic", self.CHALLENGE)
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return _invalid("Basic credentials are not base64", self.CHALLENGE)
        user, sep, password = decoded.partition(b":")
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        if not (sep and user_ok and password_ok):
            return _invalid("wrong Basic user or password", self.CHALLENGE)
        return None


class CachedCertsRequest:
    """A google-auth transport that keeps the certs response for its max-age (at most an hour).

    Without it every call would fetch Google's keys again: a network round trip inside the CX 5 s budget.
    One `google.auth.transport.requests.Request` (one HTTP session) serves every refetch.
    """

    def __init__(self, timeout: float = CERTS_TIMEOUT_S) -> None:
        import google.auth.transport.requests  # imported on first use: keeps `import main` light

        self._inner = google.auth.transport.requests.Request()
        self._timeout = timeout
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def __call__(self, url: str, method: str = "GET", body=None, headers=None, timeout=None, **kwargs):
        if method != "GET" or body is not None:
            return self._inner(url, method=method, body=body, headers=headers, timeout=timeout or self._timeout,
                               **kwargs)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(url)
            if cached and cached[0] > now:
                return cached[1]
        response = self._inner(url, method="GET", headers=headers, timeout=timeout or self._timeout, **kwargs)
        if response.status == 200:
            with self._lock:
                self._cache[url] = (now + _max_age(response.headers), response)
        return response


def _max_age(headers: Mapping[str, str]) -> float:
    for part in (headers.get("Cache-Control") or headers.get("cache-control") or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.lower() == "max-age" and value.isdigit():
            return float(min(int(value), CERTS_MAX_AGE_S))
    return 300.0


class GoogleIdToken:
    """`google-id-token`: a Google-signed ID token (the Dialogflow service agent's) as `Authorization: Bearer`.

    google-auth checks the signature against Google's published keys, the expiry and the audience (the service
    URL); we check the issuer and that the token names a verified, allow-listed service account. The allow-list
    is what makes this safe: anyone with a Google account can mint a token for any audience.
    """

    CHALLENGE = 'Bearer realm="lockcard-webhook"'

    def __init__(self, audience: list[str], allowed: list[str], certs_url: str, request=None) -> None:
        self.audience = list(audience)
        self.allowed = frozenset(a.lower() for a in allowed)
        self.certs_url = certs_url
        self._request = request

    @property
    def request(self):
        if self._request is None:
            self._request = CachedCertsRequest()
        return self._request

    def check(self, headers: Mapping[str, str]) -> Denied | None:
        from google.auth import exceptions as google_exceptions
        from google.oauth2 import id_token

        header = headers.get("Authorization", "")
        if not header:
            return _missing("no Authorization header", self.CHALLENGE)
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or len(header) > MAX_AUTHORIZATION:
            return _invalid("Authorization is not a Bearer token", self.CHALLENGE)
        try:
            claims = id_token.verify_token(token, self.request, audience=self.audience, certs_url=self.certs_url,
                                           clock_skew_in_seconds=CLOCK_SKEW_S)
        except google_exceptions.TransportError as exc:
            return Denied(503, "AUTH_UNAVAILABLE", "caller verification is unavailable; try again",
                          f"certs fetch failed: {type(exc).__name__}")
        except Exception as exc:  # noqa: BLE001 - any token that does not verify is a 401, whatever broke
            return _invalid(f"ID token rejected: {type(exc).__name__}: {str(exc)[:200]}", self.CHALLENGE)
        if not isinstance(claims, Mapping) or claims.get("iss") not in GOOGLE_ISSUERS:
            return _invalid("ID token has a wrong issuer", self.CHALLENGE)
        email = claims.get("email")
        if not isinstance(email, str) or claims.get("email_verified") is not True:
            return Denied(403, "PERMISSION_DENIED", "this caller is not allowed", "ID token has no verified e-mail")
        if email.lower() not in self.allowed:
            return Denied(403, "PERMISSION_DENIED", "this caller is not allowed",
                          f"service account {mask_email(email)} is not allow-listed")
        return None


def with_flexible_urls(audiences: list[str]) -> list[str]:
    """The configured audiences, plus the URL of every flexible endpoint of the same service.

    CX's service-agent ID token names the URL it calls, and a bank's flexible webhooks call /flexible/<tag>: for a
    configured service URL (with or without its /webhook) the token for `<service>/flexible/<tag>` is accepted too,
    for the registered tags only, so the list stays an exact one.
    """
    from webhook.flexible import PATH_PREFIX
    from webhook.registry import REGISTRY

    accepted = list(audiences)
    for audience in audiences:
        base = audience.rstrip("/")
        base = base.removesuffix("/webhook")
        accepted += [f"{base}{PATH_PREFIX}{tag}" for tag in REGISTRY.tags()]
    return list(dict.fromkeys(accepted))


def authenticator_for(settings: Settings) -> Authenticator:
    """The check `WEBHOOK_AUTH` names, configured from the settings (which validated it is complete)."""
    if settings.webhook_auth == "google-id-token":
        return GoogleIdToken(with_flexible_urls(settings.webhook_audience), settings.webhook_allowed_service_accounts,
                             settings.webhook_id_token_certs_url)
    if settings.webhook_auth == "basic":
        assert settings.webhook_basic_user and settings.webhook_basic_password
        return BasicAuth(settings.webhook_basic_user, settings.webhook_basic_password.get_secret_value())
    if settings.webhook_auth == "header":
        assert settings.webhook_header_value
        return SharedHeader(settings.webhook_header_name, settings.webhook_header_value.get_secret_value())
    return NoAuth()
