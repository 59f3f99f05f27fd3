"""Static checks of an agent in CX export layout: strict parsing with the official types, references, tags.

The export format differs from the API's JSON in a few documented ways (see `to_api_json`); once those are
normalised every file must parse with `ignore_unknown_fields=False`. google-cloud-dialogflow-cx is imported only
inside the functions that parse (it is a development dependency and slow to import).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from agentpack.build import SOURCES

# Symbolic targets as the console exports them (display form) and as the API spells them.
SYMBOLIC_PAGES = {
    "End Flow", "End Session", "Current Page", "Previous Page", "Start Page",
    "END_FLOW", "END_SESSION", "CURRENT_PAGE", "PREVIOUS_PAGE", "START_PAGE",
    "END_FLOW_WITH_FAILURE", "END_FLOW_WITH_HUMAN_ESCALATION", "END_FLOW_WITH_CANCELLATION",
}


class InvalidAgent(Exception):
    """The agent folder has problems; `problems` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


# --- reading the layout -----------------------------------------------------------------------------------------

def export_dirs(root: Path) -> dict[str, Path]:
    """Resource folders of a built agent (`entityTypes/`) or of the sources (`entities/`)."""
    root = Path(root)
    built = (root / "agent.json").exists()
    names = {"flows": "flows", "entityTypes": "entityTypes" if built else "entities", "intents": "intents",
             "testCases": "testCases", "webhooks": "webhooks"}
    return {k: root / v for k, v in names.items()}


def load(path: Path) -> Any:
    """Strict JSON: duplicate keys are an error, not a silent overwrite."""
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        dupes = {k for k in keys if keys.count(k) > 1}
        if dupes:
            raise ValueError(f"{path}: duplicate keys {sorted(dupes)}")
        return dict(pairs)

    return json.loads(Path(path).read_text(encoding="utf-8"), object_pairs_hook=no_duplicates)


@dataclass
class AgentFiles:
    root: Path
    agent: dict | None = None
    flows: dict[str, dict] = field(default_factory=dict)           # flow display name -> flow
    pages: dict[str, dict[str, dict]] = field(default_factory=dict)  # flow -> page display name -> page
    intents: dict[str, dict] = field(default_factory=dict)
    training_phrases: dict[str, dict[str, list]] = field(default_factory=dict)  # intent -> lang -> phrases
    entity_types: dict[str, dict] = field(default_factory=dict)
    entities: dict[str, dict[str, list]] = field(default_factory=dict)  # entity type -> lang -> entities
    webhooks: dict[str, dict] = field(default_factory=dict)
    test_cases: dict[str, dict] = field(default_factory=dict)


def read_agent(root: Path) -> AgentFiles:
    """Every resource of an export folder (built or sources), keyed by display name."""
    dirs = export_dirs(root)
    out = AgentFiles(Path(root))
    if (Path(root) / "agent.json").exists():
        out.agent = load(Path(root) / "agent.json")
    for d in sorted(dirs["flows"].iterdir()):
        name = d.name
        out.flows[name] = load(d / f"{name}.json")
        out.pages[name] = {}
        if (d / "pages").is_dir():
            for p in sorted((d / "pages").glob("*.json")):
                page = load(p)
                out.pages[name][page["displayName"]] = page
    for d in sorted(dirs["intents"].iterdir()):
        out.intents[d.name] = load(d / f"{d.name}.json")
        out.training_phrases[d.name] = {
            f.stem: load(f)["trainingPhrases"] for f in sorted((d / "trainingPhrases").glob("*.json"))
        } if (d / "trainingPhrases").is_dir() else {}
    for d in sorted(dirs["entityTypes"].iterdir()):
        out.entity_types[d.name] = load(d / f"{d.name}.json")
        out.entities[d.name] = {f.stem: load(f)["entities"] for f in sorted((d / "entities").glob("*.json"))}
    if dirs["webhooks"].is_dir():
        for f in sorted(dirs["webhooks"].glob("*.json")):
            wh = load(f)
            out.webhooks[wh["displayName"]] = wh
    if dirs["testCases"].is_dir():
        for f in sorted(dirs["testCases"].glob("*.json")):
            tc = load(f)
            out.test_cases[tc["displayName"]] = tc
    return out


def json_files(root: Path) -> Iterator[Path]:
    """Every JSON file of an agent folder (sources: only the folders the packager ships)."""
    root = Path(root)
    if (root / "agent.json").exists():
        yield from sorted(root.rglob("*.json"))
        return
    for src in SOURCES:
        if (root / src).is_dir():
            yield from sorted((root / src).rglob("*.json"))


# --- strict parsing ---------------------------------------------------------------------------------------------

