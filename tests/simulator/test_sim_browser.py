"""The browser simulator (/simulator): a developer talks to the built agent against the running webhook, in a
real headless Chromium, and sees what each turn did."""
from __future__ import annotations

import pytest

from tests.browser import live_server

CALLER = "+81 90-0000-1111"
OWNER = "+819000001111"


def _say(page, text):
    """Type a line and wait for the agent's answer to that line."""
    before = page.locator("#messages li.agent").count()
    page.fill("#input", text)
    page.press("#input", "Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('#messages li.agent').length > n && !document.getElementById('send').disabled"
        " || document.querySelector('#messages li.note:last-child')?.textContent.startsWith('—')", arg=before)
    return page.locator("#messages li.agent").all_inner_texts()[before:]


def _start(page, base, lang, caller_id=CALLER):
    page.goto(base + "/simulator")
    page.select_option("#lang", lang)
    page.fill("#caller-id", caller_id)
    page.click("#start")
    page.wait_for_selector("#messages li.agent")
    return page.locator("#messages li.agent").all_inner_texts()


def test_seed_dialog_1_typed_through_the_page(chromium_page, make_app, phone):
    """Seed dialog 1 in Japanese: the caller ID identifies the caller, two codes from the phone, card 4444 locked;
    the page shows the flow and page, the parameters, each webhook call and what a caller hears."""
    page = chromium_page
    with live_server(make_app()) as base:
        opening = _start(page, base, "ja")
        assert opening == ["お電話ありがとうございます。カードのお手続きを承ります。ご用件をお話しください。"]
        assert _say(page, "カードをロックしたい") == [
            "セキュリティ上の理由から、本人確認が必要なため、コードを送信します。コードをスマートフォンで受け取りますか?"]
        assert page.inner_text("#flow") == "Authentication"
        assert "prebuilt_components_authentication:verify_user → 200" in page.inner_text("#webhooks")
        _say(page, "はい")
        assert "send_otp → 200" in page.inner_text("#webhooks")
        said = _say(page, phone.last_code(OWNER))
        assert said[0] == "確認が完了しました。" and "末尾が 4444 の MasterCard" in said[2]
        assert page.inner_text("#params tr[data-name='auth_level'] td:nth-child(2)") == "1"
        assert _say(page, "4444") == ["カード番号の末尾 4 桁は 4444 で間違いありませんか?"]
        _say(page, "はい")
        _say(page, "一時的にロックする")
        _say(page, "破損した")
        _say(page, "スマートフォンに送信")
        said = _say(page, phone.last_code(OWNER))
        assert said[0].startswith("末尾が 4444 のカードが一時的にロックされます。")
        assert "<speak>" in page.inner_text("#audio") and "4444" in page.inner_text("#audio")
        said = _say(page, "はい")
        assert said[0].startswith("カードは正常にロックされました。")
        page.wait_for_selector("#messages li.note:has-text('conversation ended: END_SESSION')")
        assert page.inner_text("#params tr[data-name='card_status'] td:nth-child(2)") == '"inactive"'
        assert "lock_card_ticket_number → 200" in page.inner_text("#webhooks")
        assert page.locator("#input").is_disabled()


def test_the_page_speaks_english(chromium_page, make_app):
    """The same agent in English: greeting, then the Authentication flow's question, page shown."""
    page = chromium_page
    with live_server(make_app()) as base:
        assert _start(page, base, "en")[0].startswith("Thank you for calling")
        assert _say(page, "i want to lock my card") == [
            "For your security, I need to verify your identity, so I'll send you a code. "
            "Can I send it to your smartphone by text message?"]
        assert page.inner_text("#flow") == "Authentication" and page.inner_text("#page") != "—"


def test_the_api_refuses_a_form_post(make_app):
    """A cross-site form cannot drive a conversation: only JSON bodies are accepted (415 otherwise)."""
    client = make_app().test_client()
    r = client.post("/simulator/api/conversations", data={"lang": "ja"})
    assert r.status_code == 415 and "application/json" in r.get_json()["error"]
    r = client.post("/simulator/api/conversations", json={"lang": "fr"})
    assert r.status_code == 400 and "fr" in r.get_json()["error"]
    r = client.post("/simulator/api/conversations/nope/turns", json={"text": "hi"})
    assert r.status_code == 404


def test_not_served_in_production_unless_enabled(make_app):
    """SIMULATOR_PAGE unset: /simulator exists in development only; SIMULATOR_PAGE=false turns it off."""
    assert make_app().test_client().get("/simulator").status_code == 200
    assert make_app(simulator_page=False).test_client().get("/simulator").status_code == 404


@pytest.mark.parametrize("enabled,status", [(None, 404), (True, 200)])
def test_production_serves_it_only_when_the_setting_says_so(enabled, status):
    """Under APP_ENV=production the page is off unless SIMULATOR_PAGE=true."""
    from settings import Settings

    base = Settings(app_env="development")
    prod = base.model_copy(update={"app_env": "production", "simulator_page": enabled})
    assert prod.serves_simulator_page is (status == 200)
