"""The simulator's small exception hierarchy: each message says what was found and where."""

from __future__ import annotations


class SimulatorError(Exception):
    """Base class of everything the simulator raises on purpose."""


class AgentLoadError(SimulatorError):
    """The export is not a CX agent, or a file in it is malformed or refers to something missing."""


class UnsupportedFeature(SimulatorError):
    """The agent uses a CX feature the simulator does not model (see the README's list)."""

    def __init__(self, feature: str, source: str | None = None, detail: str | None = None):
        self.feature, self.source, self.detail = feature, source, detail
        msg = f"unsupported CX feature {feature!r}"
        if source:
            msg += f" in {source}"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)


class ConditionError(SimulatorError):
    """A condition or value expression cannot be parsed or evaluated."""


class TransitionLoop(SimulatorError):
    """One turn made more page transitions than the limit: the agent loops."""


class SessionEnded(SimulatorError):
    """send() was called after the conversation ended."""
