"""Fixtures for the agent checks: the sources at the repository root and one build of them per run."""
from __future__ import annotations

from pathlib import Path

import pytest

from agentpack import build
from agentpack.settings import PackSettings
from agentpack.validate import read_agent
from agentfacts import REPO


@pytest.fixture(scope="session")
def built_agent(tmp_path_factory) -> Path:
    """The agent built once, as `python -m agentpack build` does, with the default settings."""
    out = tmp_path_factory.mktemp("build") / "agent"
    build(out, PackSettings())
    return out


@pytest.fixture(scope="session", params=["sources", "built"])
def agent_root(request, built_agent) -> Path:
    """The sources and the built folder, in turn: both must pass every static check."""
    return REPO if request.param == "sources" else built_agent


@pytest.fixture(scope="session")
def sources():
    return read_agent(REPO)
