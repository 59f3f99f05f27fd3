"""End-to-end: the built agent, run by the offline simulator, against the real webhook on a fresh store."""
from __future__ import annotations

import pytest

from agentpack import build
from agentpack.settings import PackSettings
from simulator import Session, load_agent

from e2edialog import OTP_TEST_NUMBERS


@pytest.fixture(scope="session")
def agent(tmp_path_factory):
    """The agent as `python -m agentpack build` ships it, loaded once."""
    out = tmp_path_factory.mktemp("e2e") / "agent"
    build(out, PackSettings())
    return load_agent(out)


@pytest.fixture
def call(agent, make_app):
    """`call(lang, **session_params)`: a caller dials in; returns the simulator session, greeting done.

    `app=` replaces the webhook (a WSGI app or callable); `settings=` overrides the webhook's settings;
    `caller_id=` is the telephony ANI the webhook sees; `webhook_path=` changes where CX posts.
    """
    def dial(lang="ja", *, app=None, settings=None, caller_id=None, webhook_path=None, **params):
        webhook = app or make_app(otp_test_numbers=OTP_TEST_NUMBERS, **(settings or {}))
        session = Session(agent, webhook=webhook, language_code=lang, session_params=params,
                          caller_id=caller_id, webhook_path=webhook_path)
        session.send()
        return session

    return dial
