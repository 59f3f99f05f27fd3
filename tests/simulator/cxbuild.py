"""Builders for small synthetic CX agents, written to disk in the real export layout (URL-quoted file names)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_LANG = "ja"


def _messages(say: Any) -> list[dict]:
    if say is None:
        return []
    if isinstance(say, str):
        say = [say]
    if isinstance(say, dict):
        return [{"text": {"text": [t]}, "languageCode": lang} for lang, t in say.items()]
    return [{"text": {"text": [t]}, "languageCode": DEFAULT_LANG} for t in say]


def fulfillment(say: Any = None, set: dict | None = None, webhook: str | None = None, tag: str | None = None,
                **extra: Any) -> dict:
    f: dict[str, Any] = {}
    if say is not None:
        f["messages"] = _messages(say)
    if set:
        f["setParameterActions"] = [{"parameter": k, "value": v} for k, v in set.items()]
    if webhook:
        f["webhook"], f["tag"] = webhook, tag or ""
    f.update(extra)
    return f


def route(intent: str | None = None, condition: str | None = None, page: str | None = None, flow: str | None = None,
          **f: Any) -> dict:
    r: dict[str, Any] = {"triggerFulfillment": fulfillment(**f)}
    if intent:
        r["intent"] = intent
    if condition:
        r["condition"] = condition
    if page:
        r["targetPage"] = page
    if flow:
        r["targetFlow"] = flow
    return r


def handler(event: str, page: str | None = None, flow: str | None = None, **f: Any) -> dict:
    h: dict[str, Any] = {"event": event, "triggerFulfillment": fulfillment(**f)}
    if page:
        h["targetPage"] = page
    if flow:
        h["targetFlow"] = flow
    return h


def param(name: str, entity: str, required: bool = True, prompt: Any = None, reprompts: list | None = None,
          dtmf: bool = False, **extra: Any) -> dict:
    p: dict[str, Any] = {
        "displayName": name,
        "entityType": entity,
        "required": required,
        "fillBehavior": {"initialPromptFulfillment": fulfillment(say=prompt),
                         "repromptEventHandlers": reprompts or []},
    }
    if dtmf:
        p["advancedSettings"] = {"dtmfSettings": {"enabled": True, "maxDigits": 4, "finishDigit": "#"}}
    p.update(extra)
    return p


def _parts(phrase: str) -> list[dict]:
    """'my card ends in [4444](last4)' -> CX training phrase parts."""
    parts, pos = [], 0
    for m in re.finditer(r"\[([^\]]+)\]\(([\w\-]+)\)", phrase):
        if m.start() > pos:
            parts.append({"text": phrase[pos : m.start()]})
        parts.append({"text": m.group(1), "parameterId": m.group(2)})
        pos = m.end()
    if pos < len(phrase):
        parts.append({"text": phrase[pos:]})
    return parts


def _write(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2), encoding="utf-8")


def _q(name: str) -> str:
    return quote(name, safe=" ")


def write_agent(root: Path, flows: dict, intents: dict | None = None, entities: dict | None = None,
                webhooks: dict | None = None, test_cases: dict | None = None, start_flow: str = "Default Start Flow",
                languages: tuple[str, ...] = ("ja", "en"), agent_extra: dict | None = None) -> Path:
    """Write an export folder. flows: {name: {"routes", "handlers", "groups", "pages": {name: {...}}}}."""
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "agent.json", {"displayName": "synthetic", "defaultLanguageCode": languages[0],
                                 "supportedLanguageCodes": list(languages[1:]), "startFlow": start_flow,
                                 **(agent_extra or {})})
    for fname, spec in flows.items():
        folder = root / "flows" / _q(fname)
        _write(folder / f"{_q(fname)}.json", {
            "name": f"id-{fname}", "displayName": fname,
            "transitionRoutes": spec.get("routes", []), "eventHandlers": spec.get("handlers", []),
            "transitionRouteGroups": list(spec.get("groups", {}).keys()) if spec.get("flow_groups") else [],
            **spec.get("extra", {}),
        })
        for gname, routes in spec.get("groups", {}).items():
            _write(folder / "transitionRouteGroups" / f"{_q(gname)}.json",
                   {"name": f"id-{gname}", "displayName": gname, "transitionRoutes": routes})
        for pname, p in spec.get("pages", {}).items():
            _write(folder / "pages" / f"{_q(pname)}.json", {
                "name": f"id-{pname}", "displayName": pname,
                "entryFulfillment": p.get("entry", {}),
                "form": {"parameters": p.get("form", [])},
                "transitionRoutes": p.get("routes", []),
                "eventHandlers": p.get("handlers", []),
                "transitionRouteGroups": p.get("groups", []),
                **p.get("extra", {}),
            })
    for iname, spec in (intents or {}).items():
        folder = root / "intents" / _q(iname)
        params = [{"id": pid, "entityType": et} for pid, et in spec.get("params", {}).items()]
        _write(folder / f"{_q(iname)}.json", {"name": f"id-{iname}", "displayName": iname, "parameters": params})
        for lang in languages:
            if lang in spec:
                _write(folder / "trainingPhrases" / f"{lang}.json", {"trainingPhrases": [
                    {"parts": _parts(t), "repeatCount": 1, "languageCode": lang} for t in spec[lang]]})
    for ename, spec in (entities or {}).items():
        folder = root / "entityTypes" / _q(ename)
        _write(folder / f"{_q(ename)}.json", {"name": f"id-{ename}", "displayName": ename,
                                             "kind": spec.get("kind", "KIND_MAP")})
        for lang in languages:
            if lang in spec:
                _write(folder / "entities" / f"{lang}.json", {"entities": [
                    {"value": v, "synonyms": syns, "languageCode": lang} for v, syns in spec[lang].items()]})
    for wname, spec in (webhooks or {}).items():
        _write(root / "webhooks" / f"{_q(wname)}.json", {"name": f"id-{wname}", "displayName": wname, **spec})
    for tname, spec in (test_cases or {}).items():
        _write(root / "testCases" / f"{_q(tname)}.json", {"displayName": tname, **spec})
    return root
