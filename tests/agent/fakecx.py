"""An in-memory Dialogflow CX for the agentpack tests: the Agents, Flows, Pages, Intents, EntityTypes and Webhooks
client methods agentpack calls, over the official v3 types, with the service's rules that matter here.

- Requests are the official request types (a dict or a wrong field fails as with the real client).
- Display names are unique per kind and parent (AlreadyExists); ids are assigned by the service.
- Texts are kept per language: a write with `language_code` L replaces L's copy; a write without one is the
  agent's default language's.
- An update with a mask changes only the masked fields (protobuf FieldMask.MergeMessage); without one, all.
- Every flow and page written must only reference what exists: pages of its own flow (or the symbolic ones),
  flows, intents, entity types (or system ones) and webhooks (InvalidArgument otherwise); a page still referenced
  elsewhere cannot be deleted without `force`.
"""
from __future__ import annotations

import itertools

from google.api_core import exceptions
from google.cloud import dialogflowcx_v3 as cx

SYMBOLIC = ("END_FLOW", "END_SESSION", "CURRENT_PAGE", "PREVIOUS_PAGE", "START_PAGE", "END_FLOW_WITH_FAILURE",
            "END_FLOW_WITH_HUMAN_ESCALATION", "END_FLOW_WITH_CANCELLATION")
KINDS = {"flow": (cx.Flow, "flows"), "page": (cx.Page, "pages"), "intent": (cx.Intent, "intents"),
         "entity_type": (cx.EntityType, "entityTypes"), "webhook": (cx.Webhook, "webhooks")}


