"""The load run: arrange a store, race worker processes on it, check what the store says happened."""
from __future__ import annotations

import datetime as dt
import json
import logging
import multiprocessing
import random
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

SESSION_PREFIX = "projects/load/locations/global/agents/lockcard/sessions/"
LOCK_TAG = "prebuilt_components_lock_card:lock_card_ticket_number"
REISSUE_TAG = "prebuilt_components_lock_card:reissue_card_number"
REASONS = ("damaged", "stolen", "lost", "others")
ZIP = "12345"
HOT_SHARE = 0.4  # share of requests aimed at the two hot cards every worker fights over
SHARED_SHARE = 0.25  # share of each worker's requests that every other worker also sends (CX retries elsewhere)
RETRY_SHARE = 0.25  # share of requests sent again at once by the same worker (a CX retry after a timeout)
LOAD_HASH_KEY = "loadtest-otp-hash-key-not-for-production-use"


@dataclass
class LoadReport:
    """Figures of one run and the problems the checks found (empty: the store explains every request)."""

    workers: int
    requests_per_worker: int
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    tickets: int = 0
    reissues: int = 0
    cards: int = 0
    audit_rows: int = 0
    problems: list[str] = field(default_factory=list)
    results: list = field(default_factory=list, repr=False)  # (op, status, parameters, latency_ms) per request
    # Commit to gateway, per notice kind: the row's creation (in the committing transaction) to the moment the
    # relay handed it to the (file) gateway, in ms.
    notice_latencies_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.latencies_ms)

    def figures(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else 0.0

        return {
            "workers": self.workers, "requests_per_worker": self.requests_per_worker, "requests": self.total,
            "wall_s": round(self.wall_s, 2), "throughput_rps": round(self.total / self.wall_s, 1) if self.wall_s else 0,
            "latency_ms": {"p50": pct(0.50), "p95": pct(0.95), "p99": pct(0.99), "max": round(max(lat), 1) if lat else 0,
                           "mean": round(statistics.fmean(lat), 1) if lat else 0},
            "http_status": dict(self.statuses), "outcomes": dict(self.outcomes),
            "tickets": self.tickets, "reissues": self.reissues, "cards": self.cards, "audit_rows": self.audit_rows,
            "commit_to_gateway_ms": {kind: _percentiles(values) for kind, values in
                                     sorted(self.notice_latencies_ms.items())},
            "duplicate_tickets": sum("duplicate" in p for p in self.problems),
            "problems": len(self.problems),
        }


def _percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"n": 0}

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))], 1)

    return {"n": len(ordered), "p50": pct(0.50), "p95": pct(0.95), "max": round(ordered[-1], 1)}


# --- arrange --------------------------------------------------------------------------------------------------

def recreate_database(url: str, *, force: bool = False) -> None:
    """Drop and create the database `url` names (on its server; an SQLite file is deleted), so a run starts from
    nothing. A database that holds rows is only dropped with `force`."""
    from cardstore.wipe import refuse_unless_empty

    refuse_unless_empty(url, force=force, tool="python -m loadtest")
    target = make_url(url)
    if target.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{target.database}{suffix}").unlink(missing_ok=True)
        return
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = target.database
    if not name or name in ("postgres", "template0", "template1", "test"):
        raise SystemExit(f"refusing to recreate database {name!r}: give the load test a database of its own")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()


@dataclass(frozen=True)
class Op:
    """One webhook request a CX session makes (sent possibly several times)."""

    session: str
    phone: str
    last4: str
    action: str  # inactive | blocked | reissue
    reason: str

    def body(self) -> dict[str, Any]:
        params: dict[str, Any] = {"phone_number": self.phone, "last_four_digit_of_card_number": self.last4}
        if self.action == "reissue":
            tag, params["zip_code"] = REISSUE_TAG, ZIP
        else:
            tag, params["lock_type"], params["lock_reason"] = LOCK_TAG, self.action, self.reason
        return {"detectIntentResponseId": "load", "languageCode": "ja", "fulfillmentInfo": {"tag": tag},
                "sessionInfo": {"session": SESSION_PREFIX + self.session, "parameters": params}}

    def key(self) -> tuple[str, str, str, str]:
        """What the store keeps one answer for: (session, customer, card, action)."""
        return (self.session, self.phone, self.last4, self.action)


