"""The card store's engine and unit of work: the only door to the database.

`Store(url)` owns one engine (built on first use, never at import). `store.unit_of_work()` gives a
`UnitOfWork`; use it as a context manager, call `commit()` to keep the work; anything not committed is
rolled back when the block ends. Connection failures and timeouts surface as `StoreUnavailable`.

A unit of work writes by default; `store.unit_of_work(read_only=True)` is for reads only (it cannot commit). On
SQLite a writing unit takes the database's write lock when it begins (`BEGIN IMMEDIATE`), so its reads and checks
and its writes are one atomic step, as PostgreSQL's row locks (`FOR UPDATE`) make them there; a read-only unit
begins a plain (deferred) transaction: a consistent snapshot that never waits for a writer.

A unit of work holds at most one pooled connection. Its ORM session is opened on first use, on that connection;
a read the repository can answer with one precompiled statement (`PlainQuery`) runs on the same connection
without a session — on PostgreSQL in autocommit, so a read tag is one round trip: no pool ping, no BEGIN, no
ROLLBACK. (One statement is atomic on its own, so such a read needs no transaction on either store.)

A hot write (a lock) skips the ORM too: `execute()` runs precompiled statements in the unit's transaction on its
DBAPI connection (SQLite: `BEGIN IMMEDIATE`, as the session's; PostgreSQL: an explicit BEGIN pipelined with the
first statement, one round trip), `write()` queues precompiled writes, and `commit()` sends them — on PostgreSQL
in one pipeline, one round trip — then the COMMIT. A unit is either plain or ORM: once it began a plain transaction, opening its session is a
programming error (`PlainTransactionOpen`); once its session is open, `execute` and `write` go through it.
"""
from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
from typing import Any

import orjson
from sqlalchemy import create_engine, event, make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError, TimeoutError as PoolTimeout
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from cardstore.errors import StoreUnavailable
from cardstore.repository import PlainQuery, Repository

# A webhook turn has CX's 5 s and a voice caller's patience: a store that does not answer within a second is
# treated as down, and the call hands over. Webhook statements take milliseconds; these bounds only bite on faults.
CONNECT_TIMEOUT_S = 2  # libpq's floor
STATEMENT_TIMEOUT_MS = 700
LOCK_TIMEOUT_MS = 500
# A frozen server (or a silently dropped network path) never answers, so its statement_timeout never fires:
# every round trip also has a client-side deadline, just above the server's own timeouts.
ROUND_TRIP_DEADLINE_S = 0.9
# After a failed connection attempt, calls fail at once for this long instead of each waiting on a connect.
BREAKER_OPEN_S = 2.0
# SQLite writers queue on the file's write lock (BEGIN IMMEDIATE). Its busy handler polls rather than queues fairly,
# so under a burst a writer may lose several turns: allow it most of CX's 5 s before answering STORE_UNAVAILABLE.
SQLITE_BUSY_TIMEOUT_MS = 4000
# SQLite reads the database file through a memory map of up to this many bytes instead of read() calls into each
# connection's own 2 MB page cache (issue 15: on a 1M-customer store, ~0.5 GB, nearly every B-tree page a read
# touches missed that cache and cost a system call and a 4 KiB copy). Address space, not memory: the pages are the
# kernel's page cache, shared by every connection and process, reclaimable like any cached file. 1 GiB holds twice
# the benchmark's largest store; past it SQLite reads as before. Reads only: writes still go through write() and
# the WAL, so durability is unchanged. The one trade: an I/O error on a mapped page (a failing disk, a file
# truncated behind SQLite's back) stops the process with SIGBUS instead of failing one statement.
SQLITE_MMAP_BYTES = 1 << 30
# The page size of a store SQLite creates (a store made with another keeps it: SQLite changes it only by rebuilding the
# file, VACUUM, which nothing here runs). A commit writes every B-tree page it changed to the WAL whole, each with a
# checksum over all of it: a lock changes ~12 pages (its card, ticket, audit row and notice, each with its indexes),
# so half the page is half the bytes checksummed and written. Measured (`bench.instructions`, stores built each way):
# a lock 822,544 -> 804,621 instructions; a read 411k either way (the same pages visited; +0.7 % at most).
SQLITE_PAGE_BYTES = 2048
# A webhook's commit does not checkpoint the WAL (copy its pages into the database file and fsync it: ~80 µs a lock,
# averaged): the outbox relay, which runs beside the webhook, checkpoints it every CHECKPOINT_SECONDS
# (notify.relay). This is the backstop for a store nobody checkpoints (no relay running): SQLite's own
# checkpoint-on-commit once the WAL holds this many pages (~40 MB; SQLite's default is 1,000).
SQLITE_WAL_AUTOCHECKPOINT = 10_000
# No ping on every checkout (one more round trip per call): a connection is pinged only when it has idled this
# long (a failover or an idle timeout may have dropped it meanwhile), and replaced after POOL_RECYCLE_S whatever
# its use. A connection that dies in use fails that call (STORE_UNAVAILABLE) and the pool drops its generation.
IDLE_PING_S = 10.0
POOL_RECYCLE_S = 300
_UNAVAILABLE = (OperationalError, PoolTimeout)


