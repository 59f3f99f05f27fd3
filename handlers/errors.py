"""Domain errors raised by the handlers where their rules live; `webhook/` maps each to a webhook_error_code."""


class HandlerError(Exception):
    """Base of the handlers' errors. The message is for logs and operators; it never holds personal data."""


class AuthRequired(HandlerError):
    """This session has not proved (recently enough) that it speaks for the customer."""


class CustomerNotFound(HandlerError):
    """No (live) customer has that phone number."""


class CardNotFound(HandlerError):
    """The customer has no card with those last four digits."""


class InvalidParameter(HandlerError):
    """A parameter is missing or not of the expected form (names the parameter, never the value)."""


class OtpRateLimited(HandlerError):
    """Too many codes sent to this customer in the window."""


class OtpDisabled(HandlerError):
    """Too many wrong codes in a row: OTP is off for this customer until an operator re-enables it."""


class ChannelNotRegistered(HandlerError):
    """The customer has no destination for the channel asked for (no e-mail on file)."""
