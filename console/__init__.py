"""The operators' console: the back office as a web application (a Flask blueprint under /console) over the same
service functions as the `flask --app main …` commands. Signed in through IAP, audited, CSRF-protected."""
from __future__ import annotations

from flask import Flask

URL_PREFIX = "/console"


def init_app(app: Flask) -> None:
    """Serve the console on `app` unless CONSOLE_AUTH=off (then /console is a 404)."""
    settings = app.extensions["lockcard"].settings
    if settings.console_auth == "off":
        return  # before the imports: a webhook-only service loads no back office (cold start, issue 15)
    from flask_wtf.csrf import CSRFProtect

    from console.views import bp, configure

    configure(app, settings)
    # Checked by the console's own before_request, not app-wide: POST /webhook carries no CSRF token.
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False
    app.extensions["console_csrf"] = CSRFProtect(app)
    app.register_blueprint(bp, url_prefix=URL_PREFIX)
