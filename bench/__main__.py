"""`python -m bench`: the webhook against a bare Flask baseline, store growth to 1M customers, cold start.

One run, one machine (see the Benchmark section of the project README):

1. SQLite: a generated store (10k verified readers + a pool of customers spent one per write request); the
   service (`gunicorn main:app`) and the baseline (`bench.baseline`), each `gunicorn -w 1 -k sync`, driven by
   wrk over loopback with CX bodies (bench/bodies.py, bench/wrk/cx.lua), per tag, at concurrency 1 and 8;
   baseline and service runs alternate so both see the same machine.
2. The same on SQLite in tmpfs (/dev/shm): no fsync, which shows what of a write is the disk's.
3. Cold start: gunicorn process start to the first 200, service and baseline alternately (median).
4. get_card_details at 10k and at 1M customers (1–4 cards each, readers drawn alike at both sizes): the p50 ratio.
5. The same tags on PostgreSQL (database `lockcard_bench`, created if missing; never `test`), pool size 1.
6. `python -c "import main"` against `python -c "import flask"` (hyperfine, median).

Around every wrk run the server's worker's CPU time is read from /proc: the report gives the CPU a request costs
each server beside the req/s ratio (reported, not a target).

Every run is checked: the service's own log lines must all be `outcome: ok`, and for the writes the store must
hold one ticket (or one failed-attempt audit row) per answered request. Each target of issue 15 is printed with
its measured ratio and whether it is met. Figures go to stdout, `bench/results.md` and `bench/results.json`.
`--quick` is a look in under ~5 minutes. Needs wrk (and hyperfine, optional); run as root it installs them with
apt-get when missing.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from bench import seed
from bench.bodies import PREFIX, TAGS, WRITES, body, template
from bench.servers import AUTH_HEADER, AUTH_TOKEN, LOAD_CPUS, ROOT, SERVER_CPUS, Relay, Server, pinned, post

HERE = Path(__file__).resolve().parent
LUA = HERE / "wrk" / "cx.lua"
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/lockcard_bench"
MAX_RATE = 3000  # req/s no server here reaches: sizes the pool of write customers prepared per run
# Issue 15's targets: ratios to the bare Flask baseline measured in the same run (reads and lock: req/s; cold start:
# process start to the first answer), p99 at c=8, and the p50 growth from `--readers` to `--large` customers.
TARGETS = {"read_ratio": 0.8, "write_ratio": 0.5, "read_p99_ms": 12.0, "write_p99_ms": 40.0, "growth": 1.1,
           "cold_start": 1.5}
QUICK = {"duration": 2, "large": 100_000, "import_runs": 5, "cold_runs": 3}  # --quick: a look in under 5 minutes


# --- tools ------------------------------------------------------------------------------------------------

def ensure_tools() -> dict[str, str]:
    """wrk is required, hyperfine optional; as root with apt-get, install what is missing."""
    missing = [t for t in ("wrk", "hyperfine") if shutil.which(t) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {' '.join(missing)} from Debian's packages …", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=False, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=False, stdout=subprocess.DEVNULL)
    if shutil.which("wrk") is None:
        raise SystemExit("bench needs wrk (Debian: apt-get install wrk)")
    versions = {"wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0]}
    if shutil.which("hyperfine"):
        versions["hyperfine"] = subprocess.run(["hyperfine", "--version"], capture_output=True, text=True).stdout.strip()
    return versions


# --- one wrk run ------------------------------------------------------------------------------------------

@dataclass
class Run:
    store: str
    target: str  # service | baseline
    tag: str
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    calls: dict[str, int] = field(default_factory=dict)  # service log lines by outcome
    written: dict[str, int] = field(default_factory=dict)  # rows the store gained
    check: str = ""  # "ok" or what was wrong
    cpu_us: float | None = None  # the server's worker: user + system CPU µs per request wrk counted (Linux)

    @property
    def busy(self) -> float | None:
        """The share of the run the server's worker spent on the CPU (CPU per request × requests per second); the
        rest it waited — for a connection, SQLite's write lock, the disk. None without a CPU reading."""
        return None if self.cpu_us is None else self.cpu_us * self.rps / 1e6


