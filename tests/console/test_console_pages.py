"""The console through a test client signed in by (our own) IAP: who gets in, what each role may do, CSRF, and
that every action is in the audit trail under the verified e-mail."""
from __future__ import annotations

import logging
import re
from types import SimpleNamespace

import pytest
from sqlalchemy import select, update

from cardstore.models import AuditEvent, Customer, Handoff, OutboxMessage, utcnow
from settings import ProductionRefused, Settings
from webhook.app import service_of
from tests.console.conftest import AUDIENCE, OPERATOR, OUTSIDER, SUPERVISOR, locked_and_handed_off, new_ec_key
from tests.store_state import unchanged


def audit_rows(store, action: str) -> list[SimpleNamespace]:
    with store.unit_of_work() as uow:
        return [SimpleNamespace(actor=e.actor, after=e.after, before=e.before)
                for e in uow.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                                             .order_by(AuditEvent.id))]


# --- identity -------------------------------------------------------------------------------------------------

def test_without_iap_nobody_is_signed_in(console_app):
    """No IAP header (a request that bypassed IAP): 401, and no page."""
    response = console_app().test_client().get("/console/handoffs")
    assert response.status_code == 401
    assert "09000001111" not in response.get_data(as_text=True)


@pytest.mark.parametrize("forgery", ["other key", "wrong audience", "wrong issuer", "expired", "garbage"])
def test_a_forged_or_misdirected_assertion_signs_nobody_in(console_app, iap, forgery):
    """An assertion not signed by IAP's key, for another audience or issuer, expired, or not a JWT: 401."""
    other_key, _ = new_ec_key()
    header = {
        "other key": lambda: iap.assertion(SUPERVISOR, key_pem=other_key),
        "wrong audience": lambda: iap.assertion(SUPERVISOR, aud="/projects/1/global/backendServices/2"),
        "wrong issuer": lambda: iap.assertion(SUPERVISOR, iss="https://accounts.google.com"),
        "expired": lambda: iap.assertion(SUPERVISOR, iat=int(utcnow().timestamp()) - 7200,
                                         exp=int(utcnow().timestamp()) - 3600),
        "garbage": lambda: "not.a.jwt",
    }[forgery]()
    response = console_app().test_client().get("/console/handoffs", headers={"x-goog-iap-jwt-assertion": header})
    assert response.status_code == 401


def test_a_verified_stranger_has_no_role(console_app, operator):
    """IAP let a Google account through that CONSOLE_OPERATORS/SUPERVISORS do not name: 403."""
    assert operator(console_app(), OUTSIDER).get("/console/handoffs").status_code == 403


def test_the_verified_email_is_shown_and_is_the_actor(console_app, operator, phone):
    """The page says who is signed in (IAP's e-mail without its provider prefix)."""
    page = operator(console_app(), SUPERVISOR).get("/console/handoffs").get_data(as_text=True)
    assert SUPERVISOR in page and "accounts.google.com:" not in page


def test_production_refuses_the_development_identity():
    """CONSOLE_AUTH=development (make demo's) is one of production's refusals; so is the development cookie key."""
    safe = {"app_env": "production", "database_url": "postgresql+psycopg://x@db/x", "otp_hash_key": "k" * 48,
            "notify_backend": "smtp", "webhook_auth": "header", "webhook_header_value": "h" * 40}
    with pytest.raises(ProductionRefused, match="CONSOLE_AUTH=development"):
        Settings(**safe, console_auth="development")
    with pytest.raises(ProductionRefused, match="CONSOLE_SECRET_KEY is the development key"):
        Settings(**safe, console_auth="iap", console_iap_audience=AUDIENCE)
    Settings(**safe, console_auth="iap", console_iap_audience=AUDIENCE, console_secret_key="s" * 40)
    Settings(**safe)  # no console at all (the default): nothing to refuse


def test_console_off_is_not_served(make_app):
    """CONSOLE_AUTH=off (the default): /console does not exist."""
    assert make_app().test_client().get("/console/handoffs").status_code == 404


# --- hand-offs ------------------------------------------------------------------------------------------------

def test_the_queue_shows_unanswered_first_then_oldest_first(console_app, operator, phone):
    """Two hand-offs; the older one answered: the unanswered one is first, with its age."""
    app = console_app()
    first = locked_and_handed_off(app, phone, "5555")
    second = locked_and_handed_off(app, phone, "6666")
    store = operator(app).store
    with store.unit_of_work() as uow:
        uow.session.execute(update(Handoff).where(Handoff.id == first)
                            .values(status="answered", resolution="rejected", answered_by="x@bank.example"))
        uow.commit()
    page = operator(app).get("/console/handoffs").get_data(as_text=True)
    order = [int(n) for n in re.findall(r'data-handoff="(\d+)"', page)]
    assert order == [second, first]
    assert "未回答" in page and "回答済み" in page