class Breaker:
    """Fail fast while the store is known to be down. The first call after `open_s` tries it again, and so does a
    health probe at any time (`probe()`); a probe that gets an answer closes the breaker."""

    def __init__(self, open_s: float = BREAKER_OPEN_S) -> None:
        self.open_s = open_s
        self._until = 0.0
        self._probing = threading.local()

    def trip(self) -> None:
        self._until = time.monotonic() + self.open_s

    def reset(self) -> None:
        self._until = 0.0

    def is_open(self) -> bool:
        return not getattr(self._probing, "on", False) and time.monotonic() < self._until

    @contextlib.contextmanager
    def probe(self):
        """Let this thread reach the store even while the breaker is open."""
        self._probing.on = True
        try:
            yield
        finally:
            self._probing.on = False


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, _UNAVAILABLE):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def build_engine(url: str, *, pool_size: int = 5, breaker: Breaker | None = None) -> Engine:
    """An engine with timeouts suited to a webhook: fail fast rather than hold a CX turn."""
    # hide_parameters: SQLAlchemy's own error and debug messages never quote a phone number or an e-mail.
    kwargs: dict[str, Any] = {"hide_parameters": True, "json_serializer": _json_text}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"timeout": CONNECT_TIMEOUT_S, "check_same_thread": False}
    elif url.startswith("postgresql"):
        # Our timeouts are added to any `options` the URL carries (e.g. a search_path), not put in their place.
        url_options = make_url(url).query.get("options", "")
        timeouts = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} -c lock_timeout={LOCK_TIMEOUT_MS}"
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            "options": f"{url_options} {timeouts}".strip(),
        }
        kwargs.update(pool_size=pool_size, max_overflow=0, pool_timeout=CONNECT_TIMEOUT_S,
                      pool_recycle=POOL_RECYCLE_S)
    engine = create_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        event.listen(engine, "checkout", _ping_if_idle)
        event.listen(engine, "checkin", _note_checkin)
    if url.startswith("postgresql+psycopg"):
        event.listen(engine, "do_connect", functools.partial(_connect_with_deadline, breaker or Breaker()))
        event.listen(engine, "checkin", _restore_deadline)
    return engine


