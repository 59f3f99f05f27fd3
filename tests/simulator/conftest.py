"""Fixtures for the simulator tests: synthetic agents written in the CX export layout, loaded fresh per test."""

import pytest

from cxbuild import write_agent
from simulator import load_agent


@pytest.fixture
def build_agent(tmp_path):
    """Factory: build_agent(flows=..., intents=..., ...) -> a loaded Agent written under tmp_path."""
    counter = iter(range(1000))

    def build(**spec):
        root = write_agent(tmp_path / f"agent{next(counter)}", **spec)
        return load_agent(root)

    return build
