"""Errors the store raises where its rules live; `webhook/` maps each to one webhook_error_code."""


class StoreError(Exception):
    """Base of the store's errors."""


class StoreUnavailable(StoreError):
    """The database could not be reached, or did not answer in time."""


class InvalidTransition(StoreError):
    """The card cannot move from its status to the one asked for."""