def wrk(server: Server, short: str, concurrency: int, duration: float, *, mode: str, start: int = 0,
        count: int = 1, stride: int = 1, prefix: str | None = None, template_file: Path) -> dict:
    # One wrk thread: the machine has two cores, one for the server's worker and one for the load.
    env = {**os.environ, "BENCH_TAG": TAGS[short], "BENCH_MODE": mode, "BENCH_START": str(start),
           "BENCH_COUNT": str(count), "BENCH_STRIDE": str(stride), "BENCH_PREFIX": prefix or PREFIX[short],
           "BENCH_TEMPLATE": str(template_file), "BENCH_THREADS": "1", "BENCH_SEED": str(concurrency),
           "BENCH_AUTH_HEADER": AUTH_HEADER, "BENCH_AUTH_TOKEN": AUTH_TOKEN}
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{duration}s", "--timeout", "5s", "-s", str(LUA),
                          server.url], env=env, capture_output=True, text=True, check=True,
                         preexec_fn=pinned(LOAD_CPUS)).stdout
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


def to_run(store: str, target: str, short: str, concurrency: int, raw: dict) -> Run:
    seconds = raw["duration_us"] / 1e6
    errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"] + raw["status_errors"]
    return Run(store, target, short, concurrency, raw["requests"], raw["requests"] / seconds,
               raw["p50_us"] / 1000, raw["p99_us"] / 1000, errors)


def measured(server: Server, run_wrk: Callable[[], dict]) -> tuple[dict, float | None, float | None]:
    """wrk's result, and the server's worker CPU seconds before and after it (None where /proc cannot tell)."""
    before = server.worker_cpu()
    raw = run_wrk()
    return raw, before, server.worker_cpu()


def per_request(run: Run, before: float | None, after: float | None) -> None:
    if before is not None and after is not None and run.requests:
        run.cpu_us = (after - before) / run.requests * 1e6


def _cpu(run: Run) -> str:
    return f"  cpu {run.cpu_us:4.0f} µs/req" if run.cpu_us is not None else ""


# --- the store's own account of what was written ----------------------------------------------------------

def written(url: str) -> dict[str, int]:
    from sqlalchemy import func, select

    from cardstore.models import AuditEvent, LockTicket, OutboxMessage
    from cardstore.uow import Store

    store = Store(url)
    try:
        with store.unit_of_work() as uow:
            s = uow.session
            audit = dict(s.execute(select(AuditEvent.action, func.count()).group_by(AuditEvent.action)).all())
            return {
                "lock_tickets": s.scalar(select(func.count()).select_from(LockTicket)),
                "audit_card_locked": audit.get("card.locked", 0),
                "audit_otp_failed": audit.get("otp.failed", 0),
                # Queued, whether delivered inline or later by the outbox relay: the lock's own write.
                "outbox_lock_notices": s.scalar(select(func.count()).where(OutboxMessage.kind == "lock_ticket")),
            }
    finally:
        store.dispose()


def settled_calls(server: Server, quiet_s: float = 0.5, limit_s: float = 15.0) -> dict[str, int]:
    """The server's calls since its mark, once its log has stopped growing: requests still in flight when wrk
    stopped counting are answered (and written) after it, later still on a busy machine."""
    calls, end = server.calls_since_mark(), time.monotonic() + limit_s
    while time.monotonic() < end:
        time.sleep(quiet_s)
        again = server.calls_since_mark()
        if again == calls:
            break
        calls = again
    return calls


def check_run(run: Run, before: dict[str, int], after: dict[str, int]) -> None:
    run.written = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    ok = run.calls.get("ok", 0)
    problems = [f"{n} × {k}" for k, n in run.calls.items() if k != "ok"]
    if run.socket_errors:
        problems.append(f"{run.socket_errors} socket errors")
    if ok < run.requests:
        problems.append(f"{ok} logged calls for {run.requests} answers")
    if run.tag == "lock":
        for key in ("lock_tickets", "audit_card_locked", "outbox_lock_notices"):
            if run.written.get(key, 0) != ok:
                problems.append(f"{run.written.get(key, 0)} {key} for {ok} locks")
    if run.tag == "verify_otp" and run.written.get("audit_otp_failed", 0) != ok:
        problems.append(f"{run.written.get('audit_otp_failed', 0)} otp.failed rows for {ok} wrong codes")
    run.check = "; ".join(problems) or "ok"