def to_api_json(data: Any, *, keep_language: bool = False) -> Any:
    """Normalise the export quirks so the official types can parse a file strictly.

    - `languageCode` on messages, training phrases and entities is export-only (the API takes it per request);
      it is kept where it is a real field (a test case turn's `input.languageCode`).
    - Maps are exported as lists of `{key, value}`; durations as `{seconds, nanos}`.
    - `numTrainingPhrases` (intent metadata) is export-only.
    """
    if isinstance(data, list):
        if data and all(isinstance(x, dict) and set(x) == {"key", "value"} for x in data):
            return {x["key"]: to_api_json(x["value"]) for x in data}
        return [to_api_json(x) for x in data]
    if isinstance(data, dict):
        if data and set(data) <= {"seconds", "nanos"} and all(isinstance(v, (int, float)) for v in data.values()):
            seconds = data.get("seconds", 0) + data.get("nanos", 0) / 1e9
            return f"{seconds:g}s"
        out = {}
        for k, v in data.items():
            if k == "numTrainingPhrases" or (k == "languageCode" and not keep_language):
                continue
            out[k] = to_api_json(v, keep_language=(k == "input"))
        return out
    return data


def _types():
    from google.cloud import dialogflowcx_v3 as cx

    return cx


def parse_strictly(path: Path, root: Path) -> list[str]:
    """Parse one export file with its official type; return the problems (empty when it parses)."""
    cx = _types()
    rel = Path(path).relative_to(root)
    parts = rel.parts
    data = load(path)
    checks: list[tuple[Any, Any]] = []
    if parts == ("agent.json",):
        checks.append((cx.Agent, data))
    elif parts[0] == "flows" and len(parts) == 3:
        checks.append((cx.Flow, data))
    elif parts[0] == "flows" and len(parts) == 4 and parts[2] == "pages":
        checks.append((cx.Page, data))
    elif parts[0] == "intents" and len(parts) == 3:
        checks.append((cx.Intent, data))
    elif parts[0] == "intents" and len(parts) == 4 and parts[2] == "trainingPhrases":
        checks += [(cx.Intent.TrainingPhrase, tp) for tp in data.pop("trainingPhrases")]
        checks.append((None, data))
    elif parts[0] in ("entities", "entityTypes") and len(parts) == 3:
        checks.append((cx.EntityType, data))
    elif parts[0] in ("entities", "entityTypes") and len(parts) == 4 and parts[2] in ("entities", "excludedPhrases"):
        key = "entities" if parts[2] == "entities" else "excludedPhrases"
        item = cx.EntityType.Entity if key == "entities" else cx.EntityType.ExcludedPhrase
        checks += [(item, e) for e in data.pop(key)]
        checks.append((None, data))
    elif parts[0] == "webhooks":
        checks.append((cx.Webhook, data))
    elif parts[0] == "testCases":
        checks.append((cx.TestCase, data))
    else:
        return [f"{rel}: not a file of the CX export layout"]
    problems = []
    for kind, item in checks:
        if kind is None:
            if item:
                problems.append(f"{rel}: unexpected keys {sorted(item)}")
            continue
        try:
            kind.from_json(json.dumps(to_api_json(item)), ignore_unknown_fields=False)
        except Exception as exc:  # noqa: BLE001 - report every file, not just the first
            problems.append(f"{rel}: does not parse as {kind.__qualname__}: {exc}")
    return problems


# --- references ---------------------------------------------------------------------------------------------------

def fulfillments(resource: dict) -> Iterator[tuple[str, dict]]:
    """(where, fulfillment) for every fulfillment in a flow or page, with its route/handler as context."""
    if resource.get("entryFulfillment"):
        yield "entry", resource["entryFulfillment"]
    for r in resource.get("transitionRoutes", []):
        yield f"route {r.get('intent') or r.get('condition')}", r.get("triggerFulfillment") or {}
    for h in resource.get("eventHandlers", []):
        yield f"event {h['event']}", h.get("triggerFulfillment") or {}
    for p in (resource.get("form") or {}).get("parameters", []):
        fb = p.get("fillBehavior") or {}
        yield f"prompt {p['displayName']}", fb.get("initialPromptFulfillment") or {}
        for h in fb.get("repromptEventHandlers", []):
            yield f"reprompt {p['displayName']} {h['event']}", h.get("triggerFulfillment") or {}


def transitions(resource: dict) -> Iterator[dict]:
    yield from resource.get("transitionRoutes", [])
    yield from resource.get("eventHandlers", [])
    for p in (resource.get("form") or {}).get("parameters", []):
        yield from (p.get("fillBehavior") or {}).get("repromptEventHandlers", [])


