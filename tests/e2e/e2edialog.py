"""Helpers for the end-to-end dialogs: what the agent said, compared as the caller hears it."""
from __future__ import annotations

import re

# Test numbers with a fixed code, so the seed's own "123456" works (as a stored test case needs).
OTP_TEST_NUMBERS = {"09000001111": "123456", "09000002222": "123456", "09012345041": "123456"}


def says(turn, *expected: str) -> None:
    """The agent said exactly these messages; `{n}` stands for a number the bank made up (ticket, request)."""
    assert len(turn.messages) == len(expected), turn.messages
    for got, want in zip(turn.messages, expected):
        pattern = "".join(r"\d{7}" if part == "{n}" else re.escape(part) for part in re.split(r"(\{n\})", want))
        assert re.fullmatch(pattern, got), (got, want)