def test_opening_a_handoff_shows_whom_to_call_and_is_audited(console_app, operator, phone):
    """The detail page has the full number and the name; the opening is a `handoff.viewed` row by the viewer."""
    app = console_app()
    handoff_id = locked_and_handed_off(app, phone)
    page = operator(app).get(f"/console/handoffs/{handoff_id}").get_data(as_text=True)
    assert "09000001111" in page and "佐藤 花子" in page
    viewed = audit_rows(operator(app).store, "handoff.viewed")
    assert [(e.actor, e.after["handoff_id"]) for e in viewed] == [(OPERATOR, handoff_id)]
    assert 'id="status-then">一時停止 (inactive)' in page


def test_a_supervisor_reactivates_and_the_customer_gets_an_sms(console_app, operator, phone):
    """Answer once: the card is active, the hand-off answered by the verified e-mail, an SMS in the outbox."""
    app = console_app()
    handoff_id = locked_and_handed_off(app, phone)
    boss = operator(app, SUPERVISOR)
    response = boss.post(f"/console/handoffs/{handoff_id}/answer",
                         {"resolution": "reactivated", "note": "本人確認済み"}, form_on=f"/console/handoffs/{handoff_id}")
    assert response.status_code == 302
    with boss.store.unit_of_work() as uow:
        handoff = uow.session.get(Handoff, handoff_id)
        assert (handoff.status, handoff.answered_by, handoff.card.status) == ("answered", SUPERVISOR, "active")
        sms = uow.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == "handoff_reactivated")).one()
        assert sms.channel == "sms" and sms.to == "+819000001111"
    assert [m["kind"] for m in phone.messages()][-1] == "handoff_reactivated"
    assert {e.actor for e in audit_rows(boss.store, "handoff.answered")} == {SUPERVISOR}
    assert {e.actor for e in audit_rows(boss.store, "card.reactivated")} == {SUPERVISOR}
    again = boss.post(f"/console/handoffs/{handoff_id}/answer", {"resolution": "rejected", "note": "x"},
                      form_on="/console/handoffs")
    assert again.status_code == 302
    assert len(audit_rows(boss.store, "handoff.answered")) == 1


def test_an_operator_cannot_reactivate(console_app, operator, phone):
    """The operator's page has no reactivate control, and a hand-made POST is refused with nothing changed."""
    app = console_app()
    handoff_id = locked_and_handed_off(app, phone)
    clerk = operator(app, OPERATOR)
    page = clerk.get(f"/console/handoffs/{handoff_id}").get_data(as_text=True)
    assert 'value="reactivated"' not in page and 'value="rejected"' in page
    token = clerk.token(f"/console/handoffs/{handoff_id}")
    with unchanged(clerk.store):
        response = clerk.client.post(f"/console/handoffs/{handoff_id}/answer",
                                     data={"resolution": "reactivated", "note": "please", "csrf_token": token})
    assert response.status_code == 403


def test_an_operator_may_reject(console_app, operator, phone):
    """Rejecting needs no supervisor: answered, card still inactive, an SMS saying so."""
    app = console_app()
    handoff_id = locked_and_handed_off(app, phone)
    clerk = operator(app, OPERATOR)
    clerk.post(f"/console/handoffs/{handoff_id}/answer", {"resolution": "rejected", "note": "番号不一致"},
               form_on=f"/console/handoffs/{handoff_id}")
    with clerk.store.unit_of_work() as uow:
        handoff = uow.session.get(Handoff, handoff_id)
        assert (handoff.resolution, handoff.card.status, handoff.answered_by) == ("rejected", "inactive", OPERATOR)
    assert [m["kind"] for m in phone.messages()][-1] == "handoff_rejected"


def test_a_form_without_its_csrf_token_is_refused(console_app, operator, phone):
    """A cross-site POST (no token, or another session's token) changes nothing: 400."""
    app = console_app()
    handoff_id = locked_and_handed_off(app, phone)
    boss = operator(app, SUPERVISOR)
    with unchanged(boss.store):
        missing = boss.client.post(f"/console/handoffs/{handoff_id}/answer",
                                   data={"resolution": "rejected", "note": "forged"})
        stranger_token = operator(app, SUPERVISOR).token("/console/customers")
        other = boss.client.post(f"/console/handoffs/{handoff_id}/answer",
                                 data={"resolution": "rejected", "note": "forged", "csrf_token": stranger_token})
    assert missing.status_code == 400 and other.status_code == 400


