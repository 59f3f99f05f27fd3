"""End to end through flexible webhooks: the agent built with `--webhooks flexible` (one FLEXIBLE webhook per call,
named as its tag, plain JSON bodies and JSONPath mappings) replays the seed's dialogs in the simulator against the
service's `/flexible/<tag>` endpoints, and leaves by every transfer_reason, the webhook ones through real failed
calls (an HTTP error status, an unreachable URL)."""
from __future__ import annotations

import socket

import pytest

from agentpack import build
from agentpack.flexible import CALLS_BY_TAG, FLEXIBLE_PATH
from agentpack.settings import PackSettings
from simulator import Session, load_agent

from e2edialog import OTP_TEST_NUMBERS, says
from test_e2e_seed_dialogs import DIALOG_1, DIALOG_2, DIALOG_3, converse
from test_e2e_transfer_reasons import HANDOVER, handed_over

SEND_OTP = "prebuilt_components_authentication:send_otp"
VERIFY_OTP = "prebuilt_components_authentication:verify_otp"


@pytest.fixture(scope="session")
def flexible_agent(tmp_path_factory):
    """The agent as `python -m agentpack build --webhooks flexible` ships it, loaded once."""
    out = tmp_path_factory.mktemp("e2e-flexible") / "agent"
    build(out, PackSettings(agent_webhook_url="https://lockcard.example/webhook"), webhooks="flexible")
    return load_agent(out)


class Wire:
    """The service as CX reaches it: every request's path and status, as they went over the wire."""

    def __init__(self, app):
        self.app, self.calls = app, []

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]

        def recorded(status, headers, exc_info=None):
            self.calls.append((path, int(status.split()[0])))
            return start_response(status, headers, exc_info)

        return self.app(environ, recorded)


@pytest.fixture
def service(make_app):
    """The real service (fresh SQLite store, the seed's customers, fixed test codes), behind a wire recorder."""
    return Wire(make_app(otp_test_numbers=OTP_TEST_NUMBERS))


@pytest.fixture
def dial(flexible_agent, service):
    """`dial(lang, webhook=…, **session_params)`: a caller dials in to the flexible agent; greeting done."""
    def start(lang="ja", *, webhook=None, **params):
        session = Session(flexible_agent, webhook=webhook or service, language_code=lang, session_params=params)
        session.send()
        return session

    return start


def upstream_token(service, phone_number: str) -> str:
    """What an upstream authenticator (the bank's IVR, Google's Authentication component) holds after it checked
    a code with the service: the auth_token verify_otp answered."""
    from werkzeug.test import Client

    client = Client(service)
    sent = client.post(FLEXIBLE_PATH + SEND_OTP, json={"phone_number": phone_number, "otp_channel": "sms"})
    assert sent.status_code == 200, sent.get_data(as_text=True)
    verified = client.post(FLEXIBLE_PATH + VERIFY_OTP, json={
        "phone_number": phone_number, "otp_challenge": sent.json["otp_challenge"],
        "otp_code": OTP_TEST_NUMBERS[phone_number]})
    assert verified.status_code == 200 and verified.json["otp_verified"] is True, verified.get_data(as_text=True)
    return verified.json["auth_token"]


def only_flexible_calls(session_turns, service):
    """Every call went to /flexible/<its tag> with a plain JSON body of the documented fields; none to /webhook."""
    calls = [c for t in session_turns for c in t.webhook_calls]
    assert calls
    for call in calls:
        assert call.webhook == call.tag and call.tag in CALLS_BY_TAG
        assert set(call.request) == {field for field, _ in CALLS_BY_TAG[call.tag].body}, call.request
    assert service.calls and all(path.startswith(FLEXIBLE_PATH) for path, _ in service.calls), service.calls
    return calls


def replay(session, lang, script):
    turns = []
    converse(_Recording(session, turns), lang, script)
    return turns


class _Recording:
    """A session whose turns are kept, so a test can look at every call the dialog made."""

    def __init__(self, session, turns):
        self.session, self.turns = session, turns

    def send(self, **kwargs):
        turn = self.session.send(**kwargs)
        self.turns.append(turn)
        return turn


