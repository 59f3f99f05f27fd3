"""agentpack: the build's layout and settings, and the deploy against a fake in-process Dialogflow CX."""
from __future__ import annotations

import json
import zipfile

import pytest
from google.cloud import dialogflowcx_v3 as cx

from agentpack import WEBHOOK_DISPLAY_NAME, build
from agentpack import deploy as deploy_module
from agentpack.__main__ import main
from agentpack.build import BuildError
from agentpack.deploy import DeployError, api_endpoint, deploy
from agentpack.settings import PackSettings
from agentpack.validate import parse_strictly

from agentfacts import REPO

AGENT = "projects/bank-demo/locations/asia-northeast1/agents/2f0c5c1e-1111-4222-8333-444455556666"


# --- build --------------------------------------------------------------------------------------------------------

def test_build_writes_the_export_layout_and_a_zip(tmp_path):
    """DIR holds agent.json, flows/, entityTypes/, intents/, webhooks/, testCases/; DIR.zip the same files."""
    zip_path = build(tmp_path / "agent", PackSettings(agent_webhook_url="https://svc.example.com/webhook"))
    assert zip_path == tmp_path / "agent.zip"
    top = {p.name for p in (tmp_path / "agent").iterdir()}
    assert top == {"agent.json", "flows", "entityTypes", "intents", "webhooks", "testCases"}
    on_disk = sorted(p.relative_to(tmp_path / "agent").as_posix()
                     for p in (tmp_path / "agent").rglob("*") if p.is_file())
    with zipfile.ZipFile(zip_path) as zf:
        assert sorted(zf.namelist()) == on_disk
        agent = json.loads(zf.read("agent.json"))
    assert agent["defaultLanguageCode"] == "ja" and agent["supportedLanguageCodes"] == ["en"]
    assert agent["startFlow"] == "Default Start Flow"
    assert agent["advancedSettings"]["dtmfSettings"]["enabled"] is True


def test_build_replaces_an_old_build(tmp_path):
    """A stale file from an earlier build does not survive into the next one."""
    out = tmp_path / "agent"
    build(out, PackSettings())
    (out / "flows" / "stale.json").write_text("{}", encoding="utf-8")
    build(out, PackSettings())
    assert not (out / "flows" / "stale.json").exists()


def test_build_refuses_to_write_over_the_sources():
    """`--out .` or `--out flows` would destroy the sources: refused."""
    with pytest.raises(BuildError):
        build(REPO / "flows", PackSettings())


def webhook_of(tmp_path, **settings) -> dict:
    out = tmp_path / "agent"
    build(out, PackSettings(**settings))
    path = out / "webhooks" / f"{WEBHOOK_DISPLAY_NAME}.json"
    assert parse_strictly(path, out) == []
    return json.loads(path.read_text(encoding="utf-8"))


def test_webhook_uses_the_service_agent_id_token_by_default(tmp_path):
    """Default: CX's service agent sends an ID token, so the Cloud Run service can stay private."""
    wh = webhook_of(tmp_path, agent_webhook_url="https://lockcard-abc-an.a.run.app/webhook")
    assert wh["displayName"] == WEBHOOK_DISPLAY_NAME
    assert wh["genericWebService"] == {"uri": "https://lockcard-abc-an.a.run.app/webhook", "webhookType": "STANDARD",
                                       "httpMethod": "POST", "serviceAgentAuth": "ID_TOKEN"}
    assert wh["timeout"] == {"seconds": 5}


def test_webhook_with_basic_auth(tmp_path):
    wh = webhook_of(tmp_path, agent_webhook_auth="basic", agent_webhook_username="cx", agent_webhook_password="s3")
    assert wh["genericWebService"]["username"] == "cx" and wh["genericWebService"]["password"] == "s3"
    assert "serviceAgentAuth" not in wh["genericWebService"]


def test_webhook_with_header_auth(tmp_path):
    settings = PackSettings.from_env({"AGENT_WEBHOOK_AUTH": "header",
                                      "AGENT_WEBHOOK_HEADERS": "X-Api-Key: k1; X-Tenant: bank"})
    wh = webhook_of(tmp_path, **settings.__dict__)
    assert wh["genericWebService"]["requestHeaders"] == [{"key": "X-Api-Key", "value": "k1"},
                                                        {"key": "X-Tenant", "value": "bank"}]


