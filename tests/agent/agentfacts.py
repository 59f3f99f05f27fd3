"""Facts the agent checks share: where the sources are, and the webhook's tag contract."""
from __future__ import annotations

import typing
from pathlib import Path

from webhook.registry import REGISTRY

REPO = Path(__file__).resolve().parents[2]
# What the webhook adds to any answer besides a handler's result (the failure contract).
WEBHOOK_FAILURE_PARAMS = {"transfer_reason", "webhook_error_code"}


def tag_contract() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """From the webhook's registry: the parameters each tag cannot do without, and those it returns."""
    required, returned = {}, {}
    for tag in REGISTRY.tags():
        route = REGISTRY[tag]
        required[tag] = {name for name, f in route.params.model_fields.items() if f.is_required()}
        result = typing.get_type_hints(route.handler)["return"]
        returned[tag] = set(result.model_fields) | WEBHOOK_FAILURE_PARAMS
    return required, returned