# --- the seed's dialogs ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["ja", "en"])
def test_dialog_1_unauthenticated_caller_with_several_cards(dial, service, phone, lang):
    """Dialog 1 through flexible webhooks: verify_user, send_otp, verify_otp (which hands back the credential),
    the card reads, a second code for the card holder, and the lock, each at its own URL; the SMS in the language
    the session's language_code names."""
    turns = replay(dial(lang, phone_number="09000001111", language_code=lang), lang, DIALOG_1[lang])
    turn = turns[-1]
    assert turn.ended and turn.params.get("transfer_reason") is None
    assert turn.params["card_status"] == "inactive" and turn.params["last_four_digit_of_card_number"] == "4444"
    shared = [m for m in phone.messages("+819000001111") if m["kind"] == "lock_ticket"]
    assert len(shared) == 1 and str(int(turn.params["ticket_number"])) in shared[0]["body"]
    # The bank's integration set language_code: the SMS speaks the caller's language.
    assert ("Your request number is" in shared[0]["body"]) == (lang == "en")
    calls = only_flexible_calls(turns, service)
    assert [c.tag.split(":")[1] for c in calls] == [
        "verify_user", "send_otp", "verify_otp", "get_card_details", "validate_card", "send_otp", "verify_otp",
        "lock_card_ticket_number"]
    # Each read and change presented the credential the last verify_otp answered, never an empty one.
    for call in calls[3:]:
        if "auth_token" in call.request:
            assert call.request["auth_token"].startswith("lcat_")
    assert calls[-1].request["auth_token"] == calls[-2].response["auth_token"] != calls[2].response["auth_token"]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_dialog_2_caller_authenticated_upstream_with_one_card(dial, service, phone, lang):
    """Dialog 2: the caller arrives authenticated by an upstream step that checked a code with the service and
    passes its auth_token; the only card is locked permanently and a new card ordered. No trust in auth_level."""
    token = upstream_token(service, "09000002222")
    session = dial(lang, phone_number="09000002222", auth_level=1, auth_token=token)
    turns = replay(session, lang, DIALOG_2[lang])
    turn = turns[-1]
    assert turn.ended and turn.params.get("transfer_reason") is None
    assert turn.params["card_status"] == "blocked" and turn.params["delivery_business_days"] == 3
    kinds = [m["kind"] for m in phone.messages("+819000002222")]
    assert kinds.count("lock_ticket") == 1 and kinds.count("reissue_ticket") == 1
    calls = only_flexible_calls(turns, service)
    assert [c.tag.split(":")[1] for c in calls] == [
        "get_card_details", "validate_card", "send_otp", "verify_otp", "lock_card_ticket_number",
        "reissue_card_number"]
    assert calls[0].request["auth_token"] == token


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_dialog_3_reactivation_is_handed_to_a_person(dial, service, lang):
    """Dialog 3: the temporarily locked Visa 1456 is not reactivated by the bot: a hand-off, then a transfer."""
    turns = replay(dial(lang, phone_number="09012345041"), lang, DIALOG_3[lang])
    turn = turns[-1]
    assert turn.ended and turn.params["transfer_reason"] == "agent" and turn.params["handoff_id"]
    assert turn.params["card_status"] == "inactive"
    assert only_flexible_calls(turns, service)[-1].tag.endswith(":request_reactivation")


def test_without_a_number_the_caller_is_asked_for_it(dial):
    """A chat has no caller ID: verify_user gets a null number, says user_found false, and the flow asks."""
    session = dial("ja")
    says(session.send(text="カードをロックしたい"), "ご本人確認のため、ご登録の電話番号をお知らせください。")
    turn = session.send(dtmf="09000001111#")
    says(turn, "セキュリティ上の理由から、本人確認が必要なため、コードを送信します。コードをスマートフォンで受け取りますか?")


def test_a_caller_id_the_integration_put_in_the_session_identifies_the_caller(dial):
    """On the phone, a bank's telephony integration that sets caller_id as a session parameter spares the caller
    the question: verify_user finds them by it, and the code is offered at once."""
    session = dial("ja", caller_id="+81 90-0000-1111")
    turn = session.send(text="カードをロックしたい")
    says(turn, "セキュリティ上の理由から、本人確認が必要なため、コードを送信します。コードをスマートフォンで受け取りますか?")
    assert turn.webhook_calls[0].request == {"phone_number": None, "caller_id": "+81 90-0000-1111"}


# --- every transfer_reason ------------------------------------------------------------------------------------

def at_card_prompt(dial, **kw):
    session = dial("ja", phone_number="09000001111", **kw)
    for said in ("カードをロックしたい", "はい", "123456"):
        turn = session.send(text=said)
    assert turn.page == "> collect card number", turn.messages
    return session


def test_agent(dial):
    """agent: the caller asks for a person."""
    handed_over(at_card_prompt(dial).send(text="オペレーターと話したい"), "agent")


def test_denial_of_information(dial):
    """denial_of_information: the caller will not give the card's digits."""
    handed_over(at_card_prompt(dial).send(text="教えたくない"), "denial_of_information")


def test_max_no_input(dial):
    """max_no_input: three silences."""
    session = at_card_prompt(dial)
    session.send()
    session.send()
    handed_over(session.send(), "max_no_input")


def test_max_no_match_the_service_locks_out_the_code(dial):
    """max_no_match: three wrong codes; verify_otp answers 200 with transfer_reason, mapped like any field."""
    session = dial("ja", phone_number="09000001111")
    session.send(text="カードをロックしたい")
    session.send(text="はい")
    session.send(text="111111")
    session.send(text="222222")
    turn = handed_over(session.send(text="333333"), "max_no_match")
    assert turn.params["otp_attempts_left"] == 0 and "auth_token" not in turn.params