# --- phases -----------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.runs: list[Run] = []
        self.notes: list[str] = []
        self.cold: dict[str, float] = {}
        self.round_ratios: dict[tuple[str, str, int], list[float]] = {}  # every round's ratio, per point
        self.templates = {}
        for short in TAGS:
            path = work / f"{short}.json"
            path.write_text(template(short), encoding="utf-8")
            self.templates[short] = path
        self.responses = work / "baseline-responses.json"

    def service_env(self, url: str, **extra: str) -> dict[str, str]:
        return {"DATABASE_URL": url, "NOTIFY_BACKEND": "file", "NOTIFY_FILE": str(self.work / "notifications.jsonl"),
                "OTP_HASH_KEY": seed.BENCH_OTP_KEY, "APP_ENV": "development", "WEBHOOK_AUTH": "header",
                "WEBHOOK_HEADER_NAME": AUTH_HEADER, "WEBHOOK_HEADER_VALUE": AUTH_TOKEN, **extra}

    def pool_size(self) -> int:
        per_run = int(MAX_RATE * (self.args.duration + 2))
        return 2 * len(self.args.concurrency) * self.args.rounds * per_run + 100

    def tag_phase(self, label: str, url: str, tags: list[str], *, env: dict[str, str] | None = None) -> None:
        """Build the store at `url`, start service and baseline, run every tag at every concurrency."""
        print(f"\n== {label}: {url}", flush=True)
        _remove_sqlite(url)
        layout = seed.timed(f"store: {self.args.readers} readers + {self.pool_size()} write customers",
                            seed.build, url, readers=self.args.readers, pool=self.pool_size())
        from cardstore.uow import Store

        store = Store(url)
        cursor = {"next": layout.pool_start}
        prepared = {"lock": layout.pool_start, "otp": layout.pool_start}

        def prepare(short: str, n: int) -> int:
            start = cursor["next"]
            stop = start + n
            if stop > layout.pool_start + layout.pool_size:
                raise SystemExit("the pool of write customers ran out: raise MAX_RATE in bench/__main__.py")
            prefix = PREFIX[short]
            lo = max(start, prepared[prefix])
            if lo < stop:
                if short == "lock":
                    seed.verify_sessions(store, "lock", range(lo, stop))
                else:
                    seed.open_challenges(store, "otp", range(lo, stop))
                prepared[prefix] = stop
            return start

        service = Server(f"service ({label})", "main:app", self.service_env(url, **(env or {})),
                         self.work / f"service-{label}.log")
        baseline = Server("baseline", "bench.baseline:create_app()", {"BENCH_BASELINE_RESPONSES": str(self.responses)},
                          self.work / f"baseline-{label}.log")
        # The webhook only queues a lock's notice: the relay beside it sends it (the store's check counts sent ones).
        relay = Relay(self.service_env(url, **(env or {})), self.work / f"relay-{label}.log")
        try:
            relay.start()
            service.start()
            cold, status, _ = service.first_answer(body("get_card_details", 0))
            self.cold[f"service on {label}"] = cold
            answers = {}
            for short in tags:  # one real call per tag: its answer is what the baseline will send back
                i = prepare(short, 1) if short in WRITES else 0
                if short in WRITES:
                    cursor["next"] += 1
                status, out = post(service.url, body(short, i))
                answer = json.loads(out)
                params = answer.get("sessionInfo", {}).get("parameters", {})
                if status != 200 or "webhook_error_code" in params:
                    raise SystemExit(f"{label}: {short} answered {status} {out[:300]!r}")
                answers[TAGS[short]] = answer
            if not self.responses.exists():
                self.responses.write_text(json.dumps(answers, ensure_ascii=False), encoding="utf-8")
            baseline.start()
            cold, status, _ = baseline.first_answer(body("get_card_details", 0))
            self.cold[f"baseline on {label}"] = cold
            for warm in (baseline, service):
                wrk(warm, "get_card_details", 8, 2, mode="random", count=layout.readers,
                    template_file=self.templates["get_card_details"])
            for short in tags:
                for c in self.args.concurrency:
                    per_run = int(MAX_RATE * (self.args.duration + 2))
                    pairs: list[tuple[Run, Run]] = []
                    for target in (baseline, service) * self.args.rounds:
                        kind = "baseline" if target is baseline else "service"
                        if short in WRITES:
                            # The baseline writes nothing: it may reuse the customers the service run will spend.
                            start = prepare(short, per_run) if kind == "service" else cursor["next"]
                            raw_kwargs = {"mode": "next", "start": start}
                        else:
                            raw_kwargs = {"mode": "random", "count": layout.readers}
                        before = written(url) if kind == "service" else {}
                        target.mark_log()
                        raw, cpu0, cpu1 = measured(target, lambda: wrk(
                            target, short, c, self.args.duration, template_file=self.templates[short], **raw_kwargs))
                        run = to_run(label, kind, short, c, raw)
                        per_request(run, cpu0, cpu1)
                        if short in WRITES and kind == "service":
                            # Every request took the next customer; the in-flight ones at the end too.
                            cursor["next"] += run.requests + c + 10
                        if kind == "service":
                            run.calls = settled_calls(service)
                            if short == "lock" and not relay.drained(url):
                                print(f"  the relay did not send every notice; see {relay.log}", flush=True)
                            check_run(run, before, written(url))
                        else:
                            run.check = "ok" if not run.socket_errors else f"{run.socket_errors} socket errors"
                        if kind == "baseline":
                            pairs.append((run, run))
                        else:
                            pairs[-1] = (pairs[-1][0], run)
                        print(f"  {short:18s} c={c} {kind:8s} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms"
                              f"  p99 {run.p99_ms:6.2f} ms{_cpu(run)}  {run.check}", flush=True)
                    self.keep_median_round(label, short, c, pairs)
        finally:
            baseline.stop()
            service.stop()
            relay.stop()
            store.dispose()

    def keep_median_round(self, label: str, short: str, c: int, pairs: list[tuple[Run, Run]],
                          ratio: Callable[[Run, Run], float] = lambda base, svc: svc.rps / base.rps,
                          checked: Callable[[tuple[Run, Run]], tuple[Run, ...]] = lambda pair: pair[1:]) -> None:
        """Of the alternating rounds of one point (each a pair of runs and its `ratio`), keep the round whose ratio
        is the median: another process's burst on the shared machine lands on one run of one round, not on the
        figure. The `checked` runs of the kept round carry every round's check."""
        ratios = [ratio(*pair) for pair in pairs]
        kept = sorted(pairs, key=lambda pair: ratio(*pair))[len(pairs) // 2]
        checks = {run.check for pair in pairs for run in checked(pair)}
        for run in checked(kept):
            run.check = "ok" if checks == {"ok"} else "; ".join(sorted(checks))
        self.runs += list(kept)
        self.round_ratios[(label, short, c)] = ratios

    def growth_phase(self, url: str) -> None:
        """get_card_details at `readers` customers and at `large` customers (read sessions spread over all), one
        server per store. Each round runs the two sizes back to back (the order alternating from round to round)
        and gives one ratio, the large store's p50 over the small one's; of `--rounds` rounds the one with the
        median ratio is kept, as for the tags: a burst of other work lands on one run of one round, not on the
        figure. (Taking each size's median run on its own, as before, paired runs minutes apart: the same stores
        gave 1.24 in one full run and 0.90–0.98 in the next.)"""
        large, small = self.args.large, self.args.readers
        print(f"\n== growth: {small} → {large} customers", flush=True)
        small_url = url.replace(".sqlite3", f"-{_count(small)}.sqlite3")
        for u in (url, small_url):
            _remove_sqlite(u)
        seed.timed(f"store: {small} customers", seed.build, small_url, readers=small, pool=0)
        seed.timed(f"store: {small} customers", seed.build, url, readers=small, pool=0)
        from cardstore.uow import Store

        stride = large // small
        store = Store(url)
        seed.timed(f"store: +{large - small} customers", seed.add_customers, store, small, large)
        seed.verify_sessions(store, "readL", [seed.spread_reader(k, stride) for k in range(small)])
        store.dispose()
        sizes = [(f"sqlite-{_count(small)}", small_url, "read", 1), (f"sqlite-{_count(large)}", url, "readL", stride)]
        servers = {label: Server(f"service ({label})", "main:app", self.service_env(u), self.work / f"service-{label}.log")
                   for label, u, _, _ in sizes}
        rounds: dict[int, list[tuple[Run, Run]]] = {}  # per concurrency: (small, large) of each round
        try:
            for label, _, prefix, stride_ in sizes:
                servers[label].start()
                servers[label].first_answer(body("get_card_details", 0))
                wrk(servers[label], "get_card_details", 8, 2, mode="random", count=small, stride=stride_,
                    prefix=prefix, template_file=self.templates["get_card_details"])
            for n in range(self.args.rounds):
                for c in self.args.concurrency:
                    this_round: dict[str, Run] = {}
                    for label, _, prefix, stride_ in sizes if n % 2 == 0 else sizes[::-1]:
                        service = servers[label]
                        service.mark_log()
                        raw, cpu0, cpu1 = measured(service, lambda: wrk(
                            service, "get_card_details", c, self.args.duration, mode="random", count=small,
                            stride=stride_, prefix=prefix, template_file=self.templates["get_card_details"]))
                        run = to_run(label, "service", "get_card_details", c, raw)
                        per_request(run, cpu0, cpu1)
                        run.calls = settled_calls(service)
                        check_run(run, {}, {})
                        this_round[label] = run
                        print(f"  round {n + 1} {label:12s} c={c} {run.rps:8.0f} req/s  p50 {run.p50_ms:6.2f} ms"
                              f"  p99 {run.p99_ms:6.2f} ms{_cpu(run)}  {run.check}", flush=True)
                    rounds.setdefault(c, []).append((this_round[sizes[0][0]], this_round[sizes[1][0]]))
        finally:
            for service in servers.values():
                service.stop()
        for c, pairs in rounds.items():
            self.keep_median_round("growth", "get_card_details", c, pairs,
                                   ratio=lambda small_run, big: big.p50_ms / small_run.p50_ms, checked=lambda pair: pair)

    def cold_phase(self, url: str) -> None:
        """Process start to the first answer, service and baseline alternately, `--cold-runs` times each."""
        print(f"\n== cold start: {self.args.cold_runs} × service and baseline, alternately", flush=True)
        _remove_sqlite(url)
        seed.build(url, readers=10, pool=0)
        first = body("get_card_details", 0)
        samples: dict[str, list[float]] = {"service": [], "baseline": []}
        for _ in range(self.args.cold_runs):
            for kind in ("service", "baseline"):
                if kind == "service":
                    server = Server("service (cold)", "main:app", self.service_env(url), self.work / "service-cold.log")
                else:
                    if not self.responses.exists():  # no tag phase ran: the answer the service just gave
                        self.responses.write_text(json.dumps({TAGS["get_card_details"]: json.loads(answer)},
                                                             ensure_ascii=False), encoding="utf-8")
                    server = Server("baseline (cold)", "bench.baseline:create_app()",
                                    {"BENCH_BASELINE_RESPONSES": str(self.responses)}, self.work / "baseline-cold.log")
                try:
                    server.start()
                    seconds, status, answer = server.first_answer(first)
                finally:
                    server.stop()
                if status != 200:
                    raise SystemExit(f"cold start: {kind} answered {status}")
                samples[kind].append(seconds)
        for kind, values in samples.items():
            self.cold[kind] = statistics.median(values)
        print(f"  cold start (median): service {self.cold['service'] * 1000:.0f} ms, baseline "
              f"{self.cold['baseline'] * 1000:.0f} ms", flush=True)

    def import_times(self) -> dict[str, float]:
        """Median wall time of `python -c …` (hyperfine when present), in ms."""
        py = sys.executable
        env = {**os.environ, "DATABASE_URL": f"sqlite:///{self.work / 'import.sqlite3'}"}
        commands = {"import flask": "import flask", "import main": "import main",
                    "import main; main.app.get()": "import main; main.app.get()"}
        out: dict[str, float] = {}
        if shutil.which("hyperfine"):
            export = self.work / "hyperfine.json"
            subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(self.args.import_runs), "--export-json",
                            str(export), *[f"{py} -c '{c}'" for c in commands.values()]],
                           cwd=ROOT, env=env, check=True, capture_output=True)
            for name, result in zip(commands, json.loads(export.read_text())["results"]):
                out[name] = result["median"] * 1000
        else:
            for name, code in commands.items():
                samples = []
                for _ in range(self.args.import_runs):
                    started = time.perf_counter()
                    subprocess.run([py, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True)
                    samples.append((time.perf_counter() - started) * 1000)
                out[name] = statistics.median(samples)
        return out


def _remove_sqlite(url: str) -> None:
    if url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)


