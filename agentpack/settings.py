"""Packaging settings: read from the environment once, when a command runs (never at import)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

AUTH_KINDS = ("service_agent", "basic", "header", "none")


@dataclass(frozen=True)
class PackSettings:
    """How the built agent reaches the webhook. Environment names are the upper-case field names."""

    # The standard webhook's URL: the Cloud Run service's /webhook, or the Cloud Function's URL.
    agent_webhook_url: str = "https://YOUR-WEBHOOK-HOST/webhook"
    # service_agent: CX's service agent sends a Google ID token (the service stays private; default).
    # basic: AGENT_WEBHOOK_USERNAME / AGENT_WEBHOOK_PASSWORD. header: AGENT_WEBHOOK_HEADERS "Name: value; …".
    # none: no authentication (local demos only).
    # The flexible endpoints' base (`--webhooks flexible`): each webhook is BASE/flexible/<tag>. Default: the
    # standard URL without its trailing /webhook (the same service).
    agent_flexible_base_url: str | None = None
    agent_webhook_auth: Literal["service_agent", "basic", "header", "none"] = "service_agent"
    agent_webhook_username: str | None = None
    agent_webhook_password: str | None = None
    agent_webhook_headers: dict[str, str] = field(default_factory=dict)
    agent_webhook_timeout_s: int = 5
    agent_time_zone: str = "Asia/Tokyo"

    def __post_init__(self) -> None:
        if self.agent_webhook_auth not in AUTH_KINDS:
            raise ValueError(f"AGENT_WEBHOOK_AUTH must be one of {', '.join(AUTH_KINDS)}, "
                             f"not {self.agent_webhook_auth!r}")
        if self.agent_webhook_auth == "basic" and not (self.agent_webhook_username and self.agent_webhook_password):
            raise ValueError("AGENT_WEBHOOK_AUTH=basic needs AGENT_WEBHOOK_USERNAME and AGENT_WEBHOOK_PASSWORD")
        if self.agent_webhook_auth == "header" and not self.agent_webhook_headers:
            raise ValueError("AGENT_WEBHOOK_AUTH=header needs AGENT_WEBHOOK_HEADERS (\"Name: value; …\")")
        if not 1 <= self.agent_webhook_timeout_s <= 30:
            raise ValueError("AGENT_WEBHOOK_TIMEOUT_S must be between 1 and 30 seconds")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> PackSettings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name in cls.__dataclass_fields__:
            raw = env.get(name.upper())
            if raw in (None, ""):
                continue
            if name == "agent_webhook_headers":
                values[name] = _parse_headers(raw)
            elif name == "agent_webhook_timeout_s":
                values[name] = int(raw)
            else:
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _parse_headers(raw: str) -> dict[str, str]:
    headers = {}
    for item in raw.split(";"):
        if not item.strip():
            continue
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise ValueError("AGENT_WEBHOOK_HEADERS entries look like 'Name: value', separated by ';'")
        headers[name.strip()] = value.strip()
    return headers
