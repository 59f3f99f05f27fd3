"""`python -m bench.growth_read`: the read tags' one statement on a small and a large SQLite store, in one process.

A guide to the growth phase of `python -m bench` (issue 15), without gunicorn, wrk or Python's request handling:
builds a `--small` and a `--large` store (bench/seed.py, readers spread alike: `spread_reader`), then times the
statement every read tag runs (cardstore/repository.py `_READER`) on each, in alternating blocks. Each block opens
a fresh connection through the store's own engine (its pragmas), warms it with `--warm` reads, then times
`--block` reads of readers drawn at random — what a fresh gunicorn worker sees during a wrk run. Prints the
median CPU (time.process_time) and wall µs per read, the large ÷ small ratio, and the minor page faults per read
(the memory map's first touches). `--keep DIR` keeps the stores there and reuses them on the next run.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import seed

SINCE = "2000-01-01 00:00:00.000000"  # every reader's verification counts, however old the store


def build(path: Path, small: int, size: int) -> None:
    url = f"sqlite:///{path}"
    seed.timed(f"store: {size} customers", seed.build, url, readers=small, pool=0)
    if size > small:
        from cardstore.uow import Store

        store = Store(url)
        try:
            seed.timed(f"store: +{size - small} customers", seed.add_customers, store, small, size)
            seed.verify_sessions(store, "readL", [seed.spread_reader(k, size // small) for k in range(small)])
        finally:
            store.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.growth_read", description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--blocks", type=int, default=11, help="alternating blocks per store (median taken)")
    parser.add_argument("--block", type=int, default=3500, help="timed reads per block")
    parser.add_argument("--warm", type=int, default=1500, help="untimed reads per block, on its fresh connection")
    parser.add_argument("--keep", type=Path, help="keep the stores in this directory (reused if there)")
    args = parser.parse_args(argv)
    if args.large < 4 * args.small:
        parser.error("--large must be at least 4 × --small (the large store's readers are spread over it)")
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    work = args.keep or Path(tempfile.mkdtemp(prefix="lockcard-growth-", dir=shm))
    work.mkdir(parents=True, exist_ok=True)
    from sqlalchemy.dialects import sqlite

    from cardstore.repository import _READER
    from cardstore.uow import Store

    sql = _READER.compiled(sqlite.dialect()).sql
    stores = {}
    for name, size, prefix in (("small", args.small, "read"), ("large", args.large, "readL")):
        path = work / f"growth-{size}.sqlite3"
        if not path.exists():
            build(path, args.small, size)
        stores[name] = (Store(f"sqlite:///{path}"), size // args.small, prefix)
    rng = random.Random(1)

    def block(name: str) -> tuple[float, float, float]:
        store, stride, prefix = stores[name]
        readers = [seed.spread_reader(k, stride) for k in rng.choices(range(args.small), k=args.warm + args.block)]
        values = [(seed.session_path(prefix, i), SINCE, seed.phone_e164(i)) for i in readers]
        store.dispose()  # a fresh connection: its own page cache and memory map, as a new worker's
        pooled = store.engine.raw_connection()
        try:
            cursor = pooled.dbapi_connection.cursor()
            for v in values[:args.warm]:
                cursor.execute(sql, v).fetchall()
            timed = values[args.warm:]
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            cpu, wall = time.process_time(), time.perf_counter()
            for v in timed:
                rows = cursor.execute(sql, v).fetchall()
                if not rows or rows[0][5] != 1:
                    raise SystemExit(f"{name}: reader {v[2]} not found verified")
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            cursor.close()
        finally:
            pooled.close()
        n = len(timed)
        return cpu / n * 1e6, wall / n * 1e6, faults / n

    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in stores}
    for _ in range(args.blocks):
        for name in stores:
            results[name].append(block(name))
    medians = {name: [statistics.median(x) for x in zip(*rows)] for name, rows in results.items()}
    for name, (cpu, wall, faults) in medians.items():
        print(f"{name:6s} {stores[name][0].url.rsplit('/', 1)[-1]:28s} cpu {cpu:6.1f} µs  wall {wall:6.1f} µs"
              f"  {faults:.2f} faults/read")
    s, big = medians["small"], medians["large"]
    print(f"large ÷ small: cpu {big[0] / s[0]:.2f}  wall {big[1] / s[1]:.2f}  (median of {args.blocks} alternating "
          f"blocks of {args.block} reads after {args.warm} on a fresh connection; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})")
    for store, _, _ in stores.values():
        store.dispose()
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