def _json_text(value: Any) -> str:
    """A JSON column's text (audit rows' before/after): orjson, UTF-8 as written, ~5× the json module's speed (a lock
    writes two); what orjson refuses (a non-string key, an int past 64 bits) the json module writes."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, ensure_ascii=False)


def _note_checkin(_dbapi_conn, record) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_conn, record, _proxy) -> None:
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < IDLE_PING_S:
        return
    try:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_conn.rollback()  # psycopg began a transaction for the ping; nothing to undo
    except Exception as exc:  # noqa: BLE001 - any failure: the pool replaces this connection and tries again
        raise DisconnectionError(f"idle connection dropped ({type(exc).__name__})") from exc


def _restore_deadline(dbapi_conn, _record) -> None:
    # A connection back in the pool serves webhook turns again, whatever relax_deadline did to it.
    if dbapi_conn is not None and "round_trip_deadline_s" in vars(dbapi_conn):
        del dbapi_conn.round_trip_deadline_s


def _connect_with_deadline(breaker: Breaker, dialect, conn_rec, cargs, cparams):
    import psycopg

    if breaker.is_open():
        raise psycopg.OperationalError("the store is marked unavailable after a recent failure")
    try:
        return _deadline_connection_class().connect(*cargs, **cparams)
    except psycopg.OperationalError:
        breaker.trip()  # no new connection: the store is down (or unreachable) for everyone, not one backend
        raise


def relax_deadline(conn, seconds: float) -> None:
    """Let one long back-office statement (an import batch) outlast the webhook's round-trip deadline."""
    driver = conn.connection.driver_connection
    if hasattr(driver, "round_trip_deadline_s"):
        driver.round_trip_deadline_s = seconds


@functools.cache
def _deadline_connection_class():
    import psycopg

    class DeadlineConnection(psycopg.Connection):
        """Every wait on the server is bounded; past the deadline the connection is closed (the server rolls back
        the open transaction) and the call fails as StoreUnavailable."""

        round_trip_deadline_s = ROUND_TRIP_DEADLINE_S

        def wait(self, gen, interval=0.1, timeout=None):
            try:
                return super().wait(gen, interval=interval,
                                    timeout=self.round_trip_deadline_s if timeout is None else timeout)
            except psycopg.OperationalError as exc:
                # psycopg signals its own wait timeout with this private subclass (pinned version, tested).
                if type(exc).__name__ != "_WaitTimeout":
                    raise
                # Mid-protocol: this connection cannot be used again. The breaker is left alone: one stuck
                # backend is not a down store, and the pool's next connection may well answer.
                self.pgconn.finish()
                raise psycopg.OperationalError("the store did not answer within the deadline") from None

    return DeadlineConnection


# Execution option that marks a connection as serving a read-only unit of work (see _sqlite_begin).
READ_ONLY = "lockcard_read_only"


def sqlite_page_size(dbapi_conn, _record=None) -> None:
    """SQLITE_PAGE_BYTES for a file not yet written (whoever creates it: the store, the migrations); a no-op on a
    store that exists."""
    dbapi_conn.execute(f"PRAGMA page_size={SQLITE_PAGE_BYTES}")


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # pysqlite would otherwise BEGIN (deferred) only at the first INSERT/UPDATE: the SELECTs a handler checks before
    # writing would run outside the transaction, and two callers could both see a card active and both lock it.
    # With its own transaction handling off, _sqlite_begin decides how each transaction begins (SQLAlchemy 2's
    # documented pysqlite recipe: "Serializable isolation / Savepoints / Transactional DDL").
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    sqlite_page_size(dbapi_conn)  # before the WAL switch, which writes a new file's header
    cur.execute("PRAGMA journal_mode=WAL")
    # WAL + NORMAL: a commit is not fsynced (a checkpoint is); a power loss may drop the last commits but never
    # corrupts the file. The demo store accepts that; production is PostgreSQL (README, Benchmark).
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    # On connect only (a pooled connection keeps it), and cheap: the map is made on the first read, grown as the
    # file grows. The page cache stays at its default: with the map, reads bypass it (a bigger one measured no
    # better, and would be private memory per connection).
    cur.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
    cur.execute(f"PRAGMA wal_autocheckpoint={SQLITE_WAL_AUTOCHECKPOINT}")
    cur.close()