class FakeDialogflow:
    def __init__(self, agent: str, default_language: str = "ja", supported: tuple[str, ...] = ("en",)):
        self.agent = cx.Agent(name=agent, display_name="bank", default_language_code=default_language,
                              supported_language_codes=list(supported), time_zone="Asia/Tokyo")
        self.store: dict[str, dict[str, dict[str, object]]] = {kind: {} for kind in KINDS}  # kind -> name -> lang -> pb
        self.parents: dict[str, str] = {}
        self.writes: list[tuple[str, str, str]] = []  # (method, resource name, language)
        self._ids = itertools.count(1)

    # --- helpers for tests ------------------------------------------------------------------------------------------

    def add(self, kind: str, parent: str, resource, language: str | None = None) -> str:
        """Put a resource in place as the bank had it (not recorded as a write)."""
        return self._create(kind, parent, resource, language, record=False)

    def get(self, kind: str, name: str, language: str | None = None):
        copies = self.store[kind][name]
        return copies.get(language or self.agent.default_language_code) or next(iter(copies.values()))

    def named(self, kind: str, display_name: str, parent: str | None = None) -> list[str]:
        return [n for n, copies in self.store[kind].items()
                if next(iter(copies.values())).display_name == display_name
                and (parent is None or self.parents[n] == parent)]

    def snapshot(self) -> dict:
        return {kind: {n: {lang: type(pb).to_json(pb) for lang, pb in copies.items()}
                       for n, copies in names.items()} for kind, names in self.store.items()}

    # --- the service's rules -------------------------------------------------------------------------------------

    def _children(self, kind: str, parent: str):
        return [self.get(kind, n) for n in self.store[kind] if self.parents[n] == parent]

    def _create(self, kind: str, parent: str, resource, language: str | None, record: bool = True) -> str:
        type_, collection = KINDS[kind]
        resource = type_(resource)
        if any(r.display_name == resource.display_name for r in self._children(kind, parent)):
            raise exceptions.AlreadyExists(f"{kind} {resource.display_name!r} exists under {parent}")
        resource.name = f"{parent}/{collection}/{next(self._ids):04d}"
        if kind in ("flow", "page"):
            self._check_references(kind, resource, parent)
        self.parents[resource.name] = parent
        self.store[kind][resource.name] = {language or self.agent.default_language_code: resource}
        if record:
            self.writes.append((f"create_{kind}", resource.name, language or ""))
        return resource.name

    def _update(self, kind: str, resource, mask, language: str | None):
        type_, _ = KINDS[kind]
        resource = type_(resource)
        if resource.name not in self.store[kind]:
            raise exceptions.NotFound(f"{kind} {resource.name} does not exist")
        lang = language or self.agent.default_language_code
        copies = self.store[kind][resource.name]
        if mask is not None and list(mask.paths):
            current = type_(self.get(kind, resource.name, lang))
            assert mask.IsValidForDescriptor(type_.pb(current).DESCRIPTOR), list(mask.paths)
            merged = type_.pb(current)
            mask.MergeMessage(type_.pb(resource), merged, replace_message_field=True, replace_repeated_field=True)
            resource = type_.wrap(merged)
        if kind in ("flow", "page"):
            self._check_references(kind, resource, self.parents[resource.name])
        copies[lang] = resource
        self.writes.append((f"update_{kind}", resource.name, language or ""))
        return resource

    def _check_references(self, kind: str, resource, parent: str) -> None:
        flow = resource.name if kind == "flow" else parent
        missing = [ref for ref in self._references(resource, flow) if not self._exists(ref, flow)]
        if missing:
            raise exceptions.InvalidArgument(f"{resource.display_name}: unknown references {missing}")

    @staticmethod
    def _references(resource, flow: str):
        routes = list(resource.transition_routes)
        handlers = list(resource.event_handlers)
        fulfillments = [r.trigger_fulfillment for r in routes] + [h.trigger_fulfillment for h in handlers]
        if isinstance(resource, cx.Page):
            fulfillments.append(resource.entry_fulfillment)
            for p in resource.form.parameters:
                yield ("entity_type", p.entity_type)
                fulfillments.append(p.fill_behavior.initial_prompt_fulfillment)
                for h in p.fill_behavior.reprompt_event_handlers:
                    handlers.append(h)
                    fulfillments.append(h.trigger_fulfillment)
        for t in routes + handlers:
            if t.target_page:
                yield ("page", t.target_page)
            if t.target_flow:
                yield ("flow", t.target_flow)
        for r in routes:
            if r.intent:
                yield ("intent", r.intent)
        for f in fulfillments:
            if f.webhook:
                yield ("webhook", f.webhook)

    def _exists(self, ref, flow: str) -> bool:
        kind, name = ref
        if kind == "entity_type" and name.startswith("projects/-/locations/-/agents/-/entityTypes/sys."):
            return True
        if kind == "page":
            if name in {f"{flow}/pages/{s}" for s in SYMBOLIC}:
                return True
            return name in self.store["page"] and self.parents[name] == flow
        return name in self.store[kind]

    def _referenced(self, page: str) -> bool:
        for kind in ("flow", "page"):
            for name, copies in self.store[kind].items():
                for pb in copies.values():
                    flow = name if kind == "flow" else self.parents[name]
                    if ("page", page) in set(self._references(pb, flow)) and name != page:
                        return True
        return False

    # --- AgentsClient -------------------------------------------------------------------------------------------------

    def get_agent(self, request):
        request = cx.GetAgentRequest(request)
        assert request.name == self.agent.name
        return self.agent

    # --- list / create / update, per kind ----------------------------------------------------------------------------

    def list_flows(self, request):
        return iter(self._children("flow", cx.ListFlowsRequest(request).parent))

    def list_pages(self, request):
        return iter(self._children("page", cx.ListPagesRequest(request).parent))

    def list_intents(self, request):
        return iter(self._children("intent", cx.ListIntentsRequest(request).parent))

    def list_entity_types(self, request):
        return iter(self._children("entity_type", cx.ListEntityTypesRequest(request).parent))

    def list_webhooks(self, request):
        return iter(self._children("webhook", cx.ListWebhooksRequest(request).parent))

    def create_flow(self, request):
        r = cx.CreateFlowRequest(request)
        return self.get("flow", self._create("flow", r.parent, r.flow, r.language_code))

    def create_page(self, request):
        r = cx.CreatePageRequest(request)
        return self.get("page", self._create("page", r.parent, r.page, r.language_code))

    def create_intent(self, request):
        r = cx.CreateIntentRequest(request)
        return self.get("intent", self._create("intent", r.parent, r.intent, r.language_code))

    def create_entity_type(self, request):
        r = cx.CreateEntityTypeRequest(request)
        return self.get("entity_type", self._create("entity_type", r.parent, r.entity_type, r.language_code))

    def create_webhook(self, request):
        r = cx.CreateWebhookRequest(request)
        return self.get("webhook", self._create("webhook", r.parent, r.webhook, None))

    def update_flow(self, request):
        r = cx.UpdateFlowRequest(request)
        return self._update("flow", r.flow, r.update_mask if "update_mask" in r else None, r.language_code)

    def update_page(self, request):
        r = cx.UpdatePageRequest(request)
        return self._update("page", r.page, r.update_mask if "update_mask" in r else None, r.language_code)

    def update_intent(self, request):
        r = cx.UpdateIntentRequest(request)
        return self._update("intent", r.intent, r.update_mask if "update_mask" in r else None, r.language_code)

    def update_entity_type(self, request):
        r = cx.UpdateEntityTypeRequest(request)
        return self._update("entity_type", r.entity_type, r.update_mask if "update_mask" in r else None,
                            r.language_code)

    def update_webhook(self, request):
        r = cx.UpdateWebhookRequest(request)
        return self._update("webhook", r.webhook, r.update_mask if "update_mask" in r else None, None)

    def delete_page(self, request):
        r = cx.DeletePageRequest(request)
        if r.name not in self.store["page"]:
            raise exceptions.NotFound(r.name)
        if not r.force and self._referenced(r.name):
            raise exceptions.FailedPrecondition(f"{r.name} is referenced")
        del self.store["page"][r.name]
        self.writes.append(("delete_page", r.name, ""))
