"""References resolve, pages call only tags the webhook knows, with what those tags need, and the flows keep
the seed's contract: its input presets, a transfer_reason on every failure exit, DTMF, ja + en everywhere."""
from __future__ import annotations

import re

import pytest

from agentpack import WEBHOOK_DISPLAY_NAME
from agentpack.validate import (
    check_references,
    fulfillments,
    read_agent,
    tag_contract,
    transitions,
    unset_webhook_params,
)
from webhook.registry import REGISTRY

FLOWS = ("Default Start Flow", "Lock card", "Authentication")
TRANSFER_REASONS = {"agent", "denial_of_information", "max_no_input", "max_no_match", "webhook_error",
                    "webhook_not_found"}


def webhook_pages(files):
    for flow, pages in files.pages.items():
        for name, page in pages.items():
            if (page.get("entryFulfillment") or {}).get("webhook"):
                yield flow, name, page


def test_every_reference_resolves(agent_root):
    """Pages, flows, intents, entity types, the webhook and test-case pages all exist; tags are registered."""
    files = read_agent(agent_root)
    assert set(files.flows) == set(FLOWS)
    assert check_references(files, {WEBHOOK_DISPLAY_NAME}, set(REGISTRY.tags())) == []


def test_a_dangling_reference_is_reported(sources):
    """The checker is not vacuous: a page pointing nowhere and an unknown tag are both found."""
    page = sources.pages["Lock card"]["lock card"]
    saved = dict(page["entryFulfillment"]), page["transitionRoutes"][1]["targetPage"]
    page["entryFulfillment"]["tag"] = "prebuilt_components_lock_card:unknown"
    page["transitionRoutes"][1]["targetPage"] = "nowhere"
    try:
        problems = check_references(sources, {WEBHOOK_DISPLAY_NAME}, set(REGISTRY.tags()))
    finally:
        page["entryFulfillment"], page["transitionRoutes"][1]["targetPage"] = saved
    assert any("'nowhere'" in p for p in problems)
    assert any("unknown" in p and "registry" in p for p in problems)


def test_pages_use_every_tag_of_the_registry(sources):
    """Each of the webhook's tags is called by some page, and no page calls another."""
    used = {page["entryFulfillment"]["tag"] for _, _, page in webhook_pages(sources)}
    assert used == set(REGISTRY.tags())


def test_every_parameter_a_handler_reads_is_set_before_the_call(sources):
    """On every path to a webhook call, the handler's required parameters are already session parameters."""
    required, returned = tag_contract()
    assert unset_webhook_params(sources, required, returned) == []


def test_the_dataflow_check_finds_a_missing_copy(sources):
    """Drop the copy of $flow.lock_type into the session before the lock: the check names the gap."""
    required, returned = tag_contract()
    page = sources.pages["Lock card"]["> confirm permanent lock"]
    route = next(r for r in page["transitionRoutes"] if r.get("intent") == "prebuilt_components_confirmation_yes")
    saved = route["triggerFulfillment"]["setParameterActions"]
    route["triggerFulfillment"]["setParameterActions"] = [a for a in saved if a["parameter"] != "lock_type"]
    try:
        problems = unset_webhook_params(sources, required, returned)
    finally:
        route["triggerFulfillment"]["setParameterActions"] = saved
    assert len(problems) == 1 and "lock_type" in problems[0]


def test_webhook_pages_handle_webhook_errors(sources):
    """Every page that calls the webhook handles webhook.error, webhook.error.not-found and the no-match /
    no-input defaults, and checks the webhook's own transfer_reason first thing after the call."""
    for flow, name, page in webhook_pages(sources):
        events = {h["event"]: h for h in page.get("eventHandlers", [])}
        assert {"webhook.error", "webhook.error.not-found", "sys.no-match-default", "sys.no-input-default"} <= set(
            events), (flow, name)
        reasons = {e: {a["value"] for a in h["triggerFulfillment"].get("setParameterActions", [])
                       if a["parameter"] == "transfer_reason"} for e, h in events.items()}
        assert reasons["webhook.error"] == {"webhook_error"}
        assert reasons["webhook.error.not-found"] == {"webhook_not_found"}
        conditions = [r.get("condition", "") for r in page["transitionRoutes"]]
        failed = conditions.index("$session.params.transfer_reason != null")
        assert page["transitionRoutes"][failed]["targetPage"] == "end failure"
        # Only a route that looks at the failure itself may come first (verify user: "no number, ask for it").
        assert all("webhook_error_code" in c for c in conditions[:failed]), (flow, name)


