"""`main` loads nothing until asked, and every entry point still finds what it looks for (gunicorn, flask,
functions-framework)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("flask", "werkzeug", "sqlalchemy", "pydantic", "functions_framework", "phonenumbers")
# What only the CLI uses (migrations, the back-office commands): serving a request must not import any of it.
CLI_ONLY = ("alembic", "mako", "pygments", "backoffice", "cardstore.cli", "cardstore.migrate")
FIRST_REQUEST = """
import io, json, sys
import main
raw = json.dumps({"fulfillmentInfo": {"tag": "prebuilt_components_authentication:verify_user"},
                  "sessionInfo": {"session": "projects/p/locations/global/agents/a/sessions/s",
                                  "parameters": {"phone_number": "09000001111"}}}).encode()
environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/webhook", "SCRIPT_NAME": "", "QUERY_STRING": "",
           "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
           "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(raw)), "wsgi.input": io.BytesIO(raw),
           "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": False,
           "wsgi.multiprocess": False, "wsgi.run_once": False, "wsgi.version": (1, 0)}
status = []
b"".join(main.app(environ, lambda s, h, exc_info=None: status.append(s)))
"""


def run_python(code: str, tmp_path: Path) -> str:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'store.sqlite3'}", "NOTIFY_BACKEND": "console"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_importing_main_loads_no_framework(tmp_path):
    """`import main` alone imports none of Flask, SQLAlchemy, pydantic or functions_framework."""
    code = f"import sys, main; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    assert run_python(code, tmp_path) == "[]"


def test_main_webhook_is_registered_as_an_http_function(tmp_path):
    """Asking for `main.webhook` decorates it with @functions_framework.http, as the framework expects."""
    code = ("import json, main, functions_framework._function_registry as r; w = main.webhook; "
            "print(json.dumps([w.__name__, r.REGISTRY_MAP.get('webhook'), main.webhook is w]))")
    assert json.loads(run_python(code, tmp_path)) == ["webhook", "http", True]


def test_gunicorn_finds_a_wsgi_app_in_main(tmp_path):
    """`gunicorn main:app` gets a callable that is built into the Flask app on first use."""
    code = ("from gunicorn.util import import_app; a = import_app('main:app'); "
            "print(callable(a) and a.get().url_map.bind('x').match('/webhook', 'POST')[0])")
    assert run_python(code, tmp_path) == "webhook_route"


def test_flask_cli_finds_the_app_factory_in_main(tmp_path):
    """`flask --app main` builds the service through create_app, with the store commands registered."""
    code = ("from flask.cli import ScriptInfo; a = ScriptInfo(app_import_path='main').load_app(); "
            "print(sorted(r.rule for r in a.url_map.iter_rules() if not r.rule.startswith(('/static/', '/simulator'))) "
            "+ [a.cli.get_command(None, 'store') is not None])")
    assert run_python(code, tmp_path) == "['/flexible/<path:tag>', '/healthz', '/healthz/outbox', '/webhook', True]"  # /simulator: tests/simulator


def test_an_unknown_name_in_main_is_an_attribute_error(tmp_path):
    """A name main does not define raises AttributeError, so tools probing for optional names move on."""
    code = "import main; print(hasattr(main, 'application'), hasattr(main, 'make_app'))"
    assert run_python(code, tmp_path) == "False False"


def test_serving_a_request_imports_nothing_only_the_cli_uses(tmp_path):
    """gunicorn's `main:app` answers its first request without loading alembic, mako, pygments or the back-office
    commands: those load when `flask --app main …` runs one (cold start)."""
    code = FIRST_REQUEST + (f"loaded = sorted(m for m in sys.modules if any(m == c or m.startswith(c + '.') "
                            f"for c in {CLI_ONLY!r})); print(json.dumps([status[0], loaded]))")
    assert json.loads(run_python(code, tmp_path)) == ["200 OK", []]


def test_what_start_up_built_is_out_of_the_collectors_sight(tmp_path):
    """After `main.app` built the app, a full collection walks only what requests made since: start-up's objects
    (modules, metadata, validators) are frozen, not rescanned in some caller's turn."""
    code = FIRST_REQUEST + ("import gc; tracked = len(gc.get_objects()); frozen = gc.get_freeze_count(); "
                            "print(json.dumps([status[0], frozen, tracked]))")
    status, frozen, tracked = json.loads(run_python(code, tmp_path))
    assert status == "200 OK"
    assert frozen > 20_000 and tracked < frozen / 5, (frozen, tracked)
