"""Command line: `python -m simulator chat …` (a REPL) and `python -m simulator run-tests …` (replay test cases)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from simulator.engine import Session, Turn
from simulator.errors import SimulatorError
from simulator.loader import Agent, load_agent
from simulator.testcases import case_language, format_results, run_test_cases

CHAT_HELP = """Type what the caller says (Up/Down recall earlier lines). Commands:
  (empty line)     no input (sys.no-input-*)
  /event NAME      invoke an event
  /dtmf DIGITS     key in digits (e.g. /dtmf 4444#)
  /params          show session and flow parameters
  /where           show the current flow and page
  /help            this text
  /quit            leave (Ctrl-D and Ctrl-C leave too)"""
COMMANDS = ("/event", "/dtmf", "/params", "/where", "/help", "/quit")
HISTORY = Path(os.environ.get("SIMULATOR_HISTORY", Path.home() / ".cache" / "cx-simulator-history"))
_PLACEHOLDER_MARKS = ("YOUR-", "YOUR_", ".invalid", "example.com", "example.org")


class UsageError(SimulatorError):
    """A command-line argument that cannot be used; the message is the one line the user sees."""


def _webhook_target(args: argparse.Namespace) -> Any:
    if getattr(args, "wsgi", None):
        module, _, attr = args.wsgi.partition(":")
        attr = attr or "app"
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise UsageError(f"--wsgi {args.wsgi}: cannot import module {module!r} ({exc})") from None
        try:
            return getattr(mod, attr)
        except AttributeError:
            raise UsageError(f"--wsgi {args.wsgi}: module {module!r} has no attribute {attr!r}") from None
    return args.webhook


def placeholder_webhooks(agent: Agent) -> list[str]:
    """Webhooks of the agent whose URI is a placeholder (empty, YOUR-…, example.com…): calls there cannot work."""
    return [f"{w.name} ({w.uri or 'no URI'})" for w in agent.webhooks.values()
            if not w.uri or any(mark.lower() in w.uri.lower() for mark in _PLACEHOLDER_MARKS)]


def _warn_placeholder(agent: Agent, args: argparse.Namespace, err) -> None:
    if args.webhook or args.wsgi:
        return
    for hook in placeholder_webhooks(agent):
        print(f"warning: webhook {hook} is a placeholder; every call will fail and the agent will take its "
              f"webhook.error path. Give --wsgi main:app (in-process) or --webhook URL.", file=err)


def _check_language(agent: Agent, lang: str | None) -> None:
    if lang is not None and lang not in agent.languages:
        raise UsageError(f"--lang {lang}: not a language of this agent (it has {', '.join(agent.languages)})")


def _print_turn(turn: Turn, verbose: bool, out) -> None:
    if verbose:
        for line in turn.log:
            if not line.startswith(("agent:", "user:")):
                print(f"  · {line}", file=out)
        if turn.events:
            print(f"  · events: {', '.join(turn.events)}", file=out)
        for call in turn.webhook_calls:
            status = call.error or call.status
            print(f"  · webhook {call.webhook} tag={call.tag!r} -> {status}", file=out)
        for key, (old, new) in turn.param_changes.items():
            print(f"  · param {key}: {old!r} -> {new!r}", file=out)
        print(f"  · at {turn.flow} / {turn.page}", file=out)
        if any("outputAudioText" in m for m in turn.responses):
            print(f"  · audio: {turn.audio}", file=out)  # what a caller hears, when it is not the text
    for m in turn.messages:
        print(f"agent> {m}", file=out)
    for p in turn.payloads:
        print(f"agent> [payload] {json.dumps(p, ensure_ascii=False)}", file=out)
    if turn.ended:
        print(f"-- conversation ended: {turn.end_reason}", file=out)


@contextlib.contextmanager
def _service_output(stream):
    """While the agent runs, whatever the webhook prints on stdout (its JSON log lines) goes to `stream`, so the
    conversation on stdout stays readable. A logging handler made now keeps `stream` for good."""
    saved = sys.stdout
    sys.stdout = stream
    try:
        yield
    finally:
        sys.stdout = saved


class _Reader:
    """Lines from a terminal with readline editing and history, or plain lines from a pipe."""

    def __init__(self, stdin, out):
        self.stdin, self.out = stdin, out
        self.tty = stdin is sys.stdin and out is sys.stdout and stdin.isatty() and out.isatty()
        self.readline = None
        if self.tty:
            try:
                import readline
            except ImportError:  # a Python built without readline: plain input() still works
                return
            self.readline = readline
            with contextlib.suppress(OSError):
                readline.read_history_file(HISTORY)
            readline.set_history_length(1000)

    def read(self) -> str:
        """The next line; EOFError at the end, KeyboardInterrupt on Ctrl-C."""
        if self.tty:
            return input("you> ")
        print("you> ", end="", file=self.out, flush=True)
        line = self.stdin.readline()
        if not line:
            raise EOFError
        return line.rstrip("\n")

    def close(self) -> None:
        if self.readline is not None:
            with contextlib.suppress(OSError):
                HISTORY.parent.mkdir(parents=True, exist_ok=True)
                self.readline.write_history_file(HISTORY)


def chat(args: argparse.Namespace, stdin=None, out=None, err=None) -> int:
    stdin, out, err = stdin or sys.stdin, out or sys.stdout, err or sys.stderr
    agent = load_agent(args.agent)
    _check_language(agent, args.lang)
    if args.flow and args.flow not in agent.flows:
        raise UsageError(f"--flow {args.flow}: no such flow (flows: {', '.join(sorted(agent.flows))})")
    webhook = _webhook_target(args)
    _warn_placeholder(agent, args, err)
    logs = open(args.log_file, "a", encoding="utf-8") if args.log_file else err
    reader = _Reader(stdin, out)
    try:
        with _service_output(logs):
            session = Session(agent, webhook=webhook, language_code=args.lang, caller_id=args.caller_id,
                              start_flow=args.flow)
        print(CHAT_HELP, file=out)
        with _service_output(logs):
            opening = session.open()
        for turn in opening:
            _print_turn(turn, args.verbose, out)
        while not session.ended:
            try:
                line = reader.read()
            except (EOFError, KeyboardInterrupt):
                print(file=out)
                break
            command = line.strip().split(maxsplit=1)
            if command and command[0].startswith("/"):
                name, rest = command[0], (command[1] if len(command) > 1 else "").strip()
                if name == "/quit":
                    break
                if name == "/help":
                    print(CHAT_HELP, file=out)
                    continue
                if name == "/params":
                    print(json.dumps({"session": session.params, "flow": session.flow_params}, ensure_ascii=False,
                                     indent=2, default=str), file=out)
                    continue
                if name == "/where":
                    print(f"at {session.frame.flow.name} / {session.frame.page_name}", file=out)
                    continue
                if name in ("/event", "/dtmf") and not rest:
                    print(f"{name} needs an argument (/help lists the commands)", file=out)
                    continue
                if name not in COMMANDS:
                    print(f"unknown command {name} (/help lists the commands); nothing was sent", file=out)
                    continue
            try:
                with _service_output(logs):
                    if command and command[0] == "/event":
                        turn = session.send(event=command[1].strip())
                    elif command and command[0] == "/dtmf":
                        turn = session.send(dtmf=command[1].strip())
                    elif not line.strip():
                        turn = session.send()
                    else:
                        turn = session.send(text=line)
            except KeyboardInterrupt:
                print(file=out)
                break
            except SimulatorError as exc:
                print(f"error: {exc}", file=err)
                return 2
            _print_turn(turn, args.verbose, out)
    finally:
        reader.close()
        if logs is not err:
            logs.close()
    return 0


def run_tests(args: argparse.Namespace, out=None, err=None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    agent = load_agent(args.agent)
    if not agent.test_cases:
        print(f"no test cases in {args.agent}", file=out)
        return 1
    _check_language(agent, args.lang)
    names = {tc.get("displayName") for tc in agent.test_cases}
    unknown = [n for n in args.test or [] if n not in names]
    if unknown:
        raise UsageError(f"--test {unknown[0]!r}: no such test case (test cases: {', '.join(sorted(names))})")
    if args.lang and not any(case_language(tc, agent.default_language) == args.lang for tc in agent.test_cases):
        raise UsageError(f"--lang {args.lang}: no test case is in that language")
    webhook = _webhook_target(args)
    _warn_placeholder(agent, args, err)
    reset = _resetter(args, webhook, err)

    def each(tc: dict) -> Any:
        reset()
        return webhook

    with _service_output(err):
        results = run_test_cases(agent, language=args.lang, names=args.test or None, webhook_factory=each)
    print(format_results(results), file=out)
    if not results:
        return 1
    if not any(r.passed for r in results):
        print("hint: nothing passed. Against this project's webhook the test cases need the settings in the README "
              "(OTP_TEST_NUMBERS for the seed's fixed code, TRUST_UPSTREAM_AUTH_LEVEL, a store with the fixtures) "
              "and --wsgi main:app or --webhook URL. The differences above show the first turn that differs.",
              file=out)
    return 0 if all(r.passed for r in results) else 1


def _resetter(args: argparse.Namespace, webhook: Any, err):
    """What runs before each test case so it starts on a fresh store: --reset CMD, else the in-process Flask app's
    own `store reset` command when it has one, else nothing (--no-reset, or a webhook we cannot reach into)."""
    if args.no_reset:
        return lambda: None
    if args.reset:
        def shell() -> None:
            done = subprocess.run(shlex.split(args.reset), capture_output=True, text=True)
            if done.returncode != 0:
                raise UsageError(f"--reset {args.reset!r} failed ({done.returncode}): "
                                 f"{(done.stderr or done.stdout).strip().splitlines()[-1:] or ''}")
        return shell
    app = _flask_app(webhook)
    # get_command, not .commands: the app's CLI groups load on first use (webhook.app.LazyCommands).
    store_group = app.cli.get_command(None, "store") if app is not None else None
    if store_group is None or "reset" not in getattr(store_group, "commands", {}):
        return lambda: None
    runner = app.test_cli_runner()

    def in_process() -> None:
        result = runner.invoke(args=["store", "reset", "--yes"])
        if result.exit_code != 0:
            raise UsageError(f"store reset failed before a test case: {result.output.strip()}")
    print("each test case starts on a fresh store (flask store reset; --no-reset to share one)", file=err)
    return in_process


def _flask_app(target: Any):
    """The Flask app behind --wsgi, if it is one (directly, or built lazily by a `get()` like main.app)."""
    if target is None or isinstance(target, str):
        return None
    with _service_output(sys.stderr):
        app = target.get() if hasattr(target, "get") and not hasattr(target, "cli") else target
    return app if hasattr(app, "cli") and hasattr(app, "test_cli_runner") else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Run Dialogflow CX JSON agents offline.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser, lang_help: str) -> None:
        p.add_argument("--agent", required=True, help="CX JSON export: folder or zip")
        p.add_argument("--lang", default=None, help=lang_help)
        p.add_argument("--webhook", default=None, help="send every webhook call to this URL")
        p.add_argument("--wsgi", default=None, metavar="MODULE:APP",
                       help="call this WSGI app in-process for webhooks (e.g. main:app)")

    c = sub.add_parser("chat", help="talk to the agent")
    common(c, "language code of the conversation (default: the agent's default language)")
    c.add_argument("--verbose", action="store_true", help="show page changes, parameter changes and webhook calls")
    c.add_argument("--caller-id", default=None, help="telephony caller ID passed in the webhook payload")
    c.add_argument("--flow", default=None, help="start in this flow instead of the agent's start flow")
    c.add_argument("--log-file", default=None, metavar="PATH",
                   help="append the webhook's log lines here (default: stderr, never the conversation)")
    t = sub.add_parser("run-tests", help="replay the agent's test cases")
    common(t, "only the test cases in this language (their input.languageCode); default: every test case, "
              "each in its own language")
    t.add_argument("--test", action="append", help="only the test case with this display name (repeatable)")
    t.add_argument("--reset", default=None, metavar="CMD",
                   help="run this command before each test case (e.g. \"flask --app main store reset --yes\")")
    t.add_argument("--no-reset", action="store_true",
                   help="do not reset the --wsgi app's store between test cases")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "chat":
            return chat(args)
        return run_tests(args)
    except SimulatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
