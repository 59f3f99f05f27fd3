"""Webhook calls: where the request goes (URL, in-process WSGI app, Python callable) and how failures map to
CX's `webhook.error.*` events; flexible-webhook request templates and JSONPath parameter mapping (jsonpath-ng).

Failure → event (the engine falls back to `webhook.error` when no handler takes the specific event):

    timeout (connect or read)            webhook.error.timeout
    HTTP 400                             webhook.error.bad-request
    HTTP 401, 403                        webhook.error.rejected
    HTTP 404, unreachable URL            webhook.error.not-found
    HTTP 502, 503, 504                   webhook.error.unavailable
    other non-2xx, body not a JSON object webhook.error
"""

from __future__ import annotations

import functools
import inspect
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlparse

import requests
from jsonpath_ng import ext as jsonpath_ext

from simulator.conditions import Scope, _REF_RE, _parse_path, render, to_text


class WebhookHTTPError(Exception):
    """Raise from a callable webhook to simulate an HTTP error status."""

    def __init__(self, status: int, body: str = ""):
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


class WebhookFailure(Exception):
    """A webhook call failed; `event` is the CX event it raises."""

    def __init__(self, event: str, detail: str):
        super().__init__(f"{event}: {detail}")
        self.event, self.detail = event, detail


def event_for_status(status: int) -> str:
    if status == 400:
        return "webhook.error.bad-request"
    if status in (401, 403):
        return "webhook.error.rejected"
    if status == 404:
        return "webhook.error.not-found"
    if status in (502, 503, 504):
        return "webhook.error.unavailable"
    return "webhook.error"


@dataclass
class WebhookCall:
    """One call as the session records it (for --verbose and for tests)."""

    webhook: str
    tag: str
    request: Any
    response: Any = None
    status: int | None = None
    error: str | None = None
    elapsed_s: float = 0.0
    extra: dict = field(default_factory=dict)


def _is_wsgi(obj: Any) -> bool:
    if hasattr(obj, "wsgi_app"):
        return True
    try:
        params = [p for p in inspect.signature(obj).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    except (TypeError, ValueError):
        return False
    return len(params) == 2


class Transport:
    """Sends one webhook request to the configured destination and returns the parsed JSON response."""

    def __init__(self, target: Any = None, path: str | None = None):
        self.target, self.path = target, path

    def _destination(self, webhook_name: str) -> Any:
        t = self.target
        if isinstance(t, dict):
            return t.get(webhook_name, t.get("*"))
        return t

    def send(self, webhook_name: str, uri: str, method: str, body: Any, headers: dict[str, str],
             timeout_s: float) -> tuple[int, Any]:
        dest = self._destination(webhook_name)
        if dest is None or isinstance(dest, str):
            return self._http(dest or uri, method, body, headers, timeout_s)
        if _is_wsgi(dest):
            return self._wsgi(dest, uri, method, body, headers)
        if callable(dest):
            return self._callable(dest, body)
        raise TypeError(f"webhook destination must be a URL, a WSGI app or a callable, not {type(dest).__name__}")

    @staticmethod
    def _decode(status: int, text: str) -> tuple[int, Any]:
        if not 200 <= status < 300:
            raise WebhookFailure(event_for_status(status), f"HTTP {status}: {text[:200]}")
        try:
            data = json.loads(text) if text.strip() else {}
        except ValueError:
            raise WebhookFailure("webhook.error", f"HTTP {status} with a body that is not JSON: {text[:200]!r}")
        return status, data

    def _http(self, url: str, method: str, body: Any, headers: dict, timeout_s: float) -> tuple[int, Any]:
        try:
            resp = requests.request(method, url, json=body, headers=headers, timeout=timeout_s)
        except requests.Timeout as exc:
            raise WebhookFailure("webhook.error.timeout", f"{url}: {exc}") from None
        except (requests.ConnectionError, requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise WebhookFailure("webhook.error.not-found", f"{url} unreachable: {exc}") from None
        return self._decode(resp.status_code, resp.text)

    def _wsgi(self, app: Any, uri: str, method: str, body: Any, headers: dict) -> tuple[int, Any]:
        from werkzeug.test import Client

        path = self.path or urlparse(uri).path or "/webhook"
        if path == "/":
            path = self.path or "/webhook"
        resp = Client(app).open(path, method=method, json=body, headers=headers)
        return self._decode(resp.status_code, resp.get_data(as_text=True))

    @staticmethod
    def _callable(fn: Callable, body: Any) -> tuple[int, Any]:
        try:
            result = fn(json.loads(json.dumps(body)))
        except WebhookHTTPError as exc:
            raise WebhookFailure(event_for_status(exc.status), f"HTTP {exc.status}: {exc.body}") from None
        except TimeoutError as exc:
            raise WebhookFailure("webhook.error.timeout", f"callable timed out: {exc}") from None
        except ConnectionError as exc:
            raise WebhookFailure("webhook.error.not-found", f"callable unreachable: {exc}") from None
        if isinstance(result, tuple):
            result, status = result
            if not 200 <= status < 300:
                raise WebhookFailure(event_for_status(status), f"HTTP {status}")
        if not isinstance(result, dict):
            raise WebhookFailure("webhook.error", f"callable returned {type(result).__name__}, not a dict")
        return 200, json.loads(json.dumps(result))


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


# ------------------------------------------------------------------------------------ flexible webhooks

_QUOTED_REF_RE = re.compile(r'"(\$(?:session\.params|page\.params|intent\.params|flow|request)'
                            r'(?:\.[A-Za-z_][A-Za-z0-9_\-]*|\[\d+\])+)"')


def render_request_body(template: str, scope: Scope) -> Any:
    """A flexible webhook's requestBody: `"$ref"` becomes the JSON value, refs inside strings become text."""

    def whole(m: re.Match) -> str:
        ref = _REF_RE.fullmatch(m.group(1))
        return json.dumps(scope.lookup(ref.group(1), _parse_path(ref.group(2))), ensure_ascii=False)

    text = _QUOTED_REF_RE.sub(whole, template)

    def inline(m: re.Match) -> str:
        value = to_text(scope.lookup(m.group(1), _parse_path(m.group(2))))
        return json.dumps(value, ensure_ascii=False)[1:-1]

    text = _REF_RE.sub(lambda m: inline(m) if m.group(2) else m.group(0), text)
    text = render(text, scope) if "$sys.func." in text else text
    try:
        return json.loads(text)
    except ValueError as exc:
        raise WebhookFailure("webhook.error", f"requestBody is not JSON after substitution: {exc}") from None


# ----------------------------------------------------------------------------------- JSONPath (jsonpath-ng)

# A path with a filter or a wildcard names a set of values (a list); a plain path names one value or none.
_MANY = re.compile(r"\[\s*\?|\*")


@functools.lru_cache(maxsize=256)
def _compiled(path: str):
    try:
        return jsonpath_ext.parse(path)
    except Exception as exc:  # jsonpath-ng raises several types; the message is what matters
        raise ValueError(f"JSONPath {path!r}: {exc}") from None


def jsonpath(path: str, data: Any) -> Any:
    """Evaluate a parameterMapping JSONPath with jsonpath-ng's extended parser (filters with && and ||)."""
    if not path.startswith("$"):
        raise ValueError(f"JSONPath must start with $: {path!r}")
    values = [match.value for match in _compiled(path).find(data)]
    if _MANY.search(path):
        return values
    return values[0] if values else None
