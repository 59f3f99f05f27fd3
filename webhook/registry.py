"""Tag -> handler: the explicit contract between the flows' pages and the handlers.

A tag appears here once. A duplicate fails at start-up; an unknown tag's error lists the known ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel

from handlers import account_services, authentication, lock_card


@dataclass(frozen=True)
class Route:
    tag: str
    params: type[BaseModel]
    handler: Callable[..., BaseModel]
    # A read-only tag runs in a read-only unit of work: no write lock on SQLite, and it cannot commit. A tag that
    # writes anything (even bookkeeping) must leave this False, or its commit fails loudly.
    read_only: bool = False


class UnknownTag(LookupError):
    def __init__(self, tag: str, known: list[str]) -> None:
        super().__init__(f"unknown tag {tag!r}; known tags: {', '.join(known)}")


class Registry:
    def __init__(self, routes: list[Route]) -> None:
        self._routes: dict[str, Route] = {}
        for route in routes:
            if route.tag in self._routes:
                raise ValueError(f"tag {route.tag!r} is registered twice")
            self._routes[route.tag] = route

    def __getitem__(self, tag: str) -> Route:
        try:
            return self._routes[tag]
        except KeyError:
            raise UnknownTag(tag, self.tags()) from None

    def tags(self) -> list[str]:
        return sorted(self._routes)


AUTH = "prebuilt_components_authentication"
ACCOUNT = "prebuilt_components_account_services"
LOCK = "prebuilt_components_lock_card"

REGISTRY = Registry([
    # verify_user writes: an unverified session's look-ups are counted (handlers/abuse.py, issue 12).
    Route(f"{AUTH}:verify_user", authentication.VerifyUserParams, authentication.verify_user),
    Route(f"{AUTH}:send_otp", authentication.SendOtpParams, authentication.send_otp),
    Route(f"{AUTH}:verify_otp", authentication.VerifyOtpParams, authentication.verify_otp),
    Route(f"{ACCOUNT}:get_card_details", account_services.GetCardDetailsParams, account_services.get_card_details,
          read_only=True),
    Route(f"{LOCK}:validate_card", lock_card.ValidateCardParams, lock_card.validate_card, read_only=True),
    Route(f"{LOCK}:lock_card_ticket_number", lock_card.LockParams, lock_card.lock_card_ticket_number),
    Route(f"{LOCK}:reissue_card_number", lock_card.ReissueParams, lock_card.reissue_card_number),
    Route(f"{LOCK}:request_reactivation", lock_card.CardParams, lock_card.request_reactivation),
])
