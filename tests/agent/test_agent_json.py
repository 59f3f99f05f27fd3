"""Every JSON file we ship parses strictly with the official Dialogflow CX types (after the export quirks)."""
from __future__ import annotations

import json

import pytest

from agentpack.validate import json_files, load, parse_strictly, to_api_json

from agentfacts import REPO


def test_sources_are_in_export_layout():
    """The sources hold flows, entities, intents and test cases, each file where an export puts it."""
    files = [p.relative_to(REPO) for p in json_files(REPO)]
    assert {p.parts[0] for p in files} == {"flows", "entities", "intents", "testCases"}
    for p in files:
        assert parse_strictly(REPO / p, REPO) == [], p


def test_every_file_parses_strictly(agent_root):
    """Sources and built folder alike: no unknown field, no wrong type, no duplicate key, anywhere."""
    problems = []
    files = list(json_files(agent_root))
    assert len(files) > 50
    for path in files:
        problems += parse_strictly(path, agent_root)
    assert problems == []


def test_the_built_folder_has_agent_and_webhook(built_agent):
    """The build adds agent.json and one standard webhook; entity types are under entityTypes/."""
    assert (built_agent / "agent.json").exists()
    assert [p.name for p in (built_agent / "webhooks").iterdir()] == ["prebuilt_components_lock_card_webhook.json"]
    assert (built_agent / "entityTypes").is_dir() and not (built_agent / "entities").exists()


def test_strict_parsing_catches_a_wrong_field(tmp_path):
    """A misspelt field is reported, not ignored."""
    page = load(next((REPO / "flows" / "Lock card" / "pages").glob("*.json")))
    page["entryFulfilment"] = {}
    bad = tmp_path / "flows" / "Lock card" / "pages" / "bad.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps(page), encoding="utf-8")
    problems = parse_strictly(bad, tmp_path)
    assert len(problems) == 1 and "entryFulfilment" in problems[0]


def test_duplicate_keys_are_an_error(tmp_path):
    """Python's json keeps the last duplicate silently; our loader refuses the file."""
    path = tmp_path / "x.json"
    path.write_text('{"a": 1, "a": 2}', encoding="utf-8")
    with pytest.raises(ValueError, match="duplicate keys"):
        load(path)


@pytest.mark.parametrize("export, api", [
    ({"timeout": {"seconds": 5}}, {"timeout": "5s"}),
    ({"parameterMapping": [{"key": "$flow.a", "value": "$.a"}]}, {"parameterMapping": {"$flow.a": "$.a"}}),
    ({"text": {"text": ["x"]}, "languageCode": "ja"}, {"text": {"text": ["x"]}}),
    ({"input": {"text": {"text": "x"}, "languageCode": "en"}}, {"input": {"text": {"text": "x"}, "languageCode": "en"}}),
    ({"displayName": "i", "numTrainingPhrases": 3}, {"displayName": "i"}),
])
def test_export_quirks_are_normalised(export, api):
    """Maps as key/value lists, durations as {seconds}, export-only fields: turned into the API's JSON."""
    assert to_api_json(export) == api
