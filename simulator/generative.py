"""Simulator stand-ins for CX's generative parts: generators, the generative fallback and data-store answers.

Nothing here calls a model. A Session takes a callable per generator display name (`generators={name: fn}`, the
generative fallback under GENERATIVE_FALLBACK) and one for data stores (`knowledge=fn`); where none is given, the
defaults below answer with text that says plainly it is a stand-in, the same every time, so a conversation goes on
instead of stopping and a test can assert on it.

    generator(inputs: dict[str, Any], language: str) -> str
    generative fallback(utterance: str, language: str) -> str | None   (None: the handler's static messages)
    knowledge(query: str, language: str) -> list[str]                   ([]: nothing found, the no-match runs)
"""

from __future__ import annotations

from typing import Any

GENERATIVE_FALLBACK = "generative-fallback"


def stand_in_generator(name: str):
    """The default for generator `name`: its name and the inputs it was given, marked as a stand-in."""

    def generate(inputs: dict[str, Any], language: str) -> str:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(inputs.items()))
        return f"[stand-in for generator {name!r}: {shown}]" if shown else f"[stand-in for generator {name!r}]"

    return generate


def stand_in_fallback(utterance: str, language: str) -> str | None:
    """The default generative fallback: a labelled stand-in reply in place of a model's."""
    return f"[stand-in for the generative fallback: no model offline; the caller said: {utterance}]"


def stand_in_knowledge(query: str, language: str) -> list[str]:
    """The default data store: one answer that says it is a stand-in and repeats the question."""
    return [f"[stand-in for a data store answer to: {query}]"]
