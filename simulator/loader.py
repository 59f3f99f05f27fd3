"""Reads a CX JSON export (folder or zip) into typed, in-memory objects the engine runs.

The export layout: `agent.json`, `flows/<F>/<F>.json`, `flows/<F>/pages/<P>.json`,
`flows/<F>/transitionRouteGroups/<G>.json`, `intents/<I>/<I>.json` + `trainingPhrases/<lang>.json`,
`entityTypes/<E>/<E>.json` + `entities/<lang>.json` (+ `excludedPhrases/<lang>.json`), `webhooks/<W>.json`,
`testCases/<T>.json`. File names are URL-quoted (`%3e` for `>`); zips may carry `__MACOSX/` junk and may nest
everything under one folder. Loading accepts every valid export; features the engine does not model are recorded
on the object that uses them and raised as UnsupportedFeature only when that object is executed.
"""

from __future__ import annotations

import json
import posixpath
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from simulator.errors import AgentLoadError

# Symbolic page targets as they appear in exports (display form) and in the API (enum form).
SYMBOLIC_PAGES = {
    "start page": "START_PAGE",
    "start_page": "START_PAGE",
    "end flow": "END_FLOW",
    "end_flow": "END_FLOW",
    "end session": "END_SESSION",
    "end_session": "END_SESSION",
    "current page": "CURRENT_PAGE",
    "current_page": "CURRENT_PAGE",
    "previous page": "PREVIOUS_PAGE",
    "previous_page": "PREVIOUS_PAGE",
    "end flow with failure": "END_FLOW_WITH_FAILURE",
    "end_flow_with_failure": "END_FLOW_WITH_FAILURE",
    "end flow with human escalation": "END_FLOW_WITH_HUMAN_ESCALATION",
    "end_flow_with_human_escalation": "END_FLOW_WITH_HUMAN_ESCALATION",
    "end flow with cancellation": "END_FLOW_WITH_CANCELLATION",
    "end_flow_with_cancellation": "END_FLOW_WITH_CANCELLATION",
}

# Fulfillment keys and what the engine does with them. Anything else is unsupported.
_FULFILLMENT_KEYS = {"messages", "setParameterActions", "conditionalCases", "webhook", "tag",
                     "returnPartialResponses", "advancedSettings", "name", "generators", "enableGenerativeFallback",
                     "sendCallCompanionSms"}
_FULFILLMENT_OPTIONAL_FALSY: set[str] = set()
MESSAGE_KINDS = {"text", "payload", "outputAudioText", "conversationSuccess", "liveAgentHandoff",
                 "endInteraction", "telephonyTransferCall", "playAudio", "mixedAudio"}
_MESSAGE_META = {"languageCode", "channel", "responseType", "source"}


@dataclass
class Fulfillment:
    raw: dict
    source: str
    unsupported: list[str] = field(default_factory=list)

    @property
    def messages(self) -> list[dict]:
        return self.raw.get("messages") or []

    @property
    def set_parameter_actions(self) -> list[dict]:
        return self.raw.get("setParameterActions") or []

    @property
    def conditional_cases(self) -> list[dict]:
        return self.raw.get("conditionalCases") or []

    @property
    def webhook(self) -> str | None:
        return self.raw.get("webhook") or None

    @property
    def tag(self) -> str:
        return self.raw.get("tag") or ""

    @property
    def generators(self) -> list[dict]:
        return self.raw.get("generators") or []

    @property
    def generative_fallback(self) -> bool:
        return bool(self.raw.get("enableGenerativeFallback"))


@dataclass
class Target:
    page: str | None = None  # display name or a SYMBOLIC_PAGES value
    flow: str | None = None

    def __bool__(self) -> bool:
        return bool(self.page or self.flow)


@dataclass
class Route:
    intent: str | None
    condition: str
    fulfillment: Fulfillment
    target: Target
    source: str
    name: str = ""


@dataclass
class EventHandler:
    event: str
    fulfillment: Fulfillment
    target: Target
    source: str


@dataclass
class FormParameter:
    name: str
    entity_type: str
    required: bool
    is_list: bool
    redact: bool
    default_value: Any
    initial_prompt: Fulfillment
    reprompt_handlers: list[EventHandler]
    dtmf: dict | None
    source: str


