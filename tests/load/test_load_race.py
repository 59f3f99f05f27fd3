"""Concurrent load on PostgreSQL and SQLite (loadtest/): worker processes racing lock / reissue on the same and on different
cards, with retries — zero duplicate tickets, every ticket audited and noticed, every card's state explained.

A small race runs in the default suite; `pytest -m load tests/load` runs a bigger one; `python -m loadtest` the
full 8 × 500 with figures (README, Reliability)."""
from __future__ import annotations

import os

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loadtest import LoadReport, run
from loadtest.run import check


@pytest.fixture
def load_database_url():
    """A database of the load test's own, on the PostgreSQL server of TEST_DATABASE_URL (never `test` itself)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if not url:
        if os.environ.get("TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("TEST_REQUIRE_POSTGRES=1 but TEST_DATABASE_URL is not set")
        pytest.skip("TEST_DATABASE_URL not set: the load race needs PostgreSQL")
    # One database per test process: several engineers' runs may race on the same server.
    own = make_url(url).set(database=f"lockcard_loadtest_pytest_{os.getpid()}")
    yield own.render_as_string(hide_password=False)
    admin = create_engine(own.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{own.database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def sqlite_load_url(tmp_path) -> str:
    """An SQLite file of the load test's own."""
    return f"sqlite:///{tmp_path / 'load.sqlite3'}"


def assert_store_explains_itself(report) -> None:
    figures = report.figures()
    assert report.problems == [], report.problems[:10]
    assert set(report.statuses) == {200}
    assert figures["duplicate_tickets"] == 0
    assert report.tickets > 0 and report.reissues > 0  # the race really locked and reissued cards


def test_small_race_leaves_no_duplicate_and_no_unexplained_card(load_database_url):
    """4 processes × 30 requests, hot cards and retries: the store explains every answer."""
    report = run(load_database_url, workers=4, requests=30, seed=7, replays=20)
    assert report.total == 120
    assert_store_explains_itself(report)

    # The checks bite: a second ticket number for one request, or a card changed behind the audit's back.
    op, _, first, _ = next(r for r in report.results if r[2].get("ticket_number"))
    forged = LoadReport(workers=4, requests_per_worker=30)
    check(load_database_url, [*report.results, (op, 200, {"ticket_number": first["ticket_number"] + 1}, 0.0)], forged)
    assert any(p.startswith("duplicate") for p in forged.problems)
    engine = create_engine(load_database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE cards SET status = 'active' WHERE status <> 'active'"))
    engine.dispose()
    tampered = LoadReport(workers=4, requests_per_worker=30)
    check(load_database_url, report.results, tampered)
    assert any("audit history ends at" in p for p in tampered.problems)


@pytest.mark.load
def test_eight_workers_race_on_the_same_and_different_cards(load_database_url):
    """load: 8 processes × 200 requests: zero duplicates, every ticket audited, every card explained."""
    report = run(load_database_url, workers=8, requests=200, seed=11, replays=100)
    assert report.total == 1600
    assert_store_explains_itself(report)


def test_small_race_on_sqlite_leaves_no_duplicate_and_no_unexplained_card(sqlite_load_url):
    """The same race on an SQLite file (what `make demo` runs): writers serialise, the store explains every answer."""
    report = run(sqlite_load_url, workers=4, requests=30, seed=7, replays=20)
    assert report.total == 120
    assert_store_explains_itself(report)


def test_the_load_test_refuses_to_drop_a_database_with_rows_unless_forced(sqlite_load_url):
    """A store that holds data (here the previous run's) is not dropped without --force; with it, it is."""
    from cardstore.wipe import NotEmpty
    from loadtest.__main__ import main

    run(sqlite_load_url, workers=2, requests=5, seed=3, replays=0)
    with pytest.raises(NotEmpty, match="--force"):
        main(["--database-url", sqlite_load_url, "--workers", "2", "--requests", "5", "--replays", "0"])
    assert main(["--database-url", sqlite_load_url, "--workers", "2", "--requests", "5", "--replays", "0",
                 "--force"]) == 0
