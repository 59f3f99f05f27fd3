"""Where a request's time goes: `python -m bench.profile [TAG …] [--requests N] [--out DIR]`.

Builds a small generated store (bench/seed.py), then calls the WSGI app in-process — no sockets, no gunicorn —
with the same CX bodies the wrk script sends, under pyinstrument. Writes one text profile per tag to
`--out` (default bench/profiles/) and prints the per-request wall time with and without the profiler.
"""
from __future__ import annotations

import argparse
import io
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import seed
from bench.bodies import TAGS, body

HERE = Path(__file__).resolve().parent


def wsgi_call(app, raw: bytes) -> tuple[str, bytes]:
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/webhook", "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(raw)), "HTTP_HOST": "127.0.0.1:8080",
        "wsgi.input": io.BytesIO(raw), "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr,
        "wsgi.multithread": False, "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0),
    }
    status = []
    chunks = app(environ, lambda s, h, exc_info=None: status.append(s))
    out = b"".join(chunks)
    if hasattr(chunks, "close"):
        chunks.close()
    return status[0], out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument("tags", nargs="*", default=list(TAGS), choices=list(TAGS), help="short tag names (default: all four)")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=HERE / "profiles")
    args = parser.parse_args(argv)
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit("bench.profile needs pyinstrument: .venv/bin/pip install -r requirements-dev.txt") from None

    work = Path(tempfile.mkdtemp(prefix="lockcard-profile-"))
    url = f"sqlite:///{work / 'store.sqlite3'}"
    readers, pool = 1000, 4 * args.requests + 100
    layout = seed.build(url, readers=readers, pool=pool)
    os.environ.update(DATABASE_URL=url, NOTIFY_BACKEND="file", NOTIFY_FILE=str(work / "notify.jsonl"),
                      OTP_HASH_KEY=seed.BENCH_OTP_KEY, APP_ENV="development")
    import main as entry

    app = entry.app
    args.out.mkdir(parents=True, exist_ok=True)
    next_customer = layout.pool_start
    from cardstore.uow import Store

    store = Store(url)
    for short in args.tags:
        n = args.requests
        if short == "lock":
            seed.verify_sessions(store, "lock", range(next_customer, next_customer + 2 * n))
        if short == "verify_otp":
            seed.open_challenges(store, "otp", range(next_customer, next_customer + 2 * n))
        bodies = []
        for k in range(2 * n):
            if short in ("lock", "verify_otp"):
                bodies.append(body(short, next_customer + k))
            else:
                bodies.append(body(short, k % readers))
        if short in ("lock", "verify_otp"):
            next_customer += 2 * n
        wsgi_call(app, bodies[0])  # first call builds the app
        stdout, sys.stdout = sys.stdout, open(os.devnull, "w")
        # The JSON log line is part of the cost: it is still formatted and written, to /dev/null.
        handlers = [h for h in logging.getLogger("lockcard").handlers if hasattr(h, "setStream")]
        streams = [h.setStream(sys.stdout) for h in handlers]
        try:
            started = time.perf_counter()
            for raw in bodies[1:n]:
                status, out = wsgi_call(app, raw)
            plain = (time.perf_counter() - started) / (n - 1)
            profiler = Profiler(interval=0.0001)
            profiler.start()
            for raw in bodies[n:]:
                wsgi_call(app, raw)
            profiler.stop()
        finally:
            for handler, stream in zip(handlers, streams):
                handler.setStream(stream)
            sys.stdout.close()
            sys.stdout = stdout
        assert status.startswith("200"), (status, out)
        assert b"webhook_error" not in out, out
        (args.out / f"{short}.txt").write_text(profiler.output_text(unicode=True, color=False, show_all=False))
        print(f"{short:18s} {plain * 1e6:8.0f} µs/request in-process (no profiler); profile: {args.out / (short + '.txt')}")
    store.dispose()
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
