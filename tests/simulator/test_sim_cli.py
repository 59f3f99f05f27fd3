"""The command line: replaying CX test cases and chatting."""

import io

import pytest
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


# --- the designer's terminal: a real pseudo-terminal, as a person at a keyboard --------------------------------

import fcntl
import os
import pty
import select
import termios

REPO = Path(__file__).resolve().parents[2]


def _controlling_terminal():
    """In the child: a new session whose controlling terminal is the pty, so Ctrl-C is a real SIGINT."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """`python -m simulator …` on a pseudo-terminal: keys go in as typed, the screen is read back (stdout and
    stderr both, as a terminal shows them)."""

    def __init__(self, args, env=None):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "simulator", *args], stdin=slave, stdout=slave,
                                     stderr=slave, cwd=REPO, env={**os.environ, **(env or {})},
                                     preexec_fn=_controlling_terminal)
        os.close(slave)
        self.screen, self.seen = "", 0

    def _read(self, deadline) -> bool:
        import time

        ready, _, _ = select.select([self.master], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            return False
        try:
            chunk = os.read(self.master, 4096)
        except OSError:
            chunk = b""
        if not chunk:
            return False
        self.screen += chunk.decode("utf-8", "replace")
        return True

    def expect(self, text, limit_s=60):
        """Read until `text` appears after what was already expected (a generous limit, only so that a broken
        build cannot hang the suite)."""
        import time

        deadline = time.monotonic() + limit_s
        while text not in self.screen[self.seen:]:
            if not self._read(deadline):
                raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen}")
        self.seen = self.screen.index(text, self.seen) + len(text)
        return self.screen

    def type(self, keys):
        os.write(self.master, keys.encode())

    def wait(self, limit_s=60):
        """The exit status, once the program has ended (everything it printed is on the screen)."""
        import time

        deadline = time.monotonic() + limit_s
        while self._read(deadline):
            pass
        return self.proc.wait(timeout=limit_s)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.fixture
def terminal(tmp_path):
    opened = []

    def start(*args):
        t = Terminal(list(args), env={"SIMULATOR_HISTORY": str(tmp_path / "history"), "PYTHONUNBUFFERED": "1"})
        opened.append(t)
        return t

    yield start
    for t in opened:
        t.close()


WELCOME_FLOWS = {"Default Start Flow": {
    "routes": [route(intent="Default Welcome Intent", say={"ja": "ようこそ。ご用件は？", "en": "Welcome. How can I help?"}),
               *FLOWS["Default Start Flow"]["routes"]],
    "handlers": FLOWS["Default Start Flow"]["handlers"],
    "pages": FLOWS["Default Start Flow"]["pages"]}}
WELCOME_INTENTS = {**INTENTS, "Default Welcome Intent": {"ja": ["こんにちは"], "en": ["hello"]}}


def test_chat_agent_speaks_first_and_help_and_unknown_commands(tmp_path, terminal):
    """The agent greets before the caller says anything; /help lists the commands; /nope is refused, not sent."""
    root = write_agent(tmp_path / "agent", flows=WELCOME_FLOWS, intents=WELCOME_INTENTS)
    t = terminal("chat", "--agent", str(root), "--lang", "ja")
    screen = t.expect("you> ")
    assert "agent> ようこそ。ご用件は？" in screen
    t.type("/help\r")
    t.expect("/where")
    t.type("/nope\r")
    t.expect("unknown command /nope")
    assert "もう一度お願いします" not in t.screen  # it was not sent to the agent as speech
    t.type("/quit\r")
    assert t.wait() == 0


def test_chat_up_arrow_recalls_the_last_line(tmp_path, terminal):
    """Readline: Up-arrow brings back what was typed, instead of sending ^[[A."""
    root = write_agent(tmp_path / "agent", flows=WELCOME_FLOWS, intents=WELCOME_INTENTS)
    t = terminal("chat", "--agent", str(root), "--lang", "ja")
    t.expect("you> ")
    t.type("/params\r")
    t.expect('"session"')
    t.expect("you> ")
    t.type("\x1b[A\r")  # Up, Enter: /params again
    t.expect('"session"')
    assert "^[[A" not in t.screen and "unknown command" not in t.screen
    # Ctrl-D only at the prompt: typed while the program is still printing, the terminal is in canonical mode and
    # takes it as an end-of-file that readline's switch to raw mode drops — the chat then waits for ever.
    t.expect("you> ")
    t.type("\x04")
    assert t.wait() == 0


@pytest.mark.parametrize("key", ["\x03", "\x04"], ids=["ctrl-c", "ctrl-d"])
def test_chat_ctrl_c_and_ctrl_d_leave_cleanly(tmp_path, terminal, key):
    """Ctrl-C or Ctrl-D at the prompt ends the chat with status 0 and no traceback."""
    root = write_agent(tmp_path / "agent", flows=WELCOME_FLOWS, intents=WELCOME_INTENTS)
    t = terminal("chat", "--agent", str(root), "--lang", "ja")
    t.expect("you> ")
    t.type(key)
    assert t.wait() == 0
    assert "Traceback" not in t.screen


def _hook(uri):
    return {"hook": {"displayName": "hook", "genericWebService": {"uri": uri}}}


def test_chat_warns_when_the_webhook_is_a_placeholder(tmp_path, capsys, monkeypatch):
    """Without --webhook/--wsgi, a placeholder URI gets a warning on stderr naming the way out."""
    flows = {"Default Start Flow": {"routes": [route(condition="true", page="p")],
                                    "pages": {"p": {"entry": fulfillment(say="やあ", webhook="hook", tag="t")}}}}
    root = write_agent(tmp_path / "agent", flows=flows, webhooks=_hook("https://YOUR-WEBHOOK-HOST/webhook"))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat", "--agent", str(root)]) == 0
    err = capsys.readouterr().err
    assert "warning: webhook hook (https://YOUR-WEBHOOK-HOST/webhook) is a placeholder" in err
    assert "--wsgi main:app" in err
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat", "--agent", str(root), "--webhook", "http://127.0.0.1:9/webhook"]) == 0
    assert "placeholder" not in capsys.readouterr().err


def test_chat_webhook_logs_stay_off_the_conversation(tmp_path, capsys, monkeypatch):
    """Whatever the in-process webhook prints on stdout goes to stderr (or --log-file), not between the lines."""
    flows = {"Default Start Flow": {"routes": [route(condition="true", page="p")],
                                    "pages": {"p": {"entry": fulfillment(webhook="hook", tag="t")}}}}
    root = write_agent(tmp_path / "agent", flows=flows, webhooks=_hook("https://hook.test/webhook"))
    module = tmp_path / "noisyhook.py"
    module.write_text(
        "import json\n"
        "def app(environ, start_response):\n"
        "    print('{\"severity\": \"INFO\", \"message\": \"webhook call\"}')\n"
        "    body = json.dumps({'fulfillmentResponse': {'messages': [{'text': {'text': ['こんにちは']}}]}}).encode()\n"
        "    start_response('200 OK', [('Content-Type', 'application/json')])\n"
        "    return [body]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat", "--agent", str(root), "--wsgi", "noisyhook:app"]) == 0
    captured = capsys.readouterr()
    assert "agent> こんにちは" in captured.out and "webhook call" not in captured.out
    assert "webhook call" in captured.err
    log = tmp_path / "hook.log"
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat", "--agent", str(root), "--wsgi", "noisyhook:app", "--log-file", str(log)]) == 0
    captured = capsys.readouterr()
    assert "webhook call" not in captured.out + captured.err and "webhook call" in log.read_text()


@pytest.mark.parametrize("args,message", [
    (["--wsgi", "main:nope"], "error: --wsgi main:nope: module 'main' has no attribute 'nope'"),
    (["--wsgi", "no_such_module:app"], "error: --wsgi no_such_module:app: cannot import module 'no_such_module'"),
    (["--lang", "fr"], "error: --lang fr: not a language of this agent (it has ja, en)"),
    (["--flow", "Nowhere"], "error: --flow Nowhere: no such flow"),
])
def test_chat_bad_arguments_are_one_line_errors(tmp_path, args, message):
    """A bad --wsgi, --lang or --flow prints one line on stderr and exits 2, no traceback."""
    root = _export(tmp_path, {})
    result = subprocess.run([sys.executable, "-m", "simulator", "chat", "--agent", str(root), *args],
                            capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    assert result.stderr.startswith(message) and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args,message", [
    (["--lang", "fr"], "--lang fr: not a language of this agent"),
    (["--test", "no such test"], "--test 'no such test': no such test case (test cases: good)"),
])
def test_run_tests_refuses_unknown_language_and_test_name(tmp_path, capsys, args, message):
    """--lang fr and an unknown --test are errors (exit 2), not "0/0 passed"."""
    root = _export(tmp_path, {"good": GOOD})
    assert main(["run-tests", "--agent", str(root), *args]) == 2
    captured = capsys.readouterr()
    assert message in captured.err and "0/0" not in captured.out


def test_run_tests_help_says_what_lang_does(capsys):
    """--lang's help describes the filter, not the conversation language."""
    with pytest.raises(SystemExit):
        main(["run-tests", "--help"])
    assert "only the test cases in this language" in " ".join(capsys.readouterr().out.split())


def test_run_tests_hints_at_the_settings_when_nothing_passes(tmp_path, capsys):
    """0 passed: a hint names the settings and the webhook options."""
    root = _export(tmp_path, {"bad": BAD})
    assert main(["run-tests", "--agent", str(root)]) == 1
    out = capsys.readouterr().out
    assert "0/1 test cases passed" in out and "hint: nothing passed" in out and "OTP_TEST_NUMBERS" in out


def test_run_tests_reset_command_runs_before_each_test_case(tmp_path, capsys):
    """--reset CMD runs once before every test case."""
    root = _export(tmp_path, {"good": GOOD, "english": ENGLISH})
    marks = tmp_path / "marks"
    cmd = f"{sys.executable} -c \"open({str(marks)!r}, 'a').write('x')\""
    assert main(["run-tests", "--agent", str(root), "--reset", cmd]) == 0
    assert marks.read_text() == "xx"


def test_run_tests_replays_ja_and_en_each_on_a_fresh_store(tmp_path):
    """Our six test cases in one command against `--wsgi main:app`: each starts on a reset store, so the English
    dialogs find card 4444 unlocked although the Japanese ones locked it (no "reload the store" step)."""
    from agentpack import build
    from agentpack.settings import PackSettings

    out = tmp_path / "agent"
    build(out, PackSettings())
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}", "NOTIFY_BACKEND": "file",
           "NOTIFY_FILE": str(tmp_path / "notifications.jsonl"), "TRUST_UPSTREAM_AUTH_LEVEL": "true",
           "OTP_TEST_NUMBERS": "09000001111=123456,09000002222=123456,09012345041=123456"}
    result = subprocess.run([sys.executable, "-m", "simulator", "run-tests", "--agent", str(out), "--wsgi", "main:app"],
                            capture_output=True, text=True, cwd=REPO, env=env)
    assert "6/6 test cases passed" in result.stdout, result.stdout[-3000:] + result.stderr[-2000:]
    assert result.returncode == 0
    assert "each test case starts on a fresh store" in result.stderr
    assert '"severity"' not in result.stdout  # the webhook's log lines are on stderr
