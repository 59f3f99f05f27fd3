"""What every handler gets besides its parameters: the unit of work, the settings, and who is calling."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from cardstore.models import Customer, utcnow
from cardstore.repository import CustomerRow
from cardstore.uow import UnitOfWork
from contact import e164, parse_phone
from handlers.errors import AuthRequired, CustomerNotFound, InvalidParameter
from handlers.values import PhoneText
from settings import STEP_UP_WINDOW_S, Settings

WEBHOOK_ACTOR = "system:webhook"


@dataclass
class Call:
    uow: UnitOfWork
    settings: Settings
    session: str  # the CX session path: the only identity a turn carries
    language: str = "ja"
    caller_id: str | None = None  # payload.telephony.caller_id (ANI), when CX passes it
    # The customer (E.164) a verified upstream assertion vouches for in this session (webhook/upstream.py).
    upstream_phone: str | None = None
    now: dt.datetime = field(default_factory=utcnow)
    actor: str = WEBHOOK_ACTOR
    # The flexible edge has no CX session to remember a verified code by: verify_otp then issues a credential.
    issue_credential: bool = False

    def caller_id_e164(self) -> str | None:
        """The caller ID (ANI) as E.164, or None when withheld or malformed."""
        if not self.caller_id:
            return None
        try:
            return e164(parse_phone(self.caller_id, self.settings.default_region))
        except ValueError:
            return None  # withheld or malformed ANI: the caller must give a number

    def phone_e164(self, phone: str) -> str:
        """A number as the turn gave it (values.PhoneText), parsed: InvalidParameter when it is no phone number, as
        validating a PhoneE164 parameter answers. A number already in E.164 (a plain str) is returned as it is."""
        if not isinstance(phone, PhoneText):
            return phone
        try:
            return phone.e164(self.settings.default_region)
        except ValueError:
            raise InvalidParameter("invalid parameter: phone_number") from None

    def customer(self, phone_e164: str) -> Customer:
        """The live (not deleted) customer with this number, or CustomerNotFound."""
        customer = self.uow.repo.customer_by_phone(phone_e164)
        if customer is None:
            raise CustomerNotFound("no customer with that phone number")
        return customer

    def verified_customer(self, phone_e164: str, *, upstream_auth_level: int | None = None) -> CustomerRow:
        """Reading cards: the customer, once this session verified them by a code, or a verified upstream assertion
        vouches for them in this session (or, in development with TRUST_UPSTREAM_AUTH_LEVEL, upstream_auth_level).

        AuthRequired for a stranger's number too: before verification a read tag must not tell who is a customer.
        """
        since = self.now - dt.timedelta(seconds=self.settings.verified_session_ttl_seconds)
        customer, verified = self.uow.repo.customer_verified_since(phone_e164, self.session, since)
        if customer is not None and (
                verified or self.upstream_phone == customer.phone_e164
                or (self.settings.trust_upstream_auth_level and (upstream_auth_level or 0) >= 1)):
            return customer
        raise AuthRequired("session has not verified this customer")

    @property
    def step_up_since(self) -> dt.datetime:
        """Changing a card needs a code verified in this session at or after this time (the step-up window)."""
        return self.now - dt.timedelta(seconds=STEP_UP_WINDOW_S)

    def step_up_customer(self, phone_e164: str) -> CustomerRow:
        """Changing a card: the card holder, with a code verified in this session within the step-up window
        (AuthRequired for a stranger's number as for an unverified customer's)."""
        customer, verified = self.uow.repo.customer_verified_since(phone_e164, self.session, self.step_up_since)
        if customer is None or not verified:
            raise AuthRequired("no code verified in this session within the step-up window")
        return customer

    def identified_customer(self, phone_e164: str) -> tuple[CustomerRow | None, bool]:
        """Who the number belongs to (None: nobody), and whether this session has verified them."""
        since = self.now - dt.timedelta(seconds=self.settings.verified_session_ttl_seconds)
        return self.uow.repo.customer_verified_since(phone_e164, self.session, since)
