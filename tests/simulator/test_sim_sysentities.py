"""The date and time family, @sys.duration and @sys.person, in Japanese and English, and CX's form-filling rules."""

from datetime import datetime

import pytest

from cxbuild import handler, param, route
from simulator import Session

NOW = datetime(2026, 12, 2, 10, 0)  # a Wednesday
DAY = {"year": 2026, "month": 12, "day": 3}
AT_3PM = {"hours": 15, "minutes": 0, "seconds": 0, "nanos": 0}
NEXT_MONTH = {"startDate": {"year": 2027, "month": 1, "day": 1}, "endDate": {"year": 2027, "month": 1, "day": 31}}

CASES = [
    ("@sys.date", "ja", "明日でお願いします", DAY),
    ("@sys.date", "en", "tomorrow please", DAY),
    ("@sys.date", "ja", "12月25日に", {"year": 2026, "month": 12, "day": 25}),
    ("@sys.date", "en", "on December 25", {"year": 2026, "month": 12, "day": 25}),
    ("@sys.time", "ja", "午後3時", AT_3PM),
    ("@sys.time", "en", "at 3pm", AT_3PM),
    ("@sys.time", "ja", "午前9時半", {"hours": 9, "minutes": 30, "seconds": 0, "nanos": 0}),
    ("@sys.date-time", "ja", "明日の午後3時", {**DAY, **AT_3PM}),
    ("@sys.date-time", "en", "tomorrow at 3pm", {**DAY, **AT_3PM}),
    ("@sys.date-period", "ja", "来月", NEXT_MONTH),
    ("@sys.date-period", "en", "next month", NEXT_MONTH),
    ("@sys.date-period", "ja", "6月に行きたい", {"startDate": {"year": 2027, "month": 6, "day": 1},
                                                 "endDate": {"year": 2027, "month": 6, "day": 30}}),
    ("@sys.duration", "ja", "2時間", {"amount": 2, "unit": "h"}),
    ("@sys.duration", "en", "two hours", {"amount": 2, "unit": "h"}),
    ("@sys.duration", "ja", "3日間", {"amount": 3, "unit": "day"}),
    ("@sys.duration", "en", "for 30 minutes", {"amount": 30, "unit": "min"}),
    ("@sys.person", "ja", "山田と申します", {"name": "山田"}),
    ("@sys.person", "en", "my name is Jane Smith", {"name": "Jane Smith"}),
]


def _form_agent(build_agent, entity, handlers=None):
    flows = {"Default Start Flow": {
        "routes": [route(condition="true", page="ask")],
        "handlers": handlers or [],
        "pages": {"ask": {
            "form": [param("value", entity, prompt={"ja": "いつですか？", "en": "When?"})],
            "routes": [route(condition='$page.params.status = "FINAL"', say={"ja": "承りました。", "en": "Got it."})],
        }}}}
    return build_agent(flows=flows)


@pytest.mark.parametrize("entity,lang,said,value", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_system_entity_fills_a_form_parameter(build_agent, entity, lang, said, value):
    """The answer is read relative to the session clock and stored in CX's value shape."""
    s = Session(_form_agent(build_agent, entity), language_code=lang, clock=NOW)
    s.send()
    t = s.send(text=said)
    assert t.params["value"] == value


@pytest.mark.parametrize("entity", ["@sys.date", "@sys.time", "@sys.date-time", "@sys.date-period",
                                    "@sys.duration", "@sys.person"])
@pytest.mark.parametrize("lang,said", [("ja", "カードを止めたい"), ("en", "94043")])
def test_an_utterance_without_the_entity_is_a_no_match(build_agent, entity, lang, said):
    """No date, time, duration or name in the input: no value, the question is asked again (not refused)."""
    s = Session(_form_agent(build_agent, entity), language_code=lang, clock=NOW)
    s.send()
    t = s.send(text=said)
    assert "value" not in t.params and t.messages == [{"ja": "いつですか？", "en": "When?"}[lang]]


def test_the_clock_can_be_a_callable(build_agent):
    """Session(clock=callable) is asked each time, so a test can move time between turns."""
    now = [NOW]
    s = Session(_form_agent(build_agent, "@sys.date"), language_code="en", clock=lambda: now[0])
    s.send()
    now[0] = datetime(2027, 3, 1, 9, 0)
    assert s.send(text="tomorrow").params["value"] == {"year": 2027, "month": 3, "day": 2}


def test_an_approximated_entity_never_takes_an_answer_for_another_question(build_agent):
    """Asked for a zip code, "1500001" fills the zip only: @sys.geo-city and @sys.number wait for their questions."""
    flows = {"Default Start Flow": {"routes": [route(condition="true", page="ask")], "pages": {"ask": {
        "form": [param("zip", "@sys.zip-code", prompt="郵便番号は？"), param("city", "@sys.geo-city", prompt="市区町村は？"),
                 param("floor", "@sys.number", prompt="何階ですか？")]}}}}
    s = Session(build_agent(flows=flows), language_code="ja")
    s.send()
    t = s.send(text="1500001")
    assert t.params == {"zip": "1500001"} and t.messages == ["市区町村は？"]
    t = s.send(text="渋谷区")
    assert t.params == {"zip": "1500001", "city": "渋谷区"} and t.messages == ["何階ですか？"]


def test_an_unannotated_approximated_intent_parameter_is_not_the_whole_utterance(build_agent):
    """An intent's @sys.geo-city parameter outside an annotated part does not fill the page's city question."""
    flows = {"Default Start Flow": {"routes": [route(condition="true", page="ask")], "pages": {"ask": {
        "form": [param("city", "@sys.geo-city", prompt="市区町村は？")],
        "routes": [route(intent="move", say="住所変更ですね。")]}}}}
    intents = {"move": {"ja": ["引っ越しました"], "params": {"city": "@sys.geo-city"}}}
    s = Session(build_agent(flows=flows, intents=intents), language_code="ja")
    s.send()
    t = s.send(text="引っ越しました")
    assert t.intent == "move" and "city" not in t.params
    assert t.messages == ["住所変更ですね。", "市区町村は？"]


def test_a_flow_level_no_match_re_prompts_the_parameter(build_agent):
    """Only the flow handles no-match: its message, then the parameter's initial prompt (FillBehavior)."""
    agent = _form_agent(build_agent, "@sys.number", handlers=[handler("sys.no-match-default", say="すみません。")])
    s = Session(agent, language_code="ja")
    s.send()
    assert s.send(text="わかりません").messages == ["すみません。", "いつですか？"]