def _sqlite_begin(conn) -> None:
    # IMMEDIATE: the write lock at the start, waiting for the writer before us — never a read that a concurrent
    # writer makes stale. A read-only unit begins deferred: WAL readers never wait for a writer.
    if conn.get_execution_options().get(READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        begin_immediate(conn.connection.dbapi_connection)


# How long a writer sleeps between tries for SQLite's write lock (see begin_immediate).
SQLITE_LOCK_RETRY_S = 0.0001


def begin_immediate(dbapi_conn, *, no_busy_timeout: bool = False) -> None:
    """BEGIN IMMEDIATE on an SQLite connection, trying again every SQLITE_LOCK_RETRY_S while another writer holds
    the write lock, for up to SQLITE_BUSY_TIMEOUT_MS; then the lock error, as the busy timeout would raise it.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15 … ms between tries: a lock that waited behind the relay's
    50 µs transaction lost a millisecond or more of a caller's time (issue 15: a fifth of a served lock's).
    The connection's busy timeout is off for the BEGIN alone; every other statement keeps it. A connection that
    runs with none (`no_busy_timeout`: a kept writer, see Store.writer_connection) is left as it is."""
    if no_busy_timeout:
        _begin_immediate(dbapi_conn)
        return
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        _begin_immediate(dbapi_conn)
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _begin_immediate(dbapi_conn) -> None:
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            dbapi_conn.execute("BEGIN IMMEDIATE")
            return
        except dbapi_conn.OperationalError as exc:  # sqlite3's exception classes hang off the connection
            # SQLITE_BUSY, or an extended form of it (SQLITE_BUSY_RECOVERY: another connection is recovering the WAL).
            name = getattr(exc, "sqlite_errorname", "")
            if not (name.startswith("SQLITE_BUSY") or name == "SQLITE_LOCKED") or time.monotonic() >= deadline:
                raise
        time.sleep(SQLITE_LOCK_RETRY_S)


class Store:
    """One database: a lazily built engine."""

    def __init__(self, url: str, *, pool_size: int = 5) -> None:
        self.url = url
        self._pool_size = pool_size
        self.breaker = Breaker()
        self._engine: Engine | None = None
        self._lock = threading.Lock()
        # SQLite only: each thread's own connections for one-statement reads and plain write transactions (see
        # reader_connection, writer_connection), and every thread's, for dispose.
        self._kept = threading.local()
        self._kept_connections: set[PoolProxiedConnection] = set()

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    self._engine = build_engine(self.url, pool_size=self._pool_size, breaker=self.breaker)
        return self._engine

    def unit_of_work(self, *, read_only: bool = False) -> UnitOfWork:
        """A new unit of work on this store: a writing one (the default), or `read_only=True` for reads only.

        A read-only unit never takes SQLite's write lock and refuses `commit()`: anything it wrote is rolled back.
        """
        kept = self if self.url.startswith("sqlite") else None
        return UnitOfWork(self.engine, self.breaker, read_only=read_only, kept=kept)

    def reader_connection(self) -> PoolProxiedConnection:
        """This thread's SQLite connection for one-statement reads, opened on its first use and kept.

        A read tag is one statement, in autocommit: it holds no transaction, so a kept connection pins no snapshot
        and blocks no checkpoint, and each read sees every commit made before it. Keeping it saves the pool's
        checkout and check-in (with its reset), which cost a webhook read more than SQLite takes to answer. It is
        detached from the pool: it takes none of the pool's slots from the writers. SQLite only — on PostgreSQL a
        kept connection per thread would be a server connection per thread; reads there check one out of the pool.
        """
        return self._kept_connection("reader")

    def writer_connection(self) -> PoolProxiedConnection:
        """This thread's SQLite connection for plain writing units (the lock's one transaction), kept as the reader
        connection is: the pool's checkout and check-in cost a lock more than its BEGIN. A unit ends its transaction
        (COMMIT, or ROLLBACK on the way out) before it lets go of it; a unit whose statement failed drops it.

        It runs with no busy timeout: every transaction on it begins with begin_immediate, which waits for the write
        lock itself, and nothing after that can be refused for a lock in WAL mode — the writer holds the only one a
        write needs, readers take none from it, and the checkpoint a commit may run is a passive one (which never
        waits). So the BEGIN needs no two PRAGMAs around it (issue 15)."""
        kept = getattr(self._kept, "writer", None)
        if kept is None:
            kept = self._kept_connection("writer")
            kept.dbapi_connection.execute("PRAGMA busy_timeout=0")
        return kept

    def _kept_connection(self, role: str) -> PoolProxiedConnection:
        kept = getattr(self._kept, role, None)
        if kept is None:
            kept = self.engine.raw_connection()  # with the pool's connect-time pragmas (WAL, busy timeout …)
            kept.detach()
            with self._lock:
                self._kept_connections.add(kept)
            setattr(self._kept, role, kept)
        return kept

    def drop_kept_connection(self, connection: PoolProxiedConnection) -> None:
        """Close a kept connection (reader or writer) that failed; the thread opens a new one when it next needs it."""
        for role in ("reader", "writer"):
            if getattr(self._kept, role, None) is connection:
                setattr(self._kept, role, None)
        with self._lock:
            self._kept_connections.discard(connection)
        try:
            connection.close()
        except Exception:  # noqa: BLE001 - it is being thrown away because it failed
            pass

    def ping(self) -> None:
        """Raise StoreUnavailable unless the database answers a trivial query (a health probe: it reaches the store
        even while the breaker is open, and closes it when the store answers)."""
        try:
            with self.breaker.probe(), self.engine.connect() as conn:
                conn.execution_options(**{READ_ONLY: True}).execute(text("SELECT 1"))
        except DBAPIError as exc:
            raise StoreUnavailable(type(exc.orig).__name__ if exc.orig else type(exc).__name__) from exc
        self.breaker.reset()

    def checkpoint(self) -> tuple[int, int] | None:
        """SQLite: copy what the WAL holds into the database file, without waiting for anyone (PASSIVE: readers and
        the writer go on; what they still need is left for the next time). (WAL pages, pages copied); None on a
        store with no WAL to checkpoint (PostgreSQL checkpoints itself)."""
        if not self.url.startswith("sqlite"):
            return None
        # On the DBAPI connection, outside any transaction: SQLAlchemy's would begin one (BEGIN IMMEDIATE here, the
        # write lock), and SQLite does not checkpoint from inside a transaction.
        pooled = self.engine.raw_connection()
        try:
            cursor = pooled.dbapi_connection.cursor()
            try:
                busy, log, copied = cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            finally:
                cursor.close()
        except self.engine.dialect.loaded_dbapi.Error as exc:
            pooled.invalidate()
            raise StoreUnavailable(type(exc).__name__) from exc
        finally:
            pooled.close()
        return log, copied

    def dispose(self) -> None:
        with self._lock:
            kept, self._kept_connections = self._kept_connections, set()
        for connection in kept:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing what another thread may still hold; SQLite tolerates it
                pass
        self._kept = threading.local()
        if self._engine is not None:
            self._engine.dispose()


class ReadOnlyUnitOfWork(RuntimeError):
    """A programming error: a unit of work opened for reads tried to keep a write."""


class PlainTransactionOpen(RuntimeError):
    """A programming error: the ORM session was asked for in a unit that already began a plain transaction
    (`execute`/`write`); it would begin a second transaction beside the first instead of joining it."""


class UnitOfWork:
    """One transaction. Rolls back unless `commit()` was called; maps connection failures to StoreUnavailable.

    The connection is checked out on first use and the ORM session (`session`) opened on first use, on it; a unit
    that only reads through `read()` never builds a session.
    """

    def __init__(self, engine: Engine, breaker: Breaker | None = None, *, read_only: bool = False,
                 kept: Store | None = None) -> None:
        self._engine = engine
        self._breaker = breaker
        self.read_only = read_only
        # SQLite: the store keeping a connection per thread for one-statement reads (read-only units) and one for
        # plain write transactions (writing units that never open the session); else None.
        self._readers = kept if read_only else None
        self._writers = kept if not read_only else None
        self._pooled: PoolProxiedConnection | None = None  # the DBAPI connection, checked out on first use
        self._pooled_kept = False  # _pooled is the thread's kept writer connection, not the pool's
        self._connection: Connection | None = None  # SQLAlchemy's, over it, once the session needs one
        self._session: Session | None = None
        self._plain = False  # a plain (sessionless) transaction was begun on the DBAPI connection
        self._writes: list[tuple[PlainQuery, dict[str, Any]]] = []  # plain writes queued for commit()
        self.repo: Repository
        self.committed = False

    def __enter__(self) -> UnitOfWork:
        if self._breaker is not None and self._breaker.is_open():
            raise StoreUnavailable("store marked unavailable after a recent failure")
        self.repo = Repository(self)
        self.committed = False
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self._writes.clear()
            self._end_plain()
            if self._session is not None:
                try:
                    self._session.rollback()
                except DBAPIError:
                    pass  # the connection is already gone; the original error says why
                finally:
                    self._session.close()
        finally:
            self._session = None
            self._drop_connection()
        if exc is not None and _is_unavailable(exc):
            raise StoreUnavailable(type(exc).__name__) from exc

    def _checkout(self) -> PoolProxiedConnection:
        # The pool's connection itself: a plain read needs no Connection object around it.
        if self._pooled is None:
            dialect = self._engine.dialect
            try:
                self._pooled = self._engine.raw_connection()
            except dialect.loaded_dbapi.Error as exc:
                raise DBAPIError.instance(None, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                          dialect=dialect) from exc
        return self._pooled

    @property
    def connection(self) -> Connection:
        """This unit's pooled connection (checked out on first use), as SQLAlchemy's Connection."""
        if self._connection is None:
            if self._plain or self._writes:
                raise PlainTransactionOpen("this unit of work began a plain transaction (execute/write): "
                                           "its ORM session cannot join it; use one or the other in a unit")
            self._connection = Connection(self._engine, connection=self._checkout())
            if self.read_only:
                self._connection.execution_options(**{READ_ONLY: True})  # SQLite: a deferred BEGIN (_sqlite_begin)
        return self._connection

    @property
    def has_session(self) -> bool:
        """Whether this unit has opened its ORM session."""
        return self._session is not None

    @property
    def may_have_written(self) -> bool:
        """Whether this unit may have changed something: its session is open, or it began a plain transaction."""
        return self._session is not None or self._plain or bool(self._writes)

    @property
    def session(self) -> Session:
        """This unit's ORM session, on its connection (opened on first use)."""
        if self._session is None:
            self._session = Session(bind=self.connection, expire_on_commit=False)
        return self._session

    def read(self, query: PlainQuery, values: dict[str, Any]) -> list[tuple]:
        """The rows of one read-only statement: on the DBAPI connection while no session is open (PostgreSQL:
        autocommit, one round trip), else through the session's transaction."""
        # A writing unit reads inside its transaction: on SQLite that is where BEGIN IMMEDIATE holds the write lock,
        # so what it checks cannot change before it writes. Only a read-only unit takes the one-statement path.
        if self._plain:
            return self.execute(query, values)
        if self._session is not None or not self.read_only:
            return [tuple(row) for row in self.session.execute(query.statement, values)]
        try:
            return self._read_plain(query, values)
        except DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
        # The connection died under a read (a frozen or restarted backend) and this unit has changed nothing: a read
        # is safe to repeat, once, on another connection (what the checkout ping used to buy on every call).
        self._drop_connection()
        return self._read_plain(query, values)

    def _drop_connection(self) -> None:
        # Back to the pool (Connection.close checks in the pooled connection it wraps); a kept writer connection
        # stays with its thread (its transaction was ended by _end_plain).
        connection, pooled = self._connection, self._pooled
        self._connection = self._pooled = None
        if self._pooled_kept:
            self._pooled_kept = False
            return
        try:
            if connection is not None:
                connection.close()
            elif pooled is not None:
                pooled.close()
        except DBAPIError:
            pass

    def _read_plain(self, query: PlainQuery, values: dict[str, Any]) -> list[tuple]:
        dialect = self._engine.dialect
        compiled = query.compiled(dialect)
        kept = self._readers is not None and self._pooled is None
        pooled = self._readers.reader_connection() if kept else self._checkout()
        dbapi_conn = pooled.dbapi_connection
        autocommit = dialect.name == "postgresql"
        cursor = None
        try:
            if autocommit:
                dbapi_conn.autocommit = True
            cursor = dbapi_conn.cursor()
            cursor.execute(compiled.sql, compiled.parameters(values))
            rows = compiled.rows(cursor.fetchall())
        except dialect.loaded_dbapi.Error as exc:
            error = self._wrapped(exc, pooled, cursor, compiled.sql, pooled=not kept)
            if kept:
                # Whatever went wrong, the next read opens a fresh connection rather than trust this one.
                self._readers.drop_kept_connection(pooled)
            raise error from exc
        finally:
            if cursor is not None:
                cursor.close()
            if autocommit and not dbapi_conn.closed:
                dbapi_conn.autocommit = False
        return rows

    def _wrapped(self, exc: Exception, connection: PoolProxiedConnection, cursor: Any, sql: str | None, *,
                 pooled: bool = True) -> DBAPIError:
        """A DBAPI error as SQLAlchemy raises it (IntegrityError, OperationalError, …), the connection invalidated
        if it was lost — as SQLAlchemy does on a disconnect: this connection and the pool's older ones dropped (a
        kept reader connection, `pooled=False`, is not the pool's: its owner drops it)."""
        dialect = self._engine.dialect
        disconnect = dialect.is_disconnect(exc, connection.dbapi_connection, cursor)
        if disconnect and pooled:
            self._engine.pool._invalidate(connection, exc)
        return DBAPIError.instance(sql, None, exc, dialect.loaded_dbapi.Error, hide_parameters=True,
                                   connection_invalidated=disconnect, dialect=dialect)

    def execute(self, query: PlainQuery, values: dict[str, Any]) -> list[tuple]:
        """The rows of one precompiled statement, run in this unit's transaction (begun by the first one).

        Without a session: on the DBAPI connection, any queued writes sent first; on PostgreSQL the BEGIN, the
        statement and its answer are one round trip (a pipeline). With the session open: through it."""
        if self._session is not None:
            return [tuple(row) for row in self._session.execute(query.statement, values)]
        return self._send_plain((query, values), commit=False)

    def write(self, statement: PlainQuery, values: dict[str, Any]) -> None:
        """Queue one precompiled write (an INSERT or UPDATE that returns nothing) in this unit's transaction: sent
        with the next `execute` or by `commit()`, so a failing write fails there. Through the session if open."""
        if self.read_only:
            raise ReadOnlyUnitOfWork("a read-only unit of work cannot write: open it with read_only=False")
        if self._session is not None:
            self._session.execute(statement.statement, values)
        else:
            self._writes.append((statement, values))

    def _send_plain(self, last: tuple[PlainQuery, dict[str, Any]] | None, *, commit: bool) -> list[tuple]:
        """Send the queued writes, then `last` (its rows are returned) or the COMMIT, beginning the transaction
        first if this is its first statement.

        SQLite: BEGIN IMMEDIATE (its connection runs with isolation_level=None: BEGIN is ours to send, as
        _sqlite_begin does for the session). PostgreSQL: the BEGIN, the writes and `last` in one pipeline ended by
        one Sync — one round trip; the connection is put in autocommit for the unit and sent an explicit BEGIN
        inside the pipeline (psycopg's implicit BEGIN would be synced on its own: one round trip more).

        The COMMIT goes on its own, once the server has acknowledged every write: one round trip more than sending
        it in the writes' pipeline, but a server that stops answering (frozen, cut off) while the writes are on
        their way never receives it — the call fails as StoreUnavailable and nothing is kept. Pipelined with the
        writes, a server that stalled after reading them would commit them once it woke up, after the call had
        been answered STORE_UNAVAILABLE (tests/faults). Only a COMMIT in flight itself is left in doubt, as on
        any client."""
        dialect = self._engine.dialect
        if self._pooled is None and self._writers is not None:
            self._pooled, self._pooled_kept = self._writers.writer_connection(), True
        pooled = self._checkout()
        dbapi_conn = pooled.dbapi_connection
        statements = [(q.compiled(dialect), v) for q, v in self._writes]
        self._writes = []
        if last is not None:
            statements.append((last[0].compiled(dialect), last[1]))
        postgres = dialect.name == "postgresql"
        cursor = None
        sql = None
        try:
            begin = not self._plain
            self._plain = True
            if postgres:
                if begin:
                    dbapi_conn.autocommit = True  # explicit BEGIN/COMMIT below; put back by _end_plain
                cursor = dbapi_conn.cursor()
                if begin or statements:
                    with dbapi_conn.pipeline():
                        if begin:
                            cursor.execute(sql := "BEGIN")
                        for compiled, params in statements:
                            cursor.execute(sql := compiled.sql, compiled.parameters(params))
                if commit:
                    cursor.execute(sql := "COMMIT")
            else:
                if begin:
                    sql = "BEGIN" if self.read_only else "BEGIN IMMEDIATE"
                    if self.read_only:
                        dbapi_conn.execute(sql)
                    else:
                        begin_immediate(dbapi_conn, no_busy_timeout=self._pooled_kept)
                cursor = dbapi_conn.cursor()
                for compiled, params in statements:
                    cursor.execute(sql := compiled.sql, compiled.parameters(params))
                if commit:
                    sql = "COMMIT"
                    dbapi_conn.commit()
            rows = statements[-1][0].rows(cursor.fetchall()) if last is not None else []
        except dialect.loaded_dbapi.Error as exc:
            error = self._wrapped(exc, pooled, cursor, sql, pooled=not self._pooled_kept)
            if self._pooled_kept:
                # Whatever went wrong, the next unit opens a fresh connection rather than trust this one: closing it
                # rolls back what this unit began.
                if cursor is not None:
                    cursor.close()
                    cursor = None
                self._writers.drop_kept_connection(pooled)
                self._pooled, self._pooled_kept = None, False
            raise error from exc
        finally:
            if cursor is not None:
                cursor.close()
        if commit:
            self._end_plain()
        return rows

    def _end_plain(self) -> None:
        """After the COMMIT, or to give up: roll back whatever is still open and leave the connection as the pool
        lent it (PostgreSQL: out of autocommit)."""
        if not self._plain:
            return
        self._plain = False
        if self._pooled is None:
            return
        dbapi_conn = self._pooled.dbapi_connection
        try:
            dbapi_conn.rollback()  # nothing after a COMMIT; else the undo (the connection may be gone: then moot)
            if self._engine.dialect.name == "postgresql" and not dbapi_conn.closed:
                dbapi_conn.autocommit = False
        except Exception:  # noqa: BLE001 - a lost connection; the pool's reset on checkin drops it
            if self._pooled_kept:  # no pool to reset it: never lent again
                self._writers.drop_kept_connection(self._pooled)
                self._pooled, self._pooled_kept = None, False
            return
        if self._pooled_kept:
            # The transaction is over: the unit lets go of the thread's writer (a session opened later in this unit
            # checks a connection out of the pool, as any other would).
            self._pooled, self._pooled_kept = None, False

    def commit(self) -> None:
        """Keep the work done in this unit."""
        if self.read_only:
            # On SQLite a read-only unit holds no write lock: what it wrote could rest on a stale read.
            raise ReadOnlyUnitOfWork("a read-only unit of work cannot commit: open it with read_only=False")
        try:
            if self._session is not None:
                self._session.commit()
            elif self._plain or self._writes:
                self._send_plain(None, commit=True)
        except DBAPIError as exc:
            if _is_unavailable(exc):
                raise StoreUnavailable(type(exc).__name__) from exc
            raise
        self.committed = True
