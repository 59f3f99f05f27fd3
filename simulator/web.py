"""The browser simulator: a Flask blueprint where a developer talks to a CX agent as in the console's simulator.

The agent runs in this process (simulator.engine) and its webhook calls go to the Flask app serving the page,
in-process, at the webhook URI's path: the conversation exercises the running webhook and its store. Each turn
shows the messages, the current flow and page, the parameters, the webhook calls with their requests and
responses, and what a caller would hear. Conversations live in memory (a development tool: a handful at a
time, the oldest dropped); nothing here is for production, where the app does not register it unless told to.

POST bodies must be JSON: a cross-site form cannot send `application/json` without a CORS preflight, which this
blueprint never answers, so another site cannot drive a conversation through a developer's browser.
"""

from __future__ import annotations

import secrets
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from flask import Blueprint, Flask, abort, current_app, jsonify, render_template, request

from simulator.engine import Session, Turn
from simulator.errors import SimulatorError
from simulator.loader import Agent

MAX_CONVERSATIONS = 20
MAX_TEXT = 500


class Conversations:
    """The live conversations of one app, by random id; the oldest is dropped past MAX_CONVERSATIONS."""

    def __init__(self, agent_factory: Callable[[], Agent]):
        self._agent_factory, self._agent = agent_factory, None
        self._sessions: OrderedDict[str, tuple[Session, threading.Lock]] = OrderedDict()
        self._lock = threading.Lock()

    def agent(self) -> Agent:
        with self._lock:
            if self._agent is None:
                self._agent = self._agent_factory()
            return self._agent

    def start(self, session: Session) -> str:
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._sessions[key] = (session, threading.Lock())
            while len(self._sessions) > MAX_CONVERSATIONS:
                self._sessions.popitem(last=False)
        return key

    def get(self, key: str) -> tuple[Session, threading.Lock]:
        with self._lock:
            found = self._sessions.get(key)
        if found is None:
            abort(404, description="no such conversation (the server keeps only the latest ones): start a new one")
        return found


def turn_json(turn: Turn) -> dict[str, Any]:
    """One turn as the page shows it."""
    return {
        "messages": turn.messages,
        "payloads": turn.payloads,
        "audio": turn.audio,
        "flow": turn.flow,
        "page": turn.page,
        "pages": turn.pages,
        "intent": turn.intent,
        "confidence": turn.intent_confidence,
        "events": turn.events,
        "params": turn.params,
        "changed": sorted(turn.param_changes),
        "webhooks": [{"webhook": c.webhook, "tag": c.tag, "status": c.status, "error": c.error,
                      "request": c.request, "response": c.response} for c in turn.webhook_calls],
        "ended": turn.ended,
        "end_reason": turn.end_reason,
    }


def create_blueprint(agent_factory: Callable[[], Agent], webhook: Callable[[], Any] | None = None) -> Blueprint:
    """The /simulator page and its JSON API for the agent `agent_factory()` builds (once, on first use).

    `webhook()` gives the destination of the agent's webhook calls; by default the app serving the page.
    """
    bp = Blueprint("simulator", __name__, url_prefix="/simulator", template_folder="templates",
                   static_folder="static")
    conversations = Conversations(agent_factory)
    destination = webhook or (lambda: current_app._get_current_object())

    def body() -> dict:
        if not request.is_json:
            abort(415, description="send JSON (Content-Type: application/json)")
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            abort(400, description="the body must be a JSON object")
        return data

    @bp.errorhandler(400)
    @bp.errorhandler(404)
    @bp.errorhandler(415)
    def json_error(exc):
        return jsonify({"error": exc.description}), exc.code

    @bp.get("")
    def page():
        agent = conversations.agent()
        return render_template("simulator/page.html", agent=agent, languages=agent.languages)

    @bp.post("/api/conversations")
    def start():
        data = body()
        agent = conversations.agent()
        lang = data.get("lang") or agent.default_language
        if lang not in agent.languages:
            abort(400, description=f"language {lang!r} is not one of the agent's: {', '.join(agent.languages)}")
        caller_id = str(data.get("caller_id") or "").strip() or None
        params = data.get("params") or {}
        if not isinstance(params, dict):
            abort(400, description="params must be an object")
        try:
            session = Session(agent, webhook=destination(), language_code=lang, caller_id=caller_id,
                              session_params=params)
            turns = session.open()
        except SimulatorError as exc:
            abort(400, description=str(exc))
        key = conversations.start(session)
        return jsonify({"id": key, "lang": lang, "turns": [turn_json(t) for t in turns]})

    @bp.post("/api/conversations/<key>/turns")
    def say(key: str):
        data = body()
        session, lock = conversations.get(key)
        kinds = [k for k in ("text", "event", "dtmf") if data.get(k) not in (None, "")]
        if len(kinds) > 1:
            abort(400, description="one of text, event or dtmf (none: no input)")
        value = str(data[kinds[0]]) if kinds else None
        if value is not None and len(value) > MAX_TEXT:
            abort(400, description=f"at most {MAX_TEXT} characters")
        with lock:
            if session.ended:
                abort(400, description=f"the conversation has ended ({session.end_reason}); start a new one")
            try:
                turn = session.send(**({kinds[0]: value} if kinds else {}))
            except SimulatorError as exc:
                abort(400, description=str(exc))
        return jsonify(turn_json(turn))

    return bp


def build_project_agent() -> Agent:
    """This repository's agent as `python -m agentpack build` makes it, in a temporary folder."""
    from agentpack import build
    from agentpack.settings import PackSettings
    from simulator.loader import load_agent

    out = Path(tempfile.mkdtemp(prefix="simulator-agent-")) / "agent"
    build(out, PackSettings())
    return load_agent(out)


def init_app(app: Flask) -> None:
    """Serve /simulator on `app` with this repository's agent, its webhook calls going to `app` itself."""
    app.register_blueprint(create_blueprint(build_project_agent))
