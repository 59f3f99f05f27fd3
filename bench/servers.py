"""The two servers under test, each `gunicorn -w 1 -k sync` on a free loopback port, and what they logged."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = [sys.executable, "-m", "gunicorn", "--workers", "1", "--worker-class", "sync", "--backlog", "2048",
            "--timeout", "30", "--graceful-timeout", "5", "--log-level", "warning"]
AUTH_HEADER = "X-Webhook-Token"
AUTH_TOKEN = "bench-caller-token-0123456789abcdef"  # WEBHOOK_AUTH=header: the caller check stays on


def _cpus() -> tuple[set[int] | None, set[int] | None]:
    """(the server's CPU, everything else's CPUs): the server under test alone on one core, the load generator and
    the relay on the others (issue 15's set-up); (None, None) on a one-core machine — nothing pinned."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, set(cpus[1:])


SERVER_CPUS, LOAD_CPUS = _cpus()


def pinned(cpus: set[int] | None):
    """A preexec_fn that keeps a child process on `cpus` (None: anywhere)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", AUTH_HEADER: AUTH_TOKEN})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (which may hold spaces and parentheses): [0] is field 3."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time process `pid` has spent, in seconds (Linux: /proc/<pid>/stat, fields 14 and 15)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    """The processes whose parent (field 4) is `pid` (Linux: /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat(int(entry.name))[1])
        except OSError:  # gone meanwhile
            continue
        if parent == pid:
            found.append(int(entry.name))
    return found


@dataclass
class Server:
    """One gunicorn master with one sync worker; stdout (the service's JSON log lines) goes to `log`."""

    name: str
    app: str
    env: dict[str, str]
    log: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    _log_offset: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/webhook"

    def start(self) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "0"}
        self.started_at = time.perf_counter()
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen([*GUNICORN, "--bind", f"127.0.0.1:{self.port}", self.app], cwd=ROOT,
                                            env=env, stdout=out, stderr=subprocess.STDOUT,
                                            preexec_fn=pinned(SERVER_CPUS))

    def first_answer(self, body: bytes, deadline_s: float = 60.0) -> tuple[float, int, bytes]:
        """Poll with `body` until the server answers; seconds from start() to that first answer."""
        end = time.perf_counter() + deadline_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            try:
                status, out = post(self.url, body, timeout=5)
                return time.perf_counter() - self.started_at, status, out
            except (ConnectionError, urllib.error.URLError, OSError):
                if time.perf_counter() > end:
                    raise RuntimeError(f"{self.name} did not answer within {deadline_s} s; see {self.log}")
                time.sleep(0.01)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def worker_pid(self) -> int | None:
        """The gunicorn worker (the master's one child), or None (not started, stopped, not Linux)."""
        if self.process is None or self.process.poll() is not None or not Path("/proc/self/stat").exists():
            return None
        children = child_pids(self.process.pid)
        return children[0] if len(children) == 1 else None

    def worker_cpu(self) -> float | None:
        """The worker's CPU time so far in seconds (user + system), or None when it cannot be read."""
        pid = self.worker_pid()
        if pid is None:
            return None
        try:
            return cpu_seconds(pid)
        except OSError:
            return None

    def mark_log(self) -> None:
        self._log_offset = self.log.stat().st_size if self.log.exists() else 0

    def calls_since_mark(self) -> dict[str, int]:
        """Webhook log lines written since mark_log(), by outcome (and by error code)."""
        counts: dict[str, int] = {}
        with self.log.open("rb") as fh:
            fh.seek(self._log_offset)
            for line in fh:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("message") != "webhook call":
                    continue
                key = entry.get("outcome", "?")
                if entry.get("error_code"):
                    key += ":" + entry["error_code"]
                counts[key] = counts.get(key, 0) + 1
        return counts


class Relay:
    """The outbox relay beside the service (`flask --app main outbox relay`), as it runs in production: the
    service only queues a lock's notice; this sends it (to the file backend here)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        env.pop("PORT", None)
        with self.log.open("ab") as out:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "main", "outbox", "relay"],
                                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            preexec_fn=pinned(LOAD_CPUS))

    def drained(self, url: str, within_s: float = 120.0) -> bool:
        """Wait until nothing is left to send (the notices of the run just measured); False if it never was."""
        from notify import backlog
        from cardstore.uow import Store

        store = Store(url)
        try:
            end = time.monotonic() + within_s
            while time.monotonic() < end:
                if backlog(store)["queued"] == 0:
                    return True
                time.sleep(0.1)
            return False
        finally:
            store.dispose()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