def _count(n: int) -> str:
    if n >= 1_000_000 and n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


# --- PostgreSQL -------------------------------------------------------------------------------------------

def fresh_postgres(url: str) -> str | None:
    """Create the bench database if needed and empty its schema; None (with a reason printed) if unreachable."""
    from sqlalchemy import create_engine, make_url, text

    name = make_url(url).database
    try:
        admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}):
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            version = conn.scalar(text("SHOW server_version"))
        admin.dispose()
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
        return version
    except Exception as exc:  # noqa: BLE001 - report and carry on with SQLite
        print(f"PostgreSQL unavailable ({type(exc).__name__}: {exc}); skipping it", flush=True)
        return None


# --- machine and report -----------------------------------------------------------------------------------

def fsync_ms(directory: Path) -> float:
    path = directory / "fsync-probe.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        samples = []
        for _ in range(30):
            os.write(fd, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(fd)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)
    finally:
        os.close(fd)
        path.unlink()


def machine(work: Path, tools: dict[str, str], pg_version: str | None) -> dict[str, object]:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu}, {os.cpu_count()} cores", "memory": f"{mem_kb / 1024 / 1024:.0f} GiB",
        "os": f"{platform.system()} {platform.release()}", "python": platform.python_version(),
        "packages": ", ".join(f"{p} {version(p)}" for p in ("Flask", "gunicorn", "SQLAlchemy", "pydantic", "psycopg")),
        "postgresql": pg_version or "not run", "tools": ", ".join(tools.values()),
        "fsync": f"{fsync_ms(work):.2f} ms median (4 KiB write + fsync, {work})",
        "git": commit + (" (with uncommitted changes)" if dirty else ""),
    }


