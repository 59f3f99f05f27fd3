"""Voice twins (agentpack.voice): every text message of the built agent has an SSML twin that reads digits one
by one; the sources stay text only; twin parameters are set wherever the text they follow is."""
from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest

from agentpack.validate import load, read_agent, tag_contract
from agentpack.voice import VoiceError, add_voice, find_twins, param_key, to_ssml, twin_value
from simulator.conditions import evaluate_value

from agentfacts import REPO

SAY = '<say-as interpret-as="characters">'


class Params:
    """A scope for the simulator's evaluator: session parameters only."""

    def __init__(self, **params):
        self.params = params

    def lookup(self, root, path):
        value = self.params if root == "session.params" else {}
        for p in path:
            value = value[p] if isinstance(value, (dict, list)) else None
        return value


def said_messages(node):
    """Every `messages` list and `caseContent` list of a flow or page, wherever it is nested."""
    if isinstance(node, dict):
        if isinstance(node.get("messages"), list):
            yield node["messages"]
        if isinstance(node.get("caseContent"), list):
            yield [c["message"] for c in node["caseContent"] if "message" in c]
        for v in node.values():
            yield from said_messages(v)
    elif isinstance(node, list):
        for v in node:
            yield from said_messages(v)


def preset_lists(node):
    if isinstance(node, dict):
        if isinstance(node.get("setParameterActions"), list):
            yield node["setParameterActions"]
        for v in node.values():
            yield from preset_lists(v)
    elif isinstance(node, list):
        for v in node:
            yield from preset_lists(v)


def flow_resources(root):
    files = read_agent(root)
    for flow, data in files.flows.items():
        yield flow, data
        yield from ((f"{flow} / {name}", page) for name, page in files.pages[flow].items())


# --- the SSML of one message ------------------------------------------------------------------------------------

def test_digits_are_read_by_characters_and_other_references_stay():
    """A card number, a request number and a zip code are wrapped in say-as; a card vendor is not."""
    ssml = to_ssml("末尾が $session.params.last_four_digit_of_card_number の $session.params.card_vendor、"
                   "番号 $session.params.ticket_number、郵便番号 $session.params.zip_code です。")
    assert ssml == (f"<speak>末尾が {SAY}$session.params.last_four_digit_of_card_number</say-as> の "
                    f"$session.params.card_vendor、番号 {SAY}$session.params.ticket_number</say-as>、"
                    f"郵便番号 {SAY}$session.params.zip_code</say-as> です。</speak>")


def test_a_sentence_ending_after_a_reference_keeps_its_full_stop_outside():
    """'… is $session.params.ticket_number.' : the full stop is the sentence's, not part of the name."""
    assert to_ssml("Your number is $session.params.ticket_number.") == (
        f"<speak>Your number is {SAY}$session.params.ticket_number</say-as>.</speak>")


def test_xml_specials_are_escaped():
    """&, < and > in the text become entities, so the document stays well-formed."""
    ssml = to_ssml("Terms & conditions: 1 < 2 > 0")
    assert ssml == "<speak>Terms &amp; conditions: 1 &lt; 2 &gt; 0</speak>"
    assert ET.fromstring(ssml).text == "Terms & conditions: 1 < 2 > 0"


def test_a_twinned_parameter_is_spoken_from_its_twin():
    """A message naming a card list built from digits says the list's _ssml twin instead."""
    assert to_ssml("Cards: $flow.card_list_en.", {"$flow.card_list_en"}) == "<speak>Cards: $flow.card_list_en_ssml.</speak>"


@pytest.mark.parametrize("message", [
    {"text": {"text": ["one", "two"]}, "languageCode": "en"},
    {"outputAudioText": {"ssml": "<speak>hand written</speak>"}, "languageCode": "en"},
])
def test_what_a_twin_cannot_follow_is_refused(message):
    """Random variants (CX picks one, the twin could not) and hand-written audio in the sources are refused."""
    with pytest.raises(VoiceError):
        add_voice({"entryFulfillment": {"messages": [message]}}, set())


# --- twin parameters ----------------------------------------------------------------------------------------------

CARDS = {"last_four_digit_of_all_cards": ["5555", "4444"], "card_vendor_all": ["Visa", "AT&T"]}


def test_a_card_list_twin_wraps_each_card_when_cx_evaluates_it():
    """CONCATENATE of GETs: evaluated as CX would, the twin reads each card by characters and escapes the rest."""
    value = ('$sys.func.CONCATENATE("末尾が ", $sys.func.GET($session.params.last_four_digit_of_all_cards, 0), '
             '" & ", $sys.func.GET($session.params.last_four_digit_of_all_cards, 1))')
    twin = twin_value(value, set())
    spoken = ET.fromstring("<speak>" + evaluate_value(twin, Params(**CARDS)) + "</speak>")
    assert [e.text for e in spoken.iter("say-as")] == ["5555", "4444"]
    assert "".join(spoken.itertext()) == evaluate_value(value, Params(**CARDS))


def test_a_joined_card_list_twin_wraps_each_card():
    """JOIN of the digits: the separator closes one say-as and opens the next."""
    value = '$sys.func.CONCATENATE("cards ending in ", $sys.func.JOIN(", ", $session.params.last_four_digit_of_all_cards))'
    spoken = ET.fromstring("<speak>" + evaluate_value(twin_value(value, set()), Params(**CARDS)) + "</speak>")
    assert [e.text for e in spoken.iter("say-as")] == ["5555", "4444"]
    assert "".join(spoken.itertext()) == "cards ending in 5555, 4444"


