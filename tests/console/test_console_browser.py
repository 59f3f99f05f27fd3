"""The console in a real headless Chromium, signed in through (our) IAP: answer a hand-off and see the SMS, import
with bad rows and a 100k-row file, find a customer by three spellings, roles and CSRF as a browser meets them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from cardstore.models import Handoff
from tests.browser import live_server
from tests.console.conftest import OPERATOR, SUPERVISOR, locked_and_handed_off

DOCS = Path(__file__).resolve().parents[2] / "docs"


def sign_in(page, iap, email: str) -> None:
    """IAP adds its signed header to every request the browser makes (pages, forms, the progress polls)."""
    page.context.set_extra_http_headers(iap.headers(email))


def handoff_status(app, handoff_id: int) -> tuple[str, str]:
    from webhook.app import service_of

    with service_of(app).store.unit_of_work() as uow:
        h = uow.session.get(Handoff, handoff_id)
        return h.status, h.card.status


def test_a_supervisor_answers_a_handoff_and_the_customer_sms_is_in_the_outbox(browser_console_app, iap, chromium_page,
                                                                              phone):
    """Queue (未回答 first) -> detail with the full number -> reactivate with a note -> 回答済み; the outbox lists
    the SMS of the outcome to the customer's (masked) number."""
    from playwright.sync_api import expect

    app = browser_console_app()
    first = locked_and_handed_off(app, phone, "5555")
    locked_and_handed_off(app, phone, "6666")
    page = chromium_page
    sign_in(page, iap, SUPERVISOR)
    with live_server(app) as base:
        page.goto(f"{base}/console/handoffs")
        row = page.locator(f'tr[data-handoff="{first}"]')
        expect(row).to_contain_text("未回答")
        if os.environ.get("CONSOLE_DOCS_SCREENSHOTS"):
            DOCS.mkdir(exist_ok=True)
            page.screenshot(path=str(DOCS / "console-queue.png"), full_page=True)
        row.get_by_role("link").click()
        expect(page.locator("#caller-phone")).to_have_text("09000001111")
        expect(page.locator("#caller-name")).to_have_text("佐藤 花子")
        expect(page.locator("#status-then")).to_have_text("一時停止 (inactive)")
        page.check("#resolution-reactivated")
        page.fill("#note", "ご本人確認済み。カードが見つかったとのこと")
        page.click("#answer-submit")
        expect(page.locator(".flash.ok")).to_be_visible()
        expect(page.locator(f'tr[data-handoff="{first}"]')).to_contain_text("回答済み")
        assert handoff_status(app, first) == ("answered", "active")
        page.goto(f"{base}/console/outbox")
        sms = page.locator('tr[data-kind="handoff_reactivated"]')
        expect(sms).to_contain_text("sms")
        expect(sms).to_contain_text("*********1111")


def test_import_shows_every_bad_row_then_a_100k_file_moves_its_progress_bar(browser_console_app, iap, chromium_page,
                                                                           tmp_path):
    """A small file's preview lists each bad line with all its reasons (a conflict on both rows); a 100,000-row
    file's import shows a bar that moves, survives a reload, and ends in the summary."""
    from playwright.sync_api import expect

    from backoffice.bench_import import generate

    app = browser_console_app()
    page = chromium_page
    page.set_default_timeout(300_000)  # an upper bound for a loaded machine, not a speed assertion
    sign_in(page, iap, OPERATOR)
    bad = tmp_path / "bad.csv"
    bad.write_text("phone_number,name,email,zip_code,card_last4,card_vendor,card_status\r\n"
                   "09011110001,田中 一郎,,150-0001,1111,Visa,active\r\n"
                   "09011110002,田中 二郎,not-an-address,150-0001,123,Visa,active\r\n"
                   "09011110003,山田 花子,,150-0001,3333,Nosuchcard,active\r\n"
                   "09011110003,山田 月子,,150-0001,4444,Visa,active\r\n", encoding="utf-8")
    big = tmp_path / "big.csv"
    big.write_bytes(generate(100_000))
    with live_server(app) as base:
        page.goto(f"{base}/console/imports")
        page.set_input_files("#file", str(bad))
        page.click("#preview")
        expect(page.locator("#rows-bad")).to_have_text("3", timeout=300_000)  # checked in the background
        line3 = page.locator('tr[data-line="3"]')
        expect(line3).to_contain_text("email is not an e-mail address")
        expect(line3).to_contain_text("card_last4 must be exactly 4 digits")
        expect(page.locator('tr[data-line="4"]')).to_contain_text("card_vendor is not a known vendor")
        expect(page.locator('tr[data-line="4"]')).to_contain_text("name differs from line 5")
        expect(page.locator('tr[data-line="5"]')).to_contain_text("name differs from line 4")

        page.goto(f"{base}/console/imports")
        page.set_input_files("#file", str(big))
        page.click("#preview")
        expect(page.locator("#rows-read")).to_have_text("100000", timeout=300_000)
        page.click("#start-import")
        page.wait_for_function("() => { const b = document.getElementById('bar');"
                               " return b && b.value > 0 && b.value < b.max; }")
        seen = page.evaluate("() => [document.getElementById('phase').textContent,"
                             " document.getElementById('bar').value]")
        page.wait_for_function("([phase, value]) => { const b = document.getElementById('bar');"
                               " const r = document.getElementById('result');"
                               " return r || (b && (document.getElementById('phase').textContent !== phase"
                               " || b.value > value)); }", arg=seen)
        page.reload()  # the progress is in the store: the page picks it up again
        expect(page.locator("#bar, #result").first).to_be_visible()
        expect(page.locator("#result")).to_be_visible(timeout=300_000)
        # 100 bad rows, plus the rows of the two generated numbers the seed fixtures hold under other names.
        assert int(page.locator("#rejected").text_content()) >= 100
        assert int(page.locator("#imported").text_content()) > 39_000


