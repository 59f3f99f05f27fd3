"""The session runtime, on a small Lock card agent: routes, forms, re-prompts, events, the flow stack."""

import pytest

from cxbuild import fulfillment, handler, param, route
from simulator import Session, SessionEnded, SimulatorError, TransitionLoop, UnsupportedFeature, WebhookHTTPError

INTENTS = {
    "lock_card": {"ja": ["カードを止めたい", "カードをロックしたい"], "en": ["lock my card", "block my card"]},
    "yes": {"ja": ["はい", "お願いします"], "en": ["yes", "yes please"]},
    "no": {"ja": ["いいえ", "違います"], "en": ["no", "nope"]},
    "escalate": {"ja": ["オペレーターと話したい"], "en": ["talk to a human"]},
    "repeat": {"ja": ["もう一度言って"], "en": ["say that again"]},
}
ENTITIES = {
    "lock_reason": {"ja": {"lost": ["なくした", "紛失"], "stolen": ["盗まれた"]},
                    "en": {"lost": ["lost"], "stolen": ["stolen"]}},
    "card_last4": {"kind": "KIND_REGEXP", "ja": {"last4": [r"\b\d{4}\b"]}, "en": {"last4": [r"\b\d{4}\b"]}},
}
REPROMPTS = [
    handler("sys.no-match-1", say={"ja": "カード番号の下4桁を教えてください。", "en": "Please tell me the last four digits."}),
    handler("sys.no-match-2", say={"ja": "もう一度、下4桁をお願いします。", "en": "Once more, the last four digits."}),
    handler("sys.no-match-3", page="end escalation", set={"transfer_reason": "max_no_match"}),
    handler("sys.no-input-1", say={"ja": "聞こえませんでした。", "en": "I didn't hear you."}),
    handler("sys.no-input-2", page="end escalation", set={"transfer_reason": "max_no_input"}),
]

FLOWS = {
    "Default Start Flow": {
        "routes": [
            route(intent="lock_card", flow="Lock card"),
            route(condition="$session.params.ticket_number != null", page="goodbye"),
            route(condition="$session.params.transfer_reason != null", page="handoff"),
        ],
        "handlers": [handler("sys.no-match-default", say={"ja": "すみません、もう一度お願いします。",
                                                           "en": "Sorry, say that again?"})],
        "pages": {
            "goodbye": {"entry": fulfillment(say={"ja": "ご利用ありがとうございました。", "en": "Thank you."}),
                        "routes": [route(condition="true", page="END_SESSION")]},
            "handoff": {"entry": fulfillment(say={"ja": "担当者におつなぎします。", "en": "Connecting you."}),
                        "routes": [route(condition="true", page="END_FLOW_WITH_HUMAN_ESCALATION")]},
        },
    },
    "Lock card": {
        "routes": [
            route(condition="true", page="check auth", set={"$flow.auth_level_req": 1, "lock_type": "inactive"}),
            route(intent="escalate", page="end escalation", set={"transfer_reason": "agent"}),
        ],
        "handlers": [
            handler("webhook.error.not-found", page="end escalation", set={"transfer_reason": "webhook_not_found"}),
            handler("webhook.error", page="end escalation", set={"transfer_reason": "webhook_error"}),
        ],
        "pages": {
            "check auth": {"routes": [
                route(condition="$session.params.auth_level >= $flow.auth_level_req", page="> ask card"),
                route(condition="true", flow="Authentication"),
            ]},
            "> ask card": {
                "form": [param("last_four_digit_of_card_number", "@card_last4", dtmf=True,
                               prompt={"ja": "カード番号の下4桁は？", "en": "Last four digits?"}, reprompts=REPROMPTS)],
                "routes": [
                    route(condition='$page.params.status = "FINAL"', webhook="bank", tag="validate_card"),
                    route(condition="$session.params.card_found = true", page="> ask reason"),
                ],
            },
            "> ask reason": {
                "form": [param("lock_reason", "@lock_reason", prompt={"ja": "理由は？", "en": "Why?"})],
                "routes": [route(condition='$page.params.status = "FINAL"', page="> confirm")],
            },
            "> confirm": {
                "entry": fulfillment(say={"ja": "$session.params.last_four_digit_of_card_number のカードを止めます。よろしいですか？",
                                          "en": "Lock card $session.params.last_four_digit_of_card_number?"}),
                "routes": [
                    route(intent="yes", page="done", webhook="bank", tag="lock"),
                    route(intent="no", page="PREVIOUS_PAGE", set={"lock_reason": None}),
                ],
                "handlers": [handler("webhook.error", page="end escalation",
                                     set={"transfer_reason": "webhook_error", "failed_on": "confirm"})],
            },
            "done": {"entry": fulfillment(say={"ja": "受付番号は$session.params.ticket_numberです。",
                                               "en": "Ticket $session.params.ticket_number."}),
                     "routes": [route(condition="true", page="END_FLOW")]},
            "end escalation": {"routes": [route(condition="true", page="END_FLOW_WITH_HUMAN_ESCALATION")]},
        },
    },
    "Authentication": {
        "routes": [route(condition="true", page="> ask code")],
        "pages": {
            "> ask code": {
                "form": [param("otp_code", "@sys.number-sequence", prompt={"ja": "確認コードは？", "en": "Code?"},
                               reprompts=[handler("sys.invalid-parameter",
                                                  say={"ja": "コードが違います。もう一度どうぞ。", "en": "Wrong code."})])],
                "routes": [
                    route(condition='$page.params.status = "FINAL"', webhook="bank", tag="verify_otp"),
                    route(condition="$session.params.auth_level >= 1", page="END_FLOW"),
                ],
            },
        },
    },
}


