"""Time `customers import` on a generated file: `python -m backoffice.bench_import [--rows 100000] [--database-url URL]`.

Writes a CSV of ROWS card rows (about 2.5 cards per customer, Japanese names, a few bad rows), imports it into a
fresh store (an SQLite file in a temporary folder unless --database-url names another; its schema is dropped and
migrated), then imports it again to time the idempotent re-run. Prints one line per step.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import random
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from backoffice.importer import COLUMNS, import_csv, no_progress
from cardstore import migrate
from cardstore.uow import Store
from cardstore.wipe import refuse_unless_empty

FAMILY = ["佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "山本", "中村", "小林", "加藤"]
GIVEN = ["花子", "一郎", "美咲", "翔太", "陽菜", "大翔", "結衣", "蓮", "さくら", "ケンジ"]
VENDORS = ["Visa", "Mastercard", "American Express", "JCB", "Diners Club"]
STATUSES = ["active"] * 8 + ["inactive", "blocked"]


def generate(rows: int, seed: int = 6, bad_every: int = 1000) -> bytes:
    """A CSV like a bank's spreadsheet export: one row per card, 1-4 cards per customer, one bad row in `bad_every`."""
    rnd = random.Random(seed)
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(COLUMNS)
    written, customer = 0, 0
    while written < rows:
        customer += 1
        phone = f"090{customer:08d}"
        name = f"{rnd.choice(FAMILY)} {rnd.choice(GIVEN)}"
        email = f"user{customer}@example.jp" if rnd.random() < 0.7 else ""
        zip_code = f"{rnd.randrange(100, 999)}-{rnd.randrange(0, 9999):04d}"
        for last4 in rnd.sample(range(10000), rnd.randint(1, 4)):
            if written >= rows:
                break
            written += 1
            row = [phone, name, email, zip_code, f"{last4:04d}", rnd.choice(VENDORS), rnd.choice(STATUSES)]
            if written % bad_every == 0:
                row[4] = row[4][1:]  # a spreadsheet that dropped a leading digit
            writer.writerow(row)
    return out.getvalue().encode("utf-8")


def fresh_store(url: str | None, folder: Path, *, force: bool = False) -> Store:
    if url is None:
        url = f"sqlite:///{folder / 'bench.sqlite3'}"
    else:
        refuse_unless_empty(url, force=force, tool="python -m backoffice.bench_import")
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    migrate.upgrade(url)
    return Store(url)


def _timed(phases: dict[str, float]):
    """A progress hook that times each phase of the import (checking rows, importing)."""

    @contextlib.contextmanager
    def progress(label: str, total: int):
        started = time.perf_counter()
        with no_progress(label, total) as bar:
            yield bar
        phases[label] = time.perf_counter() - started

    return progress


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--database-url", help="a database of your own: its public schema is DROPPED and migrated")
    parser.add_argument("--encoding", default="utf-8", choices=["utf-8", "cp932"], help="encoding of the file")
    parser.add_argument("--force", action="store_true", help="drop --database-url's schema even if it holds rows")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        data = generate(args.rows)
        if args.encoding == "cp932":
            data = data.decode("utf-8").encode("cp932")
        print(f"generated {args.rows} rows ({len(data) / 1e6:.1f} MB, {args.encoding}) "
              f"in {time.perf_counter() - started:.2f} s")
        store = fresh_store(args.database_url, folder, force=args.force)
        backend = store.url.split(":", 1)[0]
        for run in ("first import", "re-run"):
            phases: dict[str, float] = {}
            started, cpu = time.perf_counter(), time.process_time()
            report = import_csv(store, data, operator="bench", region="JP", filename="bench.csv",
                                progress=_timed(phases))
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
            r = report.as_dict()["rows"]
            split = ", ".join(f"{name} {t:.2f} s" for name, t in phases.items())
            print(f"{run} on {backend}: {seconds:.2f} s wall, {cpu:.2f} s CPU in this process "
                  f"({args.rows / seconds:,.0f} rows/s; {split}); rows read {r['read']}, "
                  f"imported {r['imported']}, merged {r['merged']}, unchanged {r['unchanged']}, "
                  f"rejected {r['rejected']}; customers created {report.customers_created}, "
                  f"cards added {report.cards_added}")
        store.dispose()


if __name__ == "__main__":
    main()
