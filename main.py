"""Entry points only.

- `main.app`: the WSGI app for gunicorn / Cloud Run (`gunicorn main:app`), built on first request.
- `main.webhook`: the same dispatch as a functions-framework function (`functions-framework --target=webhook`).
- `flask --app main …` finds `create_app` and serves the CLI (`store`, and the back-office commands).
"""
import functions_framework

from webhook.app import LazyApp, create_app, service_of
from webhook.http import serve

app = LazyApp()

__all__ = ["app", "create_app", "webhook"]


@functions_framework.http
def webhook(request):
    return serve(request, service_of(app.get()))