def arrange(url: str, *, customers: int, cards_per_customer: int, sessions_per_customer: int) -> dict[str, Any]:
    """Schema, the seed fixtures, load customers with active cards, and sessions that verified them just now.

    The sessions are written as verified directly: the OTP path is not what this run measures (the security and
    integration suites cover it), and a real code per session would hit the per-customer send limit.
    """
    from cardstore import fixtures, migrate
    from cardstore.models import Card, Customer, VerifiedSession, utcnow
    from cardstore.uow import Store

    migrate.upgrade(url)
    store = Store(url)
    fixtures.load(store)
    people = []
    with store.unit_of_work() as uow:
        now = utcnow()
        for c in range(customers):
            phone = f"0907{c:07d}"
            customer = uow.repo.add(Customer(phone_e164="+81" + phone[1:], name=f"load {c}", zip_code=ZIP))
            uow.repo.flush()
            cards = [f"{7000 + c * cards_per_customer + k:04d}"[-4:] for k in range(cards_per_customer)]
            for last4 in cards:
                card = uow.repo.add(Card(customer_id=customer.id, last4=last4, vendor="Visa", status="active"))
                uow.repo.flush()
                uow.repo.audit("system:loadtest", "card.created", card=card, after={"status": "active"})
            sessions = [f"load-c{c}-s{s}" for s in range(sessions_per_customer)]
            for session in sessions:
                uow.repo.add(VerifiedSession(session=SESSION_PREFIX + session, customer_id=customer.id,
                                             verified_at=now))
            people.append({"phone": phone, "cards": cards, "sessions": sessions})
        uow.commit()
    store.dispose()
    return {"customers": people}


def plan(people: list[dict], *, workers: int, requests: int, seed: int) -> list[list[Op]]:
    """Each worker's requests, in order: hot and cold cards, shared requests, immediate retries."""
    rng = random.Random(seed)
    hot = [(people[0], people[0]["cards"][0]), (people[1], people[1]["cards"][0])]

    def new_op(r: random.Random) -> Op:
        if r.random() < HOT_SHARE:
            person, last4 = r.choice(hot)
        else:
            person = r.choice(people)
            last4 = r.choice(person["cards"])
        action = r.choices(("inactive", "blocked", "reissue"), weights=(4, 3, 3))[0]
        return Op(r.choice(person["sessions"]), person["phone"], last4, action, r.choice(REASONS))

    shared = [new_op(rng) for _ in range(int(requests * SHARED_SHARE))]
    plans = []
    for w in range(workers):
        r = random.Random(seed * 1000 + w)
        own = shared[:]
        r.shuffle(own)
        queue: list[Op] = []
        while len(queue) < requests:
            op = own.pop() if own and r.random() < 0.5 else new_op(r)
            queue.append(op)
            if len(queue) < requests and r.random() < RETRY_SHARE:
                queue.append(op)
        plans.append(queue)
    return plans


# --- race -----------------------------------------------------------------------------------------------------

def _worker(args: tuple[str, list[Op], str, Any]) -> list[tuple[Op, int, dict, float]]:
    url, ops, notify_file, start = args
    from settings import Settings
    from webhook.app import create_app

    settings = Settings(database_url=url, notify_backend="file", notify_file=notify_file, otp_hash_key=LOAD_HASH_KEY,
                        db_pool_size=2)
    client = create_app(settings).test_client()
    logging.getLogger("lockcard").setLevel(logging.ERROR)  # thousands of call lines would drown the figures
    # Warm up (imports, the first pooled connections) before the gun, so the figures measure the race.
    client.get("/healthz")
    client.post("/webhook", json={**ops[0].body(), "fulfillmentInfo": {
        "tag": "prebuilt_components_lock_card:validate_card"}})
    start.wait()
    out = []
    for op in ops:
        t0 = time.perf_counter()
        response = client.post("/webhook", json=op.body())
        elapsed = (time.perf_counter() - t0) * 1000
        body = response.get_json(silent=True) or {}
        out.append((op, response.status_code, body.get("sessionInfo", {}).get("parameters", {}), elapsed))
    return out


CODES_PER_CUSTOMER = 5  # OTP_SEND_LIMIT's default: what one customer may ask for in ten minutes
CODE_INTERVAL_S = 0.05


