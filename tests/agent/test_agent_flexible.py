"""`python -m agentpack build --webhooks flexible`: one FLEXIBLE webhook per call, named as its tag, that parses
strictly with the official v3 types, sends only parameters set before the call, maps every answer field back, and
agrees with the service's flexible endpoints; the flows call those webhooks by name."""
from __future__ import annotations

import json
import typing

import pytest

from agentpack import WEBHOOK_DISPLAY_NAME, build
from agentpack.__main__ import main
from agentpack.flexible import FLEXIBLE_CALLS, SEED_WEBHOOKS, webhook_file_name
from agentpack.settings import PackSettings
from agentpack.validate import (fulfillments, json_files, parse_strictly, read_agent, to_api_json,
                                validate_agent)

TAGS = {
    "prebuilt_components_account_services:get_card_details", "prebuilt_components_lock_card:validate_card",
    "prebuilt_components_lock_card:lock_card_ticket_number", "prebuilt_components_lock_card:reissue_card_number",
    "prebuilt_components_authentication:verify_user", "prebuilt_components_authentication:send_otp",
    "prebuilt_components_authentication:verify_otp", "prebuilt_components_lock_card:request_reactivation",
}


@pytest.fixture(scope="module")
def flexible_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("flexible") / "agent"
    build(out, PackSettings(agent_webhook_url="https://lockcard-abc-an.a.run.app/webhook"), webhooks="flexible")
    return out


def hooks(root) -> dict[str, dict]:
    return read_agent(root).webhooks


def test_one_flexible_webhook_per_call_named_as_its_tag(flexible_build):
    """The seed's four names, the three authentication steps and request_reactivation; no standard webhook."""
    assert set(hooks(flexible_build)) == TAGS
    assert set(SEED_WEBHOOKS) == {
        "prebuilt_components_account_services:get_card_details", "prebuilt_components_lock_card:validate_card",
        "prebuilt_components_lock_card:lock_card_ticket_number", "prebuilt_components_lock_card:reissue_card_number"}
    files = sorted(p.name for p in (flexible_build / "webhooks").iterdir())
    assert files == sorted(webhook_file_name(t) for t in TAGS)
    assert "prebuilt_components_lock_card%3avalidate_card.json" in files  # as the console exports Google's


def test_every_file_of_the_flexible_build_parses_strictly(flexible_build):
    """Every file, each Webhook included, parses with the official v3 types with unknown fields refused."""
    problems = [p for path in json_files(flexible_build) for p in parse_strictly(path, flexible_build)]
    assert problems == []
    from google.cloud import dialogflowcx_v3 as cx

    for name, hook in hooks(flexible_build).items():
        parsed = cx.Webhook.from_json(json.dumps(to_api_json(hook)), ignore_unknown_fields=False)
        service = parsed.generic_web_service
        assert service.webhook_type == cx.Webhook.GenericWebService.WebhookType.FLEXIBLE
        assert service.http_method == cx.Webhook.GenericWebService.HttpMethod.POST
        assert service.service_agent_auth == cx.Webhook.GenericWebService.ServiceAgentAuth.ID_TOKEN
        assert service.uri == f"https://lockcard-abc-an.a.run.app/flexible/{name}"
        assert json.loads(service.request_body)  # a JSON object once CX fills in the references


def test_request_bodies_and_mappings_follow_the_table(flexible_build):
    """Each body is a JSON object of quoted parameter references; every answer field is mapped by `$.field` onto
    the session parameter of that name."""
    for call in FLEXIBLE_CALLS:
        service = hooks(flexible_build)[call.tag]["genericWebService"]
        body = json.loads(service["requestBody"])
        assert body == dict(call.body)
        assert all(v.startswith(("$session.params.", "$flow.")) for v in body.values())
        assert service["parameterMapping"] == [{"key": k, "value": f"$.{k}"} for k in call.outputs]
    token = {c.tag for c in FLEXIBLE_CALLS if ("auth_token", "$session.params.auth_token") in c.body}
    assert token == TAGS - {t for t in TAGS if t.startswith("prebuilt_components_authentication:")}
    verify_otp = next(c for c in FLEXIBLE_CALLS if c.tag.endswith(":verify_otp"))
    assert "auth_token" in verify_otp.outputs  # where the credential comes from


def test_the_flows_call_the_flexible_webhooks_by_name(flexible_build):
    """Every webhook call in the built flows names the flexible webhook of its tag; none is left on the standard."""
    files = read_agent(flexible_build)
    called = set()
    for flow, pages in files.pages.items():
        for res in [files.flows[flow], *pages.values()]:
            for _, f in fulfillments(res):
                if f.get("webhook"):
                    assert f["webhook"] == f["tag"], (flow, f)
                    called.add(f["webhook"])
    assert called == TAGS
    assert WEBHOOK_DISPLAY_NAME not in json.dumps([files.flows, files.pages])


