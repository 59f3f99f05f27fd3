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
            "+ ['store' in a.cli.commands])")
    assert run_python(code, tmp_path) == "['/flexible/<path:tag>', '/healthz', '/healthz/outbox', '/webhook', True]"  # /simulator: tests/simulator


def test_an_unknown_name_in_main_is_an_attribute_error(tmp_path):
    """A name main does not define raises AttributeError, so tools probing for optional names move on."""
    code = "import main; print(hasattr(main, 'application'), hasattr(main, 'make_app'))"
    assert run_python(code, tmp_path) == "False False"
