"""Shared fixtures: a real store per test (SQLite always; PostgreSQL too when TEST_DATABASE_URL is set), app
factories, a CX-shaped client whose every webhook response is also parsed strictly by the official types, and
the customer's "phone" (the file notification backend) to read codes from."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, make_url, text

from cardstore import fixtures, migrate
from cardstore.errors import StoreUnavailable
from cardstore.models import Base
from cardstore.uow import Store
from settings import Settings
from webhook.app import create_app, service_of

SESSION = "projects/demo/locations/global/agents/lockcard/sessions/"
TEST_KEY = "test-otp-key"


# --- stores -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """One migrated SQLite file with the fixtures loaded; each test gets a copy (migrations run once)."""
    path = tmp_path_factory.mktemp("template") / "store.sqlite3"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    store = Store(url)
    fixtures.load(store)
    store.dispose()
    return path


@pytest.fixture
def sqlite_url(tmp_path, sqlite_template) -> str:
    path = tmp_path / "store.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def postgres_base_url() -> str:
    """TEST_DATABASE_URL with a schema of this run's own (so parallel runs never clash), migrated once.

    Under CI (TEST_REQUIRE_POSTGRES=1) an unset or unreachable server fails the run instead of skipping."""
    url = os.environ.get("TEST_DATABASE_URL")
    required = os.environ.get("TEST_REQUIRE_POSTGRES") == "1"
    if not url:
        if required:
            pytest.fail("TEST_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        pytest.skip("TEST_DATABASE_URL not set: PostgreSQL store tests skipped")
    schema = f"lockcard_test_{os.getpid()}"
    admin = create_engine(url)
    try:
        with admin.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {schema}"))
    except Exception as exc:  # noqa: BLE001
        admin.dispose()
        if required:
            pytest.fail(f"PostgreSQL at TEST_DATABASE_URL is unreachable: {type(exc).__name__}")
        pytest.skip(f"PostgreSQL unreachable: {type(exc).__name__}")
    scoped = make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False)
    migrate.upgrade(scoped)
    yield scoped
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    admin.dispose()


def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    store = Store(url)
    fixtures.load(store)
    store.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request, tmp_path, sqlite_template) -> str:
    """A fresh store with the seed fixtures, on each backend in turn."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    url = request.getfixturevalue("postgres_base_url")
    reset_postgres(url)
    return url


# --- apps and clients ---------------------------------------------------------------------------------------

class CxClient(FlaskClient):
    """A test client that checks every 200 from /webhook parses strictly as the official WebhookResponse."""

    def open(self, *args, **kwargs):
        response = super().open(*args, **kwargs)
        if response.status_code == 200 and response.request.path == "/webhook":
            assert_official_webhook_response(response.get_data(as_text=True))
        return response


def assert_official_webhook_response(body: str) -> None:
    from google.cloud.dialogflowcx_v3 import WebhookResponse

    WebhookResponse.from_json(body, ignore_unknown_fields=False)


def relay_of(app) -> "Relay":
    """The outbox relay of an app under test (one per app): the webhook queues notices, only this delivers them."""
    from notify.relay import Relay

    if "test_relay" not in app.extensions:
        service = service_of(app)
        app.extensions["test_relay"] = Relay(service.settings, service.store)
    return app.extensions["test_relay"]


