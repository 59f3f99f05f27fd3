"""Apply the flexible webhook settings by API (agentpack room) to an agent that imported Google's Lock card component:
what the seed's 基本設定 asks a bank to do by hand in the console, webhook by webhook.

Each of Google's webhooks is found by its display name (the tag) and updated in place with `update_webhook`: the
same resource keeps its id, so the component's flows, which call it by resource name, now reach the service. Only
the fields the settings own are in the update mask (type, URI, method, body, mapping, authentication, timeout); the
rest of the bank's webhook stays. Nothing is created: a webhook the agent lacks is not one its flows call.

google-cloud-dialogflow-cx is imported only inside the functions; tests pass a fake `WebhooksClient`
(`list_webhooks`, `update_webhook`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentpack.deploy import DeployError, api_endpoint
from agentpack.flexible import FLEXIBLE_CALLS, SEED_WEBHOOKS, webhook_json
from agentpack.settings import PackSettings

# The Webhook fields the settings own, per authentication kind (the others are left as the bank set them).
_ALWAYS = ["generic_web_service.uri", "generic_web_service.webhook_type", "generic_web_service.http_method",
           "generic_web_service.request_body", "generic_web_service.parameter_mapping", "timeout"]
_AUTH_FIELDS = {
    "service_agent": ["generic_web_service.service_agent_auth"],
    "basic": ["generic_web_service.username", "generic_web_service.password"],
    "header": ["generic_web_service.request_headers"],
    "none": [],
}


@dataclass
class Applied:
    agent: str
    updated: list[tuple[str, str]] = field(default_factory=list)  # (display name, resource name)
    absent: list[str] = field(default_factory=list)  # optional webhooks the agent does not have


def flexible_webhook(tag: str, settings: PackSettings) -> Any:
    """The generated webhook for `tag` as the official type, parsed strictly (what the build writes)."""
    from google.cloud import dialogflowcx_v3 as cx

    from agentpack.validate import to_api_json

    call = next(c for c in FLEXIBLE_CALLS if c.tag == tag)
    data = to_api_json(webhook_json(call, settings))
    data.pop("name")
    return cx.Webhook.from_json(json.dumps(data), ignore_unknown_fields=False)


def update_mask(settings: PackSettings) -> list[str]:
    return _ALWAYS + _AUTH_FIELDS[settings.agent_webhook_auth]


def webhooks_client_for(agent: str) -> Any:  # pragma: no cover - needs Google credentials
    from google.api_core.client_options import ClientOptions
    from google.cloud import dialogflowcx_v3 as cx

    endpoint = api_endpoint(agent)
    return cx.WebhooksClient(client_options=ClientOptions(api_endpoint=endpoint) if endpoint else None)


def apply_flexible_webhooks(agent: str, settings: PackSettings, client: Any = None) -> Applied:
    """Point the agent's flexible webhooks named as our tags at the service. The seed's four must all be there
    (else DeployError, nothing changed); the authentication steps and request_reactivation are updated when the
    agent has them. Two webhooks with one of those names: DeployError, nothing changed."""
    from google.cloud import dialogflowcx_v3 as cx
    from google.protobuf import field_mask_pb2

    api_endpoint(agent)  # validates the name before anything is sent
    client = client or webhooks_client_for(agent)
    by_name: dict[str, list[Any]] = {}
    for hook in client.list_webhooks(request=cx.ListWebhooksRequest(parent=agent)):
        by_name.setdefault(hook.display_name, []).append(hook)
    tags = [c.tag for c in FLEXIBLE_CALLS]
    missing = [t for t in SEED_WEBHOOKS if t not in by_name]
    if missing:
        raise DeployError(f"{agent} has no webhook named {', '.join(missing)}: import Google's Lock card prebuilt "
                          "component first (or use `install` to add ours)")
    doubles = [t for t in tags if len(by_name.get(t, [])) > 1]
    if doubles:
        raise DeployError(f"{agent} has several webhooks named {', '.join(doubles)}: which one the flows call is "
                          "ambiguous; remove the extra ones")
    mask = field_mask_pb2.FieldMask(paths=update_mask(settings))
    done = Applied(agent)
    for tag in tags:
        if tag not in by_name:
            done.absent.append(tag)
            continue
        hook = flexible_webhook(tag, settings)
        hook.name = by_name[tag][0].name
        hook.display_name = tag
        updated = client.update_webhook(request=cx.UpdateWebhookRequest(webhook=hook, update_mask=mask))
        done.updated.append((tag, updated.name))
    return done
