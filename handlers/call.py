"""What every handler gets besides its parameters: the unit of work, the settings, and who is calling."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cardstore.models import Customer, utcnow
from cardstore.uow import UnitOfWork
from handlers.errors import AuthRequired, CustomerNotFound
from settings import STEP_UP_WINDOW_S, Settings

WEBHOOK_ACTOR = "system:webhook"


@dataclass
class Call:
    uow: UnitOfWork
    settings: Settings
    session: str  # the CX session path: the only identity a turn carries
    language: str = "ja"
    caller_id: str | None = None  # payload.telephony.caller_id (ANI), when CX passes it
    now: dt.datetime = field(default_factory=utcnow)
    actor: str = WEBHOOK_ACTOR

    def customer(self, phone_e164: str) -> Customer:
        """The live (not deleted) customer with this number, or CustomerNotFound."""
        customer = self.uow.repo.customer_by_phone(phone_e164)
        if customer is None:
            raise CustomerNotFound("no customer with that phone number")
        return customer

    def require_verified(self, customer: Customer, *, upstream_auth_level: int | None = None) -> None:
        """Reading cards: this session verified this customer by a code (or, if trusted, upstream did)."""
        since = self.now - dt.timedelta(seconds=self.settings.verified_session_ttl_seconds)
        if self.uow.repo.verified_since(self.session, customer.id, since) is not None:
            return
        if self.settings.trust_upstream_auth_level and (upstream_auth_level or 0) >= 1:
            return
        raise AuthRequired("session has not verified this customer")

    def require_step_up(self, customer: Customer) -> None:
        """Changing a card: a code verified in this session by the card's owner within the step-up window."""
        since = self.now - dt.timedelta(seconds=STEP_UP_WINDOW_S)
        if self.uow.repo.verified_since(self.session, customer.id, since) is None:
            raise AuthRequired("no code verified in this session within the step-up window")

    def is_verified(self, customer: Customer) -> bool:
        since = self.now - dt.timedelta(seconds=self.settings.verified_session_ttl_seconds)
        return self.uow.repo.verified_since(self.session, customer.id, since) is not None
