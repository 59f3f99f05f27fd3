"""The whole store before and after: proof that a call changed nothing, or exactly what it changed."""
from __future__ import annotations

from contextlib import contextmanager

from sqlalchemy import func, select

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
