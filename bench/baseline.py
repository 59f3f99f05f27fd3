"""The baseline: the least a Flask webhook does — parse the CX body as the service does, answer JSON of the same size.

`BENCH_BASELINE_RESPONSES` names a JSON file mapping each tag to the body the real service answered for it
(recorded by the benchmark just before), so both servers read and write the same bytes; only the work
between differs. Served the same way: `gunicorn -w 1 -k sync 'bench.baseline:create_app()'`.
"""
from __future__ import annotations

import json as stdlib_json
import os

from flask import Flask, Response, json, request


def create_app() -> Flask:
    with open(os.environ["BENCH_BASELINE_RESPONSES"], encoding="utf-8") as fh:
        answers = stdlib_json.load(fh)
    app = Flask("baseline")

    @app.post("/webhook")
    def webhook() -> Response:
        payload = json.loads(request.get_data(cache=False))
        body = answers[payload["fulfillmentInfo"]["tag"]]
        return Response(json.dumps(body, ensure_ascii=False), status=200, mimetype="application/json")

    return app
