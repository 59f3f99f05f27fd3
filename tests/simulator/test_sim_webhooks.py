"""Webhook calls over real HTTP, in-process WSGI and callables; error mapping; the request CX sends; flexible webhooks."""

import json
import socket
import threading
import time

import pytest
from flask import Flask, request
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from cxbuild import fulfillment, handler, param, route
from simulator import Session, WebhookHTTPError
from simulator.webhooks import jsonpath

EVENTS = ["webhook.error.timeout", "webhook.error.bad-request", "webhook.error.rejected", "webhook.error.not-found",
          "webhook.error.unavailable", "webhook.error"]


@Request.application
def bank_server(req: Request) -> Response:
    """A tiny bank: /ok answers, /status/N fails with N, /slow is too slow, /notjson answers text, /echo echoes."""
    path = req.path
    if path.startswith("/status/"):
        return Response("nope", status=int(path.rsplit("/", 1)[1]))
    if path == "/slow":
        time.sleep(0.6)
        return Response("{}", mimetype="application/json")
    if path == "/notjson":
        return Response("<html>hello</html>", mimetype="text/html")
    body = req.get_json()
    if path == "/echo":
        return Response(json.dumps({"result": {"received": body}}), mimetype="application/json")
    answer = {"sessionInfo": {"parameters": {"card_found": True, "zip_code": "12345"}},
              "fulfillmentResponse": {"messages": [{"text": {"text": ["確認しました。"]}}]}}
    return Response(json.dumps(answer), mimetype="application/json")