@pytest.mark.parametrize("who", [OPERATOR])
def test_a_customer_is_found_by_three_spellings(browser_console_app, iap, chromium_page, who):
    """090-0000-1111, +81 90 0000 1111 and full-width ０９０００００１１１１ open the same customer; the address
    bar never shows the number."""
    from playwright.sync_api import expect

    app = browser_console_app()
    page = chromium_page
    sign_in(page, iap, who)
    with live_server(app) as base:
        for spelling in ("090-0000-1111", "+81 90 0000 1111", "０９０００００１１１１"):
            page.goto(f"{base}/console/customers")
            page.fill("#phone", spelling)
            page.click("#search")
            expect(page.locator("#customer-phone")).to_have_text("09000001111")
            expect(page.locator("#customer-name")).to_have_text("佐藤 花子")
            assert "1111" not in page.url and "0000" not in page.url


def test_an_operator_has_no_reactivate_control_and_its_post_is_refused(browser_console_app, iap, chromium_page, phone):
    """The operator's detail page offers only 'reject'; a POST made by hand with a valid token gets 403 and the
    hand-off stays 未回答."""
    from playwright.sync_api import expect

    app = browser_console_app()
    handoff_id = locked_and_handed_off(app, phone)
    page = chromium_page
    sign_in(page, iap, OPERATOR)
    with live_server(app) as base:
        page.goto(f"{base}/console/handoffs/{handoff_id}")
        expect(page.locator("#resolution-rejected")).to_be_visible()
        expect(page.locator("#resolution-reactivated")).to_have_count(0)
        token = page.locator("#answer-form input[name=csrf_token]").get_attribute("value")
        response = page.request.post(f"{base}/console/handoffs/{handoff_id}/answer",
                                     form={"csrf_token": token, "resolution": "reactivated", "note": "please"})
        assert response.status == 403
    assert handoff_status(app, handoff_id) == ("unanswered", "inactive")


def test_a_form_posted_without_its_csrf_token_is_refused(browser_console_app, iap, chromium_page, phone):
    """The answer form with its token removed (what a cross-site form would send): 400, nothing answered."""
    from playwright.sync_api import expect

    app = browser_console_app()
    handoff_id = locked_and_handed_off(app, phone)
    page = chromium_page
    sign_in(page, iap, SUPERVISOR)
    with live_server(app) as base:
        page.goto(f"{base}/console/handoffs/{handoff_id}")
        page.evaluate("() => document.querySelector('#answer-form input[name=csrf_token]').remove()")
        page.check("#resolution-rejected")
        page.fill("#note", "forged")
        with page.expect_navigation() as navigation:
            page.click("#answer-submit")
        assert navigation.value.status == 400
        expect(page.locator("h1")).to_contain_text("CSRF")
    assert handoff_status(app, handoff_id) == ("unanswered", "inactive")
