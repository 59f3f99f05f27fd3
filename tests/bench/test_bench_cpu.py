"""The benchmark's second figure per run: the CPU a request costs the server's worker (user + system time from
/proc, over the run, ÷ the requests wrk counted) — what a request costs the server, which a busy neighbour moves
far less than it moves req/s."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.servers import Server, cpu_seconds, post

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads Linux's /proc")


def test_cpu_seconds_counts_what_a_process_spent_and_not_its_sleep():
    """A child that burns ~0.3 s of CPU and then sleeps: its CPU time is read as ≥ 0.2 s, and does not grow while
    it sleeps."""
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                              "while time.process_time() < end: pass\nprint('done', flush=True)\ntime.sleep(30)"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "done"
        spent = cpu_seconds(child.pid)
        time.sleep(0.3)
        assert 0.2 <= spent <= cpu_seconds(child.pid) < spent + 0.05
    finally:
        child.kill()
        child.wait()
        child.stdout.close()


def test_a_servers_worker_cpu_is_its_gunicorn_workers(tmp_path):
    """Server.worker_cpu reads the one sync worker (the master's child), not the master: it grows with the
    requests the worker answers, and is None once the server has stopped."""
    answers = tmp_path / "answers.json"
    answers.write_text(json.dumps({"t": {"sessionInfo": {"parameters": {}}}}), encoding="utf-8")
    server = Server("baseline", "bench.baseline:create_app()", {"BENCH_BASELINE_RESPONSES": str(answers)},
                    tmp_path / "server.log")
    body = json.dumps({"fulfillmentInfo": {"tag": "t"}}).encode()
    server.start()
    try:
        server.first_answer(body)
        worker = server.worker_pid()
        assert worker is not None and worker != server.process.pid
        before = server.worker_cpu()
        for _ in range(300):
            status, _ = post(server.url, body)
            assert status == 200
        assert server.worker_cpu() > before
    finally:
        server.stop()
    assert server.worker_cpu() is None


def test_busy_is_the_share_of_the_run_the_worker_spent_on_the_cpu():
    """500 µs a request at 1,800 req/s is 90 % of the run on the CPU; the req/s ratio is the CPU ratio times the
    ratio of the two workers' busy shares (what separates the two columns of the CPU table); no CPU reading, no
    share."""
    from bench.__main__ import Run

    service = Run("sqlite", "service", "lock", 8, 9000, 1800.0, 4.2, 14.0, 0, cpu_us=500.0)
    baseline = Run("sqlite", "baseline", "lock", 8, 18000, 3600.0, 2.1, 4.0, 0, cpu_us=262.5)
    assert service.busy == pytest.approx(0.9)
    assert baseline.busy == pytest.approx(0.945)
    assert service.rps / baseline.rps == pytest.approx(baseline.cpu_us / service.cpu_us * service.busy / baseline.busy)
    assert Run("sqlite", "service", "lock", 8, 9000, 1800.0, 4.2, 14.0, 0).busy is None
