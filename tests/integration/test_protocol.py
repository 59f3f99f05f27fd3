"""The CX wire: what a bad body gets, what a good one gets, and that both entry points answer alike."""
import json

import pytest

from tests.conftest import SESSION, cx_request


def test_malformed_json_is_a_400_naming_the_problem(client):
    """Not JSON at all: 400 with a JSON error, no traceback."""
    r = client.post("/webhook", data="{not json", content_type="application/json")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "MALFORMED_REQUEST"


@pytest.mark.parametrize("body, where", [
    ([], "JSON object"), ({"sessionInfo": {}}, "fulfillmentInfo"), ({"fulfillmentInfo": {"tag": 5}}, "fulfillmentInfo.tag"),
])
def test_bodies_that_are_not_webhook_requests_are_400(client, body, where):
    """A JSON body that is not a WebhookRequest names what is wrong."""
    r = client.post("/webhook", json=body)
    assert r.status_code == 400 and where in r.get_json()["error"]["message"]
    assert "Traceback" not in r.get_data(as_text=True)


def test_an_unknown_tag_is_400_listing_the_known_tags(client):
    """A page calling a tag we do not serve is a configuration error the developer sees at once."""
    r = client.post("/webhook", json=cx_request("prebuilt_components_lock_card:freeze"))
    assert r.status_code == 400
    assert "prebuilt_components_lock_card:validate_card" in r.get_json()["error"]["message"]


def test_a_missing_session_is_400(client):
    """Without sessionInfo.session nothing can be authenticated."""
    body = cx_request("prebuilt_components_authentication:verify_user", phone_number="09000001111")
    body["sessionInfo"]["session"] = ""
    assert client.post("/webhook", json=body).status_code == 400


def test_wrong_content_type_is_415(client):
    """Form-encoded bodies are not CX requests."""
    assert client.post("/webhook", data="a=b", content_type="application/x-www-form-urlencoded").status_code == 415


def test_a_missing_parameter_is_a_webhook_error_naming_it(caller):
    """validate_card without the last four: INVALID_PARAMETER, so the flow can hand over."""
    c = caller("09000001111")
    c.authenticate()
    assert c.call("validate_card") == {"transfer_reason": "webhook_error", "webhook_error_code": "INVALID_PARAMETER"}


def test_form_parameters_count_as_the_freshest_values(client, caller):
    """The last four collected on the current page's form win over an older session value."""
    c = caller("09000001111")
    c.authenticate()
    body = cx_request("prebuilt_components_lock_card:validate_card", c.session, form={
        "last_four_digit_of_card_number": 6666.0}, phone_number="09000001111", last_four_digit_of_card_number="9999")
    params = client.post("/webhook", json=body).get_json()["sessionInfo"]["parameters"]
    assert params["card_found"] is True and params["card_vendor"] == "Visa"


def test_full_width_and_double_inputs_work_end_to_end(caller):
    """A caller's full-width digits and CX's doubles reach the right card."""
    c = caller("０９０－００００－１１１１")
    c.authenticate()
    assert c.call("validate_card", last_four_digit_of_card_number="４４４４")["card_vendor"] == "MasterCard"
    assert c.call("validate_card", last_four_digit_of_card_number=6666.0)["card_vendor"] == "Visa"


def test_the_functions_framework_entry_point_serves_the_same_dispatch(make_app, monkeypatch, tmp_path, phone):
    """`functions-framework --target=webhook` answers a CX request exactly as the Flask route does."""
    from functions_framework import create_app as ff_create_app

    monkeypatch.setenv("DATABASE_URL", make_app().extensions["lockcard"].store.url)
    monkeypatch.setenv("NOTIFY_BACKEND", "file")
    monkeypatch.setenv("NOTIFY_FILE", str(phone.path))
    import main

    monkeypatch.setattr(main, "app", main.LazyApp())
    ff_client = ff_create_app(target="webhook", source="main.py").test_client()
    body = cx_request("prebuilt_components_authentication:verify_user", caller_id="+819000001111")
    r = ff_client.post("/", json=body)
    assert r.status_code == 200
    assert r.get_json()["sessionInfo"]["parameters"]["user_found"] is True
    assert ff_client.post("/", json={"fulfillmentInfo": {"tag": "nope"},
                                     "sessionInfo": {"session": SESSION + "x"}}).status_code == 400


def test_importing_main_does_not_import_the_dialogflow_client():
    """The runtime never imports google-cloud-dialogflow-cx (slow to import, only the tests need it)."""
    import subprocess
    import sys

    code = "import sys, main; main.app.get(); print(any(m.startswith('google.cloud.dialogflowcx') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_healthz_reports_a_reachable_store(client):
    """GET /healthz is 200 while the store answers."""
    r = client.get("/healthz")
    assert r.status_code == 200 and r.get_json() == {"status": "ok"}


def test_responses_never_carry_a_traceback_for_an_unexpected_error(client, caller, monkeypatch):
    """A bug in a handler becomes webhook_error/INTERNAL, not a 500 with a stack trace."""
    def boom(params, call):
        raise ZeroDivisionError("secret detail 09000001111")

    c = caller("09000001111")
    from webhook.registry import REGISTRY

    route = REGISTRY["prebuilt_components_account_services:get_card_details"]
    monkeypatch.setitem(REGISTRY._routes, route.tag, type(route)(route.tag, route.params, boom))
    r = client.post("/webhook", json=cx_request(route.tag, c.session, phone_number="09000001111"))
    assert r.status_code == 200
    text = r.get_data(as_text=True)
    assert "INTERNAL" in text and "secret detail" not in text and "Traceback" not in text
    assert json.loads(text)["sessionInfo"]["parameters"]["transfer_reason"] == "webhook_error"


def test_the_sample_requests_in_fixtures_are_valid_cx_requests(client):
    """Every file in fixtures/requests/ routes to a known tag (none is a 400)."""
    from pathlib import Path

    files = sorted((Path(__file__).parents[2] / "fixtures" / "requests").glob("*.json"))
    assert len(files) == 8
    for path in files:
        r = client.post("/webhook", json=json.loads(path.read_text(encoding="utf-8")))
        assert r.status_code == 200, path.name


def test_the_strict_response_check_can_fail():
    """The official-type check used on every response rejects a field CX does not know."""
    from tests.conftest import assert_official_webhook_response

    assert_official_webhook_response('{"sessionInfo": {"parameters": {"a": null}}}')
    with pytest.raises(Exception):
        assert_official_webhook_response('{"sessionInfo": {"parameterz": {}}}')
