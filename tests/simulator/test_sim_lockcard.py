"""Our shipped Lock card agent, run by the simulator against the real webhook; codes read from the caller's phone."""

import re

import pytest

from simulator import Session, load_agent


@pytest.fixture(scope="module")
def lockcard(tmp_path_factory):
    """The agent as agentpack builds it (the CX export layout), loaded once for this module."""
    from agentpack.build import build

    return load_agent(build(tmp_path_factory.mktemp("agentpack") / "agent"))


def test_seed_dialog_1_locks_a_card_with_codes_from_the_sms(lockcard, make_app, phone):
    """Seed dialog 1: an unauthenticated caller with four cards verifies twice by SMS and locks MasterCard 4444."""
    s = Session(lockcard, webhook=make_app(), language_code="ja", session_params={"phone_number": "09000001111"})
    s.send()
    s.send(text="こんにちは")
    assert s.send(text="カードをロックしたい").page == "> confirm sms"
    assert s.send(text="はい").page == "> collect otp"
    t = s.send(text=phone.last_code())
    assert t.params["auth_level"] == 1 and t.params["card_count"] == 4 and t.page == "> collect card number"
    assert s.send(text="4444").page == "> confirm card number"
    assert s.send(text="はい").page == "> lock type"
    assert s.send(text="一時的にロックする").page == "> lock reason"
    assert s.send(text="破損した").page == "> card auth channel"
    assert s.send(text="スマートフォンに送信").page == "> card auth collect code"
    assert s.send(text=phone.last_code()).page == "> confirm temporary lock"
    t = s.send(text="はい")
    assert (t.params["card_status"], t.params["lock_type"], t.params["lock_reason"]) == ("inactive", "inactive",
                                                                                         "damaged")
    assert re.fullmatch(r"\d{7}", str(int(t.params["ticket_number"])))
    assert [m["kind"] for m in phone.messages()].count("otp") == 2


def test_a_wrong_code_is_not_accepted(lockcard, make_app, phone):
    """A code that is not the one sent leaves the caller unauthenticated."""
    s = Session(lockcard, webhook=make_app(), language_code="ja", session_params={"phone_number": "09000001111"})
    s.send(text="こんにちは")
    s.send(text="カードをロックしたい")
    s.send(text="はい")
    wrong = "000000" if phone.last_code() != "000000" else "111111"
    t = s.send(text=wrong)
    assert t.params.get("auth_level") != 1 and t.page == "> collect otp"


def test_asking_for_a_person_hands_over_with_transfer_reason_agent(lockcard, make_app):
    """Asking for an operator in the middle of the flow ends with transfer_reason "agent"."""
    s = Session(lockcard, webhook=make_app(), language_code="ja", session_params={"phone_number": "09000001111"})
    s.send(text="こんにちは")
    s.send(text="カードをロックしたい")
    t = s.send(text="オペレーターと話したい")
    assert t.params["transfer_reason"] == "agent" and t.ended


def _unreachable_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/webhook"


def _failing_webhook(request):
    from simulator import WebhookHTTPError

    raise WebhookHTTPError(500, "internal error")


EXITS = {
    # transfer_reason: (session parameters, what the caller does, where the webhook calls go)
    "agent": ({"phone_number": "09000001111"}, ["こんにちは", "カードをロックしたい", "オペレーターと話したい"], None),
    "denial_of_information": ({}, ["こんにちは", "カードをロックしたい", "言いたくない"], None),
    "max_no_match": ({"phone_number": "09000001111"}, ["こんにちは", "カードをロックしたい", "ばなな", "ばなな", "ばなな"],
                     None),
    "max_no_input": ({"phone_number": "09000001111"}, ["こんにちは", "カードをロックしたい", "", "", ""], None),
    "webhook_error": ({"phone_number": "09000001111"}, ["こんにちは", "カードをロックしたい"], _failing_webhook),
    "webhook_not_found": ({"phone_number": "09000001111"}, ["こんにちは", "カードをロックしたい"], "unreachable"),
}


@pytest.mark.parametrize("reason", list(EXITS))
def test_each_transfer_reason_exit(lockcard, make_app, reason):
    """Each of the seed's six transfer_reason values is reachable and ends the call with a handover."""
    params, inputs, destination = EXITS[reason]
    webhook = _unreachable_url() if destination == "unreachable" else destination or make_app()
    s = Session(lockcard, webhook=webhook, language_code="ja", session_params=params)
    for text in inputs:
        t = s.send(text=text)
        if t.ended:
            break
    assert t.params.get("transfer_reason") == reason and t.ended


def test_store_outage_is_a_webhook_error(lockcard, make_app, tmp_path):
    """With the card store unreachable the real webhook answers transfer_reason webhook_error and the call is handed over."""
    app = make_app(database_url=f"sqlite:///{tmp_path}/missing-dir/store.sqlite3")
    s = Session(lockcard, webhook=app, language_code="ja", session_params={"phone_number": "09000001111"})
    s.send(text="こんにちは")
    t = s.send(text="カードをロックしたい")
    assert t.params.get("transfer_reason") == "webhook_error" and t.ended
    assert t.webhook_calls[0].response["sessionInfo"]["parameters"]["webhook_error_code"] == "STORE_UNAVAILABLE"


def test_the_shipped_seed_test_cases_pass(lockcard, make_app, sqlite_template, tmp_path):
    """Our agent's testCases (the seed's three dialogs, ja and en) replay green against the real webhook."""
    import itertools
    import shutil

    from simulator.testcases import format_results, run_test_cases

    fixed_codes = {"09000001111": "123456", "09000002222": "123456", "09012345041": "123456"}
    count = itertools.count()

    def fresh_bank(test_case):
        path = tmp_path / f"store{next(count)}.sqlite3"
        shutil.copy(sqlite_template, path)
        return make_app(database_url=f"sqlite:///{path}", otp_test_numbers=fixed_codes,
                        trust_upstream_auth_level=True)

    results = run_test_cases(lockcard, webhook_factory=fresh_bank)
    assert {r.language for r in results} == {"ja", "en"} and len(results) >= 6
    assert all(r.passed for r in results), format_results(results)