def check_references(files: AgentFiles, webhook_names: set[str], tags: set[str]) -> list[str]:
    """Targets, intents, entity types, webhooks and tags that do not exist."""
    problems = []
    entity_types = set(files.entity_types)
    for flow_name, flow in files.flows.items():
        resources = [("", flow)] + [(f" / {n}", p) for n, p in files.pages[flow_name].items()]
        for where, res in resources:
            label = f"{flow_name}{where}"
            for t in transitions(res):
                page = t.get("targetPage")
                if page and page not in files.pages[flow_name] and page not in SYMBOLIC_PAGES:
                    problems.append(f"{label}: target page {page!r} does not exist")
                if t.get("targetFlow") and t["targetFlow"] not in files.flows:
                    problems.append(f"{label}: target flow {t['targetFlow']!r} does not exist")
                if t.get("intent") and t["intent"] not in files.intents:
                    problems.append(f"{label}: intent {t['intent']!r} does not exist")
            for p in (res.get("form") or {}).get("parameters", []):
                et = p.get("entityType", "")
                if not et.startswith("@sys.") and et.lstrip("@") not in entity_types:
                    problems.append(f"{label}: entity type {et!r} does not exist")
            for ctx, f in fulfillments(res):
                if f.get("webhook"):
                    if f["webhook"] not in webhook_names:
                        problems.append(f"{label} ({ctx}): webhook {f['webhook']!r} does not exist")
                    if f.get("tag") not in tags:
                        problems.append(f"{label} ({ctx}): tag {f.get('tag')!r} is not in the webhook's registry")
    if files.agent and files.agent.get("startFlow") not in files.flows:
        problems.append(f"agent.json: start flow {files.agent.get('startFlow')!r} does not exist")
    page_ids = {p["name"]: (f, n) for f, ps in files.pages.items() for n, p in ps.items()}
    for name, tc in files.test_cases.items():
        for i, turn in enumerate(tc.get("testCaseConversationTurns", []), 1):
            out = turn.get("virtualAgentOutput") or {}
            intent = (out.get("triggeredIntent") or {}).get("name")
            if intent and intent not in files.intents:
                problems.append(f"test case {name!r} turn {i}: intent {intent!r} does not exist")
            page = out.get("currentPage") or {}
            if page and page.get("name") not in page_ids and page.get("displayName") not in SYMBOLIC_PAGES:
                problems.append(f"test case {name!r} turn {i}: page {page!r} does not exist")
            elif page.get("name") in page_ids and page_ids[page["name"]][1] != page.get("displayName"):
                problems.append(f"test case {name!r} turn {i}: page id and name disagree: {page!r}")
    return problems


def param_name(ref: str) -> str:
    """`$session.params.x` / `x` -> `x`; `$flow.x` -> `$flow.x` (flow scope is kept apart)."""
    if ref.startswith("$session.params."):
        return ref[len("$session.params."):]
    return ref


# --- parameters a webhook call reads ------------------------------------------------------------------------------

_GUARD = re.compile(r"\$session\.params\.([A-Za-z_][\w\-]*)\s*!=\s*null")


def _guards(condition: str | None) -> set[str]:
    """Parameters a route's condition proves set (`$session.params.x != null` in an AND-only condition)."""
    if not condition or " OR " in condition:
        return set()
    return set(_GUARD.findall(condition))


def _apply(f: dict, state: set[str], outputs: dict[str, set[str]],
           check: tuple[dict[str, set[str]], str, list[str]] | None = None) -> set[str]:
    """Presets first, then the webhook call (which reads `state`), then what the webhook sets."""
    state = set(state)
    for action in f.get("setParameterActions", []):
        name = param_name(action["parameter"])
        if action.get("value") is None:
            state.discard(name)
        else:
            state.add(name)
    if f.get("webhook"):
        tag = f.get("tag")
        if check is not None:
            required, where, problems = check
            missing = sorted(required.get(tag, set()) - state)
            if missing:
                problems.append(f"{where}: {tag} reads {', '.join(missing)}, not set on every path to this call")
        state |= outputs.get(tag, set())
    return state