# --- customers --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["090-0000-1111", "+81 90 0000 1111", "０９０００００１１１１", "09000001111"])
def test_a_customer_is_found_by_any_spelling_and_the_url_names_no_number(console_app, operator, spelling):
    """Search is a POST; the page it leads to is named by an internal id, not the number; the view is audited."""
    app = console_app()
    clerk = operator(app)
    response = clerk.post("/console/customers", {"phone": spelling}, form_on="/console/customers")
    assert response.status_code == 302
    location = response.headers["Location"]
    assert "0000" not in location and "1111" not in location
    page = clerk.get(location).get_data(as_text=True)
    assert "09000001111" in page
    assert [e.actor for e in audit_rows(clerk.store, "customer.viewed")] == [OPERATOR]


def test_supervisor_actions_are_audited_under_the_verified_email(console_app, operator):
    """Logical delete and OTP re-enable by the supervisor; operators see no such buttons and are refused."""
    app = console_app()
    boss, clerk = operator(app, SUPERVISOR), operator(app, OPERATOR)
    with boss.store.unit_of_work() as uow:
        customer = uow.session.scalars(select(Customer).where(Customer.phone_e164 == "+819000002222")).one()
        customer.otp_disabled_at, customer.otp_failures = utcnow(), 10
        uow.commit()
        customer_id = customer.id
    page = f"/console/customers/{customer_id}"
    assert 'id="delete-customer"' not in clerk.get(page).get_data(as_text=True)
    token = clerk.token(page)
    assert clerk.client.post(f"{page}/delete", data={"csrf_token": token}).status_code == 403
    boss.post(f"{page}/otp-enable", form_on=page)
    boss.post(f"{page}/delete", form_on=page)
    with boss.store.unit_of_work() as uow:
        customer = uow.session.get(Customer, customer_id)
        assert customer.deleted_at is not None and customer.otp_disabled_at is None
    assert [e.actor for e in audit_rows(boss.store, "otp.enabled")] == [SUPERVISOR]
    assert [e.actor for e in audit_rows(boss.store, "customer.deleted")] == [SUPERVISOR]


def test_a_control_character_in_stored_data_is_shown_escaped(console_app, operator):
    """A name that came in before control characters were refused (ESC ] 52 writes a clipboard): the page
    shows `\\x1b`, never the character."""
    app = console_app()
    clerk = operator(app)
    with clerk.store.unit_of_work() as uow:
        customer = uow.session.scalars(select(Customer).where(Customer.phone_e164 == "+819000001111")).one()
        customer.name = "佐藤\x1b]52;c;ZXZpbA==\x07花子\u202e"
        uow.commit()
        customer_id = customer.id
    page = clerk.get(f"/console/customers/{customer_id}").get_data(as_text=True)
    assert "\x1b" not in page and "\x07" not in page and "\u202e" not in page
    assert "\\x1b]52;c;ZXZpbA==\\x07" in page


# --- outbox, audit, import ------------------------------------------------------------------------------------------

def test_outbox_failures_are_masked_and_a_supervisor_requeues(console_app, operator):
    """A gateway error quoting the number shows masked; requeue is the supervisor's, audited."""
    app = console_app()
    boss = operator(app, SUPERVISOR)
    with boss.store.unit_of_work() as uow:
        customer = uow.session.scalars(select(Customer).where(Customer.phone_e164 == "+819000001111")).one()
        message = OutboxMessage(customer_id=customer.id, kind="lock_ticket", channel="sms", to="+819000001111",
                                body="b", redacted_body="b", status="failed", attempts=8,
                                last_error="550 <09000001111@sms.example.jp>: no such user (+81 90-0000-1111)")
        uow.session.add(message)
        uow.commit()
        message_id = message.id
    page = boss.get("/console/outbox").get_data(as_text=True)
    assert "09000001111" not in page and "90-0000-1111" not in page and "0***@sms.example.jp" in page
    clerk = operator(app, OPERATOR)
    assert clerk.client.post(f"/console/outbox/{message_id}/requeue",
                             data={"csrf_token": clerk.token("/console/outbox")}).status_code == 403
    boss.post(f"/console/outbox/{message_id}/requeue", form_on="/console/outbox")
    assert [e.actor for e in audit_rows(boss.store, "outbox.requeued")] == [SUPERVISOR]