@pytest.fixture(scope="module")
def server_url():
    """The bank server on 127.0.0.1 at a free port, in a thread, for this module."""
    server = make_server("127.0.0.1", 0, bank_server, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(5)


def _agent(build_agent, handlers=EVENTS, uri="https://bank.example/webhook", timeout=None, **webhook):
    """One page that calls the webhook on entry; a handler per event records which one fired."""
    spec = {"genericWebService": {"uri": uri, **webhook}, "timeout": timeout or {"seconds": 2}}
    return build_agent(
        flows={"Default Start Flow": {
            "routes": [route(condition="true", page="validate")],
            "pages": {
                "validate": {
                    "entry": fulfillment(say="確認します。", webhook="bank", tag="validate_card"),
                    "handlers": [handler(e, set={"outcome": e}, page="failed") for e in handlers],
                    "routes": [route(condition="$session.params.card_found = true", page="ok")],
                },
                "failed": {"entry": fulfillment(say="エラーです。")},
                "ok": {"entry": fulfillment(say="OK")},
            }}},
        webhooks={"bank": spec},
    )


def test_http_webhook_success(build_agent, server_url):
    """A webhook answering over HTTP sets parameters and adds its message after the static one."""
    t = Session(_agent(build_agent), webhook=f"{server_url}/ok").send()
    assert t.messages == ["確認します。", "確認しました。", "OK"]
    assert t.params["zip_code"] == "12345" and t.webhook_calls[0].status == 200


@pytest.mark.parametrize(
    "path, event",
    [
        ("/status/400", "webhook.error.bad-request"),
        ("/status/401", "webhook.error.rejected"),
        ("/status/403", "webhook.error.rejected"),
        ("/status/404", "webhook.error.not-found"),
        ("/status/503", "webhook.error.unavailable"),
        ("/status/502", "webhook.error.unavailable"),
        ("/status/500", "webhook.error"),
        ("/status/418", "webhook.error"),
        ("/notjson", "webhook.error"),
    ],
)
def test_http_errors_raise_the_matching_event(build_agent, server_url, path, event):
    """Each HTTP failure raises its CX event, handled by the page."""
    t = Session(_agent(build_agent), webhook=server_url + path).send()
    assert t.params["outcome"] == event and t.page == "failed"
    assert t.messages == ["確認します。", "エラーです。"]


def test_timeout_raises_webhook_error_timeout(build_agent, server_url):
    """A webhook slower than the webhook's timeout raises webhook.error.timeout."""
    agent = _agent(build_agent, timeout={"nanos": 200_000_000})
    t = Session(agent, webhook=f"{server_url}/slow").send()
    assert t.params["outcome"] == "webhook.error.timeout"


def test_unreachable_url_raises_not_found(build_agent):
    """Nothing listening at the URL raises webhook.error.not-found."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = Session(_agent(build_agent), webhook=f"http://127.0.0.1:{port}/webhook").send()
    assert t.params["outcome"] == "webhook.error.not-found"


def test_agent_uri_is_used_when_no_destination_is_given(build_agent, server_url):
    """Without webhook=, the call goes to the URI in the agent's webhook definition."""
    t = Session(_agent(build_agent, uri=f"{server_url}/ok")).send()
    assert t.page == "ok"


def test_generic_handler_catches_specific_errors(build_agent, server_url):
    """Without a handler for the specific event, webhook.error handles it."""
    agent = _agent(build_agent, handlers=["webhook.error"])
    t = Session(agent, webhook=f"{server_url}/status/404").send()
    assert t.params["outcome"] == "webhook.error" and t.events == ["webhook.error"]


def test_callable_can_fail_like_http(build_agent):
    """A callable raising WebhookHTTPError(403) is rejected, as an HTTP 403 would be."""
    def refuse(req):
        raise WebhookHTTPError(403, "forbidden")

    assert Session(_agent(build_agent), webhook=refuse).send().params["outcome"] == "webhook.error.rejected"


def test_webhook_dict_routes_per_webhook_name(build_agent, server_url):
    """webhook={name: destination} picks the destination by the webhook's display name."""
    t = Session(_agent(build_agent), webhook={"bank": f"{server_url}/status/503"}).send()
    assert t.params["outcome"] == "webhook.error.unavailable"


# -------------------------------------------------------------------------- the request, via a WSGI app


@pytest.fixture
def recording_app():
    """A Flask app at POST /webhook recording the requests; its answers are set per test."""
    app = Flask("bank")
    app.requests, app.answers = [], []

    @app.post("/webhook")
    def hook():
        app.requests.append(request.get_json())
        return app.answers.pop(0) if app.answers else {}

    return app


def _form_agent(build_agent):
    return build_agent(
        intents={"lock_card": {"ja": ["カードを止めたい"], "en": ["lock my card"]}},
        entities={"card_last4": {"kind": "KIND_REGEXP", "ja": {"x": [r"\b\d{4}\b"]}, "en": {"x": [r"\b\d{4}\b"]}}},
        flows={"Default Start Flow": {
            "routes": [route(intent="lock_card", page="card")],
            "pages": {
                "card": {
                    "form": [param("last_four_digit_of_card_number", "@card_last4", prompt="下4桁は？"),
                             param("note", "@sys.any", required=False)],
                    "routes": [route(condition='$page.params.status = "FINAL"', webhook="bank",
                                     tag="prebuilt_components_lock_card:validate_card")],
                },
                "elsewhere": {"entry": fulfillment(say="別のページです。")},
            }}},
        webhooks={"bank": {"genericWebService": {"uri": "https://bank.example/webhook"}}},
    )


def test_standard_request_looks_like_cx(build_agent, recording_app):
    """The WebhookRequest carries session, page, form, tag, text, language, payload, and numbers as doubles."""
    s = Session(_form_agent(build_agent), webhook=recording_app, session_id="abc123",
                session_params={"auth_level": 1, "card_count": 4}, caller_id="+819000001111")
    s.send(text="カードを止めたい")
    s.send(text="4444です")
    req = recording_app.requests[0]
    assert req["sessionInfo"]["session"] == "projects/sim/locations/global/agents/sim/sessions/abc123"
    assert req["sessionInfo"]["parameters"] == {"auth_level": 1.0, "card_count": 4.0,
                                                "last_four_digit_of_card_number": "4444"}
    assert json.dumps(req["sessionInfo"]["parameters"]["auth_level"]) == "1.0"
    assert req["fulfillmentInfo"] == {"tag": "prebuilt_components_lock_card:validate_card"}
    assert req["pageInfo"]["displayName"] == "card"
    assert req["pageInfo"]["currentPage"].endswith("/flows/id-Default Start Flow/pages/id-card")
    assert req["pageInfo"]["formInfo"]["parameterInfo"] == [
        {"displayName": "last_four_digit_of_card_number", "required": True, "state": "FILLED", "value": "4444",
         "justCollected": True},
        {"displayName": "note", "required": False, "state": "EMPTY"},
    ]
    assert req["text"] == "4444です" and req["languageCode"] == "ja"
    assert req["payload"] == {"telephony": {"caller_id": "+819000001111"}}
    assert req["detectIntentResponseId"]


def test_intent_info_is_sent_when_an_intent_matched(build_agent, recording_app):
    """A webhook called from an intent route receives intentInfo with the matched intent."""
    agent = build_agent(
        intents={"lock_card": {"ja": ["カードを止めたい"]}},
        flows={"Default Start Flow": {"routes": [route(intent="lock_card", webhook="bank", tag="t")]}},
        webhooks={"bank": {"genericWebService": {"uri": "https://bank.example/webhook"}}})
    Session(agent, webhook=recording_app).send(text="カードを止めたい")
    info = recording_app.requests[0]["intentInfo"]
    assert info["displayName"] == "lock_card" and info["lastMatchedIntent"].endswith("/intents/id-lock_card")


def test_response_null_removes_parameter_and_replace_drops_static_messages(build_agent, recording_app):
    """A null parameter is removed; mergeBehavior REPLACE replaces the fulfillment's static messages."""
    agent = build_agent(
        flows={"Default Start Flow": {"routes": [route(condition="true", page="p")],
                                      "pages": {"p": {"entry": fulfillment(say="静的", webhook="bank", tag="t")}}}},
        webhooks={"bank": {"genericWebService": {"uri": "https://bank.example/webhook"}}})
    recording_app.answers.append({"sessionInfo": {"parameters": {"stale": None, "fresh": 1}},
                                  "fulfillmentResponse": {"messages": [{"text": {"text": ["動的"]}}],
                                                          "mergeBehavior": "REPLACE"}})
    t = Session(agent, webhook=recording_app, session_params={"stale": "x"}).send()
    assert t.messages == ["動的"] and "stale" not in t.params and t.params["fresh"] == 1


def test_response_target_page_overrides_the_route(build_agent, recording_app):
    """A targetPage in the WebhookResponse moves the session there."""
    recording_app.answers.append({"targetPage": "projects/x/locations/global/agents/y/flows/z/pages/id-elsewhere"})
    s = Session(_form_agent(build_agent), webhook=recording_app)
    s.send(text="カードを止めたい")
    t = s.send(text="4444")
    assert t.page == "elsewhere" and t.messages == ["別のページです。"]


def test_webhooks_can_be_disabled(build_agent, recording_app):
    """With webhooks disabled (a test case's isWebhookEnabled false) nothing is called."""
    s = Session(_agent(build_agent), webhook=recording_app)
    s.webhooks_enabled = False
    t = s.send()
    assert recording_app.requests == [] and t.page == "validate"


# ------------------------------------------------------------------------------------ flexible webhooks


def test_flexible_webhook_template_and_parameter_mapping(build_agent, server_url):
    """A flexible webhook sends its requestBody with references filled and maps the answer with JSONPath."""
    agent = build_agent(
        flows={"Default Start Flow": {
            "routes": [route(condition="true", page="p", set={"$flow.addr": {"lines": ["1-2-3"]}, "name": "Hanako"})],
            "pages": {"p": {"entry": fulfillment(webhook="geo", tag="")}}}},
        webhooks={"geo": {"genericWebService": {
            "uri": f"{server_url}/echo", "webhookType": "FLEXIBLE", "httpMethod": "POST",
            "requestBody": '{"address": "$flow.addr", "greeting": "hello $session.params.name"}',
            "parameterMapping": {"$flow.lines": "$.result.received.address.lines", "greeting": "$.result.received.greeting"},
        }}})
    s = Session(agent)
    t = s.send()
    assert t.webhook_calls[0].request == {"address": {"lines": ["1-2-3"]}, "greeting": "hello Hanako"}
    assert s.flow_params["lines"] == ["1-2-3"] and t.params["greeting"] == "hello Hanako"


DOC = {"result": {"address": {
    "addressComponents": [
        {"componentType": "route", "componentName": {"text": "Main St"}, "confirmationLevel": "CONFIRMED"},
        {"componentType": "locality", "componentName": {"text": "Springfield"},
         "confirmationLevel": "UNCONFIRMED_BUT_PLAUSIBLE", "inferred": True},
        {"componentType": "country", "componentName": {"text": "USA"}, "confirmationLevel": "CONFIRMED"},
    ],
    "missingComponentTypes": ["postal_code"]}}}


@pytest.mark.parametrize(
    "path, expected",
    [
        ("$.result.address.missingComponentTypes", ["postal_code"]),
        ("$.result.address.addressComponents[0].componentType", "route"),
        ("$.result.address.addressComponents[?(@.componentType == 'locality')].componentName.text", ["Springfield"]),
        ("$.result.address.addressComponents[?(@.confirmationLevel == 'CONFIRMED' && ((@.componentType == 'country')"
         " || (@.componentType == 'route')))].componentType", ["route", "country"]),
        ("$.result.address.addressComponents[?(@.inferred==true)].componentType", ["locality"]),
        ("$.result.address.addressComponents[*].componentName.text", ["Main St", "Springfield", "USA"]),
        ("$.result.nothing", None),
        ("$['result']['address']['missingComponentTypes'][0]", "postal_code"),
    ],
)
def test_jsonpath(path, expected):
    """The JSONPath subset of parameterMapping, filters with && and || included."""
    assert jsonpath(path, DOC) == expected


def test_request_headers_and_basic_auth_are_sent(build_agent, recording_app):
    """The webhook's requestHeaders and basic-auth credentials reach the service, as CX sends them."""
    from flask import request as flask_request

    seen = []
    recording_app.before_request(lambda: seen.append(dict(flask_request.headers)))
    agent = build_agent(
        flows={"Default Start Flow": {"routes": [route(condition="true", webhook="bank", tag="t")]}},
        webhooks={"bank": {"genericWebService": {"uri": "https://bank.example/webhook", "username": "cx",
                                                 "password": "s3cret",
                                                 "requestHeaders": {"X-Api-Key": "k-$session.params.tenant"}}}})
    Session(agent, webhook=recording_app, session_params={"tenant": "t1"}).send()
    assert seen[0]["X-Api-Key"] == "k-t1"
    assert seen[0]["Authorization"] == "Basic Y3g6czNjcmV0"
