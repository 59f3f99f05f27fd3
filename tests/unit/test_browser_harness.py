"""The shared browser harness: Debian Chromium through Playwright, a Flask app on a loopback port."""
from flask import Flask
from tests.browser import live_server
def test_the_browser_harness_drives_debian_chromium_against_a_live_server(chromium_page):
    """A page served by live_server renders in headless Chromium (the console and simulator tests build on it)."""
    app = Flask("x")
    app.add_url_rule("/", "i", lambda: "<h1>hello</h1>")
    with live_server(app) as base:
        chromium_page.goto(base + "/")
        assert chromium_page.inner_text("h1") == "hello"