class Phone:
    """The customer's phone and mailbox: what the outbox relay delivered through the file notification backend.

    Reading it first lets the relay of every app under test deliver what is due (one real relay pass), as the
    running relay would have done by the time a caller looks at their phone."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.apps: list = []

    def deliver(self) -> None:
        for app in self.apps:
            try:
                relay_of(app).drain()
            except StoreUnavailable:
                pass  # that app's store is down (a fault test): its notices stay queued

    def messages(self, to: str | None = None) -> list[dict]:
        self.deliver()
        if not self.path.exists():
            return []
        rows = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines()]
        return [r for r in rows if to is None or r["to"] == to]

    def last_code(self, to: str | None = None) -> str:
        import re

        otp = [m for m in self.messages(to) if m["kind"] == "otp"]
        assert otp, f"no code was delivered to {to or 'anyone'}"
        return re.search(r"\b(\d{6})\b", otp[-1]["body"]).group(1)


@pytest.fixture
def smtp():
    """A real SMTP server (aiosmtpd) on loopback, down until the test calls `smtp.up()`."""
    from tests.local_servers import SmtpServer

    server = SmtpServer()
    yield server
    server.down()


@pytest.fixture
def smtp_server(smtp):
    """A real SMTP server on loopback, up: `(port, mailbox)`; `mailbox.mails` is what it received."""
    smtp.up()
    return smtp.port, smtp.mailbox


@pytest.fixture
def phone(tmp_path) -> Phone:
    return Phone(tmp_path / "notifications.jsonl")


def test_settings(url: str, notify_file: Path, **overrides) -> Settings:
    values = {"database_url": url, "notify_backend": "file", "notify_file": notify_file, "otp_hash_key": TEST_KEY}
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # a factory, not a test


@pytest.fixture
def make_app(tmp_path, sqlite_url, phone):
    """`make_app(**settings_overrides)`: a Flask app on a fresh SQLite store with the seed fixtures loaded.

    Notifications go to the file backend (`phone` reads them). Pass `database_url=` to use another store.
    """
    apps = []

    def factory(**overrides):
        url = overrides.pop("database_url", sqlite_url)
        app = create_app(test_settings(url, phone.path, **overrides))
        app.test_client_class = CxClient
        apps.append(app)
        phone.apps.append(app)
        return app

    yield factory
    for app in apps:
        service_of(app).store.dispose()


@pytest.fixture
def app(make_app, store_url):
    """The app on each store backend in turn."""
    return make_app(database_url=store_url)


@pytest.fixture
def client(app) -> CxClient:
    return app.test_client()


@pytest.fixture
def store(app) -> Store:
    return service_of(app).store


# --- speaking CX ----------------------------------------------------------------------------------------------

def cx_request(tag: str, session: str = "s1", *, caller_id: str | None = None, form: dict | None = None,
               language: str = "ja", **params) -> dict:
    """A WebhookRequest as CX sends it: session parameters, optional form parameters and telephony payload."""
    body = {
        "detectIntentResponseId": "test-response-id",
        "languageCode": language,
        "fulfillmentInfo": {"tag": tag},
        "sessionInfo": {"session": SESSION + session, "parameters": params},
        "pageInfo": {"currentPage": "projects/demo/locations/global/agents/lockcard/flows/f/pages/p",
                     "displayName": "page"},
    }
    if form:
        body["pageInfo"]["formInfo"] = {"parameterInfo": [
            {"displayName": k, "required": True, "state": "FILLED", "value": v, "justCollected": True}
            for k, v in form.items()]}
    if caller_id:
        body["payload"] = {"telephony": {"caller_id": caller_id}}
    return body


class Caller:
    """One CX session talking to the webhook: `caller.call(tag_action, **params)` -> the parameters set."""

    TAGS = {
        "verify_user": "prebuilt_components_authentication:verify_user",
        "send_otp": "prebuilt_components_authentication:send_otp",
        "verify_otp": "prebuilt_components_authentication:verify_otp",
        "get_card_details": "prebuilt_components_account_services:get_card_details",
        "validate_card": "prebuilt_components_lock_card:validate_card",
        "lock_card": "prebuilt_components_lock_card:lock_card_ticket_number",
        "reissue_card": "prebuilt_components_lock_card:reissue_card_number",
        "request_reactivation": "prebuilt_components_lock_card:request_reactivation",
    }
    QUEUING = frozenset({"send_otp", "lock_card", "reissue_card"})

    def __init__(self, client: FlaskClient, phone: Phone, session: str, phone_number: str | None = None,
                 caller_id: str | None = None) -> None:
        self.client = client
        self.phone = phone
        self.session = session
        self.phone_number = phone_number
        self.caller_id = caller_id

    def call(self, action: str, **params) -> dict:
        if self.phone_number is not None:
            params.setdefault("phone_number", self.phone_number)
        body = cx_request(self.TAGS[action], self.session, caller_id=self.caller_id, **params)
        response = self.client.post("/webhook", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        # The relay delivers what the call queued (one pass of the real relay, after the answer, never inside it);
        # only the tags that queue a notice, so a read stays a read for tests that count what it does.
        if action in self.QUEUING:
            try:
                relay_of(self.client.application).drain()
            except StoreUnavailable:
                pass  # a running relay waits for the store to come back; the notice stays queued
        return response.get_json()["sessionInfo"]["parameters"]

    def authenticate(self, channel: str = "sms") -> dict:
        """Send a code and type back what arrived: the session becomes verified."""
        sent = self.call("send_otp", otp_channel=channel)
        assert sent["otp_sent"] is True
        return self.call("verify_otp", otp_code=self.phone.last_code())


@pytest.fixture
def caller(client, phone):
    """`caller(phone_number, session=…)`: a CX session for that customer."""
    count = iter(range(1, 10_000))

    def factory(phone_number: str | None = "09000001111", session: str | None = None, caller_id: str | None = None):
        return Caller(client, phone, session or f"session-{next(count)}", phone_number, caller_id)

    return factory


# --- logs -------------------------------------------------------------------------------------------------------

@pytest.fixture
def log_lines():
    """`log_lines()`: every line the service's JSON formatter wrote during the test, parsed (as it reaches stdout)."""
    import io
    import logging

    from webhook.logs import CloudLoggingFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(CloudLoggingFormatter())
    logger = logging.getLogger("lockcard")
    logger.addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


# --- real browser -------------------------------------------------------------------------------------------

from tests.browser import chromium, chromium_page  # noqa: E402,F401 - shared fixtures


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test item, so a browser fixture can screenshot a failed test."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
