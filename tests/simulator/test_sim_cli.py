"""The command line: replaying CX test cases and chatting."""

import io
import subprocess
import sys
from pathlib import Path

from cxbuild import fulfillment, handler, param, route, write_agent
from simulator.__main__ import main

FLOWS = {"Default Start Flow": {
    "routes": [route(intent="lock_card", page="ask card", set={"lock_type": "inactive"})],
    "handlers": [handler("sys.no-match-default", say={"ja": "もう一度お願いします。", "en": "Once more?"})],
    "pages": {
        "ask card": {
            "form": [param("last4", "@sys.number-sequence", prompt={"ja": "下4桁は？", "en": "Last four?"})],
            "routes": [route(condition='$page.params.status = "FINAL"', page="done")],
        },
        "done": {"entry": fulfillment(say={"ja": "$session.params.last4 を止めました。", "en": "Locked $session.params.last4."}),
                 "routes": [route(condition="true", page="END_SESSION")]},
    }}}
INTENTS = {"lock_card": {"ja": ["カードを止めたい"], "en": ["lock my card"]}}


def _turn(text, responses=None, page=None, params=None, intent=None, lang="ja"):
    out = {}
    if responses is not None:
        out["textResponses"] = [{"text": [r]} for r in responses]
    if page:
        out["currentPage"] = {"name": f"id-{page}", "displayName": page}
    if params:
        out["sessionParameters"] = params
    if intent:
        out["triggeredIntent"] = {"name": f"id-{intent}", "displayName": intent}
    return {"userInput": {"input": {"text": {"text": text}, "languageCode": lang}, "isWebhookEnabled": True},
            "virtualAgentOutput": out}


GOOD = {"testCaseConversationTurns": [
    _turn("カードを止めたい", ["下4桁は？"], page="ask card", intent="lock_card", params={"lock_type": "inactive"}),
    _turn("４４４４", ["4444 を止めました。"], params={"last4": "4444"}),
]}
ENGLISH = {"testCaseConversationTurns": [
    _turn("lock my card", ["Last four?"], lang="en"),
    _turn("5555", None, params={"last4": "5555"}, lang="en"),  # no textResponses: not compared
]}
BAD = {"testCaseConversationTurns": [
    _turn("カードを止めたい", ["違う文言"], page="ask card"),
    _turn("4444", page="ask card", params={"last4": 4444}),
]}


def _export(tmp_path, cases):
    return write_agent(tmp_path / "agent", flows=FLOWS, intents=INTENTS, test_cases=cases)


def test_run_tests_passes_and_exits_zero(tmp_path, capsys):
    """Test cases that match the agent pass, turn by turn, and the command exits 0."""
    root = _export(tmp_path, {"seed dialog 1": GOOD, "seed dialog 1 en": ENGLISH})
    assert main(["run-tests", "--agent", str(root)]) == 0
    out = capsys.readouterr().out
    assert "PASS seed dialog 1 [ja]" in out and "PASS seed dialog 1 en [en]" in out
    assert "2/2 test cases passed" in out


def test_run_tests_reports_differences_and_exits_non_zero(tmp_path, capsys):
    """A mismatch prints the turn and the difference, and the command exits 1."""
    root = _export(tmp_path, {"good": GOOD, "bad": BAD})
    assert main(["run-tests", "--agent", str(root), "--lang", "ja"]) == 1
    out = capsys.readouterr().out
    assert "FAIL bad [ja]" in out and "PASS good [ja]" in out
    assert "UTTERANCE: expected ['違う文言'], got ['下4桁は？']" in out
    assert "PAGE: expected 'ask card', got 'done'" in out
    assert "1/2 test cases passed" in out


def test_run_tests_language_filter(tmp_path, capsys):
    """--lang en replays only the English test cases."""
    root = _export(tmp_path, {"good": GOOD, "english": ENGLISH})
    assert main(["run-tests", "--agent", str(root), "--lang", "en"]) == 0
    assert "1/1 test cases passed" in capsys.readouterr().out


def test_run_tests_from_a_zip(tmp_path, capsys):
    """The agent can be given as a zip nesting everything under one folder."""
    import shutil

    _export(tmp_path, {"good": GOOD})
    archive = shutil.make_archive(str(tmp_path / "export"), "zip", root_dir=tmp_path, base_dir="agent")
    assert main(["run-tests", "--agent", archive]) == 0


def test_chat_repl(tmp_path, monkeypatch, capsys):
    """The REPL prints the agent's messages, and with --verbose page and parameter changes."""
    root = _export(tmp_path, {})
    monkeypatch.setattr(sys, "stdin", io.StringIO("カードを止めたい\n\n4444\n"))
    assert main(["chat", "--agent", str(root), "--lang", "ja", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "agent> 下4桁は？" in out
    assert out.count("agent> 下4桁は？") == 2  # the empty line is a no-input: nothing handles it, so it re-prompts
    assert "· events: sys.no-input-1 (unhandled)" in out
    assert "agent> 4444 を止めました。" in out
    assert "· page -> Default Start Flow/ask card" in out
    assert "· param last4: None -> '4444'" in out
    assert "-- conversation ended: END_SESSION" in out


def test_module_entry_point(tmp_path):
    """`python -m simulator run-tests` works as a real command."""
    root = _export(tmp_path, {"good": GOOD})
    result = subprocess.run([sys.executable, "-m", "simulator", "run-tests", "--agent", str(root)],
                            capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1/1 test cases passed" in result.stdout


def test_webhook_factory_gives_each_test_case_its_own_webhook(tmp_path):
    """run_test_cases(webhook_factory=…) builds one destination per test case."""
    from simulator import load_agent
    from simulator.testcases import run_test_cases

    agent = load_agent(_export(tmp_path, {"good": GOOD, "english": ENGLISH}))
    made = []
    results = run_test_cases(agent, webhook_factory=lambda tc: made.append(tc["displayName"]) or (lambda req: {}))
    assert sorted(made) == ["english", "good"] and all(r.passed for r in results)


def test_a_recorded_random_variant_passes(tmp_path):
    """A test case recorded with another of a text's random variants still passes; an unknown text fails."""
    from simulator import load_agent
    from simulator.testcases import run_test_case

    flows = {"Default Start Flow": {"routes": [route(intent="lock_card", say=None, page="hi")], "pages": {
        "hi": {"entry": {"messages": [{"text": {"text": ["はい、承ります。", "かしこまりました。"]}, "languageCode": "ja"}]}}}}}
    agent = load_agent(write_agent(tmp_path / "a", flows=flows, intents=INTENTS))
    ok = {"displayName": "ok", "testCaseConversationTurns": [_turn("カードを止めたい", ["かしこまりました。"])]}
    bad = {"displayName": "bad", "testCaseConversationTurns": [_turn("カードを止めたい", ["了解です。"])]}
    assert run_test_case(agent, ok).passed
    assert not run_test_case(agent, bad).passed
