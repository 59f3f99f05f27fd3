"""Back-office fixtures: the operator's terminal (Flask's CLI runner) on the app of each store backend, and the
audit trail as `audit list --json` shows it."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import Result

from webhook.app import service_of

COLUMNS = ("phone_number", "name", "email", "zip_code", "card_last4", "card_vendor", "card_status")


class Terminal:
    """An operator's shell: `run("customers", "show", "09000001111")` is `flask --app main customers show …`."""

    def __init__(self, app) -> None:
        self.app = app
        self.runner = app.test_cli_runner()

    def run(self, *args: str) -> Result:
        return self.runner.invoke(args=[str(a) for a in args])

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, (result.exit_code, result.output, result.exception)
        return result.output

    def json(self, *args: str):
        return json.loads(self.ok(*args, "--json"))

    def audit(self, *filters: str) -> list[dict]:
        return self.json("audit", "list", *filters)

    @property
    def store(self):
        return service_of(self.app).store


@pytest.fixture
def terminal(app) -> Terminal:
    """The back office on the app of each store backend in turn (SQLite; PostgreSQL when configured)."""
    return Terminal(app)


@pytest.fixture
def sqlite_terminal(make_app) -> Terminal:
    """The back office on SQLite only, for behaviour that does not depend on the database."""
    return Terminal(make_app())


@pytest.fixture
def write_csv(tmp_path):
    """`write_csv(rows, encoding="utf-8", header=COLUMNS, name=…)`: a spreadsheet export on disk; returns its path."""
    count = iter(range(1, 1000))

    def factory(rows, *, encoding: str = "utf-8", header=COLUMNS, name: str | None = None) -> Path:
        out = io.StringIO(newline="")
        writer = csv.writer(out, lineterminator="\r\n")
        if header is not None:
            writer.writerow(header)
        writer.writerows(rows)
        path = tmp_path / (name or f"customers-{next(count)}.csv")
        path.write_bytes(out.getvalue().encode(encoding))
        return path

    return factory
