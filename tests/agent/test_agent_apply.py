"""`python -m agentpack apply-webhooks`: the flexible settings pushed by API into an agent that imported Google's
Lock card component, against an in-memory Dialogflow CX: Google's webhooks found by name and updated in place
(type, URI, method, body, mapping, service-agent ID token), nothing else touched."""
from __future__ import annotations

import json

import pytest
from google.cloud import dialogflowcx_v3 as cx

from agentpack import apply as apply_module
from agentpack.__main__ import main
from agentpack.apply import apply_flexible_webhooks
from agentpack.deploy import DeployError
from agentpack.flexible import CALLS_BY_TAG, SEED_WEBHOOKS
from agentpack.settings import PackSettings

from fakecx import FakeDialogflow

AGENT = "projects/bank/locations/asia-northeast1/agents/7c1e0000-0000-4000-8000-000000000001"
SETTINGS = PackSettings(agent_webhook_url="https://lockcard-abc-an.a.run.app/webhook")


def googles_webhook(tag: str) -> cx.Webhook:
    """A flexible webhook as Google's component imports it: a placeholder URL, its own body and mapping."""
    return cx.Webhook(display_name=tag, timeout="5s", generic_web_service=cx.Webhook.GenericWebService(
        uri="https://example.com/replace-me", webhook_type="FLEXIBLE", http_method="GET",
        request_body='{"customer": "$session.params.phone_number"}', parameter_mapping={"x": "$.x"},
        allowed_ca_certs=[b"bank-ca"]))


@pytest.fixture
def imported():
    """An agent with Google's Lock card component (its four webhooks) and a webhook of the bank's own."""
    fake = FakeDialogflow(AGENT)
    for tag in SEED_WEBHOOKS:
        fake.add("webhook", AGENT, googles_webhook(tag))
    fake.add("webhook", AGENT, cx.Webhook(display_name="bank_loans", generic_web_service=cx.Webhook.GenericWebService(
        uri="https://loans.bank.example/hook")))
    return fake


def test_googles_four_webhooks_point_at_the_service(imported):
    """Each of the seed's four webhooks keeps its resource name and now sends our body to /flexible/<tag>, maps our
    fields, authenticates with the service agent's ID token; the bank's CA certificate stays."""
    before = {tag: imported.named("webhook", tag)[0] for tag in SEED_WEBHOOKS}
    done = apply_flexible_webhooks(AGENT, SETTINGS, imported)
    assert dict(done.updated) == before
    for tag, name in before.items():
        service = imported.get("webhook", name).generic_web_service
        assert service.uri == f"https://lockcard-abc-an.a.run.app/flexible/{tag}"
        assert service.webhook_type == cx.Webhook.GenericWebService.WebhookType.FLEXIBLE
        assert service.http_method == cx.Webhook.GenericWebService.HttpMethod.POST
        assert json.loads(service.request_body) == dict(CALLS_BY_TAG[tag].body)
        assert dict(service.parameter_mapping) == {f: f"$.{f}" for f in CALLS_BY_TAG[tag].outputs}
        assert service.service_agent_auth == cx.Webhook.GenericWebService.ServiceAgentAuth.ID_TOKEN
        assert list(service.allowed_ca_certs) == [b"bank-ca"]  # not a field the settings own
    assert sorted(done.absent) == sorted(set(CALLS_BY_TAG) - set(SEED_WEBHOOKS))


def test_only_the_owned_fields_are_in_the_mask(imported):
    """The update mask names the fields the settings own, and every webhook sent is a strict official Webhook."""
    sent = []
    update = imported.update_webhook
    imported.update_webhook = lambda request: sent.append(cx.UpdateWebhookRequest(request)) or update(request)
    apply_flexible_webhooks(AGENT, SETTINGS, imported)
    assert len(sent) == 4
    for request in sent:
        assert set(request.update_mask.paths) == {
            "generic_web_service.uri", "generic_web_service.webhook_type", "generic_web_service.http_method",
            "generic_web_service.request_body", "generic_web_service.parameter_mapping", "timeout",
            "generic_web_service.service_agent_auth"}
        cx.Webhook.from_json(cx.Webhook.to_json(request.webhook), ignore_unknown_fields=False)


