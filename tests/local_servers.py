"""Real servers on loopback for tests: a free port, and an SMTP server (aiosmtpd) a test can bring up, take down,
or make refuse."""
from __future__ import annotations

import socket

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mailbox(Message):
    """What a real SMTP server received; `refuse_with` makes it answer DATA with a temporary failure instead."""

    def __init__(self) -> None:
        super().__init__()
        self.mails: list = []
        self.refuse_with: str | None = None

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        if self.refuse_with:
            return self.refuse_with
        return await super().handle_DATA(server, session, envelope)

    def handle_message(self, message) -> None:
        self.mails.append(message)


class SmtpServer:
    """A loopback SMTP server on a fixed port that a test can take down and bring back."""

    def __init__(self) -> None:
        self.port = free_port()
        self.mailbox = Mailbox()
        self._controller: Controller | None = None

    def up(self) -> None:
        if self._controller is None:
            self._controller = Controller(self.mailbox, hostname="127.0.0.1", port=self.port)
            self._controller.start()

    def down(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