def test_bodies_send_only_what_is_set_before_the_call(flexible_build):
    """The static checks pass on the flexible build, including the must-set dataflow over the request bodies:
    every parameter a body names is set on every path to the call (a form, a preset, an earlier call's mapping)."""
    assert validate_agent(flexible_build) == []


def test_the_dataflow_check_can_fail(flexible_build, tmp_path):
    """Without the auth_token guard where Lock card skips Authentication, the reads would send a credential nobody
    set: the check names them."""
    import shutil

    copy = tmp_path / "agent"
    shutil.copytree(flexible_build, copy)
    page = copy / "flows" / "Lock card" / "pages" / "check auth level.json"
    page.write_text(page.read_text(encoding="utf-8").replace(" AND $session.params.auth_token != null", ""),
                    encoding="utf-8")
    problems = validate_agent(copy)
    assert any("get_card_details reads auth_token" in p for p in problems), problems


def test_bodies_agree_with_the_service_endpoints():
    """What each body sends is what the service's /flexible/<tag> takes (every required field, nothing it
    refuses), and what each mapping reads is what the endpoint answers."""
    from webhook import flexible as edge
    from webhook.registry import REGISTRY

    for call in FLEXIBLE_CALLS:
        route = REGISTRY[call.tag]
        contract = edge.CONTRACTS[route.handler]
        fields = {field for field, _ in call.body}
        assert contract.required <= fields, (call.tag, contract.required - fields)
        assert fields <= contract.required | contract.optional, (call.tag, fields - contract.required - contract.optional)
        answers = set(typing.get_type_hints(route.handler)["return"].model_fields)
        if call.tag.endswith(":send_otp"):
            answers.add("otp_challenge")  # added by the flexible edge
        assert set(call.outputs) <= answers, (call.tag, set(call.outputs) - answers)


def test_flexible_build_leaves_out_test_cases_that_inject_an_upstream_auth_level(flexible_build):
    """Dialog 2's stored test cases inject auth_level; through flexible webhooks an upstream caller needs a
    credential a stored test case cannot hold, so the flexible build ships dialogs 1 and 3 only."""
    names = sorted(p.name for p in (flexible_build / "testCases").iterdir())
    assert names == ["seed_1_en.json", "seed_1_ja.json", "seed_3_en.json", "seed_3_ja.json"]


def test_the_standard_build_is_unchanged_by_default(tmp_path):
    """Without --webhooks the build has its one standard webhook, and the flows call it."""
    build(tmp_path / "agent", PackSettings())
    assert set(hooks(tmp_path / "agent")) == {WEBHOOK_DISPLAY_NAME}


def test_cli_build_flexible_with_its_own_base_url(tmp_path, monkeypatch):
    """`build --webhooks flexible --flexible-base-url URL`: every webhook at URL/flexible/<tag>."""
    monkeypatch.delenv("AGENT_FLEXIBLE_BASE_URL", raising=False)
    assert main(["build", "--out", str(tmp_path / "a"), "--webhooks", "flexible",
                 "--flexible-base-url", "https://cards.bank.example/api/"]) == 0
    uris = {h["genericWebService"]["uri"] for h in hooks(tmp_path / "a").values()}
    assert uris == {f"https://cards.bank.example/api/flexible/{t}" for t in TAGS}


def test_the_readme_shows_exactly_what_the_build_generates():
    """Every webhook's paste-able block in the README (URL, body, response configuration) is what agentpack
    writes, so a bank pasting by hand and one running the build or apply-webhooks configure the same thing."""
    import re

    from agentfacts import REPO

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("### The webhook settings to paste", 1)[1].split("\n## ", 1)[0]
    for call in FLEXIBLE_CALLS:
        block = re.search(re.escape(f"**`{call.tag}`**") + r".*?URL `https://SERVICE/flexible/([^`]+)`, method `POST`"
                          r".*?```json\n(.*?)\n```\n\nResponse configuration \(parameter ← JSONPath\): (.*?)\.\n",
                          section, flags=re.S)
        assert block, call.tag
        assert block.group(1) == call.tag
        assert block.group(2) == call.request_body()
        mapping = dict(re.findall(r"`([^`]+)` ← `([^`]+)`", block.group(3)))
        assert mapping == call.parameter_mapping(), call.tag