def pair(runs: list[Run], store: str, tag: str, c: int) -> tuple[Run | None, Run | None]:
    found = {r.target: r for r in runs if r.store == store and r.tag == tag and r.concurrency == c}
    return found.get("service"), found.get("baseline")


def _cpu_list(cpus: set[int] | None) -> str:
    return ",".join(str(c) for c in sorted(cpus or ()))


def report(bench: Bench, info: dict[str, object], imports: dict[str, float], command: str) -> str:
    args = bench.args
    lines = [
        "# Benchmark results", "",
        f"Command: `{command}` — {info['date']}, commit {info['git']}.", "",
        "## Machine", "",
        *[f"- {k}: {v}" for k, v in info.items() if k not in ("date", "git")],
        f"- load average when the run ended: {' '.join(f'{x:.2f}' for x in os.getloadavg())} "
        "(other work on the machine shares its two cores; the baseline runs alternate with the service's "
        "so a ratio compares like with like)", "",
        "## Throughput and latency per tag", "",
        f"wrk, 1 thread, {args.duration:g} s per run, {args.rounds} alternating rounds of baseline and service per "
        "point, the round with the median ratio shown (every round's ratio under `rounds`), over loopback; each "
        "server is gunicorn with 1 sync worker"
        + (f", pinned to CPU {_cpu_list(SERVER_CPUS)}; wrk and the outbox relay on CPU {_cpu_list(LOAD_CPUS)}. "
           if SERVER_CPUS else " (one CPU: nothing pinned). ") +
        "Ratio = service req/s ÷ baseline req/s in the same phase. "
        "A check of `ok` means every call the service logged was `ok` and, for the writes, the store gained one "
        "lock ticket + audit row + outbox row (lock) or one `otp.failed` audit row (verify_otp) per answer.", "",
        "| store | tag | c | service req/s | p50 ms | p99 ms | baseline req/s | baseline p50 ms | ratio | rounds | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    stores = [s for s in dict.fromkeys(r.store for r in bench.runs) if not s.startswith("sqlite-") or s == "sqlite-tmpfs"]
    for store in stores:
        for short in TAGS:
            for c in args.concurrency:
                svc, base = pair(bench.runs, store, short, c)
                if svc is None:
                    continue
                ratio = f"{svc.rps / base.rps:.2f}" if base else "–"
                rounds = " ".join(f"{r:.2f}" for r in bench.round_ratios.get((store, short, c), []))
                lines.append(f"| {store} | {short} | {c} | {svc.rps:.0f} | {svc.p50_ms:.2f} | {svc.p99_ms:.2f} | "
                             f"{base.rps:.0f} | {base.p50_ms:.2f} | {ratio} | {rounds} | {svc.check} |" if base else
                             f"| {store} | {short} | {c} | {svc.rps:.0f} | {svc.p50_ms:.2f} | {svc.p99_ms:.2f} | – | – | – | – | {svc.check} |")
    cpu_rows = []
    for store in stores:
        for short in TAGS:
            for c in args.concurrency:
                svc, base = pair(bench.runs, store, short, c)
                if svc is not None and base is not None and svc.cpu_us and base.cpu_us:
                    cpu_rows.append(f"| {store} | {short} | {c} | {svc.cpu_us:.0f} | {base.cpu_us:.0f} | "
                                    f"{base.cpu_us / svc.cpu_us:.2f} | {svc.rps / base.rps:.2f} | "
                                    f"{svc.busy:.0%} | {base.busy:.0%} |")
    if cpu_rows:
        lines += ["", "## CPU per request", "",
                  "The server's worker, user + system time from /proc over the same kept round's runs, ÷ the "
                  "requests wrk counted: what one request costs the server. A busy neighbour moves it far less "
                  "than req/s (it slows the run; the work per request stays). baseline ÷ service is the req/s "
                  "ratio the service would reach if neither worker were ever idle; where the measured ratio is "
                  "lower, the service's worker waited (for SQLite's write lock, the disk) more than the baseline's. "
                  "busy: the share of the run each worker spent on the CPU (µs per request × req/s); the req/s "
                  "ratio is the CPU ratio × service busy ÷ baseline busy.",
                  "", "| store | tag | c | service µs | baseline µs | baseline ÷ service | req/s ratio | service busy "
                  "| baseline busy |", "|---|---|---:|---:|---:|---:|---:|---:|---:|", *cpu_rows]
    growth = [r for r in bench.runs if r.store.startswith("sqlite-") and r.store != "sqlite-tmpfs"]
    if growth:
        lines += ["", "## Store growth: get_card_details", "",
                  f"Each of {args.rounds} rounds runs both stores back to back (the order alternating); the round "
                  "whose p50 ratio is the median is shown (every round's ratio under `rounds`).", "",
                  "| customers | c | req/s | p50 ms | p99 ms | rounds | check |", "|---|---:|---:|---:|---:|---|---|"]
        for r in growth:
            rounds = " ".join(f"{x:.2f}" for x in bench.round_ratios.get(("growth", "get_card_details", r.concurrency), []))
            lines.append(f"| {r.store.removeprefix('sqlite-')} | {r.concurrency} | {r.rps:.0f} | {r.p50_ms:.2f} | "
                         f"{r.p99_ms:.2f} | {rounds} | {r.check} |")
        sizes = list(dict.fromkeys(r.store for r in growth))
        if len(sizes) == 2:
            for c in args.concurrency:
                a = next(r for r in growth if r.store == sizes[0] and r.concurrency == c)
                b = next(r for r in growth if r.store == sizes[1] and r.concurrency == c)
                lines.append(f"\np50 {sizes[1]} ÷ {sizes[0]} at c={c}: **{b.p50_ms / a.p50_ms:.2f}**")
    lines += ["", "## Import and cold start", "", "| what | median ms |", "|---|---:|"]
    lines += [f"| `python -c \"{k}\"` | {v:.0f} |" for k, v in imports.items()]
    if "import main" in imports and "import flask" in imports:
        lines.append(f"\n`import main` ÷ `import flask`: **{imports['import main'] / imports['import flask']:.2f}**")
    lines += ["", "Cold start, gunicorn process start to the first answered request (the first request builds the "
              "app):", ""]
    lines += [f"- {k}: {v * 1000:.0f} ms" for k, v in bench.cold.items()]
    lines += ["", "## Targets", "", *targets(bench, imports)]
    if bench.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in bench.notes]]
    return "\n".join(lines) + "\n"


