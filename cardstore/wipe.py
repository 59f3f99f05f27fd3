"""The card store's guard for tools that recreate a database (bench, loadtest, backoffice.bench_import): a database
that holds rows is only wiped with an explicit `--force`, so a mistyped URL cannot take real data with it."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine, inspect, make_url, select, table, text
from sqlalchemy.exc import OperationalError


class NotEmpty(SystemExit):
    """The database holds rows and --force was not given: nothing was dropped."""


def rows_in(url: str) -> int | None:
    """How many tables of `url` (its default schema) hold at least one row; None if the database does not exist."""
    target = make_url(url)
    if target.get_backend_name() == "sqlite":
        path = target.database
        if not path or path == ":memory:" or not Path(path).exists():
            return None
    engine = create_engine(target)
    try:
        with engine.connect() as conn:
            # alembic_version is bookkeeping: a migrated store with no data in it is empty.
            names = [n for n in inspect(conn).get_table_names() if n != "alembic_version"]
            return sum(1 for name in names if conn.execute(select(text("1")).select_from(table(name)).limit(1)).first())
    except OperationalError:
        return None  # no such database (yet): nothing to lose
    finally:
        engine.dispose()


def refuse_unless_empty(url: str, *, force: bool, tool: str) -> None:
    """Raise NotEmpty (exit status 1, the message says what to do) when `url` holds data and `force` is False."""
    filled = rows_in(url)
    if filled and not force:
        shown = make_url(url).render_as_string(hide_password=True)
        raise NotEmpty(f"{tool}: {shown} is not empty ({filled} table(s) hold rows) and would be dropped; "
                       "point it at a database of its own, or pass --force to drop it anyway")