def _ask_codes(url: str, phones: list[str], start: Any, done: Any) -> int:
    """A caller asking for codes (by SMS) all through the race: a code is what a caller waits for."""
    from settings import Settings
    from webhook.app import create_app

    client = create_app(Settings(database_url=url, otp_hash_key=LOAD_HASH_KEY, db_pool_size=1)).test_client()
    logging.getLogger("lockcard").setLevel(logging.ERROR)
    start.wait()
    asked = 0
    for n in range(CODES_PER_CUSTOMER):
        for phone in phones:
            if done.is_set():
                return asked
            body = {"detectIntentResponseId": "load", "languageCode": "ja",
                    "fulfillmentInfo": {"tag": "prebuilt_components_authentication:send_otp"},
                    "sessionInfo": {"session": f"{SESSION_PREFIX}code-{phone}-{n}",
                                    "parameters": {"phone_number": phone, "otp_channel": "sms"}}}
            client.post("/webhook", json=body)
            asked += 1
            time.sleep(CODE_INTERVAL_S)
    return asked


def race(url: str, plans: list[list[Op]], workdir: Path, phones: list[str] | None = None
         ) -> tuple[list[tuple[Op, int, dict, float]], float]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        start, done = manager.Event(), manager.Event()
        with ctx.Pool(len(plans) + 1) as pool:
            pending = pool.map_async(_worker, [(url, ops, str(workdir / f"notify-{i}.jsonl"), start)
                                               for i, ops in enumerate(plans)])
            codes = pool.apply_async(_ask_codes, (url, phones or [], start, done))
            time.sleep(0.5)  # let every worker build its app before the gun
            t0 = time.perf_counter()
            start.set()
            results = pending.get()
            wall = time.perf_counter() - t0
            done.set()
            codes.get()
    return [r for worker in results for r in worker], wall


class RelayProcess:
    """The outbox relay beside the workers (`flask --app main outbox relay`), delivering to a file gateway."""

    def __init__(self, url: str, workdir: Path) -> None:
        import os
        import subprocess
        import sys

        self.gateway = workdir / "gateway.jsonl"
        self.log = workdir / "relay.log"
        env = {**os.environ, "DATABASE_URL": url, "NOTIFY_BACKEND": "file", "NOTIFY_FILE": str(self.gateway),
               "OTP_HASH_KEY": LOAD_HASH_KEY, "PYTHONUNBUFFERED": "1"}
        env.pop("PORT", None)
        root = Path(__file__).resolve().parent.parent
        with self.log.open("wb") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "main", "outbox", "relay"],
                                            cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
        end = time.monotonic() + 60
        while "outbox relay started" not in self.log.read_text(errors="replace"):
            if self.process.poll() is not None or time.monotonic() > end:
                raise SystemExit(f"the outbox relay did not start; see {self.log}:\n{self.log.read_text()}")
            time.sleep(0.05)

    def drain_and_stop(self, url: str, within_s: float = 120) -> None:
        from cardstore.uow import Store
        from notify import backlog

        store = Store(url)
        end = time.monotonic() + within_s
        while backlog(store)["queued"] and time.monotonic() < end:
            time.sleep(0.1)
        store.dispose()
        self.process.terminate()
        self.process.wait(30)

    def latencies(self, url: str) -> dict[str, list[float]]:
        """Per kind, the commit-to-gateway time of every notice the relay delivered."""
        from cardstore.models import OutboxMessage
        from cardstore.uow import Store

        delivered = {}
        if self.gateway.exists():
            for line in self.gateway.read_text(encoding="utf-8").splitlines():
                record = json.loads(line)
                delivered[record["id"]] = dt.datetime.fromisoformat(record["at"])
        store = Store(url)
        out: dict[str, list[float]] = defaultdict(list)
        with store.unit_of_work() as uow:
            for m in uow.session.scalars(select(OutboxMessage)):
                if m.id in delivered:
                    kind = "code" if m.kind == "otp" else "ticket"
                    out[kind].append((delivered[m.id] - m.created_at).total_seconds() * 1000)
        store.dispose()
        return dict(out)


# --- check ----------------------------------------------------------------------------------------------------