def test_webhook_error_from_a_4xx_a_forged_credential(dial, service):
    """webhook_error: a caller who claims an upstream authentication with a credential the service never issued
    gets 403 on the first read (CX: webhook.error.rejected), and the flow hands the call over."""
    session = dial("ja", phone_number="09000002222", auth_level=1, auth_token="lcat_" + "A" * 43)
    turn = handed_over(session.send(text="カードをロックしたい"), "webhook_error")
    says(turn, "カード情報を取得する間、しばらくお待ちください。", "申し訳ございません。お手続きを完了できませんでした。", HANDOVER)
    assert service.calls == [(FLEXIBLE_PATH + "prebuilt_components_account_services:get_card_details", 403)]
    assert turn.webhook_calls[0].error == "webhook.error.rejected"
    assert "last_four_digit_of_all_cards" not in turn.params


def test_webhook_error_from_a_4xx_another_customers_credential(dial, service):
    """webhook_error: a real credential, but issued to another customer, does not read this number's cards."""
    token = upstream_token(service, "09000001111")
    session = dial("ja", phone_number="09000002222", auth_level=1, auth_token=token)
    turn = handed_over(session.send(text="カードをロックしたい"), "webhook_error")
    assert service.calls[-1] == (FLEXIBLE_PATH + "prebuilt_components_account_services:get_card_details", 403)
    assert "last_four_digit_of_all_cards" not in turn.params


def test_webhook_error_from_a_5xx_the_store_is_down(dial, make_app, tmp_path):
    """webhook_error: the card store does not answer; the service says 503 (webhook.error.unavailable)."""
    down = Wire(make_app(otp_test_numbers=OTP_TEST_NUMBERS, database_url=f"sqlite:///{tmp_path}/no/such/dir/x.db"))
    session = dial("en", webhook=down, phone_number="09000001111")
    turn = handed_over(session.send(text="i want to lock my card"), "webhook_error")
    assert down.calls == [(FLEXIBLE_PATH + "prebuilt_components_authentication:verify_user", 503)]
    assert turn.webhook_calls[0].error == "webhook.error.unavailable"


def closed_port() -> int:
    """A loopback port nothing listens on: bound, then released."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_webhook_not_found_from_an_unreachable_url(dial, service):
    """webhook_not_found: validate_card's URL does not answer at all (connection refused, over real HTTP): CX's
    webhook.error.not-found, after the caller was verified and heard their cards."""
    tag = "prebuilt_components_lock_card:validate_card"
    url = f"http://127.0.0.1:{closed_port()}{FLEXIBLE_PATH}{tag}"
    session = at_card_prompt(dial, webhook={"*": service, tag: url})
    session.send(text="4444")
    turn = handed_over(session.send(text="はい"), "webhook_not_found")
    assert turn.webhook_calls[-1].error == "webhook.error.not-found"


def test_max_no_match_three_unknown_numbers(dial):
    """max_no_match: a chat caller types three numbers no customer has. verify_user answers only
    `user_found: false`, so its mapping clears phone_number; the flow still counts each typed number."""
    session = dial("ja")
    session.send(text="カードをロックしたい")
    for number in ("09099998888", "09099998887"):
        turn = session.send(text=number)
        assert turn.page == "> collect phone number" and not turn.ended
    handed_over(session.send(text="09099998886"), "max_no_match")


def test_webhook_error_from_a_4xx_the_card_changed_meanwhile(dial, service, sqlite_url, phone):
    """webhook_error: between validate_card (active) and the lock, the card is blocked by another channel; the lock
    answers 409 INVALID_TRANSITION (CX: webhook.error), nothing is locked twice, no ticket is sent."""
    import sqlalchemy as sa

    session = at_card_prompt(dial)
    for said in ("4444", "はい"):
        session.send(text=said)
    engine = sa.create_engine(sqlite_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE cards SET status = 'blocked' WHERE last4 = '4444' AND customer_id = "
                             "(SELECT id FROM customers WHERE phone_e164 = '+819000001111')"))
    for said in ("一時的にロックする", "破損した", "スマートフォンに送信", "123456"):
        session.send(text=said)
    turn = handed_over(session.send(text="はい"), "webhook_error")
    assert service.calls[-1] == (FLEXIBLE_PATH + "prebuilt_components_lock_card:lock_card_ticket_number", 409)
    assert "ticket_number" not in turn.params
    assert not [m for m in phone.messages("+819000001111") if m["kind"] == "lock_ticket"]
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM lock_tickets")).scalar() == 0
    engine.dispose()


def test_the_flexible_builds_test_cases_pass(flexible_agent, make_app, sqlite_template, tmp_path):
    """The stored test cases the flexible build ships (dialogs 1 and 3, ja and en) replay against the flexible
    endpoints, each on a fresh store, with no trust in an upstream auth level."""
    import shutil

    from simulator.testcases import format_results, run_test_cases

    names = sorted(tc["displayName"] for tc in flexible_agent.test_cases)
    assert [n.split(":")[0] for n in names] == ["seed 1 en", "seed 1 ja", "seed 3 en", "seed 3 ja"]
    results = []
    for i, name in enumerate(names):
        store = tmp_path / f"store{i}.sqlite3"
        shutil.copy(sqlite_template, store)
        app = make_app(database_url=f"sqlite:///{store}", otp_test_numbers=OTP_TEST_NUMBERS)
        results += run_test_cases(flexible_agent, webhook=app, names=[name])
    assert all(r.passed for r in results), format_results(results)
