"""`python -m agentpack install`: our Lock card and Authentication flows added, resource by resource, to a bank's
agent that has flows of its own, against an in-memory Dialogflow CX that enforces unique names, per-language texts
and references that resolve. The bank's resources stay as they were; a second install updates in place; a name
clash stops the install before any write unless the bank asks to replace."""
from __future__ import annotations

import pytest
from google.cloud import dialogflowcx_v3 as cx

from agentpack import build
from agentpack import install as install_module
from agentpack.__main__ import main
from agentpack.deploy import DeployError
from agentpack.install import INSTALL_FLOWS, INSTALL_MARKER, install, package
from agentpack.settings import PackSettings

from fakecx import FakeDialogflow

AGENT = "projects/bank/locations/asia-northeast1/agents/7c1e0000-0000-4000-8000-000000000002"
SETTINGS = PackSettings(agent_webhook_url="https://lockcard-abc-an.a.run.app/webhook")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("install") / "agent"
    build(out, SETTINGS)
    return out


@pytest.fixture(scope="module")
def built_flexible(tmp_path_factory):
    out = tmp_path_factory.mktemp("install-flexible") / "agent"
    build(out, SETTINGS, webhooks="flexible")
    return out


def text(message: str) -> cx.Fulfillment:
    return cx.Fulfillment(messages=[cx.ResponseMessage(text=cx.ResponseMessage.Text(text=[message]))])


@pytest.fixture
def bank():
    """A bank's agent: its start flow with a page and a welcome route, a Loans flow, its own intents, entity type
    and webhook."""
    fake = FakeDialogflow(AGENT)
    welcome = fake.add("intent", AGENT, cx.Intent(display_name="Default Welcome Intent", training_phrases=[
        cx.Intent.TrainingPhrase(parts=[cx.Intent.TrainingPhrase.Part(text="もしもし")], repeat_count=1)]))
    fake.add("intent", AGENT, cx.Intent(display_name="loan.apply"))
    fake.add("entity_type", AGENT, cx.EntityType(display_name="loan_kind", kind="KIND_MAP"))
    fake.add("webhook", AGENT, cx.Webhook(display_name="bank_loans", generic_web_service=cx.Webhook.GenericWebService(
        uri="https://loans.bank.example/hook")))
    start = fake.add("flow", AGENT, cx.Flow(display_name="Default Start Flow"))
    menu = fake.add("page", start, cx.Page(display_name="menu", entry_fulfillment=text("ご用件をどうぞ")))
    fake.store["flow"][start]["ja"].transition_routes.append(cx.TransitionRoute(intent=welcome, target_page=menu))
    fake.add("flow", AGENT, cx.Flow(display_name="Loans", description="the bank's loans"))
    return fake


def resources(fake, kind, parent=AGENT):
    return {fake.get(kind, n).display_name: n for n in fake.store[kind] if fake.parents[n] == parent}


def page_names(fake, flow_name):
    (flow,) = fake.named("flow", flow_name)
    return set(resources(fake, "page", flow))


def test_install_adds_our_flows_beside_the_banks(bank, built):
    """Our two flows with every page, the intents and entity types they use, and the webhook, in ja and en; the
    bank's flows, pages, intents, entity type and webhook are exactly as they were."""
    before = bank.snapshot()
    done = install(AGENT, built, install_module.Clients(*[bank] * 6))
    pack = package(built)
    assert done.languages == ["ja", "en"]
    assert set(resources(bank, "flow")) == {"Default Start Flow", "Loans", *INSTALL_FLOWS}
    for flow in INSTALL_FLOWS:
        assert page_names(bank, flow) == set(pack.pages[flow])
        (name,) = bank.named("flow", flow)
        assert INSTALL_MARKER in bank.get("flow", name).description
    assert set(pack.intents) <= set(resources(bank, "intent")) and "head.lock_card" in pack.intents
    assert set(pack.entity_types) <= set(resources(bank, "entity_type"))
    assert set(resources(bank, "webhook")) == {"bank_loans", "prebuilt_components_lock_card_webhook"}
    after = bank.snapshot()
    for kind, names in before.items():
        for name, copies in names.items():
            assert after[kind][name] == copies, (kind, name)  # the bank's resources, untouched