def check(url: str, results: list[tuple[Op, int, dict, float]], report: LoadReport) -> None:
    """Zero duplicate tickets, every ticket with its audit row and notice, every card's state explained."""
    from cardstore.models import WEBHOOK_TRANSITIONS, AuditEvent, Card, LockTicket, OutboxMessage, ReissueRequest
    from cardstore.uow import Store

    answers: dict[tuple, set[int]] = defaultdict(set)
    for op, status, params, _ in results:
        report.statuses[status] += 1
        code = params.get("webhook_error_code")
        if status != 200:
            report.problems.append(f"HTTP {status} for {op}")
        elif code:
            report.outcomes[code] += 1
            # Refusals the card's state explains: already locked further, or its replacements used up.
            if code not in ("INVALID_TRANSITION", "REISSUE_LIMIT_REACHED"):
                report.problems.append(f"{code} for {op}")
        else:
            number = params.get("ticket_number") or params.get("acknowledgement_number")
            report.outcomes["ticket" if op.action != "reissue" else "reissue"] += 1
            answers[op.key()].add(number)

    store = Store(url)
    with store.unit_of_work() as uow:
        s = uow.session
        tickets = list(s.scalars(select(LockTicket)))
        reissues = list(s.scalars(select(ReissueRequest)))
        cards = {c.id: c for c in s.scalars(select(Card))}
        audit = list(s.scalars(select(AuditEvent).order_by(AuditEvent.id)))
        rows = list(s.scalars(select(OutboxMessage)))
        notices = Counter((m.kind, m.redacted_body) for m in rows)
        undelivered = Counter(m.status for m in rows if m.status != "sent")
        if undelivered:
            report.problems.append(f"notices the relay did not deliver: {dict(undelivered)}")
        report.tickets, report.reissues, report.cards, report.audit_rows = len(tickets), len(reissues), len(cards), len(audit)

        locked_audit = Counter(a.after["ticket_number"] for a in audit if a.action == "card.locked")
        reissue_audit = Counter(a.after["acknowledgement_number"] for a in audit if a.action == "card.reissue_requested")
        for t in tickets:
            if locked_audit[t.number] != 1:
                report.problems.append(f"ticket {t.number} has {locked_audit[t.number]} card.locked audit rows")
            if not any(str(t.number) in body for (kind, body) in notices if kind == "lock_ticket"):
                report.problems.append(f"ticket {t.number} has no notice in the outbox")
        for r in reissues:
            if reissue_audit[r.number] != 1:
                report.problems.append(f"reissue {r.number} has {reissue_audit[r.number]} audit rows")
        if sum(locked_audit.values()) != len(tickets) or sum(reissue_audit.values()) != len(reissues):
            report.problems.append("audit rows without their ticket")
        by_number = {t.number for t in tickets} | {r.number for r in reissues}
        # One request may be answered with several numbers only when the card changed in between (idempotency
        # replays an answer only while it is still true): each number a real ticket, made from another card state.
        made = {t.number: t.card_status_version for t in tickets} | {r.number: r.card_status_version for r in reissues}
        for key, numbers in answers.items():
            versions = [made.get(n) for n in numbers]
            if len(numbers) > 1 and (None in versions or len(set(versions)) < len(versions)):
                report.problems.append(f"duplicate: {key} was answered with {sorted(numbers)} for one card state")
        for key, numbers in answers.items():
            for n in numbers - by_number:
                report.problems.append(f"answered {n} for {key} but the store has no such ticket")

        # Replay each card's audit history from its creation: every step allowed and starting where the last ended.
        history: dict[int, list] = defaultdict(list)
        for a in audit:
            if a.card_id is not None:
                history[a.card_id].append(a)
        for card_id, card in cards.items():
            state = None
            for a in history[card_id]:
                if a.action == "card.created":
                    state = a.after["status"]
                elif a.action == "card.locked":
                    before, after = a.before["status"], a.after["status"]
                    if before != state or (before, after) not in WEBHOOK_TRANSITIONS:
                        report.problems.append(f"card {card_id}: audit says {before}->{after} while it was {state}")
                    state = after
                elif a.action == "card.reissue_requested" and a.after["card_status"] not in ("inactive", "blocked"):
                    report.problems.append(f"card {card_id}: reissued while {a.after['card_status']}")
            if state != card.status:
                report.problems.append(f"card {card_id} is {card.status}; its audit history ends at {state}")
    store.dispose()


