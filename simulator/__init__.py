"""Offline Dialogflow CX simulator: load a CX JSON export and run conversations against it.

    from simulator import load_agent, Session
    agent = load_agent("agent.zip")
    s = Session(agent, webhook=flask_app, language_code="ja")
    turn = s.send()                # starts the conversation
    turn = s.send(text="カードを止めたい")
    turn.messages, turn.page, turn.flow, turn.params, turn.ended, turn.end_reason

Generators, the generative fallback and data stores are callables given to Session (see simulator.generative).
"""

from simulator.engine import Session, Turn
from simulator.errors import (
    AgentLoadError,
    ConditionError,
    SessionEnded,
    SimulatorError,
    TransitionLoop,
    UnsupportedFeature,
)
from simulator.generative import GENERATIVE_FALLBACK
from simulator.loader import Agent, load_agent
from simulator.webhooks import WebhookCall, WebhookHTTPError

__all__ = [
    "Agent",
    "AgentLoadError",
    "ConditionError",
    "GENERATIVE_FALLBACK",
    "Session",
    "SessionEnded",
    "SimulatorError",
    "TransitionLoop",
    "Turn",
    "UnsupportedFeature",
    "WebhookCall",
    "WebhookHTTPError",
    "load_agent",
]
