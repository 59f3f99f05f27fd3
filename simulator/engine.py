"""The session runtime: one `Session` runs one conversation through a loaded agent, turn by turn.

How a turn is processed (following the CX "state handlers" documentation):

* End-user text or DTMF: intent routes in scope are tried in order — the page's routes, the page's route groups,
  then the active flow's routes and route groups. An intent route is called when its intent is the NLU's best
  match and its condition holds. Otherwise the input fills the form parameter being collected (and any other
  empty parameter whose entity it contains). Otherwise `sys.no-match-<n>` / `sys.no-match-default` is invoked.
* An event (`send(event=...)`, no input, a webhook failure, an INVALID form parameter): handlers in scope are the
  form parameter's reprompt handlers, the page's, then the flow's; the most specific event name wins
  (`sys.no-match-2` before `sys.no-match-default`, `webhook.error.timeout` before `webhook.error`).
* After a page is entered (entry fulfillment, form parameters already known are taken from the session), after
  an intent route without target and after a form parameter is filled, the condition routes in scope are
  evaluated in order: the page's routes and groups, and the flow's only while on its start page. A matching
  route without a target runs its fulfillment and evaluation continues with the next route; the first matching
  route with a target transitions. Then the next empty required form parameter is prompted.
* A fulfillment applies its parameter presets, then its static messages and conditional responses, then calls its
  webhook; the webhook's messages are appended (or replace, with `mergeBehavior: REPLACE`).
* A target flow pushes a frame on the flow stack and starts at its start page; `END_FLOW` (and the
  `END_FLOW_WITH_*` variants) pops it and the calling page re-evaluates its routes; at the top of the stack they
  end the session, as `END_SESSION` does.
"""

from __future__ import annotations

import base64
import copy
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from simulator import generative
from simulator.conditions import Call, Evaluator, Text, evaluate_condition, evaluate_value, parse, render, to_text
from simulator.errors import SessionEnded, SimulatorError, TransitionLoop, UnsupportedFeature
from simulator.loader import SYMBOLIC_PAGES, Agent, EventHandler, Flow, FormParameter, Fulfillment, Page, Route, Target
from simulator.nlu import NLU, IntentMatch, consume
from simulator.nlu import approximated as _approximated
from simulator.webhooks import Transport, WebhookCall, WebhookFailure, jsonpath, render_request_body, timed

WELCOME_EVENT = "WELCOME"
WELCOME_INTENT = "Default Welcome Intent"
MAX_TRANSITIONS = 100
MAX_FLOW_DEPTH = 25
START_PAGE = "Start Page"
RESOURCE = "projects/sim/locations/global/agents/sim"
_END_SYMBOLS = {"END_FLOW", "END_FLOW_WITH_FAILURE", "END_FLOW_WITH_HUMAN_ESCALATION", "END_FLOW_WITH_CANCELLATION"}
_SPEAK_RE = re.compile(r"\s*<speak(?:\s[^>]*)?>(.*)</speak>\s*", re.DOTALL)


@dataclass
class Turn:
    """What one send() produced."""

    messages: list[str]
    page: str | None
    flow: str | None
    params: dict[str, Any]
    ended: bool
    end_reason: str | None
    intent: str | None = None
    intent_confidence: float | None = None
    events: list[str] = field(default_factory=list)
    payloads: list[dict] = field(default_factory=list)
    responses: list[dict] = field(default_factory=list)
    webhook_calls: list[WebhookCall] = field(default_factory=list)
    flow_exits: list[tuple[str, str]] = field(default_factory=list)
    pages: list[str] = field(default_factory=list)
    param_changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    alternatives: list[list[str]] = field(default_factory=list)  # per message: every variant the agent defines
    audio: str = ""  # what a caller hears: see `spoken`

    @property
    def text(self) -> str:
        return "\n".join(self.messages)


@dataclass
class _Frame:
    flow: Flow
    page: Page | None = None  # None: the flow's start page
    previous: Page | None = None
    flow_params: dict[str, Any] = field(default_factory=dict)
    form: dict[str, Any] = field(default_factory=dict)  # form parameter -> value, while filled
    invalid: set[str] = field(default_factory=set)
    just_collected: set[str] = field(default_factory=set)
    filling: FormParameter | None = None
    skip_prompt: str | None = None
    no_match: int = 0
    no_input: int = 0

    @property
    def page_name(self) -> str:
        return self.page.name if self.page else START_PAGE


class _WebhookEvent(Exception):
    def __init__(self, event: str):
        super().__init__(event)
        self.event = event