@dataclass
class KnowledgeSettings:
    """A page's or flow's data-store handler: on a no-match, answers found run this fulfillment and target."""

    fulfillment: Fulfillment
    target: Target
    data_stores: list[str]


@dataclass
class Page:
    name: str
    id: str
    entry: Fulfillment
    form: list[FormParameter]
    routes: list[Route]
    event_handlers: list[EventHandler]
    route_groups: list[str]
    source: str
    unsupported: list[str] = field(default_factory=list)
    knowledge: KnowledgeSettings | None = None


@dataclass
class RouteGroup:
    name: str
    id: str
    routes: list[Route]
    source: str


@dataclass
class Flow:
    name: str
    id: str
    routes: list[Route]
    event_handlers: list[EventHandler]
    route_groups: list[str]
    pages: dict[str, Page]
    groups: dict[str, RouteGroup]
    source: str
    unsupported: list[str] = field(default_factory=list)
    knowledge: KnowledgeSettings | None = None


@dataclass
class PhrasePart:
    text: str
    parameter: str | None


@dataclass
class Intent:
    name: str
    id: str
    parameters: dict[str, dict]  # id -> {"entityType", "isList", "redact"}
    phrases: dict[str, list[list[PhrasePart]]]  # language -> phrases
    source: str


@dataclass
class EntityType:
    name: str
    id: str
    kind: str  # KIND_MAP | KIND_LIST | KIND_REGEXP
    entities: dict[str, list[tuple[str, list[str]]]]  # language -> [(value, synonyms)]
    excluded: dict[str, list[str]]
    fuzzy: bool
    source: str


@dataclass
class Webhook:
    name: str
    id: str
    uri: str
    kind: str  # STANDARD | FLEXIBLE
    method: str
    request_body: str | None
    parameter_mapping: dict[str, str]
    headers: dict[str, str]
    timeout_s: float
    source: str
    unsupported: list[str] = field(default_factory=list)
    basic_auth: tuple[str, str] | None = None


@dataclass
class Agent:
    name: str
    default_language: str
    languages: list[str]
    start_flow: str
    flows: dict[str, Flow]
    intents: dict[str, Intent]
    entity_types: dict[str, EntityType]
    webhooks: dict[str, Webhook]
    test_cases: list[dict]
    root: str
    unsupported: list[str] = field(default_factory=list)
    dtmf: dict | None = None  # agent-wide DTMF settings, used where a form parameter has none
    generators: dict[str, str] = field(default_factory=dict)  # generator id -> display name

    def flow(self, ref: str) -> Flow:
        """A flow by display name, id or resource name."""
        key = ref.rsplit("/", 1)[-1]
        for f in self.flows.values():
            if ref in (f.name, f.id) or key == f.id:
                return f
        raise KeyError(f"no flow {ref!r}; flows: {sorted(self.flows)}")

    def intent(self, ref: str) -> Intent:
        key = ref.rsplit("/", 1)[-1]
        for i in self.intents.values():
            if ref in (i.name, i.id) or key == i.id:
                return i
        raise KeyError(f"no intent {ref!r}")


# ------------------------------------------------------------------------------------------- files