def replay(url: str, results: list[tuple[Op, int, dict, float]], report: LoadReport, *, sample: int, seed: int) -> None:
    """CX retries long after the race: the same requests get the same numbers back and write nothing new."""
    done = [(op, p) for op, status, p, _ in results if status == 200 and not p.get("webhook_error_code")]
    picked = random.Random(seed).sample(done, min(sample, len(done)))
    from webhook import logs

    logs.configure()  # first, so building the app below does not reset the level we set
    service_log = logging.getLogger("lockcard")
    level = service_log.level
    service_log.setLevel(logging.ERROR)
    try:
        _replay(url, picked, report)
    finally:
        service_log.setLevel(level)


def _replay(url: str, picked: list, report: LoadReport) -> None:
    from settings import Settings
    from webhook.app import create_app, service_of

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Settings(database_url=url, notify_backend="file", notify_file=Path(tmp) / "n.jsonl",
                                  otp_hash_key=LOAD_HASH_KEY))
        client = app.test_client()
        from cardstore.models import Card, LockTicket, ReissueRequest

        def counts_and_state(number: int | None) -> tuple[int, bool]:
            """Tickets in the store, and whether the answer `number` is still true (its card unchanged since)."""
            with service_of(app).store.unit_of_work(read_only=True) as uow:
                s = uow.session
                total = len(s.scalars(select(LockTicket.id)).all()) + len(s.scalars(select(ReissueRequest.id)).all())
                row = None
                for model in (LockTicket, ReissueRequest):
                    row = row or s.execute(select(model.card_status_version, Card.status_version)
                                           .join(Card, Card.id == model.card_id)
                                           .where(model.number == number)).first()
                return total, row is not None and row[0] == row[1]

        for op, first in picked:
            number = first.get("ticket_number") or first.get("acknowledgement_number")
            before, still_true = counts_and_state(number)
            again = client.post("/webhook", json=op.body()).get_json()["sessionInfo"]["parameters"]
            answered = again.get("ticket_number") or again.get("acknowledgement_number")
            after, _ = counts_and_state(number)
            if still_true and (answered != number or after != before):
                report.problems.append(f"duplicate: replay of {op} answered {answered} (wrote {after - before}), "
                                       f"first {number}, while the first answer was still true")
            if not still_true and answered == number:
                report.problems.append(f"stale replay: {op} got {number} back after its card changed")
            if after - before not in (0, 1) or (after > before and answered in (None, number)):
                report.problems.append(f"replay of {op} wrote {after - before} tickets, answering {answered}")
        service_of(app).store.dispose()


def run(url: str, *, workers: int = 8, requests: int = 500, seed: int = 1, customers: int | None = None,
        cards_per_customer: int = 3, sessions_per_customer: int = 4, replays: int = 100,
        force: bool = False) -> LoadReport:
    """Recreate `url`'s database (PostgreSQL or an SQLite file), race `workers` processes × `requests` requests on
    it, and check the store."""
    recreate_database(url, force=force)
    customers = customers or max(4, workers * 2)
    arranged = arrange(url, customers=customers, cards_per_customer=cards_per_customer,
                       sessions_per_customer=sessions_per_customer)
    plans = plan(arranged["customers"], workers=workers, requests=requests, seed=seed)
    report = LoadReport(workers=workers, requests_per_worker=requests)
    with tempfile.TemporaryDirectory(prefix="lockcard-load-") as tmp:
        relay = RelayProcess(url, Path(tmp))
        try:
            results, report.wall_s = race(url, plans, Path(tmp), [p["phone"] for p in arranged["customers"]])
        finally:
            relay.drain_and_stop(url)
        report.notice_latencies_ms = relay.latencies(url)
    report.results = results
    report.latencies_ms = [r[3] for r in results]
    check(url, results, report)
    replay(url, results, report, sample=replays, seed=seed)
    return report


def machine() -> dict[str, str]:
    """Where the figures came from: CPU count and memory (as `nproc` and `free -h` would say)."""
    import os
    import platform

    mem = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "memory": mem, "python": platform.python_version(),
            "platform": platform.platform(terse=True)}


def as_json(report: LoadReport) -> str:
    return json.dumps({"machine": machine(), **report.figures(), "problem_samples": report.problems[:10],
                       "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")},
                      ensure_ascii=False, indent=2)