class Session:
    """One conversation with an agent.

    `webhook`: where webhook calls go — None (each webhook's own URI), a URL, a WSGI app (e.g. the Flask app,
    called in-process at the URI's path or `webhook_path`), a callable taking the WebhookRequest dict and
    returning the WebhookResponse dict, or a dict mapping webhook display names (or "*") to any of those.
    """

    def __init__(
        self,
        agent: Agent,
        webhook: Any = None,
        language_code: str | None = None,
        session_params: dict[str, Any] | None = None,
        payload: dict | None = None,
        caller_id: str | None = None,
        session_id: str | None = None,
        start_flow: str | None = None,
        channel: str | None = None,
        webhook_path: str | None = None,
        clock: Any = None,
        generators: dict[str, Any] | None = None,
        knowledge: Any = None,
    ):
        self.agent = agent
        self.language = language_code or agent.default_language
        self.params: dict[str, Any] = copy.deepcopy(session_params or {})
        self.payload = copy.deepcopy(payload or {})
        if caller_id:
            self.payload.setdefault("telephony", {})["caller_id"] = caller_id
        self.session_id = session_id or uuid.uuid4().hex[:32]
        self.start_flow = start_flow or agent.start_flow
        self.channel = channel
        self.transport = Transport(webhook, webhook_path)
        self.webhooks_enabled = True
        # The session clock: what "today" means for @sys.date and friends (a datetime, or a callable returning one).
        self.clock = clock if callable(clock) else (lambda: clock) if clock is not None else datetime.now
        self.nlu = NLU(agent, self.language, clock=self.clock)
        # Generative parts: a callable per generator display name (`generators`), the generative fallback under
        # GENERATIVE_FALLBACK, data-store answers (`knowledge`); the defaults are labelled stand-ins (generative.py).
        self.generators = dict(generators or {})
        self.knowledge = knowledge or generative.stand_in_knowledge
        self.request_scope: dict[str, Any] = {}
        self.stack: list[_Frame] = []
        self.started = False
        self.ended = False
        self.end_reason: str | None = None
        self.intent_params: dict[str, Any] = {}
        self.intent_originals: dict[str, str] = {}
        self._turn: Turn | None = None
        self._input: dict[str, Any] = {}
        self._match: IntentMatch | None = None
        if agent.unsupported:
            raise UnsupportedFeature(agent.unsupported[0], f"{agent.root}/agent.json")
        if self.language not in agent.languages:
            raise SimulatorError(f"language {self.language!r} is not one of the agent's: {agent.languages}")

    # ------------------------------------------------------------------------------------- public API

    @property
    def frame(self) -> _Frame:
        return self.stack[-1]

    @property
    def flow_params(self) -> dict[str, Any]:
        return self.frame.flow_params if self.stack else {}

    def send(self, text: str | None = None, event: str | None = None, dtmf: str | None = None) -> Turn:
        """Process one turn. The first call starts the conversation; with no input at all later it is a no-input."""
        if self.ended:
            raise SessionEnded(f"session ended ({self.end_reason}); start a new Session")
        before = copy.deepcopy(self.params)
        self._turn = Turn([], None, None, {}, False, None)
        if text is not None and not text.strip():
            text = None  # an empty utterance is no input, as on the phone
        self._input = {"text": text, "event": event, "dtmf": dtmf}
        self._match = None
        self.intent_params, self.intent_originals = {}, {}  # $intent.params is this turn's match only
        self.request_scope = {}  # $request.generative / $request.knowledge live for one request
        self._hops = [0]  # transitions this turn, checked against MAX_TRANSITIONS
        if not self.started:
            self.started = True
            self._settle(Target(flow=self.start_flow))
            if text is None and event is None and dtmf is None:
                return self._finish(before)
        if event is not None:
            self._log(f"event {event}")
            handled, target = self._dispatch_event([event])
            if not handled and event == WELCOME_EVENT:
                target = self._welcome()
        elif text is not None or dtmf is not None:
            target = self._on_input(text, dtmf)
        else:
            target = self._on_no_input()
        self._settle(target)
        return self._finish(before)

    def open(self) -> list[Turn]:
        """Start as a phone line does: the session opens, and if the agent has not spoken yet, the WELCOME event
        (the Default Welcome Intent) makes it greet the caller. The turns that produced."""
        turns = [self.send()]
        if not turns[0].messages and not self.ended and WELCOME_INTENT in self.agent.intents:
            turns.append(self.send(event=WELCOME_EVENT))
        return turns

    # ----------------------------------------------------------------------------------------- scope

    def lookup(self, root: str, path: list) -> Any:
        if root == "session.params":
            return _walk(self.params, path)
        if root == "flow":
            return _walk(self.flow_params, path)
        if root == "page.params":
            return self._page_params(path)
        if root == "intent.params":
            if len(path) >= 2 and path[1] == "original":
                return self.intent_originals.get(path[0])
            if len(path) >= 2 and path[1] == "resolved":
                return self.intent_params.get(path[0])
            return _walk(self.intent_params, path)
        if root == "session" and path == ["id"]:
            return self.session_id
        if root == "request" and path and path[0] in ("generative", "knowledge"):
            return _walk(self.request_scope, path)
        ref = "$" + root + "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in path)
        raise UnsupportedFeature(ref, self._where(), "reference not modelled")

    def _page_params(self, path: list) -> Any:
        if not self.stack or not path:
            return None
        frame = self.frame
        if path == ["status"]:
            return "FINAL" if self._form_complete(frame) else None
        name = path[0]
        if len(path) >= 2 and path[1] == "status":
            if name in frame.invalid:
                return "INVALID"
            return "VALID" if name in frame.form else None
        return _walk(frame.form, path)

    def _where(self) -> str:
        if not self.stack:
            return self.agent.root
        f = self.frame
        return f.page.source if f.page else f.flow.source

    # ------------------------------------------------------------------------------------ parameters

    def _get_param(self, name: str) -> Any:
        if name.startswith("$flow."):
            return self.flow_params.get(name[6:])
        if name.startswith("$session.params."):
            return self.params.get(name[16:])
        return self.params.get(name)

    def _set_param(self, name: str, value: Any) -> None:
        name = name.strip()
        if name.startswith("$sys.func.NESTED_FIELD"):
            node = parse(name)
            if not (isinstance(node, Call) and len(node.args) == 2 and isinstance(node.args[0], Text)):
                raise UnsupportedFeature(f"parameter target {name}", self._where())
            holder_ref = node.args[0].raw.strip()
            field_name = to_text(Evaluator(self).eval(node.args[1]))
            holder = self._get_param(_param_name(holder_ref))
            holder = dict(holder) if isinstance(holder, dict) else {}
            if value is None:
                holder.pop(field_name, None)
            else:
                holder[field_name] = value
            self._set_param(_param_name(holder_ref), holder)
            return
        if name.startswith("$flow."):
            target, key = self.flow_params, name[6:]
        elif name.startswith("$page.params."):
            key = name[13:]
            if value is None:
                self.frame.form.pop(key, None)
            else:
                self._fill(key, value)
            return
        else:
            target, key = self.params, name[16:] if name.startswith("$session.params.") else name
        if value is None:
            target.pop(key, None)
        else:
            target[key] = value
        if self.stack and self.frame.page:
            for p in self.frame.page.form:
                if p.name == name or (p.name == key and target is self.params):
                    if value is None:
                        self.frame.form.pop(p.name, None)
                    else:
                        self.frame.form[p.name] = value

    def _fill(self, pname: str, value: Any) -> None:
        frame = self.frame
        frame.form[pname] = value
        frame.invalid.discard(pname)
        frame.just_collected.add(pname)
        if pname.startswith("$flow."):
            frame.flow_params[pname[6:]] = value
        else:
            self.params[pname] = value
        self._log(f"form {pname} = {value!r}")

    def _form_complete(self, frame: _Frame) -> bool:
        if frame.page is None:
            return True
        return all(p.name in frame.form for p in frame.page.form if p.required) and not frame.invalid

    # ------------------------------------------------------------------------------------ transitions

    def _settle(self, target: Target | None) -> None:
        while target and not self.ended:
            self._hops[0] += 1
            if self._hops[0] > MAX_TRANSITIONS:
                raise TransitionLoop(
                    f"more than {MAX_TRANSITIONS} transitions in one turn; last pages: {self._turn.pages[-6:]}"
                )
            target = self._go(target)

    def _go(self, target: Target) -> Target | None:
        if target.flow:
            flow = self.agent.flow(target.flow)
            if len(self.stack) >= MAX_FLOW_DEPTH:
                raise SimulatorError(f"flow stack deeper than {MAX_FLOW_DEPTH} entering {flow.name!r}")
            self.stack.append(_Frame(flow))
            self._log(f"flow -> {flow.name}")
            self._turn.pages.append(f"{flow.name}/{START_PAGE}")
            return self._evaluate()
        page = target.page
        frame = self.frame
        if page == "START_PAGE":
            return self._enter(None)
        if page == "CURRENT_PAGE":
            return self._enter(frame.page)
        if page == "PREVIOUS_PAGE":
            return self._enter(frame.previous)
        if page == "END_SESSION":
            self._end("END_SESSION")
            return None
        if page in _END_SYMBOLS:
            return self._end_flow(page)
        if page not in frame.flow.pages:
            raise SimulatorError(f"target page {page!r} is not in flow {frame.flow.name!r}")
        return self._enter(frame.flow.pages[page])

    def _enter(self, page: Page | None) -> Target | None:
        frame = self.frame
        frame.previous = frame.page
        frame.page = page
        frame.form, frame.invalid, frame.just_collected = {}, set(), set()
        frame.filling, frame.skip_prompt, frame.no_match, frame.no_input = None, None, 0, 0
        self._log(f"page -> {frame.flow.name}/{frame.page_name}")
        self._turn.pages.append(f"{frame.flow.name}/{frame.page_name}")
        if page is None:
            return self._evaluate()
        if page.unsupported:
            raise UnsupportedFeature(page.unsupported[0], page.source)
        target = self._call(page.entry, None)
        if target or self.ended:
            return target
        for p in page.form:
            value = self._get_param(p.name)
            if value is not None:
                frame.form[p.name] = value
            elif p.default_value is not None and not p.required:
                self._fill(p.name, p.default_value)
        return self._evaluate()

    def _end_flow(self, symbol: str) -> Target | None:
        ended = self.stack.pop()
        self._turn.flow_exits.append((ended.flow.name, symbol))
        self._log(f"flow {ended.flow.name} ends: {symbol}")
        if not self.stack:
            self._end(symbol)
            self.stack.append(ended)  # keep the last position visible to Turn.page / Turn.flow
            return None
        self._turn.pages.append(f"{self.frame.flow.name}/{self.frame.page_name}")
        return self._evaluate()

    def _end(self, reason: str) -> None:
        self.ended, self.end_reason = True, reason
        self._log(f"session ends: {reason}")

    # ------------------------------------------------------------------------------ route evaluation

    def _intent_routes(self) -> list[Route]:
        frame = self.frame
        routes: list[Route] = []
        if frame.page is not None:
            routes += [r for r in frame.page.routes if r.intent]
            for g in frame.page.route_groups:
                routes += [r for r in frame.flow.groups[g].routes if r.intent]
        routes += [r for r in frame.flow.routes if r.intent]
        for g in frame.flow.route_groups:
            routes += [r for r in frame.flow.groups[g].routes if r.intent]
        return routes

    def _condition_routes(self) -> list[Route]:
        frame = self.frame
        routes: list[Route] = []
        if frame.page is not None:
            routes += [r for r in frame.page.routes if not r.intent]
            for g in frame.page.route_groups:
                routes += [r for r in frame.flow.groups[g].routes if not r.intent]
        else:
            routes += [r for r in frame.flow.routes if not r.intent]
            for g in frame.flow.route_groups:
                routes += [r for r in frame.flow.groups[g].routes if not r.intent]
        return routes

    def _holds(self, condition: str, source: str) -> bool:
        try:
            return evaluate_condition(condition, self)
        except UnsupportedFeature as exc:
            if exc.source is None:
                exc.source = source
                exc.args = (f"{exc.args[0]} in {source}",)
            raise

    def _evaluate(self, prompt: bool = True) -> Target | None:
        """Condition routes in order (fall through those without target), then prompt the form."""
        for route in self._condition_routes():
            if self._holds(route.condition, route.source):
                self._log(f"route [{route.condition}] on {self.frame.page_name}")
                target = self._call(route.fulfillment, route.target)
                if target or self.ended:
                    return target
        return self._prompt() if prompt else None

    def _prompt(self) -> Target | None:
        frame = self.frame
        if frame.page is None:
            frame.filling = None
            return None
        for p in frame.page.form:
            if p.required and p.name not in frame.form:
                frame.filling = p
                if frame.skip_prompt == p.name:
                    frame.skip_prompt = None
                    return None
                return self._call(p.initial_prompt, None)
        frame.filling = None
        return None

    # --------------------------------------------------------------------------------------- input

    def _on_input(self, text: str | None, dtmf: str | None) -> Target | None:
        frame = self.frame
        filling = frame.filling
        dtmf_settings = (filling.dtmf or self.agent.dtmf) if filling is not None else None
        if dtmf is not None and dtmf_settings:
            digits = dtmf
            finish = dtmf_settings.get("finishDigit")
            if finish and digits.endswith(finish):
                digits = digits[: -len(finish)]
            max_digits = dtmf_settings.get("maxDigits")
            if max_digits:
                digits = digits[: int(max_digits)]
            got = self.nlu.extract(filling.entity_type, digits)
            self._log(f"dtmf {dtmf!r} for {filling.name}")
            if got is not None:
                return self._filled({filling.name: got[0]})
            return self._no_match()
        utterance = text if text is not None else (dtmf or "")
        self._log(f"user: {utterance}")
        routes = self._intent_routes()
        match = self.nlu.match_intent(utterance, [r.intent for r in routes]) if routes else None
        if match is not None:
            for route in routes:
                if route.intent == match.intent and self._holds(route.condition, route.source):
                    return self._intent_route(route, match)
        if frame.page is not None and frame.page.form:
            found = self._extract_form(utterance)
            if found:
                return self._filled(found)
        return self._no_match()

    def _welcome(self) -> Target | None:
        """The WELCOME event a telephony or chat integration sends when a conversation opens: it matches the
        Default Welcome Intent, as CX's generic welcome event does, where a route for it is in scope."""
        for route in self._intent_routes():
            if route.intent == WELCOME_INTENT and self._holds(route.condition, route.source):
                return self._intent_route(route, IntentMatch(WELCOME_INTENT, 1.0))
        return None

    def _intent_route(self, route: Route, match: IntentMatch) -> Target | None:
        frame = self.frame
        self._match = match
        self._turn.intent, self._turn.intent_confidence = match.intent, round(match.score, 3)
        self.intent_params, self.intent_originals = dict(match.parameters), dict(match.originals)
        self._log(f"intent {match.intent} ({match.score:.2f})")
        frame.no_match = frame.no_input = 0
        form_names = {p.name for p in frame.page.form} if frame.page else set()
        for name, value in match.parameters.items():
            if name in form_names:
                self._fill(name, value)
            else:
                self.params[name] = value
        target = self._call(route.fulfillment, route.target)
        if target or self.ended:
            return target
        return self._evaluate()

    def _extract_form(self, utterance: str) -> dict[str, Any]:
        """CX form filling: the parameter being asked takes a value of its entity type from the input; other empty
        parameters take values of their own types from what is left. Approximated entities (@sys.any, address,
        geo-*: "the whole utterance") only ever answer the question that was asked."""
        frame = self.frame
        found: dict[str, Any] = {}
        current = frame.filling
        order = [current] if current else []
        order += [p for p in frame.page.form if p is not current and p.name not in frame.form]
        left = utterance
        for p in order:
            if p is not current and _approximated(p.entity_type):
                continue
            got = self.nlu.extract(p.entity_type, left)
            if got is not None:
                found[p.name] = [got[0]] if p.is_list else got[0]
                left = consume(left, got[1])  # one span of the input answers one parameter
            elif p is current:
                return {}
        return found

    def _filled(self, values: dict[str, Any]) -> Target | None:
        frame = self.frame
        frame.no_match = frame.no_input = 0
        frame.just_collected = set()
        for name, value in values.items():
            self._fill(name, value)
        return self._evaluate()

    def _no_match(self) -> Target | None:
        frame = self.frame
        settings = frame.page.knowledge if frame.page and frame.page.knowledge else frame.flow.knowledge
        utterance = self._input.get("text")
        if settings is not None and utterance:
            # Data-store handler: answers found take the turn; none found and it is an ordinary no-match.
            answers = [str(a) for a in self.knowledge(utterance, self.language) or []]
            self._log(f"data store: {len(answers)} answer(s)")
            if answers:
                self.request_scope["knowledge"] = {"answers": answers}
                frame.no_match = 0
                return self._call(settings.fulfillment, settings.target)
        frame.no_match += 1
        return self._reprompt_event(f"sys.no-match-{frame.no_match}", "sys.no-match-default")

    def _on_no_input(self) -> Target | None:
        frame = self.frame
        frame.no_input += 1
        self._log("no input")
        return self._reprompt_event(f"sys.no-input-{frame.no_input}", "sys.no-input-default")

    def _reprompt_event(self, *names: str) -> Target | None:
        """A no-match / no-input while a form parameter is asked. Form.Parameter.FillBehavior: "If the event
        handler for the corresponding event can't be found on the parameter, initial_prompt_fulfillment will be
        re-prompted" — so a page or flow handler's message is followed by the parameter's prompt."""
        filling = self.frame.filling
        on_parameter = filling is not None and any(h.event in names for h in filling.reprompt_handlers)
        before = self._said()
        handled, target = self._dispatch_event(list(names))
        if target or self.ended:
            return target
        if filling is not None and self.frame.filling is filling and (
                not handled or not on_parameter or self._said() == before):
            return self._call(filling.initial_prompt, None)
        return None

    # -------------------------------------------------------------------------------------- events

    def _handler_scopes(self) -> list[list[EventHandler]]:
        frame = self.frame
        scopes = []
        if frame.filling is not None:
            scopes.append(frame.filling.reprompt_handlers)
        if frame.page is not None:
            scopes.append(frame.page.event_handlers)
        scopes.append(frame.flow.event_handlers)
        return scopes

    def _dispatch_event(self, names: list[str]) -> tuple[bool, Target | None]:
        for name in names:
            for scope in self._handler_scopes():
                for h in scope:
                    if h.event == name:
                        self._turn.events.append(name)
                        self._log(f"event handler {name} on {self.frame.page_name}")
                        return True, self._call(h.fulfillment, h.target)
        self._turn.events.append(names[0] + " (unhandled)")
        return False, None

    # --------------------------------------------------------------------------------- fulfillment

    def _call(self, fulfillment: Fulfillment, target: Target | None) -> Target | None:
        """Run a handler's fulfillment; a webhook failure runs the matching event handler instead of `target`."""
        try:
            override = self._fulfill(fulfillment)
        except _WebhookEvent as exc:
            handled, handler_target = self._dispatch_event([exc.event, "webhook.error"]
                                                           if exc.event != "webhook.error" else [exc.event])
            if handled:
                return handler_target
            return target
        if self._pending_invalid:
            # A webhook marked a form parameter INVALID: no transition; sys.invalid-parameter or a re-prompt.
            self._pending_invalid = False
            before = self._said()
            handled, handler_target = self._dispatch_event(["sys.invalid-parameter"])
            if handler_target or self.ended:
                return handler_target
            if handled and self._said() > before and self.frame.invalid:
                self.frame.skip_prompt = self._first_invalid()
            return None
        return override or target

    def _first_invalid(self) -> str | None:
        frame = self.frame
        for p in frame.page.form if frame.page else []:
            if p.name in frame.invalid:
                return p.name
        return None

    _pending_invalid = False

    def _fulfill(self, f: Fulfillment) -> Target | None:
        if f.unsupported:
            raise UnsupportedFeature(f.unsupported[0], f.source)
        for action in f.set_parameter_actions:
            value = evaluate_value(action.get("value"), self)
            self._set_param(action["parameter"], value)
        for g in f.generators:
            self._generate(g)
        if f.raw.get("sendCallCompanionSms"):
            self._log("call-companion SMS requested (recorded, not sent offline)")
        messages: list[dict] = []
        for m in self._for_language(f.messages):
            messages.append(m)
        if f.generative_fallback and self._input.get("text"):
            fallback = self.generators.get(generative.GENERATIVE_FALLBACK, generative.stand_in_fallback)
            reply = fallback(self._input["text"], self.language)
            self._log(f"generative fallback -> {reply!r}")
            if reply:
                messages = [{"text": {"text": [reply]}}]
        for case in f.conditional_cases:
            messages.extend(self._cases(case.get("cases") or []))
        rendered = [self._render_message(m) for m in messages if self._channel_ok(m)]
        override = None
        if f.webhook:
            try:
                extra, merge, override = self._webhook(f)
            except _WebhookEvent:
                for m in rendered:  # the static responses were already queued when the call failed
                    self._emit(m)
                raise
            rendered = extra if merge == "REPLACE" else rendered + extra
        for m in rendered:
            self._emit(m)
        return override

    def _generate(self, g: dict) -> None:
        """Run one generator of a fulfillment: its inputs evaluated, its text into its output parameter."""
        ref = (g.get("generator") or "").rsplit("/", 1)[-1]
        name = self.agent.generators.get(ref, ref)
        inputs = {p.get("key", ""): evaluate_value(p.get("value"), self) for p in g.get("inputParameters") or []}
        fn = self.generators.get(name) or generative.stand_in_generator(name)
        text = fn(inputs, self.language)
        self._log(f"generator {name} -> {text!r}")
        out = (g.get("outputParameter") or "").strip()
        if out.startswith("$request.generative."):
            self.request_scope.setdefault("generative", {})[out[len("$request.generative."):]] = text
        elif out:
            self._set_param(_param_name(out), text)

    def _for_language(self, messages: list[dict]) -> list[dict]:
        mine = [m for m in messages if m.get("languageCode", self.language) == self.language]
        if mine or self.language == self.agent.default_language:
            return mine
        return [m for m in messages if m.get("languageCode", self.agent.default_language) == self.agent.default_language]

    def _channel_ok(self, m: dict) -> bool:
        return not m.get("channel") or m.get("channel") == self.channel

    def _cases(self, cases: list[dict]) -> list[dict]:
        for case in cases:
            if self._holds(case.get("condition", ""), self._where()):
                # One case holds a message per language: filter them together, keeping nested cases in place.
                out: list[dict] = []
                pending: list[dict] = []
                for content in case.get("caseContent") or []:
                    if "message" in content:
                        pending.append(content["message"])
                    elif "additionalCases" in content:
                        out.extend(self._for_language(pending))
                        pending = []
                        out.extend(self._cases(content["additionalCases"].get("cases") or []))
                out.extend(self._for_language(pending))
                return out
        return []

    def _render_message(self, m: dict) -> dict:
        if "text" in m:
            # CX picks one variant at random; we say the first and remember the others for test comparison.
            texts = m["text"].get("text") or [""]
            out = {"text": {"text": [render(texts[0], self)]}}
            if len(texts) > 1:
                out["_alternatives"] = [render(t, self) for t in texts]
            return out
        if "payload" in m:
            return {"payload": evaluate_value(m["payload"], self)}
        if "outputAudioText" in m:
            oat = m["outputAudioText"]
            return {"outputAudioText": {k: render(v, self) if isinstance(v, str) else v for k, v in oat.items()}}
        return {k: v for k, v in m.items() if k != "languageCode"}

    def _emit(self, m: dict) -> None:
        turn = self._turn
        alternatives = m.pop("_alternatives", None)
        turn.responses.append(m)
        if "text" in m:
            for t in m["text"].get("text") or []:
                turn.messages.append(t)
                turn.alternatives.append(alternatives or [t])
                self._log(f"agent: {t}")
        elif "payload" in m:
            turn.payloads.append(m["payload"])
        elif "endInteraction" in m and not self.ended:
            self._end("END_INTERACTION")

    def _said(self) -> int:
        """Messages said so far this turn, shown or spoken: a handler that said something does not re-prompt."""
        return sum(1 for m in self._turn.responses if "text" in m or "outputAudioText" in m)

    # ------------------------------------------------------------------------------------- webhooks

    def _webhook(self, f: Fulfillment) -> tuple[list[dict], str, Target | None]:
        hook = self.agent.webhooks[f.webhook]
        if not self.webhooks_enabled:
            self._log(f"webhook {hook.name} skipped (webhooks disabled)")
            return [], "APPEND", None
        if hook.unsupported:
            raise UnsupportedFeature(hook.unsupported[0], hook.source)
        flexible = hook.kind == "FLEXIBLE"
        if flexible:
            body = render_request_body(hook.request_body, self) if hook.request_body else {}
        else:
            body = self._webhook_request(f.tag)
        headers = {k: render(v, self) for k, v in hook.headers.items()}
        if hook.basic_auth:
            token = base64.b64encode(":".join(hook.basic_auth).encode()).decode()
            headers.setdefault("Authorization", f"Basic {token}")
        call = WebhookCall(hook.name, f.tag, body)
        self._turn.webhook_calls.append(call)
        self._log(f"webhook {hook.name} tag={f.tag!r}")
        try:
            (status, data), call.elapsed_s = timed(
                lambda: self.transport.send(hook.name, hook.uri, hook.method, body, headers, hook.timeout_s))
        except WebhookFailure as exc:
            call.error = exc.event
            self._log(f"webhook {hook.name} failed: {exc}")
            raise _WebhookEvent(exc.event) from None
        call.status, call.response = status, data
        if flexible:
            for key, path in hook.parameter_mapping.items():
                try:
                    value = jsonpath(path, data)
                except ValueError as exc:
                    call.error = "webhook.error"
                    self._log(f"webhook {hook.name}: {exc}")
                    raise _WebhookEvent("webhook.error") from None
                self._set_param(key, value)
            return [], "APPEND", None
        return self._apply_response(data, call)

    def _webhook_request(self, tag: str) -> dict:
        frame = self.frame
        page_id = frame.page.id if frame.page else "START_PAGE"
        req: dict[str, Any] = {
            "detectIntentResponseId": str(uuid.uuid4()),
            "languageCode": self.language,
            "fulfillmentInfo": {"tag": tag},
            "pageInfo": {
                "currentPage": f"{RESOURCE}/flows/{frame.flow.id}/pages/{page_id}",
                "displayName": frame.page_name,
            },
            "sessionInfo": {
                "session": f"{RESOURCE}/sessions/{self.session_id}",
                "parameters": _doubles(self.params),
            },
        }
        if frame.page is not None and frame.page.form:
            infos = []
            for p in frame.page.form:
                info: dict[str, Any] = {"displayName": p.name, "required": p.required}
                if p.name in frame.invalid:
                    info["state"] = "INVALID"
                elif p.name in frame.form:
                    info["state"] = "FILLED"
                    info["value"] = _doubles(frame.form[p.name])
                else:
                    info["state"] = "EMPTY"
                if p.name in frame.just_collected:
                    info["justCollected"] = True
                infos.append(info)
            req["pageInfo"]["formInfo"] = {"parameterInfo": infos}
        if self._match is not None:
            intent = self.agent.intents[self._match.intent]
            req["intentInfo"] = {
                "lastMatchedIntent": f"{RESOURCE}/intents/{intent.id}",
                "displayName": intent.name,
                "confidence": round(self._match.score, 3),
                "parameters": {k: {"originalValue": self._match.originals.get(k, to_text(v)),
                                   "resolvedValue": _doubles(v)} for k, v in self._match.parameters.items()},
            }
        if self._input.get("text") is not None:
            req["text"] = self._input["text"]
        elif self._input.get("dtmf") is not None:
            req["dtmfDigits"] = self._input["dtmf"]
        elif self._input.get("event") is not None:
            req["triggerEvent"] = self._input["event"]
        if self.payload:
            req["payload"] = copy.deepcopy(self.payload)
        if self._turn.responses:
            req["messages"] = copy.deepcopy(self._turn.responses)
        return req

    def _apply_response(self, data: dict, call: WebhookCall) -> tuple[list[dict], str, Target | None]:
        if not isinstance(data, dict):
            raise _WebhookEvent("webhook.error")
        frame = self.frame
        for name, value in ((data.get("sessionInfo") or {}).get("parameters") or {}).items():
            self._set_param(name, value)
        for info in ((data.get("pageInfo") or {}).get("formInfo") or {}).get("parameterInfo") or []:
            pname = info.get("displayName")
            if not pname or frame.page is None or pname not in {p.name for p in frame.page.form}:
                continue
            if info.get("state") == "INVALID":
                frame.form.pop(pname, None)
                frame.invalid.add(pname)
                self._pending_invalid = True
                self._log(f"webhook marks {pname} INVALID")
            elif "value" in info and info.get("value") is not None:
                self._fill(pname, info["value"])
        fr = data.get("fulfillmentResponse") or {}
        messages = [self._render_webhook_message(m) for m in fr.get("messages") or []]
        merge = fr.get("mergeBehavior") or "APPEND"
        override = None
        if data.get("targetPage"):
            override = self._resolve_page(data["targetPage"])
        elif data.get("targetFlow"):
            override = Target(flow=self.agent.flow(data["targetFlow"]).name)
        return messages, merge, override

    @staticmethod
    def _render_webhook_message(m: dict) -> dict:
        return {k: v for k, v in m.items() if k not in ("languageCode", "source", "responseType")}

    def _resolve_page(self, ref: str) -> Target:
        key = ref.rsplit("/", 1)[-1]
        if key.upper() in SYMBOLIC_PAGES.values():
            return Target(page=key.upper())
        flow = self.frame.flow
        if "/flows/" in ref:
            try:
                flow = self.agent.flow(ref.split("/flows/")[1].split("/")[0])
            except KeyError:
                pass  # a resource name from the live agent: its ids are not the export's, use the current flow
        for p in flow.pages.values():
            if key in (p.id, p.name):
                if flow is not self.frame.flow:
                    raise UnsupportedFeature("webhook targetPage in another flow", self._where())
                return Target(page=p.name)
        raise SimulatorError(f"webhook targetPage {ref!r} not found in flow {flow.name!r}")

    # ---------------------------------------------------------------------------------------- turn

    def _log(self, line: str) -> None:
        if self._turn is not None:
            self._turn.log.append(line)

    def _finish(self, before: dict) -> Turn:
        turn = self._turn
        turn.page = self.frame.page_name if self.stack else None
        turn.flow = self.frame.flow.name if self.stack else None
        turn.params = copy.deepcopy(self.params)
        turn.ended, turn.end_reason = self.ended, self.end_reason
        turn.audio = spoken(turn.responses)
        keys = set(before) | set(self.params)
        turn.param_changes = {k: (before.get(k), self.params.get(k)) for k in sorted(keys)
                              if before.get(k) != self.params.get(k)}
        return turn