def targets(bench: Bench, imports: dict[str, float]) -> list[str]:
    out = []

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    # Issue 15's ratio and p99 targets are SQLite's; on PostgreSQL its target is round trips (counted by
    # tests/integration/test_round_trips.py) and the ratios are reported. verify_otp has no target: a wrong code
    # is slowed down on purpose (issue 12's throttle).
    for store in [s for s in dict.fromkeys(r.store for r in bench.runs) if s in ("sqlite", "postgresql")]:
        for short, goal in (("get_card_details", "read_ratio"), ("validate_card", "read_ratio"), ("lock", "write_ratio")):
            for c in bench.args.concurrency:
                svc, base = pair(bench.runs, store, short, c)
                if svc and base:
                    r = svc.rps / base.rps
                    if store == "sqlite":
                        out.append(f"- {store} {short} c={c}: {r:.2f}× baseline (target ≥ {TARGETS[goal]}×): "
                                   f"{verdict(r >= TARGETS[goal])}")
                    else:
                        out.append(f"- {store} {short} c={c}: {r:.2f}× baseline (reported; the target is one round "
                                   "trip per read, ≤ 4 per lock)")
        if store != "sqlite":
            continue
        for short in ("get_card_details", "validate_card", "lock"):
            svc, base = pair(bench.runs, store, short, 8)
            if svc:
                limit = TARGETS["write_p99_ms" if short in WRITES else "read_p99_ms"]
                baseline = f"; the baseline's {base.p99_ms:.1f} ms" if base else ""
                out.append(f"- {store} {short} p99 at c=8: {svc.p99_ms:.1f} ms (target ≤ {limit:g} ms{baseline}): "
                           f"{verdict(svc.p99_ms <= limit)}")
    growth = [r for r in bench.runs if r.store.startswith("sqlite-") and r.store != "sqlite-tmpfs"]
    sizes = list(dict.fromkeys(r.store for r in growth))
    if len(sizes) == 2:
        for c in bench.args.concurrency:
            a = next(r for r in growth if r.store == sizes[0] and r.concurrency == c)
            b = next(r for r in growth if r.store == sizes[1] and r.concurrency == c)
            out.append(f"- p50 {sizes[1]} ÷ {sizes[0]} at c={c}: {b.p50_ms / a.p50_ms:.2f} "
                       f"(target ≤ {TARGETS['growth']}): {verdict(b.p50_ms / a.p50_ms <= TARGETS['growth'])}")
    if "service" in bench.cold and "baseline" in bench.cold:
        r = bench.cold["service"] / bench.cold["baseline"]
        out.append(f"- cold start (process start → first 200), service ÷ baseline: {r:.2f} "
                   f"({bench.cold['service'] * 1000:.0f} / {bench.cold['baseline'] * 1000:.0f} ms; target ≤ "
                   f"{TARGETS['cold_start']}): {verdict(r <= TARGETS['cold_start'])}")
    return out