class _Files:
    """A read-only view of the export: posix relative path (unquoted) -> bytes."""

    def __init__(self, files: dict[str, bytes], origin: str):
        self.files, self.origin = files, origin

    def json(self, path: str) -> Any:
        self.last = f"{self.origin}/{path}"
        try:
            return json.loads(self.files[path].decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise AgentLoadError(f"{self.origin}/{path}: not valid JSON ({exc})") from None

    def listdir(self, folder: str) -> list[str]:
        """Immediate children (files and folders) of `folder`, sorted."""
        prefix = folder.rstrip("/") + "/" if folder else ""
        names = {p[len(prefix):].split("/", 1)[0] for p in self.files if p.startswith(prefix)}
        return sorted(names)

    def exists(self, path: str) -> bool:
        return path in self.files


def _junk(path: str) -> bool:
    parts = path.split("/")
    return any(p == "__MACOSX" or p.startswith("._") or p == ".DS_Store" for p in parts)


def _read_files(path: Path) -> _Files:
    raw: dict[str, bytes] = {}
    if path.is_dir():
        for p in sorted(path.rglob("*")):
            if p.is_file():
                raw[p.relative_to(path).as_posix()] = p.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    raw[info.filename] = zf.read(info)
    else:
        raise AgentLoadError(f"{path}: neither a folder nor a zip file")
    raw = {k: v for k, v in raw.items() if not _junk(k)}
    roots = sorted((k for k in raw if posixpath.basename(k) == "agent.json"), key=lambda k: k.count("/"))
    if not roots:
        raise AgentLoadError(f"{path}: no agent.json found; is this a CX JSON export?")
    base = posixpath.dirname(roots[0])
    prefix = base + "/" if base else ""
    files = {unquote(k[len(prefix):]): v for k, v in raw.items() if k.startswith(prefix)}
    return _Files(files, str(path) + ("/" + base if base else ""))


# ------------------------------------------------------------------------------------------ parsing


def _target(d: dict) -> Target:
    page = d.get("targetPage")
    if page:
        page = SYMBOLIC_PAGES.get(page.strip().lower(), page)
    return Target(page=page or None, flow=d.get("targetFlow") or None)


def _fulfillment(d: dict | None, source: str) -> Fulfillment:
    d = d or {}
    unsupported = []
    for k, v in d.items():
        if k in _FULFILLMENT_KEYS:
            continue
        if k in _FULFILLMENT_OPTIONAL_FALSY:
            if v:
                unsupported.append(k)
            continue
        unsupported.append(k)
    for m in d.get("messages") or []:
        kinds = [k for k in m if k not in _MESSAGE_META]
        unsupported.extend(f"message {k}" for k in kinds if k not in MESSAGE_KINDS)
    for case in d.get("conditionalCases") or []:
        _check_cases(case.get("cases") or [], unsupported)
    return Fulfillment(d, source, unsupported)


def _check_cases(cases: list, unsupported: list) -> None:
    for c in cases:
        for content in c.get("caseContent") or []:
            if "message" in content:
                kinds = [k for k in content["message"] if k not in _MESSAGE_META]
                unsupported.extend(f"message {k}" for k in kinds if k not in MESSAGE_KINDS)
            elif "additionalCases" in content:
                _check_cases(content["additionalCases"].get("cases") or [], unsupported)


_ROUTE_KEYS = {"intent", "condition", "triggerFulfillment", "targetPage", "targetFlow", "name", "description"}
_HANDLER_KEYS = {"event", "triggerFulfillment", "targetPage", "targetFlow", "name"}
_FORM_PARAM_KEYS = {"displayName", "entityType", "required", "fillBehavior", "isList", "redact", "defaultValue",
                    "advancedSettings"}
_PAGE_KEYS = {"name", "displayName", "form", "entryFulfillment", "transitionRoutes", "eventHandlers",
              "transitionRouteGroups", "advancedSettings", "knowledgeConnectorSettings", "description", "languageCode"}


def _handler_fulfillment(d: dict, known: set[str], source: str) -> Fulfillment:
    """The handler's fulfillment; keys of the handler itself we do not model (targetPlaybook…) raise when called."""
    f = _fulfillment(d.get("triggerFulfillment"), source)
    f.unsupported.extend(k for k in d if k not in known)
    return f


def _routes(items: list | None, source: str) -> list[Route]:
    return [
        Route(
            intent=r.get("intent") or None,
            condition=(r.get("condition") or "").strip(),
            fulfillment=_handler_fulfillment(r, _ROUTE_KEYS, source),
            target=_target(r),
            source=source,
            name=r.get("name", ""),
        )
        for r in items or []
    ]


def _handlers(items: list | None, source: str) -> list[EventHandler]:
    return [EventHandler(h.get("event", ""), _handler_fulfillment(h, _HANDLER_KEYS, source), _target(h), source)
            for h in items or []]


def _form(form: dict | None, source: str) -> list[FormParameter]:
    params = []
    for p in (form or {}).get("parameters") or []:
        fb = p.get("fillBehavior") or {}
        adv = p.get("advancedSettings") or {}
        dtmf = adv.get("dtmfSettings")
        prompt = _fulfillment(fb.get("initialPromptFulfillment"), source)
        prompt.unsupported.extend(f"form parameter field {k}" for k in p if k not in _FORM_PARAM_KEYS)
        params.append(
            FormParameter(
                name=p["displayName"],
                entity_type=p.get("entityType", "@sys.any"),
                required=bool(p.get("required")),
                is_list=bool(p.get("isList")),
                redact=bool(p.get("redact")),
                default_value=p.get("defaultValue"),
                initial_prompt=prompt,
                reprompt_handlers=_handlers(fb.get("repromptEventHandlers"), source),
                dtmf=dtmf if dtmf and dtmf.get("enabled") else None,
                source=source,
            )
        )
    return params


def _knowledge(d: dict, source: str) -> KnowledgeSettings | None:
    k = d.get("knowledgeConnectorSettings") or {}
    if not k.get("enabled"):
        return None
    stores = [c.get("dataStore", "") for c in k.get("dataStoreConnections") or []]
    return KnowledgeSettings(_handler_fulfillment(k, {"enabled", "triggerFulfillment", "targetPage", "targetFlow",
                                                      "dataStoreConnections"}, source), _target(k), stores)


def _page(d: dict, source: str) -> Page:
    unsupported = [f"page field {k}" for k in d if k not in _PAGE_KEYS]
    return Page(
        name=d["displayName"],
        id=d.get("name", d["displayName"]),
        entry=_fulfillment(d.get("entryFulfillment"), source),
        form=_form(d.get("form"), source),
        routes=_routes(d.get("transitionRoutes"), source),
        event_handlers=_handlers(d.get("eventHandlers"), source),
        route_groups=list(d.get("transitionRouteGroups") or []),
        source=source,
        unsupported=unsupported,
        knowledge=_knowledge(d, source),
    )


def _json_files(files: _Files, folder: str) -> list[str]:
    return [f"{folder}/{n}" for n in files.listdir(folder) if n.endswith(".json")]


def _load_flow(files: _Files, folder: str) -> Flow:
    name = folder.rsplit("/", 1)[-1]
    main = f"{folder}/{name}.json"
    if not files.exists(main):
        candidates = _json_files(files, folder)
        if len(candidates) != 1:
            raise AgentLoadError(f"{files.origin}/{folder}: no {name}.json")
        main = candidates[0]
    d = files.json(main)
    src = f"{files.origin}/{main}"
    pages = {}
    for pf in _json_files(files, f"{folder}/pages"):
        page = _page(files.json(pf), f"{files.origin}/{pf}")
        pages[page.name] = page
    groups = {}
    for gf in _json_files(files, f"{folder}/transitionRouteGroups"):
        g = files.json(gf)
        gsrc = f"{files.origin}/{gf}"
        groups[g["displayName"]] = RouteGroup(g["displayName"], g.get("name", g["displayName"]),
                                              _routes(g.get("transitionRoutes"), gsrc), gsrc)
    return Flow(
        name=d.get("displayName", name),
        id=d.get("name", name),
        routes=_routes(d.get("transitionRoutes"), src),
        event_handlers=_handlers(d.get("eventHandlers"), src),
        route_groups=list(d.get("transitionRouteGroups") or []),
        pages=pages,
        groups=groups,
        source=src,
        knowledge=_knowledge(d, src),
    )


def _load_intent(files: _Files, folder: str) -> Intent:
    name = folder.rsplit("/", 1)[-1]
    main = f"{folder}/{name}.json"
    d = files.json(main)
    phrases: dict[str, list] = {}
    for tf in _json_files(files, f"{folder}/trainingPhrases"):
        lang = posixpath.basename(tf)[:-5]
        for tp in files.json(tf).get("trainingPhrases") or []:
            parts = [PhrasePart(p.get("text", ""), p.get("parameterId")) for p in tp.get("parts") or []]
            phrases.setdefault(tp.get("languageCode", lang), []).append(parts)
    params = {p["id"]: p for p in d.get("parameters") or []}
    return Intent(d.get("displayName", name), d.get("name", name), params, phrases, f"{files.origin}/{main}")


def _load_entity_type(files: _Files, folder: str) -> EntityType:
    name = folder.rsplit("/", 1)[-1]
    main = f"{folder}/{name}.json"
    d = files.json(main)
    entities: dict[str, list] = {}
    for ef in _json_files(files, f"{folder}/entities"):
        lang = posixpath.basename(ef)[:-5]
        for e in files.json(ef).get("entities") or []:
            entities.setdefault(e.get("languageCode", lang), []).append((e["value"], list(e.get("synonyms") or [])))
    excluded: dict[str, list] = {}
    for xf in _json_files(files, f"{folder}/excludedPhrases"):
        lang = posixpath.basename(xf)[:-5]
        for x in files.json(xf).get("excludedPhrases") or []:
            excluded.setdefault(x.get("languageCode", lang), []).append(x["value"])
    return EntityType(d.get("displayName", name), d.get("name", name), d.get("kind", "KIND_MAP"), entities,
                      excluded, bool(d.get("enableFuzzyExtraction")), f"{files.origin}/{main}")


def _load_webhook(files: _Files, path: str) -> Webhook:
    d = files.json(path)
    src = f"{files.origin}/{path}"
    unsupported = []
    gws = d.get("genericWebService")
    if gws is None and "serviceDirectory" in d:
        gws = d["serviceDirectory"].get("genericWebService")
    if gws is None:
        unsupported.append("webhook without genericWebService")
        gws = {}
    mapping = gws.get("parameterMapping") or {}
    if isinstance(mapping, list):
        mapping = {m["key"]: m["value"] for m in mapping}
    headers = gws.get("requestHeaders") or {}
    if isinstance(headers, list):
        headers = {h["key"]: h["value"] for h in headers}
    timeout = d.get("timeout") or {}
    if isinstance(timeout, str):
        timeout_s = float(timeout.rstrip("s") or 5)
    else:
        timeout_s = float(timeout.get("seconds", 0 if timeout else 5)) + float(timeout.get("nanos", 0)) / 1e9
    return Webhook(
        name=d.get("displayName", posixpath.basename(path)[:-5]),
        id=d.get("name", ""),
        uri=gws.get("uri", ""),
        kind=gws.get("webhookType", "STANDARD") or "STANDARD",
        method=gws.get("httpMethod", "POST") or "POST",
        request_body=gws.get("requestBody"),
        parameter_mapping=mapping,
        headers=headers,
        timeout_s=timeout_s or 5.0,
        source=src,
        unsupported=unsupported,
        basic_auth=(gws["username"], gws.get("password", "")) if gws.get("username") else None,
    )


def load_agent(path: str | Path) -> Agent:
    """Load a CX JSON export folder or zip into an Agent.

    Raises AgentLoadError if it is not an export or a reference (start flow, target page, intent, entity type,
    webhook) does not resolve.
    """
    path = Path(path)
    files = _read_files(path)
    try:
        return _build(path, files)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        where = getattr(files, "last", files.origin)
        raise AgentLoadError(f"{where}: malformed CX export ({type(exc).__name__}: {exc})") from None


def _build(path: Path, files: _Files) -> Agent:
    agent_json = files.json("agent.json")
    shared_groups = {}  # agent-level route groups (newer exports), usable from every flow
    for gf in _json_files(files, "transitionRouteGroups"):
        g = files.json(gf)
        gsrc = f"{files.origin}/{gf}"
        shared_groups[g["displayName"]] = RouteGroup(g["displayName"], g.get("name", g["displayName"]),
                                                     _routes(g.get("transitionRoutes"), gsrc), gsrc)
    flows = {}
    for name in files.listdir("flows"):
        if not files.exists(f"flows/{name}") and files.listdir(f"flows/{name}"):
            f = _load_flow(files, f"flows/{name}")
            f.groups = {**shared_groups, **f.groups}
            flows[f.name] = f
    intents = {}
    for name in files.listdir("intents"):
        if files.exists(f"intents/{name}/{name}.json"):
            i = _load_intent(files, f"intents/{name}")
            intents[i.name] = i
    entity_types = {}
    for name in files.listdir("entityTypes"):
        if files.exists(f"entityTypes/{name}/{name}.json"):
            e = _load_entity_type(files, f"entityTypes/{name}")
            entity_types[e.name] = e
    webhooks = {}
    for wf in _json_files(files, "webhooks"):
        w = _load_webhook(files, wf)
        webhooks[w.name] = w
    generators = {}
    for name in files.listdir("generators"):
        if files.exists(f"generators/{name}/{name}.json"):
            g = files.json(f"generators/{name}/{name}.json")
            generators[g.get("name", name)] = g.get("displayName", name)
    test_cases = []
    for tf in _json_files(files, "testCases"):
        tc = files.json(tf)
        tc.setdefault("displayName", posixpath.basename(tf)[:-5])
        tc["_source"] = f"{files.origin}/{tf}"
        test_cases.append(tc)
    unsupported = []
    if agent_json.get("startPlaybook"):
        unsupported.append("startPlaybook (generative playbooks)")
    start_flow = agent_json.get("startFlow") or "Default Start Flow"
    languages = [agent_json.get("defaultLanguageCode", "en")] + list(agent_json.get("supportedLanguageCodes") or [])
    agent = Agent(
        name=agent_json.get("displayName") or path.stem,
        default_language=languages[0],
        languages=languages,
        start_flow=start_flow,
        flows=flows,
        intents=intents,
        entity_types=entity_types,
        webhooks=webhooks,
        test_cases=test_cases,
        root=files.origin,
        unsupported=unsupported,
    )
    dtmf = (agent_json.get("advancedSettings") or {}).get("dtmfSettings")
    agent.dtmf = dtmf if dtmf and dtmf.get("enabled") else None
    agent.generators = generators
    _check_references(agent)
    return agent


def _check_references(agent: Agent) -> None:
    if not agent.unsupported and agent.start_flow not in agent.flows:
        raise AgentLoadError(f"{agent.root}/agent.json: start flow {agent.start_flow!r} not among {sorted(agent.flows)}")
    for flow in agent.flows.values():
        holders: list[tuple[list[Route], list[EventHandler], str]] = [(flow.routes, flow.event_handlers, flow.source)]
        for g in flow.groups.values():
            holders.append((g.routes, [], g.source))
        for page in flow.pages.values():
            handlers = list(page.event_handlers)
            for p in page.form:
                handlers.extend(p.reprompt_handlers)
                if p.entity_type.startswith("@") and not p.entity_type.startswith("@sys."):
                    if p.entity_type[1:] not in agent.entity_types:
                        raise AgentLoadError(f"{page.source}: form parameter {p.name!r} uses unknown entity type "
                                             f"{p.entity_type!r}")
            holders.append((page.routes, handlers, page.source))
            for g in page.route_groups:
                if g not in flow.groups:
                    raise AgentLoadError(f"{page.source}: unknown route group {g!r}")
        for routes, handlers, source in holders:
            for r in routes:
                if r.intent and r.intent not in agent.intents:
                    raise AgentLoadError(f"{source}: route uses unknown intent {r.intent!r}")
            for item in [*routes, *handlers]:
                _check_target(agent, flow, item.target, source)
                hook = item.fulfillment.webhook
                if hook and hook not in agent.webhooks:
                    raise AgentLoadError(f"{source}: fulfillment calls unknown webhook {hook!r}")


def _check_target(agent: Agent, flow: Flow, target: Target, source: str) -> None:
    if target.page and target.page not in SYMBOLIC_PAGES.values() and target.page not in flow.pages:
        raise AgentLoadError(f"{source}: target page {target.page!r} is not a page of flow {flow.name!r}")
    if target.flow and target.flow not in agent.flows:
        raise AgentLoadError(f"{source}: target flow {target.flow!r} not among {sorted(agent.flows)}")


__all__ = ["load_agent", "Agent", "Flow", "Page", "Route", "EventHandler", "FormParameter", "Intent",
           "EntityType", "Webhook", "Fulfillment", "Target", "SYMBOLIC_PAGES"]
