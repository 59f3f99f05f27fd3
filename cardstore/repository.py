"""Queries the handlers and commands need, over one unit of work (its ORM session, or for the hot reads one
precompiled statement on its connection). Knows no CX."""
from __future__ import annotations

import datetime as dt
import secrets
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Sequence, TypeVar

from sqlalchemy import DateTime, Integer, and_, bindparam, case, exists, func, insert, select, type_coerce, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import Executable, Select

from cardstore.models import (
    AuditEvent,
    AuthToken,
    Base,
    Card,
    Customer,
    Handoff,
    LockTicket,
    OtpChallenge,
    OutboxMessage,
    ReissueRequest,
    ThrottleCounter,
    VerifiedSession,
)

if TYPE_CHECKING:
    from cardstore.uow import UnitOfWork

T = TypeVar("T", bound=Base)


class CardView(NamedTuple):
    """A card as the read tags show it; read-only (to change a card, load it with `card(…, for_update=True)`)."""

    last4: str
    vendor: str
    status: str


class CustomerRow(NamedTuple):
    """A live customer and all their cards, read in one statement; read-only (the handlers that change a customer
    load it with `customer_by_phone`). A `Customer` for every use that only reads."""

    id: int
    phone_e164: str
    name: str
    email: str | None
    zip_code: str
    cards: tuple[CardView, ...]


# SQLite stores a DATETIME as text. SQLAlchemy's bind processor fills a named-field % template from a dict of the
# seven fields (~3.6 µs); datetime.isoformat writes the same text in C (~1.5 µs). A lock binds seven datetimes.
_DATETIME_PROBES = (dt.datetime(2026, 12, 2, 20, 3, 49, 315123), dt.datetime(2026, 1, 2, 3, 4, 5),
                    dt.datetime(999, 12, 31, 23, 59, 59, 1), dt.datetime(1, 1, 1))


# The last naive datetime bound on SQLite and its text, as one tuple (replaced whole: a thread never pairs one value
# with another's text). A lock binds its one `now` five times: four of them are this lookup.
_LAST_DATETIME: tuple[Any, str] = (None, "")


def _faster(processor: Callable[[Any], Any], type_: Any, dialect: Dialect) -> Callable[[Any], Any]:
    """`processor`, or one that gives the same parameter faster: for SQLite's DATETIME, `isoformat` on a naive
    datetime, checked here against SQLAlchemy's own output (a changed or configured storage format keeps SQLAlchemy's
    processor); anything else — an aware datetime, a date, None — still goes through SQLAlchemy's."""
    if dialect.name != "sqlite" or not isinstance(type_, DateTime):
        return processor
    if any(processor(probe) != probe.isoformat(" ", "microseconds") for probe in _DATETIME_PROBES):
        return processor
    datetime = dt.datetime

    def process(value: Any) -> Any:
        global _LAST_DATETIME
        seen = _LAST_DATETIME
        if value is seen[0]:
            return seen[1]
        if type(value) is datetime and value.tzinfo is None:
            text = value.isoformat(" ", "microseconds")
            _LAST_DATETIME = (value, text)
            return text
        return processor(value)

    return process


