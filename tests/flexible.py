"""Test helpers for the flexible edge: a bank's CX agent calling POST /flexible/<tag> with plain JSON bodies."""
from __future__ import annotations

from flask.testing import FlaskClient

from webhook.registry import ACCOUNT, AUTH, LOCK

TAGS = {
    "verify_user": f"{AUTH}:verify_user",
    "send_otp": f"{AUTH}:send_otp",
    "verify_otp": f"{AUTH}:verify_otp",
    "get_card_details": f"{ACCOUNT}:get_card_details",
    "validate_card": f"{LOCK}:validate_card",
    "lock_card": f"{LOCK}:lock_card_ticket_number",
    "reissue_card": f"{LOCK}:reissue_card_number",
    "request_reactivation": f"{LOCK}:request_reactivation",
}


class FlexibleCaller:
    """One conversation of a bank's agent: the parameters its templates pass, as session parameters would hold them.

    `post(action, **fields)` sends exactly `fields` (plus phone_number / auth_token when the conversation has them
    and the call takes them) and returns the response; `authenticate()` sends a code and types it back.
    """

    TAKES_TOKEN = {"get_card_details", "validate_card", "lock_card", "reissue_card", "request_reactivation"}

    def __init__(self, client: FlaskClient, phone, phone_number: str | None = "09000001111") -> None:
        self.client = client
        self.phone = phone
        self.phone_number = phone_number
        self.auth_token: str | None = None
        self.otp_challenge: str | None = None

    def post(self, action: str, headers: dict | None = None, **fields):
        if self.phone_number is not None:
            fields.setdefault("phone_number", self.phone_number)
        if action in self.TAKES_TOKEN and self.auth_token is not None:
            fields.setdefault("auth_token", self.auth_token)
        return self.client.post(f"/flexible/{TAGS[action]}", json=fields, headers=headers)

    def ok(self, action: str, **fields) -> dict:
        response = self.post(action, **fields)
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_json()

    def send_code(self, channel: str = "sms") -> dict:
        sent = self.ok("send_otp", otp_channel=channel)
        self.otp_challenge = sent["otp_challenge"]
        return sent

    def type_code(self, code: str | float) -> dict:
        answer = self.ok("verify_otp", otp_challenge=self.otp_challenge, otp_code=code)
        if answer.get("auth_token"):
            self.auth_token = answer["auth_token"]
        return answer

    def authenticate(self, channel: str = "sms") -> str:
        """Send a code and type back what arrived: the conversation holds a fresh auth_token."""
        self.send_code(channel)
        answer = self.type_code(self.phone.last_code())
        assert answer["otp_verified"] is True, answer
        return self.auth_token
