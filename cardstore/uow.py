"""The card store's engine and unit of work: the only door to the database.

`Store(url)` owns one engine (built on first use, never at import). `store.unit_of_work()` gives a
`UnitOfWork`; use it as a context manager, call `commit()` to keep the work; anything not committed is
rolled back when the block ends. Connection failures and timeouts surface as `StoreUnavailable`.
"""
from __future__ import annotations

import functools
import threading
from typing import Any

from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker

from cardstore.errors import StoreUnavailable
from cardstore.repository import Repository

# Well inside the 5 s CX gives a webhook: a store that does not answer by then is treated as down.
CONNECT_TIMEOUT_S = 2
STATEMENT_TIMEOUT_MS = 2000
_UNAVAILABLE = (OperationalError, PoolTimeout)


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def build_engine(url: str, *, pool_size: int = 5) -> Engine:
    """An engine with timeouts suited to a webhook: fail fast rather than hold a CX turn."""
    # A server may drop a pooled connection while it idles (restart, failover, idle timeout): ping at checkout.
    # An SQLite file has nothing to drop, and there the ping would be one more statement on every call.
    kwargs: dict[str, Any] = {"pool_pre_ping": not url.startswith("sqlite")}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_S, "check_same_thread": False}
    elif url.startswith("postgresql"):
        # Our timeouts are added to any `options` the URL carries (e.g. a search_path), not put in their place.
        url_options = make_url(url).query.get("options", "")
        timeouts = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={STATEMENT_TIMEOUT_MS}"
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"{url_options} {timeouts}".strip(),
        }
        kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=CONNECT_TIMEOUT_S)
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    elif url.startswith("postgresql+psycopg"):
        event.listen(engine, "do_connect", _connect_with_deadline)
    return engine


# A frozen server (or a silently dropped network path) never answers, so its statement_timeout never fires:
# every round trip also has a client-side deadline. Past it the connection is closed (the server rolls back the
# open transaction) and the call fails as StoreUnavailable. New connections keep libpq's own floor of 2 s.
ROUND_TRIP_DEADLINE_S = 1.0


def _connect_with_deadline(dialect, conn_rec, cargs, cparams):
    return _deadline_connection_class().connect(*cargs, **cparams)


@functools.cache
def _deadline_connection_class():
    import psycopg

    class DeadlineConnection(psycopg.Connection):
        def wait(self, gen, interval=0.1, timeout=None):
            try:
                return super().wait(gen, interval=interval,
                                    timeout=ROUND_TRIP_DEADLINE_S if timeout is None else timeout)
            except psycopg.OperationalError as exc:
                if type(exc).__name__ != "_WaitTimeout":
                    raise
                self.pgconn.finish()  # mid-protocol: the connection cannot be used again
                raise psycopg.OperationalError("the store did not answer within the deadline") from None

    return DeadlineConnection


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute(f"PRAGMA busy_timeout={CONNECT_TIMEOUT_S * 1000}")
    cur.close()


class Store:
    """One database: a lazily built engine and its session factory."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self._pool_size = pool_size
        self._engine: Engine | None = None
        self._sessions: sessionmaker[Session] | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = build_engine(self.url, pool_size=self._pool_size)
                    self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        return self._engine

    def unit_of_work(self) -> UnitOfWork:
        """A new unit of work on this store."""
        self.engine  # noqa: B018 - builds the session factory on first use
        assert self._sessions is not None
        return UnitOfWork(self._sessions)

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except DBAPIError as exc:
            raise StoreUnavailable(type(exc.orig).__name__ if exc.orig else type(exc).__name__) from exc

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


class UnitOfWork:
    """One transaction. Rolls back unless `commit()` was called; maps connection failures to StoreUnavailable."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions
        self.session: Session
        self.repo: Repository
        self.committed = False

    def __enter__(self) -> UnitOfWork:
        self.session = self._sessions()
        self.repo = Repository(self.session)
        self.committed = False
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.session.rollback()
        except DBAPIError:
            pass  # the connection is already gone; the original error says why
        finally:
            self.session.close()
        if exc is not None and _is_unavailable(exc):
            raise StoreUnavailable(type(exc).__name__) from exc

    def commit(self) -> None:
        """Keep the work done in this unit."""
        try:
            self.session.commit()
        except DBAPIError as exc:
            if _is_unavailable(exc):
                raise StoreUnavailable(type(exc).__name__) from exc
            raise
        self.committed = True
