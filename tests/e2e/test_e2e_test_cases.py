"""The CX test cases we ship (the seed dialogs, ja and en) replay turn by turn against the webhook."""
from __future__ import annotations

import shutil

from fixtures.upstream_ivr import with_upstream_assertions
from settings import DEVELOPMENT_UPSTREAM_KEYS
from simulator.testcases import format_results, run_test_cases

from e2edialog import OTP_TEST_NUMBERS


def test_shipped_test_cases_pass(agent, make_app, sqlite_template, tmp_path):
    """Six test cases, each on a fresh store, as the README's recipe runs them: the webhook runs with test numbers,
    and dialog 2's caller, authenticated upstream, is vouched for by the development upstream's signed assertion
    (fixtures/upstream_ivr.py) — not by trusting the auth_level parameter."""
    names = sorted(tc["displayName"] for tc in agent.test_cases)
    assert len(names) == 6 and {n.split(":")[0] for n in names} == {
        f"seed {i} {lang}" for i in (1, 2, 3) for lang in ("ja", "en")}
    results = []
    for i, name in enumerate(names):
        store = tmp_path / f"store{i}.sqlite3"
        shutil.copy(sqlite_template, store)
        app = make_app(database_url=f"sqlite:///{store}", otp_test_numbers=OTP_TEST_NUMBERS,
                       upstream_assertion_keys=DEVELOPMENT_UPSTREAM_KEYS, upstream_assertion_issuer="development-ivr",
                       upstream_assertion_audience="lockcard-webhook")
        ivr = with_upstream_assertions(app, issuer="development-ivr", audience="lockcard-webhook")
        results += run_test_cases(agent, webhook=ivr, names=[name])
    assert all(r.passed for r in results), format_results(results)
    assert sum(len(r.turns) for r in results) == 2 * (11 + 9 + 7)
