"""Loading exports: layouts, quoting, and clear errors for what is not a valid agent."""

import json
import zipfile

import pytest

from cxbuild import route, write_agent
from simulator import AgentLoadError, load_agent

FLOWS = {"Default Start Flow": {"routes": [route(condition="true", page="> ask: card")],
                                "pages": {"> ask: card": {}}}}


def test_folder_with_quoted_names_loads(tmp_path):
    """Page files named with %3e / %3a load under their display names."""
    root = write_agent(tmp_path / "a", flows=FLOWS)
    assert (root / "flows" / "Default Start Flow" / "pages" / "%3E ask%3A card.json").exists()
    assert "> ask: card" in load_agent(root).flows["Default Start Flow"].pages


def test_zip_with_macosx_junk_and_a_top_folder_loads(tmp_path):
    """A zip nesting the export under a folder, with __MACOSX entries, loads as the folder would."""
    root = write_agent(tmp_path / "a", flows=FLOWS)
    archive = tmp_path / "export.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in root.rglob("*"):
            if p.is_file():
                zf.write(p, "agent/" + p.relative_to(root).as_posix())
        zf.writestr("__MACOSX/agent/._agent.json", b"\x00\x05junk")
        zf.writestr("__MACOSX/agent/flows/._x.json", b"\x00junk")
    agent = load_agent(archive)
    assert list(agent.flows) == ["Default Start Flow"]


def test_not_an_export(tmp_path):
    """A folder without agent.json is refused with a message saying so."""
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(AgentLoadError, match="no agent.json"):
        load_agent(tmp_path)


def test_unknown_target_page_is_reported_with_its_file(tmp_path):
    """A route to a page that does not exist names the page and the file."""
    flows = {"Default Start Flow": {"routes": [route(condition="true", page="nowhere")]}}
    with pytest.raises(AgentLoadError, match=r"Default Start Flow\.json: target page 'nowhere'"):
        load_agent(write_agent(tmp_path / "a", flows=flows))


def test_unknown_intent_is_reported(tmp_path):
    """A route on an intent the export does not contain is refused."""
    flows = {"Default Start Flow": {"routes": [route(intent="ghost", say="boo")]}}
    with pytest.raises(AgentLoadError, match="unknown intent 'ghost'"):
        load_agent(write_agent(tmp_path / "a", flows=flows))


def test_malformed_json_names_the_file(tmp_path):
    """A file that is not JSON is named in the error."""
    root = write_agent(tmp_path / "a", flows=FLOWS)
    (root / "flows" / "Default Start Flow" / "pages" / "broken.json").write_text("{not json")
    with pytest.raises(AgentLoadError, match=r"broken\.json: not valid JSON"):
        load_agent(root)


def test_malformed_page_names_the_file(tmp_path):
    """A page without its displayName is a malformed export, named by file."""
    root = write_agent(tmp_path / "a", flows=FLOWS)
    (root / "flows" / "Default Start Flow" / "pages" / "odd.json").write_text(json.dumps({"name": "x"}))
    with pytest.raises(AgentLoadError, match=r"odd\.json: malformed CX export"):
        load_agent(root)