class FakeBank:
    """A callable webhook: the bank's answers for the tags above, recording every request."""

    def __init__(self):
        self.requests = []

    def __call__(self, request):
        self.requests.append(request)
        tag = request["fulfillmentInfo"]["tag"]
        params = request["sessionInfo"]["parameters"]
        if tag == "verify_otp":
            if params.get("otp_code") == "123456":
                return {"sessionInfo": {"parameters": {"auth_level": 1, "otp_code": None}}}
            return {"pageInfo": {"formInfo": {"parameterInfo": [{"displayName": "otp_code", "state": "INVALID"}]}},
                    "sessionInfo": {"parameters": {"otp_code": None}}}
        if tag == "validate_card":
            found = params["last_four_digit_of_card_number"] in ("4444", "5555")
            return {"sessionInfo": {"parameters": {"card_found": found}},
                    "fulfillmentResponse": {"messages": [] if found else [{"text": {"text": ["見つかりません。"]}}]}}
        if tag == "lock":
            return {"sessionInfo": {"parameters": {"ticket_number": 1234567}}}
        raise AssertionError(tag)


@pytest.fixture
def agent(build_agent):
    return build_agent(flows=FLOWS, intents=INTENTS, entities=ENTITIES, webhooks={
        "bank": {"genericWebService": {"uri": "https://bank.example/webhook"}, "timeout": {"seconds": 2}}})


@pytest.fixture
def bank():
    return FakeBank()


def test_unauthenticated_caller_locks_a_card_through_the_authentication_flow(agent, bank):
    """Lock card calls Authentication, comes back to the calling page, and the session ends politely."""
    s = Session(agent, webhook=bank, language_code="ja")
    first = s.send()
    assert first.messages == [] and first.page == "Start Page" and first.flow == "Default Start Flow"
    t = s.send(text="カードを止めたいです")
    assert (t.flow, t.page, t.messages) == ("Authentication", "> ask code", ["確認コードは？"])
    assert t.params["lock_type"] == "inactive"
    t = s.send(text="１２３４５６")
    assert (t.flow, t.page, t.messages) == ("Lock card", "> ask card", ["カード番号の下4桁は？"])
    assert t.params["auth_level"] == 1 and "otp_code" not in t.params
    t = s.send(text="4444です")
    assert (t.page, t.messages) == ("> ask reason", ["理由は？"])
    t = s.send(text="なくしたんです")
    assert t.messages == ["4444 のカードを止めます。よろしいですか？"]
    t = s.send(text="はい")
    assert t.messages == ["受付番号は1234567です。", "ご利用ありがとうございました。"]
    assert t.ended and t.end_reason == "END_SESSION"
    assert t.flow_exits == [("Lock card", "END_FLOW")]
    with pytest.raises(SessionEnded):
        s.send(text="もしもし")


def test_english_session_uses_english_messages(agent, bank):
    """The session language picks the messages and training phrases of that language."""
    s = Session(agent, webhook=bank, language_code="en", session_params={"auth_level": 1})
    assert s.send(text="please lock my card").messages == ["Last four digits?"]
    assert s.send(text="it is 5555").messages == ["Why?"]
    assert s.send(text="it was stolen").messages == ["Lock card 5555?"]


