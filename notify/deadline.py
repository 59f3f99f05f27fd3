"""Notifications: an overall deadline for one delivery attempt, whatever the gateway does on the wire.

A socket timeout bounds each read, not the exchange: a gateway that answers one byte a second never trips it. A
watchdog timer shuts the attempt's socket down when the deadline passes, so a blocked read or write returns at once
(plain TCP or TLS alike); the protocol library then raises, and the attempt fails as a retryable DeliveryError.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import Callable


class Deadline:
    """`with Deadline(seconds, current_socket) as d:` — past `seconds`, the socket `current_socket()` names is shut."""

    def __init__(self, seconds: float, current_socket: Callable[[], socket.socket | None]) -> None:
        self.seconds = seconds
        self._current_socket = current_socket
        self._ends = time.monotonic() + seconds
        self.expired = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def remaining(self) -> float:
        """Seconds left, never below a small floor (a socket timeout of 0 would mean non-blocking)."""
        return max(0.01, self._ends - time.monotonic())

    @property
    def passed(self) -> bool:
        """Whether the deadline has come: the watchdog fired, or a socket timeout set to the time left did first."""
        return self.expired or time.monotonic() >= self._ends - 0.05

    def _expire(self) -> None:
        self.expired = True
        sock = self._current_socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed or not yet connected: the socket timeout (the remaining time) bounds it

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
