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
    """A code limit is reached: sends or wrong codes, per customer and class, per session, or service-wide."""


class LookupRateLimited(HandlerError):
    """This session has looked up too many phone numbers without verifying any: it must wait (or hand over)."""


class OtpDisabled(HandlerError):
    """OTP is off for this customer until an operator re-enables it (set by releases before issue 12 after ten
    wrong codes in a row; the webhook no longer disables anyone)."""


class ChannelNotRegistered(HandlerError):
    """The customer has no destination for the channel asked for (no e-mail on file)."""


class ReissueLimitReached(HandlerError):
    """This card has had REISSUE_LIMIT_PER_CARD replacements ordered already: another one needs a human."""
