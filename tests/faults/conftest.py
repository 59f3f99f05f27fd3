"""Fault-injection fixtures: a throwaway PostgreSQL cluster of our own (never the shared one on 5432) that a test
can stop, start, freeze (SIGSTOP) and thaw; and (from the root conftest) a real SMTP server that can be down or refuse."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from cardstore import migrate
from tests.local_servers import free_port

PG_BIN_CANDIDATES = [Path("/usr/lib/postgresql") / v / "bin" for v in ("17", "16", "15", "14")]


def _pg_bin(name: str) -> str | None:
    for d in PG_BIN_CANDIDATES:
        if (d / name).exists():
            return str(d / name)
    return shutil.which(name)


class PgCluster:
    """A PostgreSQL cluster in a temporary directory, on its own port, owned by the postgres user when we are root
    (PostgreSQL refuses to run as root)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.port = free_port()
        self.log = root / "server.log"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        if self._as_postgres:
            shutil.chown(self.root, "postgres")
        self._run(_pg_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """An abrupt stop, as a crash or a failover looks to the webhook."""
        self._run(_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def pids(self) -> list[int]:
        """The postmaster and every process it started."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        pids = [postmaster]
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(stat.parent.name))
        return pids

    def freeze(self) -> None:
        """Every server process stopped in its tracks: sockets stay open, nothing answers (a hung host)."""
        self._signal_all(signal.SIGSTOP)

    def thaw(self) -> None:
        self._signal_all(signal.SIGCONT)

    def _signal_all(self, signum: int) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass  # a backend that ended between the listing and the signal (its client hung up): nothing to do

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@pytest.fixture(scope="session")
def pg_cluster():
    """Our own PostgreSQL cluster for destructive tests; skipped (failed under CI) when PostgreSQL is not here."""
    required = os.environ.get("TEST_REQUIRE_POSTGRES") == "1"
    if not (_pg_bin("initdb") and _pg_bin("pg_ctl")) or (os.geteuid() == 0 and not shutil.which("runuser")):
        if required:
            pytest.fail("TEST_REQUIRE_POSTGRES=1 but initdb/pg_ctl are not available for the fault suite")
        pytest.skip("initdb/pg_ctl not available: PostgreSQL fault tests skipped")
    # Not under pytest's tmp dir: that is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="lockcard-pgfaults-"))
    cluster = PgCluster(root)
    cluster.init()
    cluster.start()
    migrate.upgrade(cluster.url)
    yield cluster
    if cluster.running():
        try:
            cluster.thaw()
        except (OSError, ValueError):
            pass
        cluster.stop()
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def faulty_store_url(pg_cluster) -> str:
    """The throwaway cluster, running, with a fresh copy of the seed fixtures."""
    from tests.conftest import reset_postgres

    if not pg_cluster.running():
        pg_cluster.start()
    reset_postgres(pg_cluster.url)
    yield pg_cluster.url
    if pg_cluster.running():
        pg_cluster.thaw()
    else:
        pg_cluster.start()