# --- main -------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating baseline/service rounds per tag and concurrency; the median round is kept")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--readers", type=int, default=10_000, help="customers with a verified read session")
    parser.add_argument("--large", type=int, default=1_000_000, help="customers in the growth run (default 1M)")
    parser.add_argument("--tags", nargs="+", default=list(TAGS), choices=list(TAGS))
    parser.add_argument("--import-runs", type=int, default=15)
    parser.add_argument("--cold-runs", type=int, default=7, help="cold starts of each server (median taken)")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["sqlite", "tmpfs", "growth", "postgresql", "import", "cold"])
    parser.add_argument("--quick", action="store_true",
                        help="a look in under ~5 minutes: " + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                                                        QUICK.items()) + ", --skip tmpfs")
    parser.add_argument("--postgres-url", default=PG_URL, help="a database of the bench's own (never `test`)")
    parser.add_argument("--out", type=Path, default=HERE / "results.md", help="markdown report (JSON beside it)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep stores and logs here (default: a temp dir)")
    parser.add_argument("--force", action="store_true",
                        help="drop the PostgreSQL database and --workdir stores even if they hold rows")
    args = parser.parse_args(argv)
    if args.quick:
        for name, value in QUICK.items():
            if getattr(args, name) == parser.get_default(name):
                setattr(args, name, value)
        args.skip = sorted({*args.skip, "tmpfs"})
    if args.large < 4 * args.readers:
        parser.error("--large must be at least 4 × --readers (the large store's readers are spread over it)")
    command = "python -m bench" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(argv or sys.argv[1:]))

    # The run drops what it is pointed at: a database or a store that holds rows is only dropped with --force.
    from cardstore.wipe import refuse_unless_empty

    if "postgresql" not in args.skip:
        refuse_unless_empty(args.postgres_url, force=args.force, tool="python -m bench")
    for store in sorted(args.workdir.glob("*.sqlite3")) if args.workdir else []:
        refuse_unless_empty(f"sqlite:///{store}", force=args.force, tool="python -m bench")
    tools = ensure_tools()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="lockcard-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work dir: {work}", flush=True)
    bench = Bench(args, work)
    imports: dict[str, float] = {}
    pg_version = None
    if "import" not in args.skip:
        imports = bench.import_times()
        print("imports (median ms): " + ", ".join(f"{k} {v:.0f}" for k, v in imports.items()), flush=True)
    if "sqlite" not in args.skip:
        bench.tag_phase("sqlite", f"sqlite:///{work / 'tags.sqlite3'}", args.tags)
    if "tmpfs" not in args.skip and Path("/dev/shm").is_dir():
        shm = Path(tempfile.mkdtemp(prefix="lockcard-bench-", dir="/dev/shm"))
        try:
            writes = [t for t in args.tags if t in WRITES]
            if writes:
                bench.tag_phase("sqlite-tmpfs", f"sqlite:///{shm / 'tags.sqlite3'}", writes)
                bench.notes.append("sqlite-tmpfs: the same store in /dev/shm, where fsync costs nothing — what is "
                                   "left of a write is CPU; the gap to the disk rows is the durable commits.")
        finally:
            shutil.rmtree(shm, ignore_errors=True)
    if "cold" not in args.skip:
        bench.cold_phase(f"sqlite:///{work / 'cold.sqlite3'}")
    if "growth" not in args.skip:
        bench.growth_phase(f"sqlite:///{work / 'growth.sqlite3'}")
    if "postgresql" not in args.skip:
        pg_version = fresh_postgres(args.postgres_url)
        if pg_version:
            bench.tag_phase("postgresql", args.postgres_url, args.tags, env={"DB_POOL_SIZE": "1"})
            bench.notes.append("postgresql: DB_POOL_SIZE=1 — a sync worker serves one request at a time and a "
                               "request holds one connection at a time, so one connection per worker is enough.")
    info = machine(work, tools, pg_version)
    text = report(bench, info, imports, command)
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "command": command, "imports_ms": imports, "cold_start_s": bench.cold,
         "runs": [asdict(r) for r in bench.runs],
         "round_ratios": {f"{store} {tag} c={c}": ratios for (store, tag, c), ratios in bench.round_ratios.items()}},
        ensure_ascii=False, indent=1), encoding="utf-8")
    print("\n" + text)
    print(f"written: {args.out} and {args.out.with_suffix('.json')}")
    if args.workdir is None:  # the generated stores take ~0.5 GB; the servers' logs stay for a look
        for store in work.glob("*.sqlite3*"):
            store.unlink()
        print(f"servers' logs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