def test_every_failure_exit_sets_a_transfer_reason(sources):
    """Whatever leads to a failure or escalation end sets transfer_reason, or has just checked it is set."""
    exits = {"end failure", "end escalation", "END_FLOW_WITH_FAILURE", "END_FLOW_WITH_HUMAN_ESCALATION"}
    found = set()
    for flow in ("Lock card", "Authentication"):
        resources = [("start", sources.flows[flow])] + list(sources.pages[flow].items())
        for name, res in resources:
            if name in exits:
                continue
            for t in transitions(res):
                if t.get("targetPage") not in exits:
                    continue
                sets = {a["value"] for a in (t.get("triggerFulfillment") or {}).get("setParameterActions", [])
                        if a["parameter"] == "transfer_reason"}
                found |= sets
                checked = "transfer_reason" in (t.get("condition") or "")
                assert sets or checked, (flow, name, t.get("event") or t.get("intent") or t.get("condition"))
    # The webhook sets max_no_match itself on an OTP lock-out; the flows set all six somewhere too.
    assert found == TRANSFER_REASONS


def test_escalation_intent_is_in_scope_on_every_page(sources):
    """The escalate intent is a flow-level route (in scope on every page) in each flow."""
    for flow in FLOWS:
        intents = {r.get("intent") for r in sources.flows[flow]["transitionRoutes"]}
        assert "prebuilt_components_escalate_human_agent" in intents, flow


def test_lock_card_start_presets_are_the_seeds_defaults(sources):
    """The seed's flow-scoped input parameters and defaults, on the start page's `true` route, where the seed's
    configuration steps (Start Page, true route, Parameter Presets) send a bank to edit them."""
    route = next(r for r in sources.flows["Lock card"]["transitionRoutes"] if r.get("condition") == "true")
    presets = {a["parameter"]: a["value"] for a in route["triggerFulfillment"]["setParameterActions"]}
    assert presets | {
        "$flow.card_status_active": "active", "$flow.card_status_lock_temp": "inactive",
        "$flow.card_status_lock_permanent": "blocked", "$flow.card_status_reactivate": "reactivate",
        "$flow.max_retry_card_number": 3, "$flow.max_otp_retry_count": 3,
    } == presets


AUTH_PRESETS = {"auth_level_req": 1, "account_auth_enabled": False, "card_auth_enabled": True}


def test_auth_presets_are_on_the_check_auth_level_entry(sources):
    """The seed's table says auth_level_req, account_auth_enabled and card_auth_enabled are configured in the
    *check auth level* page's entry-fulfillment presets: there, with the seed's defaults, and nowhere else."""
    page = sources.pages["Lock card"]["check auth level"]
    presets = {a["parameter"]: a["value"] for a in page["entryFulfillment"].get("setParameterActions", [])}
    assert presets == AUTH_PRESETS
    elsewhere = [(flow, name) for flow, pages in sources.pages.items() for name, res in
                 [("Start Page", sources.flows[flow]), *pages.items()] if name != "check auth level"
                 for node in [res] for a in _presets(node) if a["parameter"] in AUTH_PRESETS]
    assert elsewhere == []


def _presets(node):
    if isinstance(node, dict):
        for a in node.get("setParameterActions") or []:
            yield a
        for v in node.values():
            yield from _presets(v)
    elif isinstance(node, list):
        for v in node:
            yield from _presets(v)


