"""Restore the built agent into a Dialogflow CX agent and point its webhook at the service.

google-cloud-dialogflow-cx is imported here only when a real client is needed; tests pass fakes that implement
the few methods used (`AgentsClient.restore_agent`, `WebhooksClient.list_webhooks` / `update_webhook`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentpack.build import WEBHOOK_DISPLAY_NAME

_AGENT_RE = re.compile(r"^projects/[^/]+/locations/([^/]+)/agents/[^/]+$")
RESTORE_TIMEOUT_S = 600


class DeployError(Exception):
    """The agent name, the zip or the restored agent is not what a deploy needs."""


@dataclass(frozen=True)
class Deployed:
    agent: str
    webhook: str
    webhook_uri: str


def api_endpoint(agent: str) -> str | None:
    """Regional agents are served by `<location>-dialogflow.googleapis.com`; global ones by the default."""
    match = _AGENT_RE.match(agent)
    if not match:
        raise DeployError(f"not an agent name: {agent!r} (projects/P/locations/L/agents/ID)")
    location = match.group(1)
    return None if location == "global" else f"{location}-dialogflow.googleapis.com"


def clients(agent: str) -> tuple[Any, Any]:  # pragma: no cover - needs Google credentials
    from google.api_core.client_options import ClientOptions
    from google.cloud import dialogflowcx_v3 as cx

    endpoint = api_endpoint(agent)
    options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    return cx.AgentsClient(client_options=options), cx.WebhooksClient(client_options=options)


def deploy(agent: str, zip_path: Path | str, webhook_uri: str | None = None,
           agents_client: Any = None, webhooks_client: Any = None) -> Deployed:
    """Replace `agent` with the zip's content, then set the standard webhook's URI (when given)."""
    from google.cloud import dialogflowcx_v3 as cx
    from google.protobuf import field_mask_pb2

    api_endpoint(agent)  # validates the name before anything is sent
    content = Path(zip_path).read_bytes()
    if not content.startswith(b"PK"):
        raise DeployError(f"{zip_path} is not a zip file")
    if agents_client is None or webhooks_client is None:
        agents_client, webhooks_client = clients(agent)

    operation = agents_client.restore_agent(request=cx.RestoreAgentRequest(name=agent, agent_content=content))
    operation.result(timeout=RESTORE_TIMEOUT_S)

    webhooks = [w for w in webhooks_client.list_webhooks(request=cx.ListWebhooksRequest(parent=agent))
                if w.display_name == WEBHOOK_DISPLAY_NAME]
    if len(webhooks) != 1:
        raise DeployError(f"expected one webhook named {WEBHOOK_DISPLAY_NAME!r} after the restore, "
                          f"found {len(webhooks)}")
    webhook = webhooks[0]
    if webhook_uri:
        webhook.generic_web_service.uri = webhook_uri
        webhook = webhooks_client.update_webhook(request=cx.UpdateWebhookRequest(
            webhook=webhook, update_mask=field_mask_pb2.FieldMask(paths=["generic_web_service.uri"])))
    return Deployed(agent=agent, webhook=webhook.name, webhook_uri=webhook.generic_web_service.uri)