def unset_webhook_params(files: AgentFiles, required: dict[str, set[str]], outputs: dict[str, set[str]],
                         flow_inputs: dict[str, set[str]] | None = None) -> list[str]:
    """Webhook calls that read a parameter not set on every path from the flow's start (must-set dataflow).

    A parameter counts as set after a preset, a form parameter, a webhook that returns it, or a route condition
    that checks it is not null. `required[tag]` are the parameters the tag's handler cannot do without;
    `outputs[tag]` those it returns. Subflows are checked on their own; what they return is not assumed.
    """
    flow_inputs = flow_inputs or {}
    problems: list[str] = []
    start = "\0start"
    for flow_name, flow in files.flows.items():
        pages = files.pages[flow_name]

        def node(n: str) -> dict:
            return flow if n == start else pages[n]

        def edges(n: str, state: set[str], check=None) -> Iterator[tuple[str, set[str]]]:
            res = node(n)
            label = f"{flow_name} / {'Start Page' if n == start else n}"
            after_entry = _apply(res.get("entryFulfillment") or {}, state, outputs,
                                 None if check is None else (required, f"{label} (entry)", check))
            filled = after_entry | {param_name(p["displayName"]) for p in (res.get("form") or {}).get("parameters", [])}
            for t in res.get("transitionRoutes", []):
                s = _apply(t.get("triggerFulfillment") or {}, filled | _guards(t.get("condition")), outputs,
                           None if check is None else (required, f"{label} (route {t.get('intent') or t.get('condition')})", check))
                if t.get("targetPage") in pages:
                    yield t["targetPage"], s
            for t in transitions(res):
                if "event" in t:
                    s = _apply(t.get("triggerFulfillment") or {}, after_entry, outputs,
                               None if check is None else (required, f"{label} (event {t['event']})", check))
                    if t.get("targetPage") in pages:
                        yield t["targetPage"], s

        state_in: dict[str, set[str]] = {start: set(flow_inputs.get(flow_name, set()))}
        work = [start]
        while work:
            n = work.pop()
            for target, s in edges(n, state_in[n]):
                old = state_in.get(target)
                new = s if old is None else old & s
                if old is None or new != old:
                    state_in[target] = new
                    work.append(target)
        for n in state_in:
            for _ in edges(n, state_in[n], check=problems):
                pass
    return problems


# --- everything at once -------------------------------------------------------------------------------------------

# What the webhook adds to any answer besides a handler's result (its failure contract).
WEBHOOK_FAILURE_PARAMS = {"transfer_reason", "webhook_error_code"}


def tag_contract() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """From the webhook's tag registry: the parameters each tag cannot do without, and those it returns."""
    import typing

    from webhook.registry import REGISTRY

    required, returned = {}, {}
    for tag in REGISTRY.tags():
        route = REGISTRY[tag]
        required[tag] = {name for name, f in route.params.model_fields.items() if f.is_required()}
        result = typing.get_type_hints(route.handler)["return"]
        returned[tag] = set(result.model_fields) | WEBHOOK_FAILURE_PARAMS
    return required, returned


_BODY_REF = re.compile(r"\$(session\.params|flow)\.([A-Za-z_][\w\-]*)")


def flexible_contract(webhooks: dict[str, dict]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """For FLEXIBLE webhooks, from their own definitions: the parameters each request body reads (`$flow.x` kept
    apart, a field our table marks optional left out) and those its parameterMapping sets, keyed by display name
    (the tag, in the flexible build)."""
    from agentpack.flexible import CALLS_BY_TAG

    required, returned = {}, {}
    for name, hook in webhooks.items():
        service = hook.get("genericWebService") or {}
        if service.get("webhookType") != "FLEXIBLE":
            continue
        call = CALLS_BY_TAG.get(name)
        try:
            body = json.loads(service.get("requestBody") or "{}")
        except ValueError:
            body = {}
        optional = {ref for field, ref in call.body if field in call.optional} if call else set()
        refs = {v for v in body.values() if isinstance(v, str)} - optional
        required[name] = {("$flow." + m.group(2)) if m.group(1) == "flow" else m.group(2)
                          for ref in refs for m in _BODY_REF.finditer(ref)}
        mapping = service.get("parameterMapping") or {}
        keys = [m["key"] for m in mapping] if isinstance(mapping, list) else list(mapping)
        returned[name] = {param_name(k) for k in keys}
    return required, returned


def validate_agent(root: Path | str) -> list[str]:
    """All static checks on an agent folder (the sources or a build): strict parsing, references, tags, and the
    parameters each webhook call needs. Empty when the agent is sound."""
    from agentpack.build import WEBHOOK_DISPLAY_NAME

    root = Path(root)
    problems: list[str] = []
    for path in json_files(root):
        problems += parse_strictly(path, root)
    files = read_agent(root)
    required, returned = tag_contract()
    webhooks = set(files.webhooks) or {WEBHOOK_DISPLAY_NAME}  # the sources get theirs at build time
    problems += check_references(files, webhooks, set(required))
    # A flexible call sends what its body template names, so that is what must be set on every path to it.
    flexible_required, flexible_returned = flexible_contract(files.webhooks)
    required, returned = required | flexible_required, returned | flexible_returned
    problems += unset_webhook_params(files, required, returned)
    return problems
