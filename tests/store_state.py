"""The whole store before and after: proof that a call changed nothing, or exactly what it changed."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import create_engine, func, select, text

from cardstore.models import Base


def row_counts(store) -> dict[str, int]:
    """How many rows each table holds."""
    with store.unit_of_work() as uow:
        return {t.name: uow.session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def store_snapshot(store) -> dict[str, list[tuple]]:
    """Every row of every table (row counts and contents), ordered by primary key."""
    with store.unit_of_work() as uow:
        snap = {}
        for table in Base.metadata.sorted_tables:
            rows = uow.session.execute(select(table).order_by(*table.primary_key.columns)).all()
            snap[table.name] = [tuple(r) for r in rows]
        return snap


def store_diff(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> dict[str, dict[str, list]]:
    """Per table: rows that appeared and rows that disappeared (a changed row is both)."""
    diff = {}
    for name in before:
        added = [r for r in after[name] if r not in before[name]]
        removed = [r for r in before[name] if r not in after[name]]
        if added or removed:
            diff[name] = {"added": added, "removed": removed, "count": (len(before[name]), len(after[name]))}
    return diff


@contextmanager
def unchanged(store, *, except_tables: tuple[str, ...] = ()):
    """Assert that the block leaves every table exactly as it found it (but `except_tables`: a defence's own
    bookkeeping, such as the abuse throttles' counters, which a refused call must still write)."""
    before = store_snapshot(store)
    yield
    diff = {name: d for name, d in store_diff(before, store_snapshot(store)).items() if name not in except_tables}
    assert diff == {}, f"the store changed: {diff}"


@contextmanager
def recorded(store):
    """`with recorded(store) as changes: ...`: afterwards `changes` holds store_diff of the block."""
    before = store_snapshot(store)
    changes: dict[str, dict[str, list]] = {}
    yield changes
    changes.update(store_diff(before, store_snapshot(store)))


def refuse_inserts(url: str, table: str):
    """A trigger in the database at `url` that fails every INSERT into `table` as a unique violation (what a
    writer sees as an IntegrityError, which the webhook retries once). Returns the function that removes it."""
    engine = create_engine(url)
    sqlite = engine.dialect.name == "sqlite"
    with engine.begin() as conn:
        if sqlite:
            conn.execute(text(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} "
                              "BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"))
        else:
            conn.execute(text(f"CREATE FUNCTION refuse_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                              "RAISE EXCEPTION 'refused by the test' USING ERRCODE = 'unique_violation'; END $$"))
            conn.execute(text(f"CREATE TRIGGER refuse_{table} BEFORE INSERT ON {table} FOR EACH ROW "
                              f"EXECUTE FUNCTION refuse_{table}()"))

    def remove() -> None:
        with engine.begin() as conn:
            conn.execute(text(f"DROP TRIGGER refuse_{table}" + ("" if sqlite else f" ON {table}")))
            if not sqlite:
                conn.execute(text(f"DROP FUNCTION refuse_{table}()"))
        engine.dispose()

    return remove
