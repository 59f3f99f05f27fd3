"""A gateway having a bad minute (an SMTP relay that accepts and never answers, or answers a byte at a time; an
SMS provider that holds the request): the webhook answers CX with its normal result without touching it, and the
notice waits in the outbox. Real servers on loopback; the calls go straight to the webhook, with no relay."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from cardstore.models import OutboxMessage
from tests.conftest import cx_request
from tests.local_servers import SilentServer, TwilioServer
from webhook.app import service_of

HANAKO = "09000001111"
FIXED_CODE = "246810"


@pytest.fixture(params=["smtp-stall", "smtp-drip", "sms-stall"])
def bad_gateway(request, make_app, store_url):
    """The webhook whose every notice route leads to a gateway that never finishes an exchange."""
    if request.param.startswith("smtp"):
        server = SilentServer(request.param.removeprefix("smtp-"))
        app = make_app(database_url=store_url, notify_backend="smtp", smtp_port=server.port,
                       smtp_sms_domain="sms.bank.example", otp_test_numbers={HANAKO: FIXED_CODE})
        touched = lambda: server.connections  # noqa: E731
    else:
        server = TwilioServer()
        server.mode = "stall"
        app = make_app(database_url=store_url, otp_test_numbers={HANAKO: FIXED_CODE}, **server.settings())
        touched = lambda: len(server.received)  # noqa: E731
    yield app, touched
    server.close()


def post(client, tag: str, session: str, **params) -> dict:
    response = client.post("/webhook", json=cx_request(tag, session, phone_number=HANAKO, **params))
    assert response.status_code == 200
    return response.get_json()["sessionInfo"]["parameters"]


def queued(app) -> list[tuple[str, str]]:
    with service_of(app).store.unit_of_work() as uow:
        return [(m.kind, m.status) for m in uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))]


def test_code_lock_and_reissue_answer_without_touching_a_stalled_gateway(bad_gateway):
    """Hanako asks for a code, locks her card and orders a new one while every gateway stalls: each call answers
    its normal result, and when it answers the gateway has not even been contacted; the three notices are queued."""
    app, touched = bad_gateway
    client = app.test_client()
    sent = post(client, "prebuilt_components_authentication:send_otp", "bad-gw", otp_channel="sms")
    assert sent["otp_sent"] is True and touched() == 0
    assert post(client, "prebuilt_components_authentication:verify_otp", "bad-gw",
                otp_code=FIXED_CODE)["otp_verified"] is True
    locked = post(client, "prebuilt_components_lock_card:lock_card_ticket_number", "bad-gw",
                  last_four_digit_of_card_number="4444", lock_type="inactive", lock_reason="lost")
    assert locked["card_status"] == "inactive" and locked["ticket_number"] and touched() == 0
    reissued = post(client, "prebuilt_components_lock_card:reissue_card_number", "bad-gw",
                    last_four_digit_of_card_number="4444", zip_code="12345")
    assert reissued.get("acknowledgement_number") and touched() == 0
    assert queued(app) == [("otp", "pending"), ("lock_ticket", "pending"), ("reissue_ticket", "pending")]
