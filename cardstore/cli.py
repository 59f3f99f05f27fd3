"""`flask --app main store …`: create or migrate the schema, load the demo fixtures, reset a development store."""
from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from cardstore import fixtures, migrate

store_cli = AppGroup("store", help="The card store: schema and demo data.")


def _store():
    return current_app.extensions["lockcard"].store


@store_cli.command("upgrade")
def upgrade_command() -> None:
    """Migrate DATABASE_URL to the newest schema (creates it on an empty database)."""
    migrate.upgrade(_store().url)
    click.echo("store: schema is up to date")


@store_cli.command("load-fixtures")
def load_fixtures_command() -> None:
    """Load fixtures/customers.json (the seed dialogs' customers); safe to run again."""
    store = _store()
    migrate.upgrade(store.url)
    added = fixtures.load(store, region=current_app.extensions["lockcard"].settings.default_region)
    click.echo(f"store: fixtures loaded ({added['customers']} customers, {added['cards']} cards added)")


@store_cli.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset_command(yes: bool) -> None:
    """Empty every table and load the fixtures again (development and tests only; refused in production)."""
    service = current_app.extensions["lockcard"]
    if service.settings.app_env == "production":
        raise click.ClickException("store reset refuses APP_ENV=production: it deletes every customer and card")
    if not yes:
        click.confirm("Delete every row of the store and load the fixtures again?", abort=True)
    store = service.store
    migrate.upgrade(store.url)
    fixtures.reset(store, region=service.settings.default_region)
    click.echo("store: reset to the fixtures")


def init_app(app: Flask) -> None:
    app.cli.add_command(store_cli)