def test_authenticated_caller_skips_authentication(agent, bank):
    """A caller already at auth_level 1 goes straight to the card question."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    t = s.send(text="カードをロックしたい")
    assert (t.flow, t.page) == ("Lock card", "> ask card")
    assert [r["fulfillmentInfo"]["tag"] for r in bank.requests] == []


def test_form_reprompts_then_escalates_on_the_third_no_match(agent, bank):
    """No-match 1 and 2 re-prompt with the parameter's own handlers; the third escalates with max_no_match."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    assert s.send(text="わかりません").messages == ["カード番号の下4桁を教えてください。"]
    assert s.send(text="えーと").messages == ["もう一度、下4桁をお願いします。"]
    t = s.send(text="忘れました")
    assert t.params["transfer_reason"] == "max_no_match"
    assert t.messages == ["担当者におつなぎします。"]
    assert t.ended and t.end_reason == "END_FLOW_WITH_HUMAN_ESCALATION"
    assert t.flow_exits == [("Lock card", "END_FLOW_WITH_HUMAN_ESCALATION"),
                            ("Default Start Flow", "END_FLOW_WITH_HUMAN_ESCALATION")]
    assert t.events == ["sys.no-match-3"]


def test_no_input_counts_separately(agent, bank):
    """An empty send() is a no-input: the first re-prompts, the second escalates with max_no_input."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    assert s.send().messages == ["聞こえませんでした。"]
    t = s.send()
    assert t.params["transfer_reason"] == "max_no_input" and t.ended


def test_successful_fill_resets_the_no_match_count(agent, bank):
    """After a good answer the count starts again, so a later no-match is no-match-1, re-prompted."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    s.send(text="わかりません")
    s.send(text="4444")
    t = s.send(text="うーん")
    assert t.events == ["sys.no-match-1 (unhandled)"]  # no handler in scope: the question is asked again
    assert t.messages == ["理由は？"]


def test_dtmf_fills_the_card_number(agent, bank):
    """Keyed-in digits with the finish digit fill a DTMF-enabled parameter."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    t = s.send(dtmf="4444#")
    assert t.params["last_four_digit_of_card_number"] == "4444" and t.page == "> ask reason"


def test_unknown_card_stays_on_the_page_with_the_webhook_message(agent, bank):
    """A card the bank does not know: the webhook's message is said and the caller is asked again."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    t = s.send(text="9999")
    assert t.page == "> ask card" and t.messages == ["見つかりません。"]
    assert t.params["card_found"] is False


def test_webhook_invalid_parameter_reprompts_via_sys_invalid_parameter(agent, bank):
    """A webhook marking the code INVALID keeps the caller on the page and runs the invalid-parameter handler."""
    s = Session(agent, webhook=bank)
    s.send(text="カードを止めたい")
    t = s.send(text="000000")
    assert (t.flow, t.page) == ("Authentication", "> ask code")
    assert t.messages == ["コードが違います。もう一度どうぞ。"]
    assert "sys.invalid-parameter" in t.events
    t = s.send(text="123456")
    assert t.page == "> ask card"


