"""cxlint (Google's CX linter) finds nothing in the built agent: voice and chat rules, Japanese and English."""
from __future__ import annotations

import logging
import re

import pytest

# Our naming conventions, given to cxlint's naming rule (it needs a pattern per resource kind).
NAMING = {
    "flow_name": r"^[A-Z][A-Za-z ]+$",
    # Pages that prompt (a form, or a yes/no question) start with "> ", as in Address Collection.
    "page_generic_name": r"^(> )?[a-z][a-z0-9 ]+$",
    "page_with_form_name": r"^> [a-z0-9 ]+$",
    "page_with_webhook_name": r"^[a-z][a-z ]+$",
    "intent_generic_name": r"^(prebuilt_components_[a-z_]+|Default (Welcome|Negative) Intent)$",
    "intent_head_name": r"^head\.[a-z_]+$",
    "entity_type_name": r"^prebuilt_components_[a-z_]+$",
    "webhook_name": r"^prebuilt_components_[a-z_]+$",
    "test_case_name": r"^seed [1-3] (ja|en): ",
}


@pytest.fixture(scope="module")
def cxlint():
    """cxlint's module, imported without letting it take over the root logger (it calls basicConfig(force))."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        from cxlint import cxlint as module
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return module


def lint(cxlint, agent_dir, agent_type: str, language: str) -> list[str]:
    """Run every cxlint rule on the folder; return the issue lines it reported."""
    linter = cxlint.CxLint(agent_type=agent_type, language_code=language, naming_conventions=NAMING)
    cxlint.console.export_text(clear=True)
    linter.lint_agent(str(agent_dir))
    report = cxlint.console.export_text(clear=True)
    assert "Flows linted" in report and "Intents linted" in report and "Test Cases linted" in report
    return [line.strip() for line in report.splitlines() if re.match(r"\s*R\d{3}:", line)]


@pytest.mark.parametrize("language", ["ja", "en"])
@pytest.mark.parametrize("agent_type", ["voice", "chat"])
def test_cxlint_reports_no_issue(cxlint, built_agent, agent_type, language):
    """Zero issues: webhook error handlers, reprompts, reachable pages, phrases, names, test cases."""
    assert lint(cxlint, built_agent, agent_type, language) == []


def test_cxlint_would_report_a_missing_webhook_handler(cxlint, built_agent, tmp_path):
    """The lint run is not vacuous: a webhook page without its error handlers is reported."""
    import json
    import shutil

    copy = tmp_path / "agent"
    shutil.copytree(built_agent, copy)
    page = copy / "flows" / "Lock card" / "pages" / "lock card.json"
    data = json.loads(page.read_text(encoding="utf-8"))
    data["eventHandlers"] = []
    page.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    issues = lint(cxlint, copy, "voice", "ja")
    assert len(issues) == 1 and issues[0].startswith("R011: Missing Webhook Event Handlers")