class _Compiled:
    """One statement compiled for one dialect: its SQL text, how to turn values into the driver's parameters, and
    the driver's rows into Python values (SQLite returns a DATETIME as text, a boolean as 0 or 1)."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self._order = list(compiled.positiontup) if compiled.positional else None
        self._processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self._processors[name] = _faster(processor, bind.type, dialect)
        # Positional drivers (SQLite): each parameter's name and processor, in the statement's order.
        self._positional = ([(name, self._processors.get(name)) for name in self._order]
                             if self._order is not None else None)
        # A bound value the statement carries itself (`status == "sending"`) is sent unless the caller gives one.
        self._defaults = {name: bind.value for name, bind in compiled.binds.items()
                          if bind.value is not None and bind.callable is None}
        self._results: list[tuple[int, Callable[[Any], Any]]] = []
        # A SELECT's columns, or what an INSERT/UPDATE … RETURNING sends back.
        columns = getattr(statement, "selected_columns", None)
        for i, column in enumerate(columns if columns is not None else getattr(statement, "exported_columns", ())):
            processor = column.type.dialect_impl(dialect).result_processor(dialect, None)
            if processor is not None:
                self._results.append((i, processor))

    def rows(self, fetched: Sequence[Sequence[Any]]) -> list[tuple]:
        if not self._results:
            return list(fetched)  # the drivers' rows are tuples already (sqlite3, psycopg's default row factory)
        out = []
        for row in fetched:
            row = list(row)
            for i, processor in self._results:
                row[i] = processor(row[i])
            out.append(tuple(row))
        return out

    def parameters(self, values: dict[str, Any]) -> tuple | dict[str, Any]:
        if self._defaults:
            values = {**self._defaults, **values}
        if self._positional is not None:
            # One pass in the statement's order (a lock sends ~30 parameters in four statements).
            return tuple([values[name] if processor is None else processor(values[name])
                          for name, processor in self._positional])
        if self._processors:
            values = dict(values)
            for name, processor in self._processors.items():
                if name in values:
                    values[name] = processor(values[name])
        return values


class PlainQuery:
    """A Core statement compiled once per dialect, for the unit of work to run on the DBAPI cursor (`read`,
    `execute`, `write`): SQLAlchemy's per-execution machinery costs more than SQLite takes to answer.

    No Python-side column default is applied on this path: a write names every column it fills."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def compiled(self, dialect: Dialect) -> _Compiled:
        key = f"{dialect.name}+{dialect.driver}"
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = _Compiled(self.statement, dialect)
        return found

# The hot queries (every webhook call runs two to six of them) are built once, with bound parameters: a statement
# built per call costs SQLAlchemy more than SQLite takes to run it (construction and cache key, ~50 µs each).
_CUSTOMER_BY_PHONE = select(Customer).where(Customer.phone_e164 == bindparam("phone"))
_LIVE_CUSTOMER_BY_PHONE = _CUSTOMER_BY_PHONE.where(Customer.deleted_at.is_(None))
_CARDS_OF = select(Card).where(Card.customer_id == bindparam("customer_id")).order_by(Card.id)
_CARD = select(Card).where(Card.customer_id == bindparam("customer_id"), Card.last4 == bindparam("last4"))
_CARD_FOR_UPDATE = _CARD.with_for_update()
# What the read tags show of a card: columns, not objects (no identity map, no change tracking to set up).
_CARD_VIEWS = select(Card.last4, Card.vendor, Card.status).where(Card.customer_id == bindparam("customer_id"))
_CARD_VIEWS_IN_ORDER = _CARD_VIEWS.order_by(Card.id)
_CARD_VIEW = _CARD_VIEWS.where(Card.last4 == bindparam("last4"))
_VERIFIED_SINCE = (
    select(VerifiedSession)
    .where(
        VerifiedSession.session == bindparam("session"),
        VerifiedSession.customer_id == bindparam("customer_id"),
        VerifiedSession.verified_at >= bindparam("since"),
    )
    .order_by(VerifiedSession.id.desc())
    .limit(1)
)
# What every read tag needs, in one round trip: the live customer with this number, whether this session verified
# them recently enough, and their cards (LEFT JOIN: a customer without cards is one row with NULL card columns).
_C, _K, _V = Customer.__table__.c, Card.__table__.c, VerifiedSession.__table__.c
# This session verified the customer at or after :since (the read tags' window, or the lock's step-up window).
# EXISTS (SELECT verified_sessions.id …), not SELECT *: SQLite counts every column of a * as read, and would visit
# the table for the columns the index does not hold (phone_text, phone_e164) instead of answering from the index.
_VERIFIED_BY_SESSION = select(_V.id).where(
    _V.session == bindparam("session"), _V.customer_id == _C.id,
    _V.verified_at >= bindparam("since", type_=_V.verified_at.type)).exists()
_READER = PlainQuery(
    select(
        _C.id, _C.phone_e164, _C.name, _C.email, _C.zip_code,
        # As an Integer (0/1, or PostgreSQL's bool): a Boolean column would convert every row in Python on SQLite;
        # customer_verified_since reads it with bool().
        type_coerce(_VERIFIED_BY_SESSION, Integer).label("verified"),
        _K.last4, _K.vendor, _K.status,
    )
    .select_from(Customer.__table__.outerjoin(Card.__table__, _K.customer_id == _C.id))
    .where(_C.phone_e164 == bindparam("phone"), _C.deleted_at.is_(None))
    .order_by(_K.id)
)
# A session may hold several tickets for one card (it asked again after the card changed): the newest is the one
# a retry may get back.
_LOCK_TICKET = select(LockTicket).where(
    LockTicket.session == bindparam("session"),
    LockTicket.card_id == bindparam("card_id"),
    LockTicket.lock_type == bindparam("lock_type"),
).order_by(LockTicket.id.desc()).limit(1)
_REISSUE_REQUEST = select(ReissueRequest).where(
    ReissueRequest.session == bindparam("session"), ReissueRequest.card_id == bindparam("card_id")
).order_by(ReissueRequest.id.desc()).limit(1)
_REISSUES_OF_CARD = select(func.count(ReissueRequest.id)).where(ReissueRequest.card_id == bindparam("card_id"))
_NUMBER_TAKEN = {
    model: select(model.id).where(model.number == bindparam("number")) for model in (LockTicket, ReissueRequest)
}


