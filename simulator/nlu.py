"""Deterministic NLU: intent matching and entity extraction that work for Japanese and English alike.

Text is NFKC-normalised (full-width digits and letters become ASCII) and case-folded, then cut into *units*:
an ASCII word or number is one unit, every other letter (kana, kanji) is one unit, punctuation is dropped. So
Japanese needs no word segmentation and English still respects word boundaries ("no" is not found in "know").
A training phrase scores 1.0 when it matches the whole utterance with its annotated parts filled by valid
entities, 0.75–1.0 when it is contained in the utterance, and a sequence-similarity ratio otherwise; the best
intent above the threshold wins, ties going to the earlier route. Same input, same answer, always.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from difflib import SequenceMatcher
from typing import Any

from simulator import systime
from simulator.errors import UnsupportedFeature
from simulator.loader import Agent, Intent

THRESHOLD = 0.62
_UNIT_RE = re.compile(r"[a-z0-9]+(?:['’][a-z]+)?|[^\W_]", re.UNICODE)
_SEP = "\x1f"


def normalize(text: str) -> str:
    return unicodedata.normalize("NFKC", text or "").casefold().strip()


def units(text: str) -> list[str]:
    return _UNIT_RE.findall(normalize(text))


def join_units(us: list[str]) -> str:
    out = ""
    for u in us:
        if out and out[-1].isascii() and out[-1].isalnum() and u[0].isascii() and u[0].isalnum():
            out += " "
        out += u
    return out


def _find(hay: list[str], needle: list[str]) -> list[int]:
    n = len(needle)
    if not n:
        return []
    return [i for i in range(len(hay) - n + 1) if hay[i : i + n] == needle]


# ---------------------------------------------------------------------------------- system entities

_KANJI_DIGITS = {"〇": 0, "零": 0, "一": 1, "二": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_KANJI_UNITS = {"十": 10, "百": 100, "千": 1000}
_EN_NUMBERS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty".split())}


def _kanji_to_digits(text: str) -> str:
    """Rewrite kanji numerals (四四四四, 三十二, 千二百) as ASCII digits so the regexes below see them."""

    def convert(m: re.Match) -> str:
        s = m.group(0)
        if not any(c in _KANJI_UNITS for c in s):
            return "".join(str(_KANJI_DIGITS[c]) for c in s)
        total, cur = 0, 0
        for c in s:
            if c in _KANJI_DIGITS:
                cur = cur * 10 + _KANJI_DIGITS[c]
            else:
                total += (cur or 1) * _KANJI_UNITS[c]
                cur = 0
        return str(total + cur)

    return re.sub(r"[〇零一二三四五六七八九十百千]+", convert, text)


def _number_value(s: str) -> float:
    return float(s.replace(",", ""))


_SYS_PATTERNS = {
    "number": re.compile(r"(?<![\d.])-?\d+(?:,\d{3})*(?:\.\d+)?"),
    "number-sequence": re.compile(r"\d(?:[\s\-]*\d)*"),
    "phone-number": re.compile(r"\+?\(?\d[\d\s\-()]{5,}\d"),
    "zip-code": re.compile(r"(?<!\d)(?:\d{3}-\d{4}|\d{5}-\d{4}|\d{7}|\d{5})(?!\d)"),
    "email": re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"),
    "url": re.compile(r"https?://\S+"),
}
# Entities approximated as "the whole utterance": documented in the README. They never fill a parameter the
# caller was not asked for (see Session._extract_form), nor an intent parameter outside its annotated slot.
WHOLE_TEXT = _WHOLE_TEXT = {"any", "address", "location", "street-address", "geo-city", "geo-country", "geo-state"}


def _sys_extract(name: str, text: str, language: str = "en", now: datetime | None = None) -> tuple[Any, str] | None:
    base = unicodedata.normalize("NFKC", text or "").strip()
    if name in systime.DATE_FAMILY:
        return systime.extract(name, text, language, now or datetime.now())
    if name in _WHOLE_TEXT:
        return (base, base) if base else None
    prepared = _kanji_to_digits(base)
    if name in ("number", "number-integer", "cardinal", "ordinal"):
        m = _SYS_PATTERNS["number"].search(prepared)
        if m:
            v = _number_value(m.group(0))
            if name == "number-integer" and not v.is_integer():
                return None
            return v, m.group(0)
        for w in units(base):
            if w in _EN_NUMBERS:
                return float(_EN_NUMBERS[w]), w
        return None
    if name in _SYS_PATTERNS:
        m = _SYS_PATTERNS[name].search(prepared)
        if not m:
            return None
        raw = m.group(0).strip()
        if name == "number-sequence":
            return re.sub(r"\D", "", raw), raw
        return raw, raw
    raise UnsupportedFeature(f"@sys.{name}", detail="system entity not modelled")


def approximated(entity_type: str) -> bool:
    """Whether the simulator reads this entity as "the whole utterance" rather than finding it in the text."""
    et = entity_type.lstrip("@")
    return et.startswith("sys.") and et[4:] in WHOLE_TEXT


def consume(text: str, original: str) -> str:
    """`text` without the span `original` an entity was read from, so another parameter cannot take it again."""
    base = unicodedata.normalize("NFKC", text or "")
    for hay in (base, _kanji_to_digits(base)):
        i = hay.find(original)
        if i >= 0:
            return (hay[:i] + " " + hay[i + len(original):]).strip()
    return "" if original.strip() == base.strip() else base


# ------------------------------------------------------------------------------------------- matches


@dataclass
class IntentMatch:
    intent: str
    score: float
    parameters: dict[str, Any] = field(default_factory=dict)
    originals: dict[str, str] = field(default_factory=dict)


class NLU:
    """Intent and entity matching for one agent in one language."""

    def __init__(self, agent: Agent, language: str, clock=None):
        self.agent, self.language = agent, language
        self.clock = clock or datetime.now  # what "today" is for @sys.date and friends
        self._phrase_cache: dict[str, list[tuple[list[str], list[tuple[str | None, list[str]]]]]] = {}

    # entities ---------------------------------------------------------------------------------------

    def extract(self, entity_type: str, text: str) -> tuple[Any, str] | None:
        """The first value of `entity_type` found in `text` as (value, original text), or None."""
        et = entity_type.lstrip("@")
        if et.startswith("sys."):
            return _sys_extract(et[4:], text, self.language, self.clock())
        entity = self.agent.entity_types.get(et)
        if entity is None:
            raise UnsupportedFeature(f"entity type {entity_type}", detail="not defined in the agent")
        if entity.kind == "KIND_REGEXP":
            subject = unicodedata.normalize("NFKC", text or "")
            for value, synonyms in self._entities(entity):
                for pattern in synonyms or [value]:
                    m = re.search(pattern, subject, re.IGNORECASE | re.ASCII)  # RE2: \b and \w are ASCII
                    if m:
                        return m.group(0), m.group(0)
            return None
        hay = units(text)
        excluded = {tuple(units(x)) for x in entity.excluded.get(self.language, [])}
        best: tuple[int, int, Any, str] | None = None  # (-length, start, value, original)
        for value, synonyms in self._entities(entity):
            for syn in dict.fromkeys([*synonyms, value]):
                needle = units(syn)
                if not needle or tuple(needle) in excluded:
                    continue
                for start in _find(hay, needle):
                    cand = (-len(needle), start, value, syn)
                    if best is None or cand[:2] < best[:2]:
                        best = cand
        if best is None:
            return None
        value = best[2] if entity.kind == "KIND_MAP" else best[3]
        return value, best[3]

    def _entities(self, entity):
        return entity.entities.get(self.language) or []

    # intents ----------------------------------------------------------------------------------------

    def _phrases(self, intent: Intent):
        if intent.name not in self._phrase_cache:
            compiled = []
            for parts in intent.phrases.get(self.language, []):
                segs = [(p.parameter, units(p.text)) for p in parts]
                full = [u for _, us in segs for u in us]
                if full:
                    compiled.append((full, segs))
            self._phrase_cache[intent.name] = compiled
        return self._phrase_cache[intent.name]

    def _template_match(self, intent: Intent, segs, hay: list[str]) -> dict[str, tuple[Any, str]] | None:
        pattern, slots = "", []
        for param, us in segs:
            if param and param in intent.parameters:
                pattern += f"((?:[^{_SEP}]+{_SEP})+?)"
                slots.append(param)
            else:
                pattern += "".join(re.escape(u) + _SEP for u in us)
        if not slots:
            return None
        m = re.fullmatch(pattern, "".join(u + _SEP for u in hay))
        if not m:
            return None
        found = {}
        for param, group in zip(slots, m.groups()):
            slot_text = join_units([u for u in group.split(_SEP) if u])
            value = self.extract(intent.parameters[param].get("entityType", "@sys.any"), slot_text)
            if value is None:
                return None
            found[param] = value
        return found

    def score(self, intent: Intent, text: str) -> tuple[float, dict[str, tuple[Any, str]]]:
        hay = units(text)
        if not hay:
            return 0.0, {}
        best, slots = 0.0, {}
        for full, segs in self._phrases(intent):
            if full == hay:
                return 1.0, {}
            try:
                found = self._template_match(intent, segs, hay)
            except UnsupportedFeature:
                found = None  # scored as plain text here; extracting the parameter for real raises later
            if found is not None:
                return 1.0, found
            if _find(hay, full) and (len(full) >= 2 or full[0].isascii()):
                s = 0.75 + 0.25 * len(full) / len(hay)
            else:
                s = 0.9 * SequenceMatcher(None, hay, full, autojunk=False).ratio()
            if s > best:
                best = s
        return best, slots

    def match_intent(self, text: str, candidates: list[str]) -> IntentMatch | None:
        """The best of `candidates` (intent display names, in route order) for `text`, or None (no-match)."""
        best: IntentMatch | None = None
        for name in dict.fromkeys(candidates):
            intent = self.agent.intents[name]
            s, slots = self.score(intent, text)
            if s >= THRESHOLD and (best is None or s > best.score):
                best = IntentMatch(name, s)
                best.parameters = {k: v for k, (v, _) in slots.items()}
                best.originals = {k: o for k, (_, o) in slots.items()}
        negative = self.agent.intents.get("Default Negative Intent")
        if best is not None and negative is not None and self.score(negative, text)[0] >= best.score:
            return None  # the agent's negative examples say this is not meant to match anything
        if best is not None:
            intent = self.agent.intents[best.intent]
            left = text
            for original in best.originals.values():
                left = consume(left, original)
            for pid, p in intent.parameters.items():
                et = p.get("entityType", "@sys.any")
                if pid not in best.parameters and not approximated(et):
                    # Only values of the parameter's own type, from what the annotated parts did not take: an
                    # approximated entity outside an annotated slot would be the whole utterance, never a value.
                    got = self.extract(et, left)
                    if got is not None:
                        best.parameters[pid], best.originals[pid] = got
                        left = consume(left, got[1])
                if pid in best.parameters and p.get("isList"):
                    best.parameters[pid] = [best.parameters[pid]]
        return best
