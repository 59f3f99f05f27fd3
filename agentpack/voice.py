"""Voice for the built agent (agentpack room): every text message gets an `outputAudioText` twin in SSML.

The sources keep text only, so they stay readable. CX speaks the `outputAudioText` messages of a response as soon
as there is one (and then no text message at all), otherwise the text messages; chat shows the text messages. So
every text message, everywhere a fulfillment can be, gets its twin right after it, in the same language: the
audio always covers the whole turn. In the twin, XML specials of the text are escaped and references to
parameters that hold digits are read character by character (`<say-as interpret-as="characters">`): "4444" is
"four four four four", not "four thousand four hundred forty-four". A parameter preset that builds text out of
digits (the card lists: `CONCATENATE(… GET($session.params.last_four_digit_of_all_cards, N) …)`) gets a twin
parameter `<name>_ssml`, set in the same place, whose digits are wrapped the same way; the twin message refers to it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator
from xml.sax.saxutils import escape

from simulator.conditions import call_end, split_args

# Parameters whose value is a string of digits (or digits among masking stars) the caller must hear one by one.
DIGIT_PARAMS = frozenset({
    "last_four_digit_of_card_number", "last_four_digit_of_all_cards", "ticket_number", "acknowledgement_number",
    "zip_code", "caller_zip_code", "registered_phone_last4", "otp_destination_masked", "phone_number",
})
TWIN_SUFFIX = "_ssml"
SAY_AS_OPEN = '<say-as interpret-as="characters">'
# Inside a CX function's string literal a double quote would end the literal, and CX documents no escape for it.
SAY_AS_OPEN_IN_LITERAL = "<say-as interpret-as='characters'>"
SAY_AS_CLOSE = "</say-as>"

# `$session.params.x`, `$flow.x`, `$page.params.x`, `$intent.params.x`, with fields and indexes; a trailing "."
# without a name after it is the sentence's, as CX reads it.
_REF = re.compile(r"\$(session\.params|page\.params|intent\.params|flow)\.([A-Za-z_][\w\-]*)"
                  r"((?:\.[A-Za-z_][\w\-]*|\[\d+\])*)")
_FUNC = re.compile(r"\$sys\.func\.([A-Za-z_]+)\s*\(")


class VoiceError(Exception):
    """A message or preset the voice twins cannot follow; says which and why."""


def param_key(ref: str) -> str:
    """How a preset's target names a parameter: `$session.params.x` and `x` are `x`; `$flow.x` stays."""
    ref = ref.strip()
    return ref[len("$session.params."):] if ref.startswith("$session.params.") else ref


def twin_key(key: str) -> str:
    return key + TWIN_SUFFIX


# --- text -> SSML ---------------------------------------------------------------------------------------------

def to_ssml(text: str, twins: frozenset[str] | set[str] = frozenset()) -> str:
    """The `<speak>` document a caller hears for `text`; `twins` are the parameters that have an `_ssml` twin."""
    return f"<speak>{_spoken(text, twins)}</speak>"


def _spoken(text: str, twins) -> str:
    out, i = [], 0
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(escape(text[i:]))
            return "".join(out)
        out.append(escape(text[i:j]))
        func = _FUNC.match(text, j)
        if func:
            end = call_end(text, func.end() - 1)
            if end is None:
                raise VoiceError(f"unbalanced function call in {text!r}")
            expression = text[j:end]
            if _mentions_digits(expression, twins):
                raise VoiceError(f"a function in a message reads digits; preset it in a parameter instead: {text!r}")
            out.append(expression)
            i = end
            continue
        ref = _REF.match(text, j)
        if ref:
            out.append(_spoken_ref(ref, twins))
            i = ref.end()
            continue
        out.append("$")
        i = j + 1


def _spoken_ref(ref: re.Match, twins) -> str:
    root, name, path = ref.group(1), ref.group(2), ref.group(3)
    key = f"$flow.{name}" if root == "flow" else name
    if root in ("session.params", "flow") and key in twins:
        return f"${root}.{twin_key(name)}{path}"
    if name in DIGIT_PARAMS:
        return f"{SAY_AS_OPEN}{ref.group(0)}{SAY_AS_CLOSE}"
    return ref.group(0)


def _mentions_digits(expression: str, twins) -> bool:
    for ref in _REF.finditer(expression):
        key = f"$flow.{ref.group(2)}" if ref.group(1) == "flow" else ref.group(2)
        if ref.group(2) in DIGIT_PARAMS or key in twins:
            return True
    return False


# --- presets: the twin of a parameter built from digits ---------------------------------------------------------

def _literal(text: str) -> str:
    return '"' + escape(text) + '"'


def _twin_arg(arg: str, twins) -> list[str]:
    """One CONCATENATE argument as the twin says it: literals escaped, digits wrapped in say-as."""
    if arg.startswith('"') and arg.endswith('"') and len(arg) >= 2:
        return ['"' + escape(arg[1:-1]) + '"']
    func = _FUNC.match(arg)
    whole_ref = _REF.fullmatch(arg)
    if whole_ref and whole_ref.group(2) in DIGIT_PARAMS:
        return [f'"{SAY_AS_OPEN_IN_LITERAL}"', arg, f'"{SAY_AS_CLOSE}"']
    if whole_ref and _mentions_digits(arg, twins):
        return [_spoken_ref(whole_ref, twins)]
    if func and call_end(arg, func.end() - 1) == len(arg):
        name, args = func.group(1), split_args(arg[func.end():-1])
        if name == "GET" and _mentions_digits(args[0], twins) and not _mentions_digits(args[1], twins):
            if _REF.fullmatch(args[0]) and _REF.fullmatch(args[0]).group(2) in DIGIT_PARAMS:
                return [f'"{SAY_AS_OPEN_IN_LITERAL}"', arg, f'"{SAY_AS_CLOSE}"']
        if name == "JOIN" and len(args) == 2 and args[0].startswith('"') and _REF.fullmatch(args[1]) \
                and _REF.fullmatch(args[1]).group(2) in DIGIT_PARAMS:
            # Each element read by characters: the separator closes one say-as and opens the next.
            separator = SAY_AS_CLOSE + escape(args[0][1:-1]) + SAY_AS_OPEN_IN_LITERAL
            return [f'"{SAY_AS_OPEN_IN_LITERAL}"', f'$sys.func.JOIN("{separator}", {args[1]})', f'"{SAY_AS_CLOSE}"']
    if _mentions_digits(arg, twins):
        raise VoiceError(f"cannot read the digits of {arg!r} by characters: use GET, JOIN or a reference "
                         "as an argument of CONCATENATE")
    return [arg]


