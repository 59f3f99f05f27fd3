"""Command line: `python -m simulator chat …` (a REPL) and `python -m simulator run-tests …` (replay test cases)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any

from simulator.engine import Session, Turn
from simulator.errors import SimulatorError
from simulator.loader import load_agent
from simulator.testcases import format_results, run_test_cases

CHAT_HELP = """Type what the caller says. Commands:
  (empty line)     no input (sys.no-input-*)
  /event NAME      invoke an event
  /dtmf DIGITS     key in digits (e.g. /dtmf 4444#)
  /params          show session and flow parameters
  /quit            leave"""


def _webhook_target(args: argparse.Namespace) -> Any:
    if getattr(args, "wsgi", None):
        module, _, attr = args.wsgi.partition(":")
        return getattr(importlib.import_module(module), attr or "app")
    return args.webhook


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


def chat(args: argparse.Namespace, stdin=None, out=None) -> int:
    stdin, out = stdin or sys.stdin, out or sys.stdout
    agent = load_agent(args.agent)
    session = Session(agent, webhook=_webhook_target(args), language_code=args.lang, caller_id=args.caller_id,
                      start_flow=args.flow)
    print(CHAT_HELP, file=out)
    _print_turn(session.send(), args.verbose, out)
    while not session.ended:
        print("you> ", end="", file=out, flush=True)
        line = stdin.readline()
        if not line:
            break
        line = line.rstrip("\n")
        try:
            if line.strip() == "/quit":
                break
            if line.strip() == "/params":
                print(json.dumps({"session": session.params, "flow": session.flow_params}, ensure_ascii=False,
                                 indent=2, default=str), file=out)
                continue
            if line.startswith("/event "):
                turn = session.send(event=line[7:].strip())
            elif line.startswith("/dtmf "):
                turn = session.send(dtmf=line[6:].strip())
            elif not line.strip():
                turn = session.send()
            else:
                turn = session.send(text=line)
        except SimulatorError as exc:
            print(f"error: {exc}", file=out)
            return 2
        _print_turn(turn, args.verbose, out)
    return 0


def run_tests(args: argparse.Namespace, out=None) -> int:
    out = out or sys.stdout
    agent = load_agent(args.agent)
    if not agent.test_cases:
        print(f"no test cases in {args.agent}", file=out)
        return 1
    results = run_test_cases(agent, language=args.lang, webhook=_webhook_target(args), names=args.test or None)
    print(format_results(results), file=out)
    if not results:
        return 1
    return 0 if all(r.passed for r in results) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m simulator", description="Run Dialogflow CX JSON agents offline.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--agent", required=True, help="CX JSON export: folder or zip")
        p.add_argument("--lang", default=None, help="language code (default: the agent's default language)")
        p.add_argument("--webhook", default=None, help="send every webhook call to this URL")
        p.add_argument("--wsgi", default=None, metavar="MODULE:APP",
                       help="call this WSGI app in-process for webhooks (e.g. main:app)")

    c = sub.add_parser("chat", help="talk to the agent")
    common(c)
    c.add_argument("--verbose", action="store_true", help="show page changes, parameter changes and webhook calls")
    c.add_argument("--caller-id", default=None, help="telephony caller ID passed in the webhook payload")
    c.add_argument("--flow", default=None, help="start in this flow instead of the agent's start flow")
    t = sub.add_parser("run-tests", help="replay the agent's test cases")
    common(t)
    t.add_argument("--test", action="append", help="only the test case with this display name (repeatable)")
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
