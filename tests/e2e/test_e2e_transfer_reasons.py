"""Each of the seed's six transfer_reason values, reached the way a real call reaches it, and the call handed to
a person with the reason set."""
from __future__ import annotations

from e2edialog import says

HANDOVER = "担当者にお繋ぎします。しばらくお待ちください。"


def at_card_prompt(call, **kw):
    """A verified caller with four cards, being asked for the last four digits."""
    session = call("ja", phone_number="09000001111", **kw)
    for said in ("カードをロックしたい", "はい", "123456"):
        turn = session.send(text=said)
    assert turn.page == "> collect card number"
    return session


def handed_over(turn, reason):
    assert turn.ended and turn.end_reason == "END_SESSION", turn.messages
    assert turn.page == "end transfer"
    assert turn.params["transfer_reason"] == reason
    assert {"liveAgentHandoff": {"metadata": {"component": "prebuilt_components_lock_card"}}} in turn.responses
    return turn


def test_agent_the_caller_asks_for_a_person(call):
    """agent: asking for an operator on any page transfers the call."""
    session = at_card_prompt(call)
    turn = handed_over(session.send(text="オペレーターと話したい"), "agent")
    says(turn, "より良いサポートをご提供するため、通話を転送しています。しばらくお待ちください。")


def test_agent_before_the_component_starts(call):
    """agent: also from the greeting, before the Lock card flow runs."""
    session = call("en")
    turn = handed_over(session.send(text="talk to a person"), "agent")
    says(turn, "I'll connect you with a member of our team. Please hold.")


def test_denial_of_information_the_caller_will_not_say(call):
    """denial_of_information: the caller refuses to give the card's last four digits."""
    session = at_card_prompt(call)
    turn = handed_over(session.send(text="教えたくない"), "denial_of_information")
    says(turn, "申し訳ございません。お手続きを完了できませんでした。", HANDOVER)


def test_denial_of_information_no_code_channel(call):
    """denial_of_information: the caller will not take a code by SMS, and the session knows there is no e-mail on
    file — which an unverified session is no longer told (issue 12), so the flow sets it as a verified one would."""
    session = call("ja", phone_number="09000002222", email_registered=False)
    session.send(text="カードをロックしたい")
    turn = handed_over(session.send(text="いいえ"), "denial_of_information")
    says(turn, "かしこまりました。コードをお送りできないため、ご本人確認ができません。",
         "申し訳ございません。ご本人確認ができませんでした。", HANDOVER)


def test_declining_sms_before_verification_offers_e_mail_whether_or_not_there_is_one(call):
    """Before verification the flow cannot know whether an address is on file: declining SMS offers e-mail to
    Ichiro (none on file) as to Hanako, and the flow waits for the code (for Ichiro nothing was sent)."""
    for number in ("09000002222", "09000001111"):
        session = call("ja", phone_number=number)
        session.send(text="カードをロックしたい")
        turn = session.send(text="いいえ")
        says(turn, "かしこまりました。ご登録のメールアドレスにお送りします。",
             "ご登録のメールアドレスにコードを送信しました。この処理には数秒かかることがあります。コードを確認してください。")


def test_max_no_input_three_silences(call):
    """max_no_input: the caller says nothing three times in a row."""
    session = at_card_prompt(call)
    says(session.send(), "申し訳ございません。お声が聞こえませんでした。カード番号の末尾 4 桁をお知らせください。")
    session.send()
    turn = handed_over(session.send(), "max_no_input")
    says(turn, "申し訳ございません。お手続きを完了できませんでした。", HANDOVER)


def test_max_no_match_three_answers_not_understood(call):
    """max_no_match: three answers that are not four digits."""
    session = at_card_prompt(call)
    says(session.send(text="えーと"), "申し訳ございません。聞き取れませんでした。カード番号の末尾 4 桁をお知らせください。")
    session.send(text="どれだったかな")
    turn = handed_over(session.send(text="ちょっと待って"), "max_no_match")
    says(turn, "申し訳ございません。お手続きを完了できませんでした。", HANDOVER)


def test_max_no_match_three_cards_that_are_not_the_callers(call):
    """max_no_match: the $flow retry counter on card numbers (max_retry_card_number, 3)."""
    session = at_card_prompt(call)
    for wrong in ("1111", "2222"):
        session.send(text=wrong)
        turn = session.send(text="はい")
        assert turn.page == "> collect card number"
    session.send(text="3333")
    handed_over(session.send(text="はい"), "max_no_match")


def test_max_no_match_the_webhook_locks_out_the_code(call):
    """max_no_match: three wrong codes; the webhook ends the challenge and says so itself."""
    session = call("ja", phone_number="09000001111")
    session.send(text="カードをロックしたい")
    session.send(text="はい")
    says(session.send(text="111111"), "コードが一致しません。もう一度、6 桁のコードをお知らせください。")
    session.send(text="222222")
    turn = handed_over(session.send(text="333333"), "max_no_match")
    assert turn.params["otp_attempts_left"] == 0


def test_webhook_error_reported_by_the_webhook(call):
    """webhook_error: the webhook refuses (an upstream auth level it is not configured to trust) and sets the
    reason and its code; the flow checks after the call and leaves."""
    session = call("ja", phone_number="09000002222", auth_level=1)
    turn = handed_over(session.send(text="カードをロックしたい"), "webhook_error")
    assert turn.params["webhook_error_code"] == "AUTH_REQUIRED"
    says(turn, "カード情報を取得する間、しばらくお待ちください。", "申し訳ございません。お手続きを完了できませんでした。", HANDOVER)


def test_webhook_error_when_the_service_fails(call):
    """webhook_error: the service answers 500 (webhook.error event)."""
    def broken(environ, start_response):
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"boom"]

    session = call("ja", app=broken, phone_number="09000001111")
    turn = handed_over(session.send(text="カードをロックしたい"), "webhook_error")
    assert "webhook_error_code" not in turn.params


def test_webhook_not_found(call):
    """webhook_not_found: the webhook URL answers 404 (webhook.error.not-found)."""
    session = call("en", webhook_path="/no-such-path", phone_number="09000001111")
    turn = handed_over(session.send(text="i want to lock my card"), "webhook_not_found")
    says(turn, "I'm sorry, I wasn't able to verify your identity.",
         "I'll connect you with a member of our team. Please hold.")
