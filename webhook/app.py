"""The Flask application factory, and the lazily built service both entry points share."""
from __future__ import annotations

import gc
import importlib
import logging
import os
import threading
from pathlib import Path

from flask import Flask
from flask.cli import AppGroup
from pydantic import ValidationError

from cardstore.errors import StoreUnavailable
from cardstore.uow import Store
from settings import ProductionRefused, Settings
from webhook import logs
from webhook.dispatch import Service
from webhook.http import MAX_BODY_BYTES, WebhookEdge, authenticator, flexible_handle, json_response, respond


log = logging.getLogger("lockcard.webhook")


def build_service(settings: Settings, instance_path: str | os.PathLike[str]) -> Service:
    """The service for these settings; the default store is an SQLite file in the instance folder."""
    url = settings.database_url
    if url is None:
        Path(instance_path).mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{Path(instance_path) / 'lockcard.sqlite3'}"
    return Service(settings, Store(url, pool_size=settings.db_pool_size))


def create_app(settings: Settings | None = None, **overrides: object) -> Flask:
    """A Flask app serving POST /webhook, POST /flexible/<tag> and GET /healthz, with the `flask store …` commands.

    `settings` defaults to the environment; `overrides` (snake_case setting names) replace single values.
    Settings that are unsafe for `APP_ENV=production` stop it here, with the reason (settings.ProductionRefused).
    """
    app = Flask("lockcard", instance_path=str(Path(__file__).resolve().parent.parent / "instance"))
    app.cli = LazyCommands(app)  # first: every command registered below lands on it
    # Werkzeug stops reading a body (chunked too) past this; webhook.http.read_bounded holds the same line for the
    # functions-framework app, whose Flask configuration is not ours.
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    if settings is None:
        settings = Settings.from_env(**overrides)
    elif overrides:
        # Validated again, so an override cannot slip past the production check.
        settings = Settings.model_validate({**settings.model_dump(), **overrides})
    logs.configure()
    service = build_service(settings, app.instance_path)
    app.extensions["lockcard"] = service
    # POST /webhook and /flexible/<tag> are answered in front of Flask (webhook.http.WebhookEdge); the routes below
    # answer them only where the edge is not in front (functions-framework builds its own Flask app).
    app.wsgi_app = WebhookEdge(service, app.wsgi_app)  # type: ignore[method-assign]
    authenticator(service)  # built now: a broken auth configuration fails at start-up, not on the first call

    @app.post("/webhook")
    def webhook_route():
        from flask import request

        return respond(request, service)

    @app.post("/flexible/<path:tag>")
    def flexible_route(tag: str):
        from flask import request

        return respond(request, service, flexible_handle(service, tag))

    @app.get("/healthz")
    def healthz():
        try:
            service.store.ping()
        except StoreUnavailable as exc:
            return json_response(503, {"status": "unavailable", "store": str(exc)})
        return json_response(200, {"status": "ok"})

    @app.get("/healthz/outbox")
    def healthz_outbox():
        # For an uptime check / alert, not a liveness probe: a stuck relay must page someone, not restart the webhook.
        from notify.relay import backlog_health

        try:
            fine, report = backlog_health(service.store, service.settings)
        except StoreUnavailable as exc:
            return json_response(503, {"status": "unavailable", "store": str(exc)})
        return json_response(200 if fine else 503, {"status": "ok" if fine else "backlog", "outbox": report})

    if settings.serves_simulator_page:
        from simulator import web as simulator_web

        simulator_web.init_app(app)  # /simulator: talk to the agent against this app (development)
    import console

    console.init_app(app)  # the operators' console under /console (unless CONSOLE_AUTH=off)
    return app


# `flask --app main <group> …`: the module registering a group (its `init_app`) — and what it imports: alembic,
# mako, the back office — loads when the CLI asks for that group, never to serve a request.
CLI_GROUPS = {"store": "cardstore.cli", "customers": "backoffice.cli", "handoffs": "backoffice.cli",
              "outbox": "backoffice.cli", "audit": "backoffice.cli"}


class LazyCommands(AppGroup):
    """The app's CLI group: the modules of CLI_GROUPS are imported, and their `init_app(app)` run, on first use."""

    def __init__(self, app: Flask) -> None:
        super().__init__(app.cli.name)
        self._app = app

    def list_commands(self, ctx) -> list[str]:
        return sorted({*super().list_commands(ctx), *CLI_GROUPS})

    def get_command(self, ctx, name: str):
        if name in CLI_GROUPS and name not in self.commands:
            importlib.import_module(CLI_GROUPS[name]).init_app(self._app)
        return super().get_command(ctx, name)


def service_of(app: Flask) -> Service:
    return app.extensions["lockcard"]


class Misconfigured(Exception):
    """The settings do not let the service start. The message names settings, never their values."""


def settings_problem(exc: Exception) -> str:
    """What is wrong with the settings, without echoing a value (pydantic's text quotes the input)."""
    if isinstance(exc, ValidationError):
        parts = {".".join(map(str, e["loc"])).upper() or e["msg"] for e in exc.errors()}
        return "invalid settings: " + ", ".join(sorted(parts))
    return str(exc)


def misconfigured_response(exc: Misconfigured):
    """503 for every request while the service cannot start: CX hands over, the log says why."""
    logs.configure()
    log.critical("service misconfigured: %s", exc)
    return json_response(503, {"error": {"code": "MISCONFIGURED",
                                         "message": "the service is not configured to start; see its log"}})


class LazyApp:
    """A WSGI app built on its first request, so importing `main` does no work (gunicorn: `main:app`).

    Settings that refuse to start (production checks, invalid values) answer 503 with a JSON error rather than a
    500; `gunicorn.conf.py` runs the same check before gunicorn starts, so a deploy fails early.
    """

    def __init__(self) -> None:
        self._app: Flask | None = None
        self._lock = threading.Lock()

    def get(self) -> Flask:
        """The app, built once; Misconfigured (tried again on the next call) if the settings refuse."""
        if self._app is None:
            with self._lock:
                if self._app is None:
                    try:
                        app = create_app()
                    except (ProductionRefused, ValidationError) as exc:
                        raise Misconfigured(settings_problem(exc)) from None
                    # What start-up built (modules, SQLAlchemy's metadata, pydantic's validators: ~110k objects)
                    # lives as long as the process: out of the collector's sight, a full collection no longer
                    # walks it — a pause of ~65 ms every few thousand calls, right in a caller's turn, otherwise.
                    gc.freeze()
                    self._app = app
        return self._app

    def __call__(self, environ, start_response):
        try:
            app = self.get()
        except Misconfigured as exc:
            return misconfigured_response(exc)(environ, start_response)
        return app(environ, start_response)
