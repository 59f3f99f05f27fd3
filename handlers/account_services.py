"""The Account services component: the caller's cards, for a session that has verified the caller."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from handlers.call import Call
from handlers.values import PhoneE164, SmallInt


class GetCardDetailsParams(BaseModel):
    model_config = ConfigDict(extra="ignore")
    phone_number: PhoneE164
    auth_level: SmallInt | None = None  # only counts when the server trusts an upstream authenticator


class GetCardDetailsResult(BaseModel):
    last_four_digit_of_all_cards: list[str]
    card_vendor_all: list[str]
    card_count: int
    last_four_digit_of_card_number: str | None = None


def get_card_details(params: GetCardDetailsParams, call: Call) -> GetCardDetailsResult:
    """List the customer's cards (last four and vendor only), in a stable order."""
    customer = call.verified_customer(params.phone_number, upstream_auth_level=params.auth_level)
    cards = call.uow.repo.card_views(customer.id)
    result = GetCardDetailsResult(
        last_four_digit_of_all_cards=[c.last4 for c in cards],
        card_vendor_all=[c.vendor for c in cards],
        card_count=len(cards),
    )
    if len(cards) == 1:
        result.last_four_digit_of_card_number = cards[0].last4
    return result