@pytest.mark.parametrize("env, message", [
    ({"AGENT_WEBHOOK_AUTH": "oauth"}, "AGENT_WEBHOOK_AUTH must be one of"),
    ({"AGENT_WEBHOOK_AUTH": "basic", "AGENT_WEBHOOK_USERNAME": "cx"}, "needs AGENT_WEBHOOK_USERNAME"),
    ({"AGENT_WEBHOOK_AUTH": "header"}, "needs AGENT_WEBHOOK_HEADERS"),
    ({"AGENT_WEBHOOK_AUTH": "header", "AGENT_WEBHOOK_HEADERS": "no colon"}, "Name: value"),
    ({"AGENT_WEBHOOK_TIMEOUT_S": "90"}, "between 1 and 30"),
])
def test_bad_settings_say_what_is_wrong(env, message):
    with pytest.raises(ValueError, match=message):
        PackSettings.from_env(env)


def test_cli_build(tmp_path, monkeypatch, capsys):
    """`python -m agentpack build --out DIR --webhook-url URL`."""
    monkeypatch.delenv("AGENT_WEBHOOK_AUTH", raising=False)
    assert main(["build", "--out", str(tmp_path / "a"), "--webhook-url", "https://x.example/webhook"]) == 0
    wh = json.loads((tmp_path / "a" / "webhooks" / f"{WEBHOOK_DISPLAY_NAME}.json").read_text(encoding="utf-8"))
    assert wh["genericWebService"]["uri"] == "https://x.example/webhook"
    assert "built" in capsys.readouterr().out


def test_cli_validate(tmp_path, capsys):
    """`python -m agentpack validate [DIR]`: 0 and no problem for the sources and a build; 1 and the problem
    named for a broken folder."""
    assert main(["validate"]) == 0
    build(tmp_path / "agent", PackSettings())
    assert main(["validate", str(tmp_path / "agent")]) == 0
    page = tmp_path / "agent" / "flows" / "Lock card" / "pages" / "lock card.json"
    data = json.loads(page.read_text(encoding="utf-8"))
    data["entryFulfillment"]["tag"] = "prebuilt_components_lock_card:lock"
    page.write_text(json.dumps(data), encoding="utf-8")
    assert main(["validate", str(tmp_path / "agent")]) == 1
    assert "'prebuilt_components_lock_card:lock' is not in the webhook's registry" in capsys.readouterr().err


# --- deploy against a fake Dialogflow CX -------------------------------------------------------------------------

class FakeOperation:
    def __init__(self):
        self.waited = None

    def result(self, timeout=None):
        self.waited = timeout
        return None


class FakeCX:
    """AgentsClient.restore_agent and WebhooksClient.list_webhooks/update_webhook, in memory: a restore replaces
    the agent's webhooks with those in the zip, as Dialogflow does."""

    def __init__(self):
        self.restored: list[cx.RestoreAgentRequest] = []
        self.updates: list[cx.UpdateWebhookRequest] = []
        self.webhooks: list[cx.Webhook] = []
        self.operation = FakeOperation()

    def restore_agent(self, request):
        request = cx.RestoreAgentRequest(request)
        self.restored.append(request)
        with zipfile.ZipFile(__import__("io").BytesIO(request.agent_content)) as zf:
            names = [n for n in zf.namelist() if n.startswith("webhooks/")]
            self.webhooks = []
            for n in names:
                data = json.loads(zf.read(n))
                self.webhooks.append(cx.Webhook(
                    name=f"{request.name}/webhooks/{data['name']}", display_name=data["displayName"],
                    generic_web_service=cx.Webhook.GenericWebService(uri=data["genericWebService"]["uri"])))
        return self.operation

    def list_webhooks(self, request):
        assert cx.ListWebhooksRequest(request).parent == self.restored[-1].name
        return iter(self.webhooks)

    def update_webhook(self, request):
        request = cx.UpdateWebhookRequest(request)
        self.updates.append(request)
        return request.webhook


def test_deploy_restores_the_zip_then_points_the_webhook_at_the_service(tmp_path):
    """The zip's bytes go to restore_agent for that agent; then only the webhook's URI is updated."""
    zip_path = build(tmp_path / "agent", PackSettings())
    fake = FakeCX()
    done = deploy(AGENT, zip_path, webhook_uri="https://lockcard-xyz-an.a.run.app/webhook",
                  agents_client=fake, webhooks_client=fake)
    assert [r.name for r in fake.restored] == [AGENT]
    assert fake.restored[0].agent_content == zip_path.read_bytes()
    assert fake.operation.waited == deploy_module.RESTORE_TIMEOUT_S
    (update,) = fake.updates
    assert list(update.update_mask.paths) == ["generic_web_service.uri"]
    assert update.webhook.generic_web_service.uri == "https://lockcard-xyz-an.a.run.app/webhook"
    assert done.webhook.startswith(AGENT + "/webhooks/") and done.webhook_uri.endswith("/webhook")


def test_deploy_without_a_url_keeps_the_built_one(tmp_path):
    zip_path = build(tmp_path / "agent", PackSettings(agent_webhook_url="https://built.example/webhook"))
    fake = FakeCX()
    done = deploy(AGENT, zip_path, agents_client=fake, webhooks_client=fake)
    assert fake.updates == [] and done.webhook_uri == "https://built.example/webhook"


