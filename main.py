"""Entry points only.

- `main.app`: the WSGI app for gunicorn / Cloud Run (`gunicorn main:app`), built on first request.
- `main.webhook`: the same dispatch as a functions-framework function (`functions-framework --target=webhook`);
  it receives every path: /flexible/<tag> goes to the flexible edge, anything else to the standard webhook.
- `flask --app main …` finds `create_app` and serves the CLI (`store`, and the back-office commands).

Each name is resolved on first use (a module `__getattr__`, PEP 562), so `import main` alone costs about what
`import flask` does: Flask, SQLAlchemy, the pydantic models and functions_framework load when gunicorn, flask or
functions-framework first ask for `app`, `create_app` or `webhook`. `webhook` is then decorated with
`@functions_framework.http` as usual — the decorator only records the name as an HTTP function in the
framework's registry, and the framework reads that registry after it has looked the target up.
"""
from __future__ import annotations

import functools

__all__ = ["app", "create_app", "webhook"]
_FROM_APP_FACTORY = ("create_app", "LazyApp", "service_of")


def __getattr__(name: str):
    if name == "app":
        return _lazy_app()
    if name == "webhook":
        return _webhook_function()
    if name in _FROM_APP_FACTORY:
        from webhook import app as factory

        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, *_FROM_APP_FACTORY})


@functools.cache
def _lazy_app():
    from webhook.app import LazyApp

    return LazyApp()


def _current_app():
    # `main.app` as it is now: the lazy default, or whatever a caller (a test) assigned to it.
    return globals().get("app") or _lazy_app()


@functools.cache
def _webhook_function():
    import functions_framework

    from webhook.app import Misconfigured, misconfigured_response, service_of
    from webhook.http import serve_any_path

    @functions_framework.http
    def webhook(request):
        try:
            service = service_of(_current_app().get())
        except Misconfigured as exc:
            return misconfigured_response(exc)
        return serve_any_path(request, service)

    webhook.__qualname__ = "webhook"
    return webhook