def test_audit_filters_and_a_csv_a_spreadsheet_cannot_run(console_app, operator):
    """Filter by action; the export is audited, and a cell starting with = + - @ is text."""
    app = console_app()
    boss = operator(app, SUPERVISOR)
    with boss.store.unit_of_work() as uow:
        uow.repo.audit("=HYPERLINK(\"http://evil\")", "customer.deleted", after={"note": "+1-2"})
        uow.commit()
    page = boss.post("/console/audit", {"action": "customer.deleted"}, form_on="/console/audit")
    html = page.get_data(as_text=True)
    assert html.count('class="action">customer.deleted') == 1 and 'class="action">card.created' not in html
    export = boss.post("/console/audit/export", {"action": "customer.deleted"}, form_on="/console/audit")
    text = export.get_data(as_text=True)
    assert export.mimetype == "text/csv"
    assert "'=HYPERLINK" in text and ",=HYPERLINK" not in text
    assert [e.actor for e in audit_rows(boss.store, "audit.exported")] == [SUPERVISOR]


def test_import_preview_then_run_are_audited(console_app, operator):
    """Upload: the preview lists the bad line; start: the import runs (here to the end) as the verified e-mail."""
    import io

    app = console_app()
    app.config["CONSOLE_JOBS_IN_BACKGROUND"] = False  # the check and the import run inside the request
    clerk = operator(app)
    csv_text = ("phone_number,name,email,zip_code,card_last4,card_vendor,card_status\r\n"
                "09011112222,山田 太郎,,150-0001,1234,Visa,active\r\n"
                "09011113333,山田 次郎,,150-0001,123,Visa,active\r\n")
    response = clerk.client.post("/console/imports", data={
        "csrf_token": clerk.token("/console/imports"), "file": (io.BytesIO(csv_text.encode()), "people.csv")},
        content_type="multipart/form-data")
    assert response.status_code == 302
    job_url = response.headers["Location"]
    page = clerk.get(job_url).get_data(as_text=True)
    assert 'data-line="3"' in page and "exactly 4 digits" in page
    clerk.post(f"{job_url}/start", form_on=job_url)
    result = clerk.get(job_url).get_data(as_text=True)
    assert 'id="imported">1<' in result
    for action in ("import.previewed", "import.started", "import.completed", "customer.imported"):
        assert {e.actor for e in audit_rows(clerk.store, action)} == {OPERATOR}, action


class _Kept(logging.Handler):
    """Every record the service logs, with its message and extra fields, as text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.getMessage()} {record.__dict__}")


def test_console_actions_log_no_personal_data(console_app, operator, phone):
    """Search, open, answer, refuse: the log records name no number, no name, no e-mail."""
    app = console_app()
    handoff_id = locked_and_handed_off(app, phone)
    kept = _Kept()
    logging.getLogger("lockcard").addHandler(kept)
    clerk = operator(app, OPERATOR)
    clerk.post("/console/customers", {"phone": "090-0000-1111"}, form_on="/console/customers")
    clerk.get(f"/console/handoffs/{handoff_id}")
    clerk.client.post(f"/console/handoffs/{handoff_id}/answer", data={
        "resolution": "reactivated", "note": "x", "csrf_token": clerk.token("/console/handoffs")})
    operator(app, SUPERVISOR).post(f"/console/handoffs/{handoff_id}/answer", {"resolution": "rejected",
                                   "note": "番号不一致"}, form_on="/console/handoffs")
    logging.getLogger("lockcard").removeHandler(kept)
    logged = "\n".join(kept.lines)
    assert "refused" in logged  # the operator's reactivation was logged, without who or whom
    for secret in ("09000001111", "+819000001111", "0000-1111", "佐藤", "hanako", OPERATOR, SUPERVISOR):
        assert secret not in logged


def test_the_console_speaks_english_on_request(console_app, operator):
    """Japanese by default; the language button switches this browser's session to English."""
    clerk = operator(console_app())
    assert "対応待ち" in clerk.get("/console/handoffs").get_data(as_text=True)
    clerk.post("/console/language", {"lang": "en"}, form_on="/console/handoffs")
    assert "Hand-off queue" in clerk.get("/console/handoffs").get_data(as_text=True)


def test_make_demo_signs_in_as_the_development_identity(make_app):
    """CONSOLE_AUTH=development (make demo): no IAP header needed; the actor is CONSOLE_DEV_EMAIL."""
    app = make_app(console_auth="development")
    client = app.test_client()
    page = client.get("/console/customers").get_data(as_text=True)
    assert "developer@localhost" in page
    from tests.console.conftest import _TOKEN

    match = _TOKEN.search(page)
    client.post("/console/customers", data={"phone": "09000001111", "csrf_token": match.group(1) or match.group(2)})
    client.get("/console/customers/1")
    assert [e.actor for e in audit_rows(service_of(app).store, "customer.viewed")] == ["developer@localhost"]