@pytest.mark.parametrize("agent, endpoint", [
    ("projects/p/locations/global/agents/a", None),
    ("projects/p/locations/asia-northeast1/agents/a", "asia-northeast1-dialogflow.googleapis.com"),
])
def test_regional_agents_use_their_regional_endpoint(agent, endpoint):
    assert api_endpoint(agent) == endpoint


def test_deploy_refuses_a_bad_agent_name_or_file(tmp_path):
    fake = FakeCX()
    with pytest.raises(DeployError, match="not an agent name"):
        deploy("agents/a", tmp_path / "x.zip", agents_client=fake, webhooks_client=fake)
    (tmp_path / "x.zip").write_text("not a zip", encoding="utf-8")
    with pytest.raises(DeployError, match="not a zip"):
        deploy(AGENT, tmp_path / "x.zip", agents_client=fake, webhooks_client=fake)
    assert fake.restored == []


def test_cli_deploy_builds_and_deploys(tmp_path, monkeypatch, capsys):
    """`python -m agentpack deploy --agent … --webhook-url …` builds a fresh zip and deploys it."""
    fake = FakeCX()
    monkeypatch.setattr(deploy_module, "clients", lambda agent: (fake, fake))
    monkeypatch.delenv("AGENT_WEBHOOK_URL", raising=False)
    assert main(["deploy", "--agent", AGENT, "--webhook-url", "https://svc.example/webhook"]) == 0
    assert fake.restored[0].agent_content[:2] == b"PK"
    assert fake.updates[0].webhook.generic_web_service.uri == "https://svc.example/webhook"
    assert "restored" in capsys.readouterr().out


# --- cloudbuild.yaml ----------------------------------------------------------------------------------------------

def test_cloudbuild_tests_builds_and_deploys_both_ways():
    """Test, build, webhook on Cloud Run (gunicorn main:app) or Cloud Functions gen2 (target webhook), agent."""
    text = (REPO / "cloudbuild.yaml").read_text(encoding="utf-8")
    ids = [line.split(":", 1)[1].strip() for line in text.splitlines() if line.strip().startswith("- id:")]
    assert ids == ["test", "build-agent", "deploy-webhook", "deploy-agent"]
    assert "main:app" in text and "--entry-point webhook" in text
    assert "python -m agentpack build" in text and "python -m agentpack deploy" in text


def test_cloudbuild_escapes_every_shell_dollar():
    """Cloud Build substitutes $NAME itself: shell variables must be written $$, substitutions must be declared."""
    import re

    text = (REPO / "cloudbuild.yaml").read_text(encoding="utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    declared = set(re.findall(r"^  (_[A-Z_]+):", text, flags=re.M)) | {"PROJECT_ID", "PROJECT_NUMBER"}
    for match in re.finditer(r"\$(\$)?(\{?)([A-Za-z_(][A-Za-z0-9_]*)?", code):
        if match.group(1):
            continue
        assert match.group(2) == "{" and match.group(3) in declared, code[match.start():match.start() + 30]


def test_cloudbuild_deploys_a_configuration_production_accepts():
    """The environment cloudbuild.yaml gives the service (plus its secrets) passes APP_ENV=production's checks:
    ID-token caller authentication with the service URL as audience and the Dialogflow agent allowed."""
    import re

    from settings import Settings

    text = (REPO / "cloudbuild.yaml").read_text(encoding="utf-8")
    defaults = dict(re.findall(r"^  (_[A-Z_]+): ?(\S*)", text, flags=re.M))
    line = re.search(r'envs="\^;\^([^"]+)"', text).group(1)
    line = (line.replace("$$url", "https://lockcard-webhook-123.asia-northeast1.run.app/webhook")
                .replace("$$agent_sa", "service-123@gcp-sa-dialogflow.iam.gserviceaccount.com")
                .replace("${_ENV_VARS}", defaults["_ENV_VARS"]))
    env = dict(pair.split("=", 1) for pair in line.split(";") if pair)
    secrets = {name: "secret" for name in re.findall(r"(\w+)=[\w-]+:latest", defaults["_SECRETS"])}
    assert set(secrets) == {"DATABASE_URL", "OTP_HASH_KEY"}
    env.update(DATABASE_URL="postgresql+psycopg://lockcard@10.0.0.5/lockcard", OTP_HASH_KEY="k" * 48)
    settings = Settings.from_env(env)
    assert settings.app_env == "production" and settings.webhook_auth == "google-id-token"
    assert settings.webhook_audience == ["https://lockcard-webhook-123.asia-northeast1.run.app/webhook"]
    assert settings.db_pool_size == 8  # = gunicorn --threads 8: no thread waits for a connection
