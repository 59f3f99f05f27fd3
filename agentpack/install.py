"""Install our Lock card and Authentication flows into an existing agent (agentpack room), keeping its other flows.

`deploy` restores a whole agent (replacing it); a bank with its own agent needs ours *beside* its flows. This module
creates, through the API and resource by resource, what those two flows need: their webhook(s), the custom entity
types and intents they reference (plus `head.lock_card`, for the bank's own route into *Lock card*), the two flows
and their pages. Nothing else in the agent is touched: not its start flow, not its other flows, intents, entity
types or webhooks.

Why not `FlowsClient.import_flow`: its `flow_content` is the raw output of `export_flow`, a format Google does not
document; we ship the console's export folders, which parse strictly as the v3 types, and can only build a flow
export by exporting it from a live agent. Resource by resource, every request is an official type we can check
offline against a fake, and the rules for existing resources are ours to state:

- A second install (our flows carry `INSTALL_MARKER` in their description) updates everything in place: same
  resource ids, so the bank's routes into *Lock card* keep working; pages we no longer ship are deleted.
- A name clash (a flow, intent, entity type or webhook of one of our names that we did not install, e.g. Google's
  own *Lock card* component, whose shared `prebuilt_components_*` intents use the same names) stops the install
  before anything is written, listing every clash. `replace_existing=True` (`--replace-existing`) overwrites those
  resources in place with ours (same ids: the bank's references to them still resolve), deleting the replaced
  flows' pages that ours do not have.

Display names are unique per agent in CX, so they are how resources are found. Texts go in per language
(`language_code` on every create and update), for each of ja and en the agent supports.

google-cloud-dialogflow-cx is imported only inside the functions; tests pass one fake for every client.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from agentpack.build import LANGUAGES
from agentpack.deploy import DeployError, api_endpoint
from agentpack.validate import fulfillments, read_agent, to_api_json, transitions

INSTALL_FLOWS = ("Lock card", "Authentication")
EXTRA_INTENTS = ("head.lock_card",)  # for the bank's own route into Lock card; our start flow is not installed
INSTALL_MARKER = "[installed by agentpack]"
SYSTEM_ENTITY = "projects/-/locations/-/agents/-/entityTypes/"
_SYMBOLIC = {"End Flow": "END_FLOW", "End Session": "END_SESSION", "Current Page": "CURRENT_PAGE",
             "Previous Page": "PREVIOUS_PAGE", "Start Page": "START_PAGE"}
_SYMBOLIC_API = {"END_FLOW", "END_SESSION", "CURRENT_PAGE", "PREVIOUS_PAGE", "START_PAGE", "END_FLOW_WITH_FAILURE",
                 "END_FLOW_WITH_HUMAN_ESCALATION", "END_FLOW_WITH_CANCELLATION"}


@dataclass
class Clients:
    """The Dialogflow CX API clients an install uses (one fake can play them all in tests)."""

    agents: Any
    flows: Any
    pages: Any
    intents: Any
    entity_types: Any
    webhooks: Any


@dataclass
class Installed:
    agent: str
    languages: list[str]
    created: list[str] = field(default_factory=list)  # "kind display name"
    updated: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)


def clients_for(agent: str) -> Clients:  # pragma: no cover - needs Google credentials
    from google.api_core.client_options import ClientOptions
    from google.cloud import dialogflowcx_v3 as cx

    endpoint = api_endpoint(agent)
    options = ClientOptions(api_endpoint=endpoint) if endpoint else None
    return Clients(cx.AgentsClient(client_options=options), cx.FlowsClient(client_options=options),
                   cx.PagesClient(client_options=options), cx.IntentsClient(client_options=options),
                   cx.EntityTypesClient(client_options=options), cx.WebhooksClient(client_options=options))


# --- what to install ----------------------------------------------------------------------------------------------

@dataclass
class Package:
    """The resources of a built agent folder that our two flows need, in export JSON, keyed by display name."""

    files: Any
    flows: dict[str, dict]
    pages: dict[str, dict[str, dict]]
    intents: list[str]
    entity_types: list[str]
    webhooks: list[str]


def package(built: Path) -> Package:
    """What to install from a `build` folder; DeployError if the flows reach outside themselves."""
    built = Path(built)
    if not (built / "agent.json").exists():
        raise DeployError(f"{built} is not a built agent folder (no agent.json): run `agentpack build` first")
    files = read_agent(built)
    intents, entity_types, webhooks = set(EXTRA_INTENTS), set(), set()
    for flow in INSTALL_FLOWS:
        for res in [files.flows[flow], *files.pages[flow].values()]:
            for t in transitions(res):
                if t.get("intent"):
                    intents.add(t["intent"])
                if t.get("targetFlow") and t["targetFlow"] not in INSTALL_FLOWS:
                    raise DeployError(f"{flow} leads to flow {t['targetFlow']!r}, which is not installed")
            for p in (res.get("form") or {}).get("parameters", []):
                if not p["entityType"].startswith("@sys."):
                    entity_types.add(p["entityType"].lstrip("@"))
            for _, f in fulfillments(res):
                if f.get("webhook"):
                    webhooks.add(f["webhook"])
    return Package(files, {f: files.flows[f] for f in INSTALL_FLOWS}, {f: files.pages[f] for f in INSTALL_FLOWS},
                   sorted(intents), sorted(entity_types), sorted(webhooks))


# --- export JSON -> API types ---------------------------------------------------------------------------------------

def _for_language(data: Any, lang: str) -> Any:
    """Keep the messages of one language (the API takes each language's texts in its own request)."""
    if isinstance(data, list):
        return [_for_language(x, lang) for x in data
                if not (isinstance(x, dict) and "languageCode" in x and x["languageCode"] != lang)]
    if isinstance(data, dict):
        return {k: _for_language(v, lang) for k, v in data.items()}
    return data


class _Names:
    """Display name -> resource name, for the references inside flows and pages."""

    def __init__(self) -> None:
        self.flows: dict[str, str] = {}
        self.pages: dict[str, dict[str, str]] = {}
        self.intents: dict[str, str] = {}
        self.entity_types: dict[str, str] = {}
        self.webhooks: dict[str, str] = {}

    def page(self, flow: str, target: str) -> str:
        target = _SYMBOLIC.get(target, target)
        if target in _SYMBOLIC_API:
            return f"{self.flows[flow]}/pages/{target}"
        return self.pages[flow][target]


def _resolved(resource: dict, flow: str, names: _Names) -> dict:
    """A flow or page in export JSON with every reference by display name turned into a resource name, and the
    output-only route and handler ids dropped."""
    res = copy.deepcopy(resource)
    for t in transitions(res):
        t.pop("name", None)
        if t.get("targetPage"):
            t["targetPage"] = names.page(flow, t["targetPage"])
        if t.get("targetFlow"):
            t["targetFlow"] = names.flows[t["targetFlow"]]
        if t.get("intent"):
            t["intent"] = names.intents[t["intent"]]
    for p in (res.get("form") or {}).get("parameters", []):
        et = p["entityType"]
        p["entityType"] = SYSTEM_ENTITY + et[1:] if et.startswith("@sys.") else names.entity_types[et.lstrip("@")]
    for _, f in fulfillments(res):
        if f.get("webhook"):
            f["webhook"] = names.webhooks[f["webhook"]]
    return res


def _typed(kind: Any, data: dict) -> Any:
    return kind.from_json(json.dumps(to_api_json(data)), ignore_unknown_fields=False)


def page_for(page: dict, flow: str, lang: str, names: _Names) -> Any:
    from google.cloud import dialogflowcx_v3 as cx

    data = _resolved(_for_language(page, lang), flow, names)
    data["name"] = names.pages[flow][page["displayName"]]
    return _typed(cx.Page, data)


def flow_for(flow: dict, lang: str, names: _Names) -> Any:
    from google.cloud import dialogflowcx_v3 as cx

    data = _resolved(_for_language(flow, lang), flow["displayName"], names)
    data["name"] = names.flows[flow["displayName"]]
    data["description"] = _marked(flow.get("description", ""))
    return _typed(cx.Flow, data)


def intent_for(files: Any, name: str, lang: str) -> Any:
    from google.cloud import dialogflowcx_v3 as cx

    data = {k: v for k, v in files.intents[name].items() if k != "name"}
    data["trainingPhrases"] = [{k: v for k, v in tp.items() if k != "id"}
                               for tp in files.training_phrases[name].get(lang, [])]
    return _typed(cx.Intent, data)


def entity_type_for(files: Any, name: str, lang: str) -> Any:
    from google.cloud import dialogflowcx_v3 as cx

    data = {k: v for k, v in files.entity_types[name].items() if k != "name"}
    data["entities"] = files.entities[name].get(lang, [])
    return _typed(cx.EntityType, data)


def webhook_for(files: Any, name: str) -> Any:
    from google.cloud import dialogflowcx_v3 as cx

    return _typed(cx.Webhook, {k: v for k, v in files.webhooks[name].items() if k != "name"})


def _marked(description: str) -> str:
    return description if INSTALL_MARKER in description else f"{description} {INSTALL_MARKER}".strip()


# --- the install --------------------------------------------------------------------------------------------------

def _by_name(resources: Iterator[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for r in resources:
        out.setdefault(r.display_name, []).append(r)
    return out


def install(agent: str, built: Path | str, clients: Clients | None = None, *,
            replace_existing: bool = False) -> Installed:
    """Add our Lock card and Authentication flows, with what they use, to `agent`, keeping everything else.
    See the module's docstring for second installs and name clashes. DeployError before any write when the agent's
    languages or names do not allow it."""
    from google.cloud import dialogflowcx_v3 as cx

    api_endpoint(agent)
    pack = package(Path(built))
    clients = clients or clients_for(agent)

    target = clients.agents.get_agent(request=cx.GetAgentRequest(name=agent))
    if target.default_language_code not in LANGUAGES:
        raise DeployError(f"{agent} speaks {target.default_language_code} by default; our flows are in "
                          f"{', '.join(LANGUAGES)}")
    languages = [target.default_language_code] + [code for code in target.supported_language_codes
                                                  if code in LANGUAGES and code != target.default_language_code]

    existing = {
        "flow": _by_name(clients.flows.list_flows(request=cx.ListFlowsRequest(parent=agent))),
        "intent": _by_name(clients.intents.list_intents(request=cx.ListIntentsRequest(parent=agent))),
        "entity type": _by_name(clients.entity_types.list_entity_types(
            request=cx.ListEntityTypesRequest(parent=agent))),
        "webhook": _by_name(clients.webhooks.list_webhooks(request=cx.ListWebhooksRequest(parent=agent))),
    }
    wanted = {"flow": list(INSTALL_FLOWS), "intent": pack.intents, "entity type": pack.entity_types,
              "webhook": pack.webhooks}
    doubles = [f"{kind} {n!r}" for kind, names in wanted.items() for n in names if len(existing[kind].get(n, [])) > 1]
    if doubles:
        raise DeployError(f"{agent} has several resources named {', '.join(doubles)}; remove the extra ones")
    ours_before = any(INSTALL_MARKER in existing["flow"][f][0].description
                      for f in INSTALL_FLOWS if f in existing["flow"])
    clashes = [f"{kind} {n!r}" for kind, names in wanted.items() for n in names if n in existing[kind]
               and not (ours_before and (kind != "flow" or INSTALL_MARKER in existing["flow"][n][0].description))]
    if clashes and not replace_existing:
        raise DeployError(f"{agent} already has {', '.join(clashes)}, not installed by agentpack: nothing was "
                          "changed. --replace-existing overwrites them in place with ours")

    done = Installed(agent, languages)
    names = _Names()
    first = languages[0]

    # Flows first, marked as ours and empty of routes: if anything below fails, a rerun knows these are ours.
    for flow in INSTALL_FLOWS:
        shell = cx.Flow(display_name=flow, description=_marked(pack.flows[flow].get("description", "")))
        if flow in existing["flow"]:
            shell.name = existing["flow"][flow][0].name
            from google.protobuf import field_mask_pb2

            clients.flows.update_flow(request=cx.UpdateFlowRequest(
                flow=shell, update_mask=field_mask_pb2.FieldMask(paths=["description"]), language_code=first))
            names.flows[flow] = shell.name
        else:
            names.flows[flow] = clients.flows.create_flow(request=cx.CreateFlowRequest(
                parent=agent, flow=shell, language_code=first)).name
            done.created.append(f"flow {flow}")

    for hook in pack.webhooks:
        webhook = webhook_for(pack.files, hook)
        if hook in existing["webhook"]:
            webhook.name = existing["webhook"][hook][0].name
            names.webhooks[hook] = clients.webhooks.update_webhook(
                request=cx.UpdateWebhookRequest(webhook=webhook)).name
            done.updated.append(f"webhook {hook}")
        else:
            names.webhooks[hook] = clients.webhooks.create_webhook(
                request=cx.CreateWebhookRequest(parent=agent, webhook=webhook)).name
            done.created.append(f"webhook {hook}")

    for kind, build_one, client, create, update, key, request_types in (
        ("entity type", entity_type_for, clients.entity_types, "create_entity_type", "update_entity_type",
         "entity_type", (cx.CreateEntityTypeRequest, cx.UpdateEntityTypeRequest)),
        ("intent", intent_for, clients.intents, "create_intent", "update_intent", "intent",
         (cx.CreateIntentRequest, cx.UpdateIntentRequest)),
    ):
        table = names.entity_types if kind == "entity type" else names.intents
        for name in (pack.entity_types if kind == "entity type" else pack.intents):
            resource_name = existing[kind][name][0].name if name in existing[kind] else None
            for lang in languages:
                resource = build_one(pack.files, name, lang)
                if resource_name is None:
                    resource_name = getattr(client, create)(request=request_types[0](
                        parent=agent, language_code=lang, **{key: resource})).name
                    done.created.append(f"{kind} {name}")
                else:
                    resource.name = resource_name
                    getattr(client, update)(request=request_types[1](language_code=lang, **{key: resource}))
            if name in existing[kind]:
                done.updated.append(f"{kind} {name}")
            table[name] = resource_name

    # Pages: empty ones first so that every page can name any other, then their content in each language.
    leftovers: list[Any] = []
    for flow in INSTALL_FLOWS:
        present = _by_name(clients.pages.list_pages(request=cx.ListPagesRequest(parent=names.flows[flow])))
        names.pages[flow] = {}
        for page in pack.pages[flow]:
            if page in present:
                names.pages[flow][page] = present[page][0].name
            else:
                names.pages[flow][page] = clients.pages.create_page(request=cx.CreatePageRequest(
                    parent=names.flows[flow], page=cx.Page(display_name=page), language_code=first)).name
        leftovers += [(flow, p) for name, ps in present.items() if name not in pack.pages[flow] for p in ps]
    for lang in languages:
        for flow in INSTALL_FLOWS:
            for page in pack.pages[flow].values():
                clients.pages.update_page(request=cx.UpdatePageRequest(
                    page=page_for(page, flow, lang, names), language_code=lang))
            clients.flows.update_flow(request=cx.UpdateFlowRequest(
                flow=flow_for(pack.flows[flow], lang, names), language_code=lang))
    for flow in INSTALL_FLOWS:
        (done.updated if flow in existing["flow"] else done.created).append(
            f"{len(pack.pages[flow])} pages of {flow}")
    # Pages of an earlier version of ours, or of the flow we replaced: nothing of ours leads there any more.
    for flow, page in leftovers:
        clients.pages.delete_page(request=cx.DeletePageRequest(name=page.name, force=True))
        done.deleted.append(f"page {flow} / {page.display_name}")
    for flow in INSTALL_FLOWS:
        if flow in existing["flow"]:
            done.updated.append(f"flow {flow}")
    return done
