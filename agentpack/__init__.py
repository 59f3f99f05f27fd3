"""agentpack: builds, validates and deploys the Lock card CX agent.

The agent's sources are CX JSON export files at the repository root (`flows/`, `entities/`, `intents/`,
`testCases/`); `build` assembles them with an `agent.json` and the webhook definition generated from settings
into the layout *Restore agent* accepts (`--webhooks flexible`: one flexible webhook per call, `flexible.py`);
`deploy` restores it into an empty agent, `install` adds our flows beside an agent's own, `apply` points Google's
imported component at the service. Knows CX JSON; knows nothing of the webhook's internals.
"""
from agentpack.build import WEBHOOK_DISPLAY_NAME, build

__all__ = ["WEBHOOK_DISPLAY_NAME", "build"]
