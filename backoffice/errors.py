"""Errors the back-office services raise where their rules live; `backoffice.cli` maps each to an exit status."""


class BackofficeError(Exception):
    """Base of the back office's errors. The message is shown to the operator as it is."""


class BadInput(BackofficeError):
    """An argument or a file the command cannot use; nothing was changed."""


class NotFound(BackofficeError):
    """No such customer, hand-off or message."""


class Refused(BackofficeError):
    """The change is not allowed in the current state (resolving twice, purging a live customer …)."""