def test_digits_inside_an_unknown_function_are_refused():
    """Digits the twin cannot wrap (inside an IF) are a build error, not a number read as a quantity."""
    value = '$sys.func.CONCATENATE($sys.func.IF("true", $session.params.ticket_number, "none"))'
    with pytest.raises(VoiceError):
        twin_value(value, set())


def test_every_place_a_fulfillment_can_be_gets_its_twins():
    """Entry, routes, event handlers, form prompts and re-prompts, conditional cases: each text gets a twin."""
    say = {"messages": [{"text": {"text": ["$session.params.zip_code?"]}, "languageCode": "en"}]}
    page = {
        "entryFulfillment": json.loads(json.dumps(say)),
        "transitionRoutes": [{"condition": "true", "triggerFulfillment": json.loads(json.dumps(say))}],
        "eventHandlers": [{"event": "sys.no-match-default", "triggerFulfillment": json.loads(json.dumps(say))}],
        "form": {"parameters": [{"displayName": "zip_code", "fillBehavior": {
            "initialPromptFulfillment": json.loads(json.dumps(say)),
            "repromptEventHandlers": [{"event": "sys.no-input-1", "triggerFulfillment": json.loads(json.dumps(say))}],
        }}]},
        "entryFulfillment2": {"conditionalCases": [{"cases": [{"condition": "true", "caseContent": [
            {"message": say["messages"][0]},
            {"additionalCases": {"cases": [{"caseContent": [{"message": say["messages"][0]}]}]}},
        ]}]}]},
    }
    add_voice(page, set())
    lists = list(said_messages(page))
    assert len(lists) == 7
    for messages in lists:
        assert messages[1] == {"outputAudioText": {"ssml": f"<speak>{SAY}$session.params.zip_code</say-as>?</speak>"},
                               "languageCode": "en"}


# --- the agent we ship --------------------------------------------------------------------------------------------

def test_the_sources_stay_text_only():
    """No outputAudioText and no _ssml parameter in the sources: voice is generated at build time."""
    for path in (REPO / "flows").rglob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert "outputAudioText" not in text and "_ssml" not in text, path


def test_every_text_message_of_the_build_has_its_ssml_twin(built_agent):
    """Right after each text message: an outputAudioText in the same language whose SSML says the same words."""
    twins = find_twins([data for _, data in flow_resources(REPO)])
    checked = 0
    for where, data in flow_resources(built_agent):
        for messages in said_messages(data):
            texts = [m for m in messages if "text" in m]
            audio = [m for m in messages if "outputAudioText" in m]
            assert len(texts) == len(audio), where
            for i, m in enumerate(messages):
                if "text" not in m:
                    continue
                twin = messages[i + 1]
                assert twin["languageCode"] == m["languageCode"], where
                ssml = twin["outputAudioText"]["ssml"]
                assert ssml == to_ssml(m["text"]["text"][0], twins), where
                # Parameters filled in (digits for the references), the document parses and says the text.
                filled = re.sub(r"\$[\w.]+?(?=[^\w.]|\.(?!\w)|$)", "1234", ssml)
                heard = "".join(ET.fromstring(filled).itertext())
                assert heard == re.sub(r"\$[\w.]+?(?=[^\w.]|\.(?!\w)|$)", "1234", m["text"]["text"][0]), where
                checked += 1
    assert checked > 250


def test_twin_parameters_are_set_wherever_their_text_twin_is(built_agent):
    """Each preset of a card list is followed by its _ssml twin's, null with null; no twin is set elsewhere."""
    twins = find_twins([data for _, data in flow_resources(REPO)])
    assert twins == {"$flow.card_list_ja", "$flow.card_list_en"}
    pairs = 0
    for where, data in flow_resources(built_agent):
        for actions in preset_lists(data):
            names = [param_key(a["parameter"]) for a in actions]
            for i, name in enumerate(names):
                if name in twins:
                    assert names[i + 1] == name + "_ssml", where
                    assert (actions[i + 1]["value"] is None) == (actions[i]["value"] is None), where
                    pairs += 1
                elif name.endswith("_ssml"):
                    assert i > 0 and names[i - 1] + "_ssml" == name, where
    assert pairs == 8  # two, three, four, more cards; ja and en


def test_no_twinned_parameter_is_also_set_by_the_webhook():
    """A parameter the webhook returns would change without its _ssml twin: none of the twinned ones is returned."""
    twins = find_twins([data for _, data in flow_resources(REPO)])
    _, returned = tag_contract()
    assert twins and not {t.removeprefix("$flow.") for t in twins} & set().union(*returned.values())


def test_the_build_reads_a_card_list_by_characters(built_agent):
    """The built card-list page says the card list's twin, and that twin wraps each card's digits."""
    page = load(built_agent / "flows" / "Lock card" / "pages" / "%3e collect card number.json")
    ssml = [m["outputAudioText"]["ssml"] for m in page["entryFulfillment"]["messages"] if "outputAudioText" in m]
    assert ssml == ["<speak>その番号に登録されているカードが複数あります。$flow.card_list_ja_ssml です。</speak>",
                    "<speak>There are several cards registered to that number: $flow.card_list_en_ssml.</speak>"]
