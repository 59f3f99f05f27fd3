"""`python -m bench.instructions [TAG …]`: instructions per request, service vs the bare Flask baseline, counted by
valgrind's callgrind — the same figure however busy the machine is.

wrk's req/s on a shared two-core machine moves by ±20 % from one run to the next; an instruction count does not
(the same code, inputs and environment give the same total). Each app is called in-process through WSGI (no
sockets, no gunicorn) on the benchmark's own CX bodies and generated store (bench/seed.py, built afresh under
/dev/shm or the temp dir); callgrind counts only inside the measured loop (`--toggle-collect` on the C function
that drives it), after a warm-up pass. `lock` is counted as wrk sends it: each call a fresh write by a customer of
its own, verified in a session of its own, whom the warm-up never saw (their number is parsed, their ticket, audit
row and notice written).

Prints, per tag, the instructions of one service call and of one baseline call and their ratio — the upper bound
of the req/s ratio wrk would see if both servers spent nothing else per request (gunicorn, the kernel and wrk add
the same cost to both, so the wrk ratio lies between this one and 1). Needs valgrind (Debian: apt-get install
valgrind); about a minute per app and tag.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.bodies import READS, TAGS

ROOT = Path(__file__).resolve().parent.parent
READERS = 1000
# What may be counted: the reads, and the lock (one write per call, each by a customer of its own).
COUNTED = (*READS, "lock")
# The C function that drives the measured loop: callgrind collects while it is on the stack, nowhere else.
DRIVER = "functools_reduce"


def store_path() -> Path:
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    return base / "lockcard-instructions.sqlite3"


def child(app_name: str, short: str, calls: int, work: Path) -> None:
    """Runs under callgrind: build the app, warm it, then `calls` requests inside functools.reduce."""
    from bench import seed
    from bench.bodies import TAGS, body
    from bench.profile import wsgi_call

    os.environ.update(DATABASE_URL=f"sqlite:///{store_path()}", NOTIFY_BACKEND="file",
                      NOTIFY_FILE=str(work / "notify.jsonl"), OTP_HASH_KEY=seed.BENCH_OTP_KEY, APP_ENV="development")
    import main as entry

    app = entry.app
    if short == "lock":
        # Customers READERS … READERS + 2 × calls: the first `calls` warm the app, the others are measured.
        bodies = [body(short, READERS + i) for i in range(2 * calls)]
        warm, bodies = bodies[:calls], bodies[calls:]
    else:
        bodies = [body(short, i % READERS) for i in range(calls)]
        warm = bodies
    status, out = wsgi_call(app, warm[0])
    if not status.startswith("200") or b"webhook_error" in out:
        raise SystemExit(f"{short}: the service answered {status} {out[:200]!r}")
    if app_name == "baseline":
        answers = work / "answers.json"
        answers.write_text(json.dumps({TAGS[short]: json.loads(out)}, ensure_ascii=False), encoding="utf-8")
        os.environ["BENCH_BASELINE_RESPONSES"] = str(answers)
        from bench.baseline import create_app

        app = create_app()
    devnull = open(os.devnull, "w")  # the service's log lines are written (part of the cost), to /dev/null
    sys.stdout = devnull
    for raw in warm[1:]:  # warm: compiled statements, caches (a read's: its caller's number too)
        wsgi_call(app, raw)
    status, out = functools.reduce(lambda _, raw: wsgi_call(app, raw), bodies, None)
    sys.stdout = sys.__stdout__
    if not status.startswith("200") or b"webhook_error" in out:  # the last measured call, as the first
        raise SystemExit(f"{short}: the service answered {status} {out[:200]!r}")


def count(app_name: str, short: str, calls: int, work: Path) -> int:
    """Instructions callgrind counted for `calls` requests of `short` to `app_name`."""
    out = work / f"callgrind.{app_name}.{short}"
    subprocess.run(["valgrind", "--tool=callgrind", "--collect-atstart=no", f"--toggle-collect={DRIVER}",
                    f"--callgrind-out-file={out}", sys.executable, "-m", "bench.instructions", "--child",
                    app_name, short, str(calls), str(work)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for line in out.read_text().splitlines():
        if line.startswith(("summary:", "totals:")):
            return int(line.split()[1])
    raise SystemExit(f"no totals in {out}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        child(argv[1], argv[2], int(argv[3]), Path(argv[4]))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("tags", nargs="*", metavar="TAG", help=f"among {', '.join(COUNTED)} (default: the reads)")
    parser.add_argument("--calls", type=int, default=400, help="measured requests per app and tag")
    args = parser.parse_args(argv)
    for short in args.tags:
        if short not in COUNTED:
            parser.error(f"unknown tag {short!r} (choose from {', '.join(COUNTED)})")
    args.tags = args.tags or list(READS)
    if shutil.which("valgrind") is None:
        raise SystemExit("bench.instructions needs valgrind (Debian: apt-get install valgrind)")
    from bench import seed

    # Built afresh each run: the readers' verified sessions expire (VERIFIED_SESSION_TTL_SECONDS), and a store left
    # by an earlier run would answer AUTH_REQUIRED (the child refuses to count that).
    for suffix in ("", "-wal", "-shm"):
        Path(f"{store_path()}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{store_path()}"
    locks = 2 * args.calls if "lock" in args.tags else 0
    layout = seed.build(url, readers=READERS, pool=locks)
    if locks:
        from cardstore.uow import Store

        store = Store(url)
        seed.verify_sessions(store, "lock", range(layout.pool_start, layout.pool_start + locks))
        store.dispose()
    work = Path(tempfile.mkdtemp(prefix="lockcard-instructions-"))
    try:
        print(f"{'tag':18s} {'service':>12s} {'baseline':>12s}  ratio (instructions per request)")
        for short in args.tags:
            service = count("service", short, args.calls, work) / args.calls
            baseline = count("baseline", short, args.calls, work) / args.calls
            print(f"{short:18s} {service:12,.0f} {baseline:12,.0f}  {baseline / service:.2f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