def random_number() -> int:
    """A random 7-digit ticket (or acknowledgement) number."""
    return 1_000_000 + secrets.randbelow(9_000_000)


# --- the lock (issue 15): one statement to read and row-lock, four writes sent with the COMMIT -------------------
# A ticket number is picked among this many random candidates by the reading statement itself (the first one no
# ticket has); only if all are taken does the lock probe for one. The number is UNIQUE: a number a concurrent lock
# took after the read fails that lock's INSERT (IntegrityError), and the webhook runs the call again once.
NUMBER_CANDIDATES = 3
_TK = LockTicket.__table__
_NEWEST, _TICKET, _TAKEN = _TK.alias("newest"), _TK.alias("ticket"), _TK.alias("taken")


def _candidates() -> dict[str, int]:
    """NUMBER_CANDIDATES independent random 7-digit numbers (n0, n1 …), from one draw of the system's CSPRNG: the
    digits of a uniform number below 9,000,000 ** NUMBER_CANDIDATES in base 9,000,000 are each uniform and
    independent (one secrets.randbelow instead of one per candidate: each is a getrandom call)."""
    draw = secrets.randbelow(_SPAN ** NUMBER_CANDIDATES)
    out = {}
    for i in range(NUMBER_CANDIDATES):
        draw, digit = divmod(draw, _SPAN)
        out[f"n{i}"] = 1_000_000 + digit
    return out


_SPAN = 9_000_000  # 7-digit numbers: 1,000,000 … 9,999,999


def _free_number_among(count: int):
    """The first of the bound candidates n0…n{count-1} that no lock ticket has, else NULL."""
    def candidate(i: int):
        return bindparam(f"n{i}", type_=Integer)
    return case(*((~exists().where(_TAKEN.c.number == candidate(i)), candidate(i)) for i in range(count)),
                else_=None)


class LockTarget(NamedTuple):
    """What a lock needs, read (and on PostgreSQL row-locked: the card) in one statement."""

    customer_id: int
    phone_e164: str
    card_id: int
    status: str
    status_version: int
    # The newest ticket of (session, card, lock type): what a retry may get back.
    ticket_number: int | None
    ticket_created_at: dt.datetime | None
    ticket_card_status_version: int | None
    free_number: int | None  # a ticket number no ticket has (None: every candidate was taken)


def _lock_target(customers, *where) -> PlainQuery:
    """What a lock reads (LockTarget's columns), from `customers` (the customers table, or a join that ends in it)
    narrowed by `where`: their card with these last four digits, row-locked on PostgreSQL (FOR UPDATE OF cards;
    SQLite's writing unit holds the database's write lock since BEGIN IMMEDIATE); the newest ticket of (session,
    card, lock type); a free number."""
    return PlainQuery(
        select(
            _C.id, _C.phone_e164, _K.id, _K.status, _K.status_version,
            _TICKET.c.number, _TICKET.c.created_at, _TICKET.c.card_status_version,
            _free_number_among(NUMBER_CANDIDATES).label("free_number"),
        )
        .select_from(
            customers
            .join(Card.__table__, and_(_K.customer_id == _C.id, _K.last4 == bindparam("last4")))
            .outerjoin(_TICKET, _TICKET.c.id == select(func.max(_NEWEST.c.id)).where(
                _NEWEST.c.session == bindparam("session"), _NEWEST.c.card_id == _K.id,
                _NEWEST.c.lock_type == bindparam("lock_type")).scalar_subquery())
        )
        .where(_C.deleted_at.is_(None), *where)
        .limit(1)
        .with_for_update(of=Card.__table__)
    )