def test_the_banks_own_webhook_is_left_alone(imported):
    """A webhook of another name is neither read into nor written."""
    (loans,) = imported.named("webhook", "bank_loans")
    before = cx.Webhook.to_json(imported.get("webhook", loans))
    apply_flexible_webhooks(AGENT, SETTINGS, imported)
    assert cx.Webhook.to_json(imported.get("webhook", loans)) == before
    assert all(name != loans for _, name, _ in imported.writes)


def test_the_authentication_steps_are_updated_when_the_agent_has_them(imported):
    """An agent that also imported an Authentication component with our tag names gets those three too."""
    for step in ("verify_user", "send_otp", "verify_otp"):
        imported.add("webhook", AGENT, googles_webhook(f"prebuilt_components_authentication:{step}"))
    done = apply_flexible_webhooks(AGENT, SETTINGS, imported)
    assert len(done.updated) == 7 and done.absent == ["prebuilt_components_lock_card:request_reactivation"]
    (verify,) = imported.named("webhook", "prebuilt_components_authentication:verify_otp")
    assert imported.get("webhook", verify).generic_web_service.parameter_mapping["auth_token"] == "$.auth_token"


def test_an_agent_without_googles_component_is_refused_unchanged():
    """No Lock card component imported: DeployError naming the missing webhooks, and no write at all."""
    fake = FakeDialogflow(AGENT)
    fake.add("webhook", AGENT, googles_webhook("prebuilt_components_lock_card:validate_card"))
    with pytest.raises(DeployError, match="get_card_details.*import Google's Lock card"):
        apply_flexible_webhooks(AGENT, SETTINGS, fake)
    assert fake.writes == []


def test_two_webhooks_of_one_name_are_refused_unchanged(imported):
    """Which of two same-named webhooks the flows call is unknowable: refused, nothing written."""
    other = imported.add("webhook", AGENT + "-copy", googles_webhook(SEED_WEBHOOKS[0]))
    imported.parents[other] = AGENT  # a duplicate the fake would refuse to create, moved in by hand
    with pytest.raises(DeployError, match="several webhooks named"):
        apply_flexible_webhooks(AGENT, SETTINGS, imported)
    assert imported.writes == []


def test_basic_auth_settings_are_applied_instead(imported):
    """AGENT_WEBHOOK_AUTH=basic: the username and password go in instead of the service agent's token."""
    settings = PackSettings(agent_webhook_url="https://svc.example/webhook", agent_webhook_auth="basic",
                            agent_webhook_username="cx", agent_webhook_password="s3cret")
    apply_flexible_webhooks(AGENT, settings, imported)
    service = imported.get("webhook", imported.named("webhook", SEED_WEBHOOKS[0])[0]).generic_web_service
    assert (service.username, service.password) == ("cx", "s3cret")


def test_cli_apply_webhooks(imported, monkeypatch, capsys):
    """`python -m agentpack apply-webhooks --agent … --webhook-url …`; without a URL it refuses (the placeholder
    would point a bank's component nowhere)."""
    monkeypatch.setattr(apply_module, "webhooks_client_for", lambda agent: imported)
    monkeypatch.delenv("AGENT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("AGENT_FLEXIBLE_BASE_URL", raising=False)
    assert main(["apply-webhooks", "--agent", AGENT]) == 2
    assert imported.writes == []
    assert main(["apply-webhooks", "--agent", AGENT, "--webhook-url", "https://svc.example/webhook"]) == 0
    out = capsys.readouterr().out
    assert out.count("updated ") == 4 and "not in the agent (left alone): prebuilt_components_lock_card:request_reactivation" in out
