"""Ground floor: control characters (C0, DEL, C1 — ESC, BEL, the OSC 52 "set clipboard" sequence…) for every room:
refused in what callers send, escaped in what we show (a terminal, a CX prompt, a log)."""
from __future__ import annotations

import re

# C0 (U+0000–U+001F), DEL (U+007F) and C1 (U+0080–U+009F): Unicode category Cc. Tab and newline are among them:
# no value the webhook reads or masks legitimately holds one.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")


def has_controls(text: str) -> bool:
    """Whether `text` holds a control character."""
    return _CONTROLS.search(text) is not None


def escape_controls(text: str) -> str:
    """`text` with each control character written out (`\\x1b`), so a terminal shows it instead of acting on it."""
    return _CONTROLS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
