"""Replays CX test cases (`testCases/*.json`, the console's export format) and reports per-turn differences.

Each conversation turn's `userInput` (`input.text.text`, `input.dtmf.digits`, `input.event.event`,
`injectedParameters`, `isWebhookEnabled`) is sent to a fresh Session; its `virtualAgentOutput` is compared like CX
does: `textResponses` (all texts, in order), `currentPage.displayName`, `triggeredIntent.displayName` and
`sessionParameters` (only `testConfig.trackingParameters` when listed; numbers compare by value, so 4444 = 4444.0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from simulator.conditions import values_equal
from simulator.engine import Session
from simulator.errors import SimulatorError, UnsupportedFeature
from simulator.loader import Agent


@dataclass
class TurnResult:
    index: int
    user_input: str
    diffs: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.diffs


@dataclass
class CaseResult:
    name: str
    language: str
    turns: list[TurnResult] = field(default_factory=list)
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(t.passed for t in self.turns)


def case_language(tc: dict, default: str) -> str:
    for turn in tc.get("testCaseConversationTurns") or []:
        lang = ((turn.get("userInput") or {}).get("input") or {}).get("languageCode")
        if lang:
            return lang
    return default


def _describe(user_input: dict) -> str:
    inp = user_input.get("input") or {}
    if "text" in inp:
        return inp["text"].get("text", "")
    if "dtmf" in inp:
        return f"[dtmf {inp['dtmf'].get('digits', '')}{inp['dtmf'].get('finishDigit', '')}]"
    if "event" in inp:
        return f"[event {inp['event'].get('event', '')}]"
    return "[no input]"


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, dict) and isinstance(actual, dict):
        return set(expected) == set(actual) and all(_same(v, actual[k]) for k, v in expected.items())
    if isinstance(expected, list) and isinstance(actual, list):
        return len(expected) == len(actual) and all(_same(a, b) for a, b in zip(expected, actual))
    return values_equal(expected, actual)


def run_test_case(agent: Agent, tc: dict, language: str | None = None, webhook: Any = None,
                  **session_kwargs: Any) -> CaseResult:
    """Replay one test case in a new session and compare every turn."""
    lang = language or case_language(tc, agent.default_language)
    result = CaseResult(tc.get("displayName", "?"), lang)
    config = tc.get("testConfig") or {}
    if config.get("page"):
        raise UnsupportedFeature("testConfig.page (start a test case on a given page)", tc.get("_source"))
    tracking = config.get("trackingParameters") or None
    start_flow = None
    if config.get("flow"):
        start_flow = agent.flow(config["flow"]).name
    try:
        session = Session(agent, webhook=webhook, language_code=lang, start_flow=start_flow, **session_kwargs)
        for i, turn in enumerate(tc.get("testCaseConversationTurns") or [], start=1):
            user = turn.get("userInput") or {}
            expected = turn.get("virtualAgentOutput") or {}
            tr = TurnResult(i, _describe(user))
            result.turns.append(tr)
            if session.ended:
                tr.diffs.append("conversation already ended before this turn")
                break
            session.params.update(user.get("injectedParameters") or {})
            session.webhooks_enabled = user.get("isWebhookEnabled", True) is not False
            inp = user.get("input") or {}
            if "text" in inp:
                got = session.send(text=inp["text"].get("text", ""))
            elif "dtmf" in inp:
                got = session.send(dtmf=inp["dtmf"].get("digits", "") + inp["dtmf"].get("finishDigit", ""))
            elif "event" in inp:
                got = session.send(event=inp["event"].get("event", ""))
            else:
                got = session.send()
            tr.messages = got.messages
            _compare(expected, got, tracking, tr)
    except SimulatorError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    return result


def _compare(expected: dict, got, tracking: list[str] | None, tr: TurnResult) -> None:
    if "textResponses" in expected:
        want = [t.strip() for r in expected["textResponses"] for t in r.get("text") or []]
        have = [m.strip() for m in got.messages]
        alternatives = [[a.strip() for a in alts] for alts in got.alternatives]
        same = len(want) == len(have) and all(w in alts for w, alts in zip(want, alternatives))
        if not same:
            tr.diffs.append(f"UTTERANCE: expected {want!r}, got {have!r}")
    page = (expected.get("currentPage") or {}).get("displayName")
    if page and page != got.page:
        tr.diffs.append(f"PAGE: expected {page!r}, got {got.page!r}")
    intent = (expected.get("triggeredIntent") or {}).get("displayName")
    if intent and intent != got.intent:
        tr.diffs.append(f"INTENT: expected {intent!r}, got {got.intent!r}")
    params = expected.get("sessionParameters") or {}
    for key, value in params.items():
        if tracking is not None and key not in tracking:
            continue
        if not _same(value, got.params.get(key)):
            tr.diffs.append(f"PARAMETERS: {key} expected {value!r}, got {got.params.get(key)!r}")


def run_test_cases(agent: Agent, language: str | None = None, webhook: Any = None, names: list[str] | None = None,
                   webhook_factory: Callable[[dict], Any] | None = None, **session_kwargs: Any) -> list[CaseResult]:
    """Replay the agent's test cases; with `language`, only those in that language (or with none stated).

    `webhook_factory(test_case) -> destination` gives each test case its own webhook (e.g. a fresh app and store),
    so test cases that change data do not see each other's changes.
    """
    results = []
    for tc in sorted(agent.test_cases, key=lambda t: t.get("displayName", "")):
        if names and tc.get("displayName") not in names:
            continue
        lang = case_language(tc, language or agent.default_language)
        if language and lang != language:
            continue
        target = webhook_factory(tc) if webhook_factory is not None else webhook
        results.append(run_test_case(agent, tc, lang, target, **session_kwargs))
    return results


def format_results(results: list[CaseResult]) -> str:
    lines = []
    for r in results:
        lines.append(f"{'PASS' if r.passed else 'FAIL'} {r.name} [{r.language}]")
        for t in r.turns:
            lines.append(f"  {'ok  ' if t.passed else 'FAIL'} turn {t.index}: {t.user_input}")
            lines.extend(f"       {d}" for d in t.diffs)
        if r.error:
            lines.append(f"  ERROR {r.error}")
    passed = sum(r.passed for r in results)
    lines.append(f"{passed}/{len(results)} test cases passed")
    return "\n".join(lines)
