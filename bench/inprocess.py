"""`python -m bench.inprocess`: CPU µs per request of the service and of the bare Flask baseline, in one process.

A guide, not the benchmark: no sockets, no gunicorn, no wrk — both WSGI apps are called directly, in alternating
blocks, and timed with the process's CPU clock (`time.process_time`), which other work on a shared machine
disturbs far less than wall time. Prints, per read tag, the service's and the baseline's cost, the difference Δ
and the ratio the issue's model predicts under wrk: 370 / (370 + Δ) (370 µs: what a baseline request costs end to
end under gunicorn and wrk here, sockets included; issue 15).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import seed
from bench.bodies import READS, TAGS, body, read_tags
from bench.profile import wsgi_call

BASELINE_REQUEST_US = 370.0  # issue 15's model: the baseline's end-to-end cost of one request under wrk


def cpu_us_per_request(app, bodies: list[bytes]) -> float:
    started = time.process_time()
    for raw in bodies:
        wsgi_call(app, raw)
    return (time.process_time() - started) / len(bodies) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__.splitlines()[0])
    parser.add_argument("tags", nargs="*", help=f"read tags among {', '.join(READS)} (default both)")
    parser.add_argument("--blocks", type=int, default=15, help="alternating blocks per app (median taken)")
    parser.add_argument("--block", type=int, default=200, help="requests per block")
    args = parser.parse_args(argv)
    args.tags = read_tags(parser, args.tags)

    work = Path(tempfile.mkdtemp(prefix="lockcard-inprocess-", dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
    url = f"sqlite:///{work / 'store.sqlite3'}"
    readers = 1000
    seed.build(url, readers=readers, pool=0)
    os.environ.update(DATABASE_URL=url, NOTIFY_BACKEND="file", NOTIFY_FILE=str(work / "notify.jsonl"),
                      OTP_HASH_KEY=seed.BENCH_OTP_KEY, APP_ENV="development")
    import main as entry

    service = entry.app
    answers = {}
    for short in args.tags:
        status, out = wsgi_call(service, body(short, 0))
        answers[TAGS[short]] = json.loads(out)
    responses = work / "responses.json"
    responses.write_text(json.dumps(answers, ensure_ascii=False), encoding="utf-8")
    os.environ["BENCH_BASELINE_RESPONSES"] = str(responses)
    from bench.baseline import create_app

    baseline = create_app()
    devnull = open(os.devnull, "w")
    stdout, sys.stdout = sys.stdout, devnull  # the service's log lines are written (that is part of the cost)
    import logging

    handlers = [h for h in logging.getLogger("lockcard").handlers if hasattr(h, "setStream")]
    previous = [h.setStream(devnull) for h in handlers]
    results = {}
    try:
        for short in args.tags:
            bodies = [body(short, i % readers) for i in range(args.block)]
            cpu_us_per_request(service, bodies)  # warm: compiled statements, prepared caches
            cpu_us_per_request(baseline, bodies)
            svc, base = [], []
            for _ in range(args.blocks):
                svc.append(cpu_us_per_request(service, bodies))
                base.append(cpu_us_per_request(baseline, bodies))
            results[short] = (statistics.median(svc), statistics.median(base))
    finally:
        for handler, stream in zip(handlers, previous):
            handler.setStream(stream)
        sys.stdout = stdout
        devnull.close()
    print(f"{'tag':18s} {'service µs':>10s} {'baseline µs':>11s} {'Δ µs':>7s}  model ratio 370/(370+Δ)")
    for short, (svc, base) in results.items():
        delta = svc - base
        print(f"{short:18s} {svc:10.0f} {base:11.0f} {delta:7.0f}  {BASELINE_REQUEST_US / (BASELINE_REQUEST_US + delta):.2f}")
    print(f"(CPU time, median of {args.blocks} alternating blocks of {args.block}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
