"""The unit of work and the store commands, on a real database."""
import pytest
from sqlalchemy import func, select

from cardstore import fixtures
from cardstore.errors import StoreUnavailable
from cardstore.models import AuditEvent, Card, Customer
from cardstore.uow import Store
from tests.conftest import Caller, cx_request
from tests.store_state import row_counts


def test_uncommitted_work_is_rolled_back(store):
    """Leaving a unit of work without commit() discards its changes."""
    with store.unit_of_work() as uow:
        uow.repo.add(Customer(phone_e164="+819011112222", zip_code="1000001"))
    with store.unit_of_work() as uow:
        assert uow.repo.customer_by_phone("+819011112222") is None


def test_committed_work_is_kept(store):
    """commit() keeps the change for the next unit of work."""
    with store.unit_of_work() as uow:
        uow.repo.add(Customer(phone_e164="+819011112222", zip_code="1000001"))
        uow.commit()
    with store.unit_of_work() as uow:
        assert uow.repo.customer_by_phone("+819011112222") is not None


def test_an_error_midway_rolls_back_the_whole_unit(store):
    """A failure after a change and before commit leaves no half-written state."""
    with pytest.raises(RuntimeError):
        with store.unit_of_work() as uow:
            card = uow.session.scalars(select(Card)).first()
            card.status = "blocked"
            uow.repo.audit("test", "card.locked", card=card)
            uow.session.flush()
            raise RuntimeError("crash before commit")
    with store.unit_of_work() as uow:
        assert uow.session.scalar(select(func.count(Card.id)).where(Card.status == "blocked")) == 0
        assert uow.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.actor == "test")) == 0


def test_fixtures_load_idempotently(store):
    """Loading the seed fixtures again adds nothing."""
    before = row_counts(store)
    assert fixtures.load(store) == {"customers": 0, "cards": 0}
    assert row_counts(store) == before


@pytest.mark.parametrize("url", [
    "sqlite:////nonexistent-dir/lockcard/store.sqlite3",
    "postgresql+psycopg://postgres@127.0.0.1:1/test",
])
def test_an_unreachable_store_is_a_webhook_error_and_healthz_says_so(make_app, phone, url):
    """No database: the call answers webhook_error / STORE_UNAVAILABLE, /healthz is 503, nothing is sent."""
    app = make_app(database_url=url)
    client = app.test_client()
    body = cx_request("prebuilt_components_authentication:send_otp", phone_number="09000001111", otp_channel="sms")
    r = client.post("/webhook", json=body)
    assert r.status_code == 200
    assert r.get_json()["sessionInfo"]["parameters"] == {
        "transfer_reason": "webhook_error", "webhook_error_code": "STORE_UNAVAILABLE"}
    assert client.get("/healthz").status_code == 503
    assert phone.messages() == []
    with pytest.raises(StoreUnavailable):
        Store(url).ping()


def test_flask_store_commands_migrate_and_load(tmp_path, monkeypatch):
    """`flask store upgrade` and `flask store load-fixtures` (twice) on an empty database."""
    from webhook.app import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite3'}")
    app = create_app()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["store", "upgrade"]).exit_code == 0
    first = runner.invoke(args=["store", "load-fixtures"])
    assert "3 customers, 9 cards added" in first.output
    second = runner.invoke(args=["store", "load-fixtures"])
    assert "0 customers, 0 cards added" in second.output
    app.extensions["lockcard"].store.dispose()


def test_a_deleted_customer_is_unknown_to_the_webhook(client, store, phone):
    """A logically deleted customer is not found, so no code is sent and no card is shown."""
    import datetime as dt

    with store.unit_of_work() as uow:
        uow.repo.customer_by_phone("+819000002222").deleted_at = dt.datetime(2026, 1, 1)
        uow.commit()
    c = Caller(client, phone, "deleted", "09000002222")
    assert c.call("verify_user") == {"user_found": False}
    assert c.call("send_otp", otp_channel="sms")["webhook_error_code"] == "CUSTOMER_NOT_FOUND"


def test_flask_store_reset_brings_back_the_fixtures(tmp_path, monkeypatch):
    """`flask store reset --yes` after a lock: card 4444 is active again and nothing else is left."""
    from sqlalchemy import func, select

    from cardstore.models import Card, LockTicket
    from webhook.app import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'reset.sqlite3'}")
    app = create_app()
    runner = app.test_cli_runner()
    assert runner.invoke(args=["store", "load-fixtures"]).exit_code == 0
    store = app.extensions["lockcard"].store
    with store.unit_of_work() as uow:
        card = uow.session.scalars(select(Card).where(Card.last4 == "4444").order_by(Card.id)).first()
        card.status = "inactive"
        uow.session.add(LockTicket(card_id=card.id, number=1234567, lock_type="inactive", reason="lost",
                                   session="s"))
        uow.commit()
    result = runner.invoke(args=["store", "reset", "--yes"])
    assert result.exit_code == 0, result.output
    with store.unit_of_work() as uow:
        assert set(uow.session.scalars(select(Card.status).where(Card.last4 == "4444"))) == {"active"}
        assert uow.session.scalar(select(func.count()).select_from(LockTicket)) == 0
        assert uow.session.scalar(select(func.count()).select_from(Card)) == 9
    store.dispose()


def test_flask_store_reset_refuses_production(tmp_path, monkeypatch):
    """In production the reset is refused with a one-line reason and the store keeps its rows."""
    from webhook.app import create_app

    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'prod.sqlite3'}")
    app = create_app()
    service = app.extensions["lockcard"]
    monkeypatch.setattr(service, "settings", service.settings.model_copy(update={"app_env": "production"}))
    result = app.test_cli_runner().invoke(args=["store", "reset", "--yes"])
    assert result.exit_code != 0 and "refuses APP_ENV=production" in result.output
