"""Ground floor: control characters in text people typed or files carried — refused at input, escaped at output.

An ESC starts a terminal escape sequence (OSC 52 writes the operator's clipboard, others retitle the window or
hide text), BEL rings, C1 controls (U+0080–U+009F) act like ESC on some terminals, and bidirectional overrides
make a name read backwards. Input refuses them; output (terminal, web page, CSV) shows each as a visible
`\\x1b`-style escape, so data stored before this rule still cannot act.
"""
from __future__ import annotations

import re
from typing import Any

# C0 (but tab and newline, which notes may hold), DEL, C1, and the bidirectional controls.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROL_ANY = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def has_controls(text: str, *, multiline: bool = False) -> bool:
    """Whether `text` holds a control character (tab and newline allowed when `multiline`)."""
    return (_CONTROL if multiline else _CONTROL_ANY).search(text) is not None


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escaped(text: str, *, multiline: bool = True) -> str:
    """`text` with every control character shown as an escape (`\\x1b`); newlines and tabs kept if `multiline`."""
    return (_CONTROL if multiline else _CONTROL_ANY).sub(_visible, text)


def escaped_all(value: Any) -> Any:
    """Every string inside dicts, lists and tuples escaped (the data a page or a report is built from)."""
    if isinstance(value, str):
        return escaped(value)
    if isinstance(value, dict):
        return {k: escaped_all(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(escaped_all(v) for v in value)
    return value