def test_escalation_intent_of_the_flow_works_on_every_page(agent, bank):
    """A flow-level intent route is in scope on the flow's pages."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    t = s.send(text="オペレーターと話したい")
    assert t.params["transfer_reason"] == "agent" and t.end_reason == "END_FLOW_WITH_HUMAN_ESCALATION"


def test_page_event_handler_takes_precedence_over_the_flows(agent):
    """On the confirm page a webhook failure is handled by the page's handler, elsewhere by the flow's."""
    def broken(request):
        if request["fulfillmentInfo"]["tag"] == "validate_card":
            return {"sessionInfo": {"parameters": {"card_found": True}}}
        raise WebhookHTTPError(500, "boom")

    s = Session(agent, webhook=broken, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    s.send(text="4444")
    s.send(text="盗まれた")
    t = s.send(text="はい")
    assert t.params["transfer_reason"] == "webhook_error" and t.params["failed_on"] == "confirm"
    assert t.events == ["webhook.error"]


def test_flow_event_handler_answers_specific_webhook_error(agent):
    """An unreachable webhook raises webhook.error.not-found, handled by the flow's specific handler."""
    def unreachable(request):
        raise ConnectionError("no route to host")

    s = Session(agent, webhook=unreachable, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    t = s.send(text="4444")
    assert t.params["transfer_reason"] == "webhook_not_found"
    assert t.events[0] == "webhook.error.not-found"


def test_previous_page_goes_back(agent, bank):
    """Saying no on the confirm page goes back to the reason question (PREVIOUS_PAGE)."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    s.send(text="4444")
    s.send(text="なくした")
    t = s.send(text="いいえ")
    assert t.page == "> ask reason" and t.messages == ["理由は？"]


def test_custom_event_is_handled(build_agent):
    """send(event=...) invokes the page's handler for that event."""
    agent = build_agent(flows={"Default Start Flow": {
        "routes": [route(condition="true", page="wait")],
        "pages": {"wait": {"handlers": [handler("card-arrived", say="届きました。", page="END_SESSION")]}}}})
    s = Session(agent)
    s.send()
    t = s.send(event="card-arrived")
    assert t.messages == ["届きました。"] and t.end_reason == "END_SESSION"


def test_condition_routes_without_target_fall_through_in_order(build_agent):
    """Matching condition routes without a target all run, in order, until one with a target transitions."""
    agent = build_agent(flows={"Default Start Flow": {
        "routes": [route(condition="true", page="build")],
        "pages": {
            "build": {"routes": [
                route(condition="$flow.a = null", set={"$flow.parts": '$sys.func.APPEND($flow.parts, "x")'}),
                route(condition="true", set={"$flow.parts": '$sys.func.APPEND($flow.parts, "y")'}),
                route(condition="$sys.func.COUNT($flow.parts) = 2", page="show"),
                route(condition="true", set={"$flow.parts": '$sys.func.APPEND($flow.parts, "never")'}),
            ]},
            "show": {"entry": fulfillment(say='$sys.func.JOIN("-", $flow.parts)')},
        }}})
    assert Session(agent).send().messages == ["x-y"]


def test_transition_loop_is_reported(build_agent):
    """Two pages sending the caller to each other forever raise TransitionLoop naming the pages."""
    agent = build_agent(flows={"Default Start Flow": {
        "routes": [route(condition="true", page="a")],
        "pages": {"a": {"routes": [route(condition="true", page="b")]},
                  "b": {"routes": [route(condition="true", page="a")]}}}})
    with pytest.raises(TransitionLoop, match="Default Start Flow/a"):
        Session(agent).send()


def test_conditional_response_and_current_page(build_agent):
    """Conditional responses pick the first true case; CURRENT_PAGE re-enters and re-runs entry fulfillment."""
    cases = {"conditionalCases": [{"cases": [
        {"condition": "$flow.n >= 2", "caseContent": [{"message": {"text": {"text": ["最後です。"]}, "languageCode": "ja"}}]},
        {"caseContent": [{"message": {"text": {"text": ["$flow.n 回目です。"]}, "languageCode": "ja"}}]},
    ]}]}
    agent = build_agent(intents=INTENTS, flows={"Default Start Flow": {
        "routes": [route(condition="true", page="count", set={"$flow.n": 0})],
        "pages": {"count": {
            "entry": {"setParameterActions": [{"parameter": "$flow.n", "value": "$sys.func.ADD($flow.n, 1)"}],
                      **cases},
            "routes": [route(intent="repeat", page="CURRENT_PAGE")]}}}})
    s = Session(agent)
    assert s.send().messages == ["1 回目です。"]
    assert s.send(text="もう一度言って").messages == ["最後です。"]


def test_unsupported_feature_names_the_feature_and_file(build_agent):
    """A message kind the simulator does not model raises UnsupportedFeature naming the feature and the page file."""
    agent = build_agent(flows={"Default Start Flow": {
        "routes": [route(condition="true", page="gen")],
        "pages": {"gen": {"entry": {"messages": [{"toolCall": {"tool": "t"}}]}}}}})
    with pytest.raises(UnsupportedFeature, match=r"message toolCall.*gen\.json"):
        Session(agent).send()


def test_turn_reports_parameter_changes_and_pages(agent, bank):
    """A turn lists the pages it went through and the parameters it changed."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    t = s.send(text="カードを止めたい")
    assert t.pages == ["Default Start Flow/Start Page", "Lock card/Start Page", "Lock card/check auth",
                       "Lock card/> ask card"]
    assert t.param_changes == {"lock_type": (None, "inactive")}


def test_conditional_case_speaks_only_the_session_language(build_agent):
    """A case with one message per language says only the session language's message."""
    both = [{"message": {"text": {"text": ["日本語です。"]}, "languageCode": "ja"}},
            {"message": {"text": {"text": ["English."]}, "languageCode": "en"}}]
    agent = build_agent(flows={"Default Start Flow": {
        "routes": [route(condition="true", page="hello")],
        "pages": {"hello": {"entry": {"conditionalCases": [{"cases": [{"caseContent": both}]}]}}}}})
    assert Session(agent, language_code="en").send().messages == ["English."]
    assert Session(agent, language_code="ja").send().messages == ["日本語です。"]


def test_agent_wide_dtmf_settings_apply_to_every_parameter(build_agent):
    """With DTMF enabled for the agent, keyed digits fill a parameter that has no DTMF settings of its own."""
    agent = build_agent(
        agent_extra={"advancedSettings": {"dtmfSettings": {"enabled": True, "maxDigits": 6, "finishDigit": "#"}}},
        flows={"Default Start Flow": {
            "routes": [route(condition="true", page="code")],
            "pages": {"code": {"form": [param("otp_code", "@sys.number-sequence", prompt="コードを押してください。")],
                               "routes": [route(condition='$page.params.status = "FINAL"', page="END_SESSION")]}}}})
    s = Session(agent)
    s.send()
    t = s.send(dtmf="12345678#")
    assert t.params["otp_code"] == "123456" and t.ended


def test_a_language_the_agent_does_not_have_is_refused(build_agent):
    """Asking for a language the agent does not support is an error, not silent English."""
    agent = build_agent(flows={"Default Start Flow": {}}, languages=("ja", "en"))
    with pytest.raises(SimulatorError, match="'fr' is not one of the agent's"):
        Session(agent, language_code="fr")


def test_random_text_variants_say_the_first_and_remember_the_others(build_agent):
    """A text with several variants says the first (deterministic) and lists all in turn.alternatives."""
    agent = build_agent(flows={"Default Start Flow": {
        "routes": [route(condition="true", page="hi")],
        "pages": {"hi": {"entry": {"messages": [{"text": {"text": ["こんにちは。", "どうも。"]}, "languageCode": "ja"}]}}}}})
    t = Session(agent).send()
    assert t.messages == ["こんにちは。"] and t.alternatives == [["こんにちは。", "どうも。"]]


def test_empty_text_is_no_input(agent, bank):
    """send(text="  ") is treated as no input, like silence on the phone."""
    s = Session(agent, webhook=bank, session_params={"auth_level": 1})
    s.send(text="カードを止めたい")
    t = s.send(text="  ")
    assert t.messages == ["聞こえませんでした。"] and t.events == ["sys.no-input-1"]


def test_route_groups_come_after_page_routes_and_before_flow_routes(build_agent):
    """Intent routes are tried page first, then the page's route groups, then the flow's routes."""
    intents = {"help": {"ja": ["助けて"]}, "yes": {"ja": ["はい"]}, "bye": {"ja": ["さようなら"]}}
    agent = build_agent(intents=intents, flows={"Default Start Flow": {
        "routes": [route(condition="true", page="p"), route(intent="help", say="フローのヘルプ"),
                   route(intent="bye", say="フローのさようなら", page="END_SESSION")],
        "groups": {"common": [route(intent="help", say="グループのヘルプ"), route(intent="yes", say="グループのはい")]},
        "pages": {"p": {"groups": ["common"], "routes": [route(intent="yes", say="ページのはい")]}}}})
    s = Session(agent)
    s.send()
    assert s.send(text="はい").messages == ["ページのはい"]
    assert s.send(text="助けて").messages == ["グループのヘルプ"]
    assert s.send(text="さようなら").messages == ["フローのさようなら"]


def test_route_to_a_playbook_is_refused_not_ignored(build_agent):
    """A route whose target is a playbook raises UnsupportedFeature instead of silently staying on the page."""
    agent = build_agent(flows={"Default Start Flow": {
        "routes": [{"condition": "true", "targetPlaybook": "projects/p/playbooks/x", "triggerFulfillment": {}}]}})
    with pytest.raises(UnsupportedFeature, match="targetPlaybook"):
        Session(agent).send()