def test_texts_go_in_per_language(bank, built):
    """Each page holds, per language, only that language's messages; intents their phrases; entity types their
    synonyms."""
    install(AGENT, built, install_module.Clients(*[bank] * 6))
    (flow,) = bank.named("flow", "Lock card")
    (page,) = bank.named("page", "> lock type", flow)
    said = {lang: [m.text.text[0] for m in bank.get("page", page, lang).form.parameters[0].fill_behavior
                   .initial_prompt_fulfillment.messages if m.text.text] for lang in ("ja", "en")}
    assert said == {"ja": ["カードを一時的にロック、または完全にロックしますか?"],
                    "en": ["Do you want to lock the card temporarily or permanently?"]}
    (intent,) = bank.named("intent", "head.lock_card")
    ja = [p.parts[0].text for p in bank.get("intent", intent, "ja").training_phrases]
    en = [p.parts[0].text for p in bank.get("intent", intent, "en").training_phrases]
    assert "カードをロックしたい" in ja and "カードをロックしたい" not in en and len(en) >= 50


def test_references_resolve_to_the_installed_resources(bank, built):
    """Pages lead to pages of their own flow, Lock card to Authentication, routes to the installed intents,
    fulfillments to the installed webhook (the fake refuses anything else; here we look at one of each)."""
    install(AGENT, built, install_module.Clients(*[bank] * 6))
    (lock,) = bank.named("flow", "Lock card")
    (auth,) = bank.named("flow", "Authentication")
    check = bank.get("page", bank.named("page", "check auth level", lock)[0])
    assert check.transition_routes[-1].target_flow == auth
    (hook,) = bank.named("webhook", "prebuilt_components_lock_card_webhook")
    validate = bank.get("page", bank.named("page", "validate card", lock)[0])
    assert validate.entry_fulfillment.webhook == hook
    (escalate,) = bank.named("intent", "prebuilt_components_escalate_human_agent")
    assert bank.get("flow", lock).transition_routes[0].intent == escalate
    zip_page = bank.get("page", bank.named("page", "> collect zip code", lock)[0])
    assert zip_page.form.parameters[0].entity_type == bank.named("entity_type",
                                                                 "prebuilt_components_lock_card_zip_code")[0]


def test_a_second_install_updates_in_place(bank, built):
    """Same resource names, no duplicates, nothing created; a page an earlier version had and this one has not is
    deleted."""
    clients = install_module.Clients(*[bank] * 6)
    install(AGENT, built, clients)
    (lock,) = bank.named("flow", "Lock card")
    bank.add("page", lock, cx.Page(display_name="old page of ours"))
    names = {kind: set(names) for kind, names in bank.store.items() if kind != "page"}
    bank.writes.clear()
    done = install(AGENT, built, clients)
    assert done.created == [] and done.deleted == ["page Lock card / old page of ours"]
    assert {kind: set(n) for kind, n in bank.store.items() if kind != "page"} == names
    assert not [w for w in bank.writes if w[0].startswith("create_")]
    assert "old page of ours" not in page_names(bank, "Lock card")


def test_a_name_clash_stops_before_any_write(bank, built):
    """Google's own Lock card component already imported (its flow and a shared intent of the same names): the
    install names each clash and writes nothing."""
    google = bank.add("flow", AGENT, cx.Flow(display_name="Lock card", description="Google's component"))
    bank.add("page", google, cx.Page(display_name="google page"))
    bank.add("intent", AGENT, cx.Intent(display_name="prebuilt_components_confirmation_yes"))
    before = bank.snapshot()
    with pytest.raises(DeployError) as err:
        install(AGENT, built, install_module.Clients(*[bank] * 6))
    assert "flow 'Lock card'" in str(err.value) and "intent 'prebuilt_components_confirmation_yes'" in str(err.value)
    assert "--replace-existing" in str(err.value)
    assert bank.writes == [] and bank.snapshot() == before


def test_replace_existing_overwrites_in_place(bank, built):
    """With replace_existing the clashing flow and intent keep their resource names (a route of the bank's into
    that flow still resolves), take our content, and the replaced flow's own pages are deleted."""
    google = bank.add("flow", AGENT, cx.Flow(display_name="Lock card", description="Google's component"))
    bank.add("page", google, cx.Page(display_name="google page"))
    yes = bank.add("intent", AGENT, cx.Intent(display_name="prebuilt_components_confirmation_yes"))
    (start,) = bank.named("flow", "Default Start Flow")
    bank.store["flow"][start]["ja"].transition_routes.append(cx.TransitionRoute(condition="true", target_flow=google))
    done = install(AGENT, built, install_module.Clients(*[bank] * 6), replace_existing=True)
    assert bank.named("flow", "Lock card") == [google]
    assert bank.named("intent", "prebuilt_components_confirmation_yes") == [yes]
    assert len(bank.get("intent", yes, "ja").training_phrases) >= 20
    assert "google page" not in page_names(bank, "Lock card") and "page Lock card / google page" in done.deleted
    assert INSTALL_MARKER in bank.get("flow", google).description
    assert bank.get("flow", start).transition_routes[-1].target_flow == google


