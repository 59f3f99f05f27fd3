"""`python -m loadtest`: race lock / reissue on PostgreSQL or SQLite and print the figures; exit 1 if a check fails."""
from __future__ import annotations

import argparse
import sys

from loadtest.run import as_json, run

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lockcard_loadtest"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    parser.add_argument("--database-url", default=DEFAULT_URL,
                        help="a database of the load test's own, PostgreSQL or an SQLite file: it is DROPPED and "
                             f"recreated (default {DEFAULT_URL})")
    parser.add_argument("--force", action="store_true", help="drop the database even if it holds rows")
    parser.add_argument("--workers", type=int, default=8, help="worker processes (default 8)")
    parser.add_argument("--requests", type=int, default=500, help="requests per worker (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the request plan (default 1)")
    parser.add_argument("--replays", type=int, default=100, help="requests replayed after the race (default 100)")
    args = parser.parse_args(argv)
    if not args.database_url.startswith(("postgresql", "sqlite:///")):
        parser.error("--database-url must be postgresql+psycopg://… or sqlite:///FILE")
    report = run(args.database_url, workers=args.workers, requests=args.requests, seed=args.seed,
                 replays=args.replays, force=args.force)
    print(as_json(report))
    if report.problems:
        print(f"FAILED: {len(report.problems)} problem(s)", file=sys.stderr)
        return 1
    print("OK: zero duplicate tickets, every ticket audited and noticed, every card explained", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