# The live customer with this number, verified by this session since `since` (else no row: the caller tells a
# stranger from an unverified customer or a missing card with a second statement, on that path only).
_LOCK_TARGET = _lock_target(Customer.__table__, _C.phone_e164 == bindparam("phone"), _VERIFIED_BY_SESSION)
# The same, found by the number as this session's verifying turn gave it (VerifiedSession.phone_text) instead of its
# E.164 form: the session's customer, while they still have the number the text stood for then.
_LOCK_TARGET_BY_TEXT = _lock_target(
    VerifiedSession.__table__.join(Customer.__table__, and_(_C.id == _V.customer_id, _C.phone_e164 == _V.phone_e164)),
    _V.session == bindparam("session"), _V.phone_text == bindparam("text"),
    _V.verified_at >= bindparam("since", type_=_V.verified_at.type))
_FREE_LOCK_NUMBER = PlainQuery(select(_free_number_among(NUMBER_CANDIDATES)))


def _insert(model: type[Base], *columns: str) -> PlainQuery:
    """INSERT of exactly these columns (no RETURNING): every NOT NULL column and every column with a Python-side
    default must be among them, since no default is applied on the plain path."""
    table = model.__table__
    return PlainQuery(insert(table).values({c: bindparam(c, type_=table.c[c].type) for c in columns}).inline())


_SET_CARD_STATUS = PlainQuery(
    update(Card.__table__).where(_K.id == bindparam("card_id")).values(
        status=bindparam("status", type_=_K.status.type),
        status_version=bindparam("status_version", type_=_K.status_version.type),
        updated_at=bindparam("updated_at", type_=_K.updated_at.type),
    )
)
_INSERT_LOCK_TICKET = _insert(LockTicket, "number", "card_id", "session", "lock_type", "reason", "created_at",
                              "card_status_version")
_INSERT_AUDIT = _insert(AuditEvent, "at", "actor", "action", "customer_id", "card_id", "session", "before", "after")
_INSERT_OUTBOX = _insert(OutboxMessage, "customer_id", "kind", "channel", "to", "subject", "body", "redacted_body",
                         "status", "attempts", "created_at", "next_attempt_at", "expires_at")


