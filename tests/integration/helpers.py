"""Reading the store in tests: what changed, row by row."""
from __future__ import annotations

from sqlalchemy import func, select

from cardstore.models import Base


def row_counts(store) -> dict[str, int]:
    """How many rows each table holds."""
    with store.unit_of_work() as uow:
        return {t.name: uow.session.scalar(select(func.count()).select_from(t)) for t in Base.metadata.sorted_tables}


def snapshot(store) -> dict[str, list[tuple]]:
    """Every row of every table, for asserting that nothing at all changed."""
    with store.unit_of_work() as uow:
        return {
            t.name: sorted(map(tuple, uow.session.execute(select(t)).all()), key=repr)
            for t in Base.metadata.sorted_tables
        }