def test_languages_follow_the_agent(built):
    """A Japanese-only agent gets the Japanese texts only; an agent in another language is refused unchanged."""
    ja_only = FakeDialogflow(AGENT, supported=())
    assert install(AGENT, built, install_module.Clients(*[ja_only] * 6)).languages == ["ja"]
    assert {w[2] for w in ja_only.writes} <= {"ja", ""}
    french = FakeDialogflow(AGENT, default_language="fr", supported=("ja",))
    with pytest.raises(DeployError, match="speaks fr"):
        install(AGENT, built, install_module.Clients(*[french] * 6))
    assert french.writes == []


def test_the_flexible_build_installs_its_webhooks(bank, built_flexible):
    """Installing the flexible build adds its eight webhooks named as the tags, and the pages call them."""
    install(AGENT, built_flexible, install_module.Clients(*[bank] * 6))
    hooks = set(resources(bank, "webhook")) - {"bank_loans"}
    assert len(hooks) == 8 and "prebuilt_components_lock_card:validate_card" in hooks
    (lock,) = bank.named("flow", "Lock card")
    validate = bank.get("page", bank.named("page", "validate card", lock)[0])
    assert validate.entry_fulfillment.webhook == bank.named("webhook", "prebuilt_components_lock_card:validate_card")[0]


def test_install_needs_a_built_folder(bank, tmp_path):
    """The sources are not an install: the build adds the webhooks and the voice."""
    with pytest.raises(DeployError, match="not a built agent folder"):
        install(AGENT, tmp_path, install_module.Clients(*[bank] * 6))


def test_cli_install(bank, monkeypatch, capsys):
    """`python -m agentpack install --agent … --webhook-url …` builds, installs, and says what it did; without a
    URL it refuses."""
    monkeypatch.setattr(install_module, "clients_for", lambda agent: install_module.Clients(*[bank] * 6))
    monkeypatch.delenv("AGENT_WEBHOOK_URL", raising=False)
    assert main(["install", "--agent", AGENT]) == 2  # the placeholder URL would install a webhook to nowhere
    assert bank.writes == []
    assert main(["install", "--agent", AGENT, "--webhook-url", "https://svc.example/webhook"]) == 0
    out = capsys.readouterr().out
    assert "installed into" in out and "created flow Lock card" in out
    (hook,) = bank.named("webhook", "prebuilt_components_lock_card_webhook")
    assert bank.get("webhook", hook).generic_web_service.uri == "https://svc.example/webhook"
    assert main(["install", "--agent", AGENT, "--webhook-url", "https://svc.example/webhook"]) == 0
    assert "created" not in capsys.readouterr().out


def test_installed_flows_and_pages_say_what_the_build_says(bank, built):
    """Read back from the agent, with resource names turned into display names again, every installed flow and
    page in each language is the built one in that language: no route, handler, preset, message or form parameter
    lost or changed on the way."""
    import json

    from agentpack.install import SYSTEM_ENTITY, _for_language
    from agentpack.validate import to_api_json

    install(AGENT, built, install_module.Clients(*[bank] * 6))
    pack = package(built)
    display = {n: bank.get(kind, n).display_name for kind in bank.store for n in bank.store[kind]}
    symbolic = {"End Flow": "END_FLOW", "End Session": "END_SESSION"}

    def back(node):
        if isinstance(node, dict):
            return {k: back(v) for k, v in node.items() if k != "name"}
        if isinstance(node, list):
            return [back(v) for v in node]
        if isinstance(node, str):
            if node.startswith(SYSTEM_ENTITY):
                return "@" + node[len(SYSTEM_ENTITY):]
            if "/pages/" in node and node.rsplit("/", 1)[1].isupper():
                return node.rsplit("/", 1)[1]
            if node in display:
                return ("@" if "/entityTypes/" in node else "") + display[node]
            return symbolic.get(node, node)
        return node

    def as_built(resource, kind, lang):
        data = to_api_json(_for_language(resource, lang))
        parsed = kind.from_json(json.dumps(data), ignore_unknown_fields=False)
        return back(json.loads(kind.to_json(parsed)))

    for flow in INSTALL_FLOWS:
        (flow_name,) = bank.named("flow", flow)
        for lang in ("ja", "en"):
            got = back(json.loads(cx.Flow.to_json(bank.get("flow", flow_name, lang))))
            want = as_built(pack.flows[flow], cx.Flow, lang)
            want["description"] = got["description"]  # plus the install marker
            assert got == want, (flow, lang)
            for page_name, page in pack.pages[flow].items():
                (name,) = bank.named("page", page_name, flow_name)
                got = back(json.loads(cx.Page.to_json(bank.get("page", name, lang))))
                assert got == as_built(page, cx.Page, lang), (flow, page_name, lang)
