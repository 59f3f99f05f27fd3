"""Intent matching and entity extraction, Japanese and English, without whitespace tokenisation."""

import pytest

from simulator.errors import UnsupportedFeature
from simulator.nlu import NLU, units

INTENTS = {
    "confirmation_yes": {"ja": ["はい", "そうです", "お願いします", "はい、それで大丈夫です"],
                         "en": ["yes", "yeah", "that's right", "yes please"]},
    "confirmation_no": {"ja": ["いいえ", "違います", "ちがう"], "en": ["no", "nope", "that's wrong"]},
    "lock_card": {"ja": ["カードを止めたい", "カードをロックして", "カードを紛失しました"],
                  "en": ["lock my card", "I lost my card", "block my card please"]},
    "give_last4": {"ja": ["下4桁は[4444](last4)です"], "en": ["it ends in [4444](last4)"],
                   "params": {"last4": "@sys.number-sequence"}},
    "escalate": {"ja": ["オペレーターと話したい", "担当者につないで"], "en": ["talk to a human", "agent please"]},
}
ENTITIES = {
    "lock_reason": {"ja": {"lost": ["なくした", "紛失", "落とした"], "stolen": ["盗まれた", "盗難"],
                           "damaged": ["壊れた", "破損"]},
                    "en": {"lost": ["lost", "misplaced"], "stolen": ["stolen", "theft"],
                           "damaged": ["damaged", "broken"]}},
    "card_last4": {"kind": "KIND_REGEXP", "ja": {"last4": [r"\b\d{4}\b"]}, "en": {"last4": [r"\b\d{4}\b"]}},
    "vendor": {"kind": "KIND_LIST", "ja": {"Visa": ["Visa"], "MasterCard": ["MasterCard"]},
               "en": {"Visa": ["Visa"], "MasterCard": ["MasterCard"]}},
}


@pytest.fixture
def agent(build_agent):
    return build_agent(flows={"Default Start Flow": {}}, intents=INTENTS, entities=ENTITIES)


ALL = list(INTENTS)


@pytest.mark.parametrize(
    "lang, text, intent",
    [
        ("ja", "はい", "confirmation_yes"),
        ("ja", "はい、お願いします。", "confirmation_yes"),
        ("ja", "いいえ", "confirmation_no"),
        ("ja", "いや、違います", "confirmation_no"),
        ("ja", "カードを止めたいんですが", "lock_card"),
        ("ja", "カードを紛失しました！", "lock_card"),
        ("ja", "担当者につないでください", "escalate"),
        ("ja", "下4桁は１２３４です", "give_last4"),
        ("en", "Yes", "confirmation_yes"),
        ("en", "yes please", "confirmation_yes"),
        ("en", "Nope.", "confirmation_no"),
        ("en", "I think I lost my card", "lock_card"),
        ("en", "it ends in 5555", "give_last4"),
        ("en", "can I talk to a human", "escalate"),
    ],
)
def test_intent_matching(agent, lang, text, intent):
    """The caller's words select the intended intent in either language."""
    match = NLU(agent, lang).match_intent(text, ALL)
    assert match is not None and match.intent == intent


@pytest.mark.parametrize("lang, text", [("ja", "今日の天気は？"), ("en", "what's the weather like"),
                                        ("en", "I know"), ("ja", "")])
def test_no_match(agent, lang, text):
    """Unrelated input matches no intent (and "no" is not found inside "know")."""
    assert NLU(agent, lang).match_intent(text, ALL) is None


def test_only_intents_in_scope_can_match(agent):
    """An intent that no route in scope uses cannot be matched."""
    assert NLU(agent, "ja").match_intent("はい", ["confirmation_no", "lock_card"]) is None


def test_annotated_part_fills_intent_parameter(agent):
    """A training phrase's annotated part yields the parameter from the caller's words, full-width digits too."""
    match = NLU(agent, "ja").match_intent("下4桁は４４４９です", ALL)
    assert match.parameters == {"last4": "4449"}


@pytest.mark.parametrize(
    "lang, entity, text, value",
    [
        ("ja", "@lock_reason", "カードをなくしてしまった", None),
        ("ja", "@lock_reason", "カードをなくした", "lost"),
        ("ja", "@lock_reason", "財布ごと盗まれたんです", "stolen"),
        ("en", "@lock_reason", "It was STOLEN yesterday", "stolen"),
        ("en", "@lock_reason", "the chip is broken", "damaged"),
        ("ja", "@card_last4", "番号は５５５５です", "5555"),
        ("en", "@card_last4", "my card is 12345", None),
        ("en", "@vendor", "the visa one", "Visa"),
        ("ja", "@sys.number", "４４４４", 4444.0),
        ("ja", "@sys.number", "三枚", 3.0),
        ("en", "@sys.number", "three", 3.0),
        ("ja", "@sys.number-sequence", "1 2 3 4 5 6", "123456"),
        ("ja", "@sys.number-sequence", "コードは１２３４５６です", "123456"),
        ("ja", "@sys.phone-number", "090-0000-1111です", "090-0000-1111"),
        ("ja", "@sys.zip-code", "郵便番号は123-4567", "123-4567"),
        ("en", "@sys.zip-code", "zip 12345", "12345"),
        ("en", "@sys.email", "mail hanako.sato@example.jp please", "hanako.sato@example.jp"),
        ("ja", "@sys.any", "  なんでも  ", "なんでも"),
        ("en", "@sys.number", "none at all", None),
    ],
)
def test_entity_extraction(agent, lang, entity, text, value):
    """Custom (map, list, regexp) and system entities are found inside the utterance."""
    got = NLU(agent, lang).extract(entity, text)
    assert (got[0] if got else None) == value


def test_unmodelled_system_entity_is_unsupported(agent):
    """A system entity the simulator does not model raises UnsupportedFeature naming it."""
    with pytest.raises(UnsupportedFeature, match="@sys.flight-number"):
        NLU(agent, "en").extract("@sys.flight-number", "LH 400")


def test_units_split_japanese_per_character_and_english_per_word():
    """Japanese is compared character by character, English word by word, after NFKC and case folding."""
    assert units("カード、ＡＢＣ Card!") == ["カ", "ー", "ド", "abc", "card"]


def test_default_negative_intent_suppresses_a_match(build_agent):
    """Input closer to the Default Negative Intent's examples than to any intent is a no-match."""
    intents = dict(INTENTS)
    intents["Default Negative Intent"] = {"en": ["lock my card game", "block my card game app"]}
    agent = build_agent(flows={"Default Start Flow": {}}, intents=intents, entities=ENTITIES)
    nlu = NLU(agent, "en")
    assert nlu.match_intent("lock my card game", ALL) is None
    assert nlu.match_intent("lock my card", ALL).intent == "lock_card"
