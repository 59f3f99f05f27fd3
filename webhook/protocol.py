"""The parts of the Dialogflow CX v3 WebhookRequest / WebhookResponse we use, camelCase on the wire.

Unknown input fields are ignored (CX adds fields over time); what we send parses strictly as the official
`google.cloud.dialogflowcx_v3.WebhookResponse` (the tests check it).
"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class FulfillmentInfo(_Wire):
    tag: str = Field(min_length=1, max_length=200)


class ParameterInfo(_Wire):
    display_name: str = ""
    required: bool = False
    state: str | None = None
    value: Any = None
    just_collected: bool = False


class FormInfo(_Wire):
    parameter_info: list[ParameterInfo] = Field(default_factory=list)


class PageInfo(_Wire):
    current_page: str | None = None
    display_name: str | None = None
    form_info: FormInfo | None = None


class SessionInfo(_Wire):
    # No control characters: PostgreSQL refuses NUL in text, and a session path never holds one.
    session: str = Field(default="", max_length=500, pattern=r"^[^\x00-\x1f\x7f]*$")
    parameters: dict[str, Any] = Field(default_factory=dict)


class WebhookRequest(_Wire):
    detect_intent_response_id: str | None = None
    language_code: str = "ja"
    fulfillment_info: FulfillmentInfo
    page_info: PageInfo | None = None
    session_info: SessionInfo = Field(default_factory=SessionInfo)
    payload: dict[str, Any] = Field(default_factory=dict)
    text: str | None = None

    def parameters(self) -> dict[str, Any]:
        """Session parameters overlaid with the current page's form parameters (the fresher values)."""
        params = dict(self.session_info.parameters)
        if self.page_info and self.page_info.form_info:
            for info in self.page_info.form_info.parameter_info:
                if info.display_name and info.value is not None:
                    params[info.display_name] = info.value
        return params

    def caller_id(self) -> str | None:
        """The ANI a CX phone gateway passes as payload.telephony.caller_id."""
        telephony = self.payload.get("telephony")
        if isinstance(telephony, dict):
            caller = telephony.get("caller_id")
            if isinstance(caller, str) and len(caller) <= 40:
                return caller
        return None


def response(parameters: dict[str, Any], messages: list[str] | None = None) -> dict[str, Any]:
    """A WebhookResponse body: parameters to set (None removes one) and optional text messages."""
    body: dict[str, Any] = {"sessionInfo": {"parameters": parameters}}
    if messages:
        body["fulfillmentResponse"] = {"messages": [{"text": {"text": [m]}} for m in messages]}
    return body