def test_forms_follow_address_collections_style(sources):
    """Prompting pages are named `> …`; each form parameter re-asks twice, then ends with a transfer_reason."""
    for flow, pages in sources.pages.items():
        for name, page in pages.items():
            params = (page.get("form") or {}).get("parameters", [])
            if params:
                assert name.startswith("> "), (flow, name)
            for p in params:
                handlers = {h["event"]: h for h in p["fillBehavior"]["repromptEventHandlers"]}
                assert set(handlers) == {f"sys.{k}-{n}" for k in ("no-match", "no-input") for n in (1, 2, 3)}
                assert handlers["sys.no-match-3"]["targetPage"] == "end failure"
                assert handlers["sys.no-input-3"]["triggerFulfillment"]["setParameterActions"] == [
                    {"parameter": "transfer_reason", "value": "max_no_input"}]


@pytest.mark.parametrize("param, digits", [
    ("last_four_digit_of_card_number", 4), ("otp_code", 6), ("$flow.caller_zip_code", 7), ("phone_number", 11),
])
def test_digits_can_be_keyed_in(sources, param, digits):
    """On the phone, card digits, codes, postal codes and phone numbers can be typed on the keypad."""
    found = [p for pages in sources.pages.values() for page in pages.values()
             for p in (page.get("form") or {}).get("parameters", []) if p["displayName"] == param]
    assert found
    for p in found:
        assert p["advancedSettings"]["dtmfSettings"] == {"enabled": True, "maxDigits": digits, "finishDigit": "#"}


def test_every_message_speaks_japanese_and_english(sources):
    """Each fulfillment that says something says it in ja and in en, and never in markdown."""
    for flow in FLOWS:
        resources = [("start", sources.flows[flow])] + list(sources.pages[flow].items())
        for name, res in resources:
            for where, f in fulfillments(res):
                langs = [m["languageCode"] for m in f.get("messages", [])]
                assert sorted(langs) in ([], ["en", "ja"], ["en", "en", "ja", "ja"]), (flow, name, where)
                for m in (m for m in f.get("messages", []) if "text" in m):
                    said = re.sub(r"\$[\w.]+", "", m["text"]["text"][0])
                    assert not re.search(r"[*_#`<>]|\[.*\]\(", said), (flow, name, where)


def test_intents_have_enough_phrases_in_both_languages(sources):
    """At least 20 training phrases per language (50 for the head intent), no duplicates."""
    for intent, langs in sources.training_phrases.items():
        assert set(langs) == {"ja", "en"}, intent
        minimum = 50 if intent.startswith("head.") else 20
        for lang, phrases in langs.items():
            texts = ["".join(p["text"] for p in tp["parts"]) for tp in phrases]
            assert len(texts) >= minimum, (intent, lang)
            assert len(set(texts)) == len(texts), (intent, lang)


def test_entities_have_synonyms_in_both_languages(sources):
    """Every value of every entity type has ja and en synonyms; the seed's values are all there."""
    values = {}
    for etype, langs in sources.entities.items():
        assert set(langs) == {"ja", "en"}, etype
        per_lang = {lang: {e["value"]: e["synonyms"] for e in ents} for lang, ents in langs.items()}
        assert per_lang["ja"].keys() == per_lang["en"].keys(), etype
        assert all(per_lang[lang][v] for lang in per_lang for v in per_lang[lang]), etype
        values[etype] = set(per_lang["ja"])
    assert values["prebuilt_components_lock_card_locked_reason"] == {"damaged", "stolen", "lost", "others"}
    assert values["prebuilt_components_lock_card_lock_type_active"] == {"inactive", "blocked"}
    assert values["prebuilt_components_lock_card_lock_type_inactive"] == {"reactivate", "blocked"}
    reason_ja = {s for e in sources.entities["prebuilt_components_lock_card_locked_reason"]["ja"]
                 for s in e["synonyms"]}
    assert {"なくした", "盗まれた"} <= reason_ja
