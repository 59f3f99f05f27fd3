"""Helpers for the end-to-end dialogs: what the agent said, compared as the caller hears it."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

# Test numbers with a fixed code, so the seed's own "123456" works (as a stored test case needs).
OTP_TEST_NUMBERS = {"09000001111": "123456", "09000002222": "123456", "09012345041": "123456"}


def says(turn, *expected: str) -> None:
    """The agent said exactly these messages; `{n}` stands for a number the bank made up (ticket, request)."""
    assert len(turn.messages) == len(expected), turn.messages
    for got, want in zip(turn.messages, expected):
        pattern = "".join(r"\d{7}" if part == "{n}" else re.escape(part) for part in re.split(r"(\{n\})", want))
        assert re.fullmatch(pattern, got), (got, want)
    heard(turn)  # and a caller hears the same words


def heard(turn) -> ET.Element:
    """The turn's audio, a caller's: one well-formed <speak> document that says every message the chat shows, with
    every parameter filled in, while the chat messages themselves carry no SSML. A silent turn has no audio."""
    if not turn.messages and not turn.audio:
        return ET.Element("speak")
    root = ET.fromstring(turn.audio)
    assert root.tag == "speak", turn.audio
    spoken = "".join(root.itertext())
    for message in turn.messages:
        assert message in spoken, (message, turn.audio)
        assert not re.search(r"<[^>]*>|&\w+;", message), message
    assert "$" not in turn.audio, turn.audio
    return root
