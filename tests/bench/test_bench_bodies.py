"""The benchmark's requests are real ones: each passes every check the webhook makes on a store the benchmark
seeds, and a lock is a real write (ticket, audit row, queued notice)."""
from __future__ import annotations

import json

import pytest

from bench import seed
from bench.__main__ import written
from bench.bodies import TAGS, body, template
from settings import Settings
from webhook.app import create_app, service_of


@pytest.fixture
def bench_app(tmp_path):
    """The service on a small store built the way the benchmark builds its own."""
    url = f"sqlite:///{tmp_path / 'bench.sqlite3'}"
    layout = seed.build(url, readers=20, pool=20)
    app = create_app(Settings(database_url=url, otp_hash_key=seed.BENCH_OTP_KEY, notify_backend="file",
                              notify_file=tmp_path / "notifications.jsonl"))
    yield app, url, layout
    service_of(app).store.dispose()


def answer(app, raw: bytes) -> dict:
    r = app.test_client().post("/webhook", data=raw, content_type="application/json")
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()["sessionInfo"]["parameters"]


@pytest.mark.parametrize("short", ["get_card_details", "validate_card"])
def test_a_read_request_of_the_benchmark_is_answered_for_a_verified_reader(bench_app, short):
    """A reader's session was verified by the seed, so the read tags answer with the reader's own card."""
    app, _, _ = bench_app
    params = answer(app, body(short, 7))
    assert "webhook_error_code" not in params
    card = seed.last4(7)
    assert card in params.get("last_four_digit_of_all_cards", []) or params.get("card_found") is True


def test_a_wrong_code_request_of_the_benchmark_is_counted_against_a_pending_code(bench_app):
    """verify_otp with the benchmark's code finds the seeded challenge, fails, and records the attempt."""
    app, url, layout = bench_app
    i = layout.pool_start
    store = service_of(app).store
    seed.open_challenges(store, "otp", range(i, i + 1))
    before = written(url)
    params = answer(app, body("verify_otp", i))
    assert params["otp_verified"] is False and params["otp_attempts_left"] == 2
    assert written(url)["audit_otp_failed"] == before["audit_otp_failed"] + 1


def test_a_lock_request_of_the_benchmark_is_a_real_write(bench_app):
    """A lock in a freshly verified session issues a ticket, audits it and queues the notice the relay delivers."""
    from tests.conftest import relay_of

    app, url, layout = bench_app
    i = layout.pool_start + 1
    seed.verify_sessions(service_of(app).store, "lock", range(i, i + 1))
    before = written(url)
    params = answer(app, body("lock", i))
    relay_of(app).drain()
    assert params["card_status"] == "inactive" and len(str(params["ticket_number"])) == 7
    after = written(url)
    assert {k: after[k] - before[k] for k in ("lock_tickets", "audit_card_locked", "outbox_lock_notices")} == {
        "lock_tickets": 1, "audit_card_locked": 1, "outbox_lock_notices": 1}


def test_a_lock_request_without_a_fresh_verification_is_refused(bench_app):
    """The benchmark cannot lock a card the seed did not verify a session for: AUTH_REQUIRED, nothing written."""
    app, url, layout = bench_app
    before = written(url)
    params = answer(app, body("lock", layout.pool_start + 2))
    assert params["webhook_error_code"] == "AUTH_REQUIRED"
    assert written(url) == before


def test_every_template_is_json_once_filled_and_sends_the_card_as_a_double():
    """The wrk templates are valid JSON for every tag, with the card number as CX sends it (4444.0)."""
    for short, tag in TAGS.items():
        request = json.loads(body(short, 4444))
        assert request["fulfillmentInfo"]["tag"] == tag
        assert request["sessionInfo"]["parameters"]["phone_number"] == "09000004444"
        if "${card}" in template(short):
            assert request["sessionInfo"]["parameters"]["last_four_digit_of_card_number"] == 4444.0


@pytest.mark.parametrize("stride", [1, 10, 100, 101])
def test_large_store_readers_have_the_card_counts_of_a_small_stores(stride):
    """Growth compares like with like: the k-th reader of a large store has as many cards as customer k of a small
    one (before, every reader 100 apart had exactly one card), and readers stay distinct."""
    readers = [seed.spread_reader(k, stride) for k in range(1000)]
    assert [seed.card_count(i) for i in readers] == [seed.card_count(k) for k in range(1000)]
    assert len(set(readers)) == len(readers) and max(readers) < 1000 * max(stride, 4)