class Repository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow
        self.new_outbox: list[OutboxMessage] = []
        # Cards read with their customer by customer_verified_since, for card_views / card_view in the same unit.
        self._read_cards: dict[int, tuple[CardView, ...]] = {}

    @property
    def session(self) -> Session:
        return self._uow.session

    def _cards_as_read(self, customer_id: int) -> tuple[CardView, ...] | None:
        # Only while this unit has changed nothing: after a change, read the cards again.
        return None if self._uow.may_have_written else self._read_cards.get(customer_id)

    def add(self, obj: T) -> T:
        self.session.add(obj)
        return obj

    def flush(self) -> None:
        self.session.flush()

    def insert_rows(self, model: type[Base], rows: Sequence[dict[str, Any]]) -> None:
        """Bulk loading (generated data, imports): many rows of `model` in one executemany, no objects built."""
        if rows:
            self.session.execute(insert(model), list(rows))

    # customers and cards
    def customer_by_phone(self, phone_e164: str, *, include_deleted: bool = False) -> Customer | None:
        q = _CUSTOMER_BY_PHONE if include_deleted else _LIVE_CUSTOMER_BY_PHONE
        return self.session.scalars(q, {"phone": phone_e164}).one_or_none()

    def customer(self, customer_id: int) -> Customer | None:
        return self.session.get(Customer, customer_id)

    def cards_of(self, customer_id: int) -> list[Card]:
        return list(self.session.scalars(_CARDS_OF, {"customer_id": customer_id}))

    def card_views(self, customer_id: int) -> list[CardView]:
        """The customer's cards, in a stable order, for reading."""
        read = self._cards_as_read(customer_id)
        if read is not None:
            return list(read)
        return [CardView(*row) for row in self.session.execute(_CARD_VIEWS_IN_ORDER, {"customer_id": customer_id})]

    def card_view(self, customer_id: int, last4: str) -> CardView | None:
        """The customer's card with these last four digits, for reading."""
        read = self._cards_as_read(customer_id)
        if read is not None:
            return next((card for card in read if card.last4 == last4), None)
        row = self.session.execute(_CARD_VIEW, {"customer_id": customer_id, "last4": last4}).one_or_none()
        return None if row is None else CardView(*row)

    def card(self, customer_id: int, last4: str, *, for_update: bool = False) -> Card | None:
        q = _CARD_FOR_UPDATE if for_update else _CARD
        return self.session.scalars(q, {"customer_id": customer_id, "last4": last4}).one_or_none()

    # one-time codes and verified sessions
    def open_challenge(self, customer_id: int, session: str) -> OtpChallenge | None:
        """The newest challenge of this customer in this CX session that still takes codes."""
        q = (
            select(OtpChallenge)
            .where(
                OtpChallenge.customer_id == customer_id,
                OtpChallenge.session == session,
                OtpChallenge.status == "pending",
            )
            .order_by(OtpChallenge.id.desc())
            .limit(1)
            .with_for_update()
        )
        return self.session.scalars(q).one_or_none()

    def challenges_in_session(self, customer_id: int, session: str) -> list[OtpChallenge]:
        q = select(OtpChallenge).where(OtpChallenge.customer_id == customer_id, OtpChallenge.session == session)
        return list(self.session.scalars(q))

    def count_challenges_since(self, customer_id: int, since: dt.datetime) -> int:
        q = select(func.count(OtpChallenge.id)).where(
            OtpChallenge.customer_id == customer_id, OtpChallenge.created_at >= since
        )
        return int(self.session.scalar(q) or 0)

    def verified_since(self, session: str, customer_id: int, since: dt.datetime) -> VerifiedSession | None:
        params = {"session": session, "customer_id": customer_id, "since": since}
        return self.session.scalars(_VERIFIED_SINCE, params).one_or_none()

    def customer_verified_since(self, phone_e164: str, session: str, since: dt.datetime) -> tuple[CustomerRow | None, bool]:
        """The live customer with this number (and their cards), and whether `session` verified them at or after
        `since`: one statement, one round trip."""
        rows = self._uow.read(_READER, {"phone": phone_e164, "session": session, "since": since})
        if not rows:
            return None, False
        first = rows[0]
        cards = tuple(CardView(r[6], r[7], r[8]) for r in rows if r[6] is not None)
        self._read_cards[first[0]] = cards
        return CustomerRow(first[0], first[1], first[2], first[3], first[4], cards), bool(first[5])

    def auth_token(self, token_hash: str) -> AuthToken | None:
        """The credential with this SHA-256, whoever it was issued to (the caller checks it still holds)."""
        return self.session.scalars(select(AuthToken).where(AuthToken.token_hash == token_hash)).one_or_none()


    def customer_for_update(self, customer_id: int) -> Customer:
        """The customer as a tracked row, locked (FOR UPDATE) for the rest of the unit: read tags see a `CustomerRow`,
        a handler that changes the customer or counts against it takes the row itself."""
        return self.session.get(Customer, customer_id, with_for_update=True, populate_existing=True)

    def ever_verified(self, session: str, customer_id: int) -> bool:
        """Whether `session` verified this customer by a code at any time."""
        return self.verified_since(session, customer_id, dt.datetime.min) is not None

    # abuse limits
    def throttle_counters(self, keys: Sequence[str], now: dt.datetime) -> dict[str, ThrottleCounter]:
        """The counters for `keys`, created at zero if new and row-locked (FOR UPDATE), in key order so two calls
        that need the same counters never wait on each other in a cycle."""
        if not keys:
            return {}
        keys = sorted(set(keys))
        dialect = self.session.get_bind().dialect.name
        make_insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # ON CONFLICT DO NOTHING: two first-ever events for one key both go on to lock the one row.
        self.session.execute(
            make_insert(ThrottleCounter)
            .values([{"key": k, "window_start": now, "count": 0, "refused": 0} for k in keys])
            .on_conflict_do_nothing(index_elements=["key"])
        )
        q = select(ThrottleCounter).where(ThrottleCounter.key.in_(keys)).order_by(ThrottleCounter.key)
        rows = self.session.scalars(q.with_for_update().execution_options(populate_existing=True))
        return {row.key: row for row in rows}

    # requests made in a session: the newest per session, card and action (what a retry may get back)
    def lock_ticket(self, session: str, card_id: int, lock_type: str) -> LockTicket | None:
        params = {"session": session, "card_id": card_id, "lock_type": lock_type}
        return self.session.scalars(_LOCK_TICKET, params).one_or_none()

    def reissue_request(self, session: str, card_id: int) -> ReissueRequest | None:
        return self.session.scalars(_REISSUE_REQUEST, {"session": session, "card_id": card_id}).one_or_none()

    def reissues_of_card(self, card_id: int) -> int:
        """How many replacements were ever ordered for this card."""
        return int(self.session.scalar(_REISSUES_OF_CARD, {"card_id": card_id}) or 0)

    def handoff(self, session: str, card_id: int, action: str) -> Handoff | None:
        q = select(Handoff).where(
            Handoff.session == session, Handoff.card_id == card_id, Handoff.requested_action == action
        ).order_by(Handoff.id.desc()).limit(1)
        return self.session.scalars(q).one_or_none()

    def new_number(self, model: type[LockTicket] | type[ReissueRequest]) -> int:
        """A random 7-digit number not yet used by `model`."""
        while True:
            number = random_number()
            if self.session.scalar(_NUMBER_TAKEN[model], {"number": number}) is None:
                return number

    # the lock, outside the ORM: one statement to read, four writes sent with the commit
    def lock_target(self, phone_e164: str, last4: str, session: str, since: dt.datetime,
                    lock_type: str) -> LockTarget | None:
        """The card to lock and all the lock decides on, in one statement; None unless `session` verified the live
        customer with this number at or after `since` and they have this card. Row-locks the card (PostgreSQL)."""
        return self._lock_target(_LOCK_TARGET, {"phone": phone_e164, "last4": last4, "session": session,
                                                "since": since, "lock_type": lock_type})

    def lock_target_by_text(self, text: str, last4: str, session: str, since: dt.datetime,
                            lock_type: str) -> LockTarget | None:
        """`lock_target` for the number as `session`'s verifying turn gave it (parsing nothing): None unless that
        turn's text was `text`, at or after `since`, and the customer still has the number it stood for then."""
        return self._lock_target(_LOCK_TARGET_BY_TEXT, {"text": text, "last4": last4, "session": session,
                                                        "since": since, "lock_type": lock_type})

    def _lock_target(self, query: PlainQuery, values: dict[str, Any]) -> LockTarget | None:
        rows = self._uow.execute(query, {**values, **_candidates()})
        return LockTarget(*rows[0]) if rows else None

    def free_lock_number(self) -> int:
        """A lock ticket number no ticket has, when the lock's own candidates were all taken."""
        while True:
            (number,), = self._uow.execute(_FREE_LOCK_NUMBER, _candidates())
            if number is not None:
                return number

    def lock(self, target: LockTarget, *, lock_type: str, reason: str, number: int, session: str, actor: str,
             now: dt.datetime, notice: dict[str, Any] | None) -> int:
        """Queue the lock's writes (sent with the commit): the card's new status and version, its ticket, the
        audit row and (unless None) the outbox row `notice` (OutboxMessage's columns: customer_id, kind, channel,
        to, subject, body, redacted_body, expires_at). Returns the card's new status version."""
        version = target.status_version + 1
        write = self._uow.write
        write(_SET_CARD_STATUS, {"card_id": target.card_id, "status": lock_type, "status_version": version,
                                 "updated_at": now})
        write(_INSERT_LOCK_TICKET, {"number": number, "card_id": target.card_id, "session": session,
                                    "lock_type": lock_type, "reason": reason, "created_at": now,
                                    "card_status_version": version})
        write(_INSERT_AUDIT, {"at": now, "actor": actor, "action": "card.locked", "customer_id": target.customer_id,
                              "card_id": target.card_id, "session": session, "before": {"status": target.status},
                              "after": {"status": lock_type, "reason": reason, "ticket_number": number}})
        if notice is not None:
            write(_INSERT_OUTBOX, {**notice, "status": "pending", "attempts": 0, "created_at": now,
                                   "next_attempt_at": now})
        return version

    # side records written with every change
    def audit(
        self,
        actor: str,
        action: str,
        *,
        customer: Customer | None = None,
        card: Card | None = None,
        session: str | None = None,
        before: dict[str, Any] | None = None,
        after: dict[str, Any] | None = None,
    ) -> AuditEvent:
        return self.add(
            AuditEvent(
                actor=actor,
                action=action,
                customer_id=customer.id if customer else (card.customer_id if card else None),
                card_id=card.id if card else None,
                session=session,
                before=before,
                after=after,
            )
        )

    def enqueue(self, message: OutboxMessage) -> OutboxMessage:
        self.new_outbox.append(message)
        return self.add(message)