def spoken(responses: list[dict]) -> str:
    """What a caller hears for a turn's messages, by CX's rule: if any `outputAudioText` is present, all of them and
    no text message; otherwise the text messages. Joined by a space; with SSML among them, one `<speak>` document
    (each message's own `<speak>` root removed, plain audio text escaped)."""
    audio = [m["outputAudioText"] for m in responses if "outputAudioText" in m]
    if not audio:
        return " ".join(t for m in responses if "text" in m for t in m["text"].get("text") or [])
    if not any("ssml" in a for a in audio):
        return " ".join(a.get("text", "") for a in audio)
    parts = []
    for a in audio:
        if "ssml" in a:
            inner = _SPEAK_RE.fullmatch(a["ssml"])
            parts.append(inner.group(1) if inner else a["ssml"])
        else:
            parts.append(xml_escape(a.get("text", "")))
    return "<speak>" + " ".join(parts) + "</speak>"


def _param_name(ref: str) -> str:
    """`$session.params.x` -> `x`, `$flow.x` stays, for _get_param/_set_param."""
    if ref.startswith("$session.params."):
        return ref[16:]
    return ref


def _walk(value: Any, path: list) -> Any:
    for p in path:
        if isinstance(p, int):
            value = value[p] if isinstance(value, list) and -len(value) <= p < len(value) else None
        else:
            value = value.get(p) if isinstance(value, dict) else None
        if value is None:
            return None
    return value


def _doubles(value: Any) -> Any:
    """CX sends every number as a double."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _doubles(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_doubles(v) for v in value]
    return value