def twin_value(value: Any, twins) -> Any:
    """The value of a twin parameter's preset, from its text twin's value (None stays None: removed together)."""
    if not isinstance(value, str):
        return value
    stripped = value.strip()
    func = _FUNC.match(stripped)
    if func and call_end(stripped, func.end() - 1) == len(stripped):
        if func.group(1) != "CONCATENATE":
            if _mentions_digits(stripped, twins):
                raise VoiceError(f"cannot read the digits of {value!r} by characters: build it with CONCATENATE")
            return value
        args = split_args(stripped[func.end():-1])
        twin_args = [part for arg in args for part in _twin_arg(arg, twins)]
        return f"$sys.func.CONCATENATE({', '.join(twin_args)})"
    return _spoken(value, twins)


def _builds_from_digits(value: Any, twins) -> bool:
    return isinstance(value, str) and _mentions_digits(value, twins)


# --- walking the flows -----------------------------------------------------------------------------------------

def nodes(node: Any) -> Iterator[dict]:
    """Every JSON object inside an exported resource, depth first (fulfillments, routes, handlers…)."""
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from nodes(v)
    elif isinstance(node, list):
        for v in node:
            yield from nodes(v)


def _presets(resources: list[dict]) -> Iterator[dict]:
    for resource in resources:
        for node in nodes(resource):
            for action in node.get("setParameterActions") or []:
                if isinstance(action, dict) and "parameter" in action:
                    yield action


def find_twins(resources: list[dict]) -> set[str]:
    """Parameters whose presets build text out of digits (directly or from another such parameter)."""
    twins: set[str] = set()
    while True:
        found = {param_key(a["parameter"]) for a in _presets(resources)
                 if _builds_from_digits(a.get("value"), twins)} - set(DIGIT_PARAMS)
        if found <= twins:
            return twins
        twins |= found


def _voiced(message: dict, twins) -> dict:
    if "outputAudioText" in message:
        raise VoiceError("the sources keep text only; voice is generated at build time: "
                         f"remove {json.dumps(message, ensure_ascii=False)}")
    texts = message["text"].get("text") or []
    if len(texts) != 1:
        raise VoiceError(f"a text message with {len(texts)} variants: CX picks one at random, "
                         f"its voice twin could not follow: {texts}")
    twin: dict = {"outputAudioText": {"ssml": to_ssml(texts[0], twins)}}
    for key in ("languageCode", "channel"):
        if key in message:
            twin[key] = message[key]
    return twin


def _with_twins(messages: list, twins) -> list:
    out = []
    for m in messages:
        out.append(m)
        if isinstance(m, dict) and ("text" in m or "outputAudioText" in m):
            out.append(_voiced(m, twins))
    return out


def _case_content_with_twins(content: list, twins) -> list:
    out = []
    for item in content:
        out.append(item)
        message = item.get("message") if isinstance(item, dict) else None
        if isinstance(message, dict) and ("text" in message or "outputAudioText" in message):
            out.append({"message": _voiced(message, twins)})
    return out


def _actions_with_twins(actions: list, twins) -> list:
    out = []
    for action in actions:
        out.append(action)
        key = param_key(action.get("parameter", ""))
        if key in twins:
            out.append({"parameter": twin_key(key), "value": twin_value(action.get("value"), twins)})
    return out


def add_voice(resource: dict, twins) -> dict:
    """Twin every text message and every preset of a twinned parameter in a flow, page or route group, in place."""
    for node in list(nodes(resource)):
        if isinstance(node.get("messages"), list):
            node["messages"] = _with_twins(node["messages"], twins)
        if isinstance(node.get("caseContent"), list):
            node["caseContent"] = _case_content_with_twins(node["caseContent"], twins)
        if isinstance(node.get("setParameterActions"), list):
            node["setParameterActions"] = _actions_with_twins(node["setParameterActions"], twins)
    return resource


def _form_parameters(resources: list[dict]) -> set[str]:
    return {param_key(p.get("displayName", "")) for r in resources
            for p in (r.get("form") or {}).get("parameters", [])}


def voice_flows(flows_dir: Path) -> set[str]:
    """Add the voice twins to every flow, page and route group file under `flows_dir`; return the twinned params."""
    paths = sorted(Path(flows_dir).rglob("*.json"))
    resources = [json.loads(p.read_text(encoding="utf-8")) for p in paths]
    twins = find_twins(resources)
    collected = twins & _form_parameters(resources)
    if collected:
        raise VoiceError(f"a form also fills {sorted(collected)}: its {TWIN_SUFFIX} twin would not be set there")
    for path, resource in zip(paths, resources):
        add_voice(resource, twins)
        path.write_text(json.dumps(resource, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return twins
