"""Flexible webhooks (agentpack room): one FLEXIBLE webhook per call, named as its tag, as a bank configures
Google's own Lock card component against the service's `/flexible/<tag>` endpoints.

`FLEXIBLE_CALLS` is the one table of what each call sends (the request body template: field -> the session or flow
parameter CX puts there) and what it reads back (the response fields, mapped by JSONPath onto session parameters of
the same name). The build writes it as webhooks (`webhooks_for`), the flows of the flexible build call them by name
(`use_flexible_webhooks`), the README prints it, and `apply` pushes it into an agent that imported Google's
component.

The credential: `verify_otp` answers `auth_token` when a code is right; its mapping stores it as a session
parameter, and every later read or change sends it back in its body. A session parameter proves nothing by
itself: the service checks the token it issued (bound to the customer and the time of the check).
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from agentpack.settings import PackSettings
from agentpack.voice import nodes

FLEXIBLE_PATH = "/flexible/"
_NS = uuid.UUID("0b5c0f54-6a0e-4b8e-9d5e-7a1f4c2b9e31")


@dataclass(frozen=True)
class FlexibleCall:
    """One webhook: the JSON body CX sends (field -> parameter reference) and the response fields it maps back."""

    tag: str
    body: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]
    seed: bool = False  # one of the four webhooks Google's Lock card component ships
    optional: tuple[str, ...] = ()  # body fields that may be null (the service handles their absence)

    def request_body(self) -> str:
        """The requestBody template, as a bank pastes it: each reference quoted, so CX puts the value's JSON there
        (a string stays a string, a number a number, an unset parameter null)."""
        return json.dumps({field: ref for field, ref in self.body}, ensure_ascii=False, indent=2)

    def parameter_mapping(self) -> dict[str, str]:
        """Each response field onto the session parameter of the same name: the names the flows read."""
        return {name: f"$.{name}" for name in self.outputs}


_PHONE = ("phone_number", "$session.params.phone_number")
_CARD = ("last_four_digit_of_card_number", "$session.params.last_four_digit_of_card_number")
_TOKEN = ("auth_token", "$session.params.auth_token")
# The language of the SMS or e-mail a call sends (the service's default, ja, when null). CX documents no
# request-body reference to the conversation's language, so it is a session parameter the bank's integration may
# set (QueryParameters.parameters), as the standard webhook reads languageCode from the request.
_LANGUAGE = ("language_code", "$session.params.language_code")

FLEXIBLE_CALLS: tuple[FlexibleCall, ...] = (
    # No number (a chat, a withheld caller ID) is `user_found: false`, and the flow asks for it. CX documents the
    # telephony caller ID only inside the standard request's payload, so here it is a session parameter a bank's
    # telephony integration may set; unset, it renders null and the number is asked for.
    FlexibleCall("prebuilt_components_authentication:verify_user", (_PHONE, ("caller_id", "$session.params.caller_id")),
                 ("user_found", "phone_number", "auth_level", "registered_phone_last4"),
                 optional=("phone_number", "caller_id")),
    # The component's own retry limit ($flow.max_otp_retry_count) may lower the service's, never raise it.
    FlexibleCall("prebuilt_components_authentication:send_otp",
                 (_PHONE, ("otp_channel", "$session.params.otp_channel"),
                  ("max_otp_retry_count", "$flow.max_otp_retry_count"), _LANGUAGE),
                 ("otp_sent", "otp_channel", "otp_destination_masked", "otp_expires_in_s", "otp_challenge"),
                 optional=("max_otp_retry_count", "language_code")),
    FlexibleCall("prebuilt_components_authentication:verify_otp",
                 (_PHONE, ("otp_challenge", "$session.params.otp_challenge"), ("otp_code", "$session.params.otp_code")),
                 # What an unverified session may not learn (issue 12) comes with the right code, not before.
                 ("otp_verified", "otp_attempts_left", "auth_level", "otp_expired", "transfer_reason", "auth_token",
                  "email_registered", "card_count")),
    FlexibleCall("prebuilt_components_account_services:get_card_details", (_PHONE, _TOKEN),
                 ("last_four_digit_of_all_cards", "card_vendor_all", "card_count", "last_four_digit_of_card_number"),
                 seed=True),
    FlexibleCall("prebuilt_components_lock_card:validate_card", (_PHONE, _CARD, _TOKEN),
                 ("card_found", "zip_code", "card_vendor", "card_status"), seed=True),
    FlexibleCall("prebuilt_components_lock_card:lock_card_ticket_number",
                 (_PHONE, _CARD, ("lock_type", "$flow.lock_type"), ("lock_reason", "$flow.lock_reason"), _TOKEN,
                  _LANGUAGE),
                 ("ticket_number", "card_status"), seed=True, optional=("language_code",)),
    FlexibleCall("prebuilt_components_lock_card:reissue_card_number",
                 (_PHONE, _CARD, ("zip_code", "$session.params.zip_code"), _TOKEN, _LANGUAGE),
                 ("acknowledgement_number", "delivery_business_days"), seed=True, optional=("language_code",)),
    FlexibleCall("prebuilt_components_lock_card:request_reactivation", (_PHONE, _CARD, _TOKEN), ("handoff_id",)),
)
CALLS_BY_TAG = {call.tag: call for call in FLEXIBLE_CALLS}
SEED_WEBHOOKS = tuple(call.tag for call in FLEXIBLE_CALLS if call.seed)


def base_url(settings: PackSettings) -> str:
    """Where the flexible endpoints live: AGENT_FLEXIBLE_BASE_URL, else the standard URL without its `/webhook`."""
    if settings.agent_flexible_base_url:
        return settings.agent_flexible_base_url.rstrip("/")
    url = settings.agent_webhook_url.rstrip("/")
    return url[: -len("/webhook")] if url.endswith("/webhook") else url


def uri(tag: str, settings: PackSettings) -> str:
    return f"{base_url(settings)}{FLEXIBLE_PATH}{tag}"


def webhook_file_name(tag: str) -> str:
    """As the console exports Google's components: the tag's colon percent-encoded."""
    return tag.replace(":", "%3a") + ".json"


def webhook_json(call: FlexibleCall, settings: PackSettings) -> dict:
    """One FLEXIBLE webhook in export layout (parameterMapping as the export's key/value list)."""
    from agentpack.build import web_service_auth

    service: dict = {"uri": uri(call.tag, settings), "webhookType": "FLEXIBLE", "httpMethod": "POST",
                     "requestBody": call.request_body(),
                     "parameterMapping": [{"key": k, "value": v} for k, v in call.parameter_mapping().items()]}
    service.update(web_service_auth(settings))
    return {
        "name": str(uuid.uuid5(_NS, "webhook/" + call.tag)),
        "displayName": call.tag,
        "genericWebService": service,
        "timeout": {"seconds": settings.agent_webhook_timeout_s},
    }


def webhooks_for(settings: PackSettings) -> Iterator[tuple[str, dict]]:
    """(file name, webhook) for every flexible call."""
    for call in FLEXIBLE_CALLS:
        yield webhook_file_name(call.tag), webhook_json(call, settings)


# --- the flows of the flexible build ------------------------------------------------------------------------------

# Our own agent skips Authentication for a caller an upstream step authenticated; through flexible webhooks that
# caller must also bring the credential the reads need, or the first read would fail on a missing token.
_AUTHENTICATED = "$session.params.auth_level >= $session.params.auth_level_req"
_WITH_TOKEN = _AUTHENTICATED + " AND $session.params.auth_token != null"


def use_flexible_webhooks(flows_dir: Path, standard_webhook: str) -> int:
    """Point every fulfillment that calls the standard webhook at the flexible webhook named as its tag (in place);
    require the credential where the Lock card flow skips Authentication. Returns the number of calls rewritten."""
    calls = 0
    for path in sorted(Path(flows_dir).rglob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        changed = False
        for node in nodes(data):
            if node.get("webhook") == standard_webhook:
                if node.get("tag") not in CALLS_BY_TAG:
                    raise ValueError(f"{path}: tag {node.get('tag')!r} has no flexible webhook")
                node["webhook"] = node["tag"]
                calls += 1
                changed = True
            condition = node.get("condition")
            if isinstance(condition, str) and condition.endswith(_AUTHENTICATED):
                node["condition"] = condition[: -len(_AUTHENTICATED)] + _WITH_TOKEN
                changed = True
        if changed:
            path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return calls
