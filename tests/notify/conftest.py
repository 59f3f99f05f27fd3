"""Relay fixtures: a Twilio-shaped SMS gateway on loopback, and the outbox rows as they are now."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from sqlalchemy import select

from cardstore.models import OutboxMessage
from tests.local_servers import TwilioServer
from webhook.app import service_of


@pytest.fixture
def twilio():
    """A loopback server speaking Twilio's Messages API, answering 201 until told otherwise."""
    server = TwilioServer()
    yield server
    server.close()


def outbox_rows(app) -> list[SimpleNamespace]:
    """The outbox rows as they are now (plain copies: the unit of work ends here)."""
    columns = [c.key for c in OutboxMessage.__table__.columns]
    with service_of(app).store.unit_of_work() as uow:
        rows = uow.session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        return [SimpleNamespace(**{c: getattr(r, c) for c in columns}) for r in rows]
