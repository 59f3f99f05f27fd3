"""The CX expression language: conditions, parameter references, `$sys.func.*` and text templates.

One tokenizer and one recursive-descent parser serve the three places CX evaluates expressions: route
conditions (`$flow.n >= 3 AND $session.params.ok = true`), parameter preset values (a whole string that is one
reference or function keeps its type; anything else is a text template) and message text (`"Hello $flow.name."`).
Names are resolved through a `Scope` the engine provides, so this module knows nothing of pages or flows.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from simulator.errors import ConditionError, UnsupportedFeature


class Scope(Protocol):
    """What an expression can see: the engine implements this."""

    def lookup(self, root: str, path: list[str | int]) -> Any: ...


# A reference: `$session.params.a-b`, `$flow.x[0].y`, `$page.params.status`, `$intent.params.p.resolved`,
# `$request.generative.x`. A trailing "." not followed by a name is left to the text around it.
_REF_RE = re.compile(
    r"\$(session\.params|page\.params|intent\.params|flow|request|session)"
    r"((?:\.[A-Za-z_][A-Za-z0-9_\-]*|\[\d+\])*)"
)
_FUNC_RE = re.compile(r"\$sys\.func\.([A-Za-z_]+)\s*\(")
_PATH_PART_RE = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?(?![\w])")
_BAREWORD_RE = re.compile(r"[^\s()\[\],\"=!<>:]+")
_KEYWORDS = {"AND", "OR", "NOT", "TRUE", "FALSE", "NULL"}


@dataclass(frozen=True)
class Token:
    kind: str  # ref, func, str, num, word, op, lpar, rpar, lbr, rbr, comma, and, or, not, true, false, null
    value: Any
    pos: int


def _parse_path(text: str) -> list[str | int]:
    return [m.group(1) if m.group(1) is not None else int(m.group(2)) for m in _PATH_PART_RE.finditer(text)]


def tokenize(text: str) -> list[Token]:
    """Split an expression into tokens; raise ConditionError on a character that cannot start one."""
    tokens: list[Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c == "$":
            m = _FUNC_RE.match(text, i)
            if m:
                tokens.append(Token("func", m.group(1), i))
                tokens.append(Token("lpar", "(", m.end() - 1))
                i = m.end()
                continue
            m = _REF_RE.match(text, i)
            if m:
                tokens.append(Token("ref", (m.group(1), _parse_path(m.group(2))), i))
                i = m.end()
                continue
            raise ConditionError(f"unknown reference at {i} in {text!r}")
        if c == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise ConditionError(f"unterminated string at {i} in {text!r}")
            tokens.append(Token("str", "".join(buf), i))
            i = j + 1
            continue
        two = text[i : i + 2]
        if two in ("!=", "<=", ">="):
            tokens.append(Token("op", two, i))
            i += 2
            continue
        if c in "=<>:":
            tokens.append(Token("op", c, i))
            i += 1
            continue
        simple = {"(": "lpar", ")": "rpar", "[": "lbr", "]": "rbr", ",": "comma"}
        if c in simple:
            tokens.append(Token(simple[c], c, i))
            i += 1
            continue
        m = _NUMBER_RE.match(text, i)
        if m:
            s = m.group(0)
            tokens.append(Token("num", float(s) if "." in s else int(s), i))
            i = m.end()
            continue
        m = _BAREWORD_RE.match(text, i)
        if m:
            word = m.group(0)
            if word.upper() in _KEYWORDS:
                tokens.append(Token(word.lower(), word, i))
            else:
                tokens.append(Token("word", word.replace("\\", ""), i))
            i = m.end()
            continue
        raise ConditionError(f"unexpected {c!r} at {i} in {text!r}")
    return tokens


# ----------------------------------------------------------------------------------------------- AST


@dataclass
class Lit:
    value: Any


@dataclass
class Text:  # a quoted string: a template whose references are substituted when evaluated
    raw: str


@dataclass
class Ref:
    root: str
    path: list


@dataclass
class Call:
    name: str
    args: list


@dataclass
class ListLit:
    items: list


@dataclass
class BinOp:
    op: str
    left: Any
    right: Any


@dataclass
class Not:
    operand: Any


class _Parser:
    def __init__(self, text: str, tokens: list[Token]):
        self.text, self.tokens, self.i = text, tokens, 0

    def peek(self) -> Token | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str | None = None) -> Token:
        tok = self.peek()
        if tok is None:
            raise ConditionError(f"unexpected end of {self.text!r}")
        if kind is not None and tok.kind != kind:
            raise ConditionError(f"expected {kind} at {tok.pos} in {self.text!r}, found {tok.value!r}")
        self.i += 1
        return tok

    def parse_or(self):
        node = self.parse_and()
        while (t := self.peek()) is not None and t.kind == "or":
            self.take()
            node = BinOp("OR", node, self.parse_and())
        return node

    def parse_and(self):
        node = self.parse_not()
        while (t := self.peek()) is not None and t.kind == "and":
            self.take()
            node = BinOp("AND", node, self.parse_not())
        return node

    def parse_not(self):
        t = self.peek()
        if t is not None and t.kind == "not":
            self.take()
            return Not(self.parse_not())
        return self.parse_cmp()

    def parse_cmp(self):
        left = self.parse_primary()
        t = self.peek()
        if t is not None and t.kind == "op":
            self.take()
            return BinOp(t.value, left, self.parse_primary())
        return left

    def parse_primary(self):
        t = self.take()
        if t.kind == "lpar":
            node = self.parse_or()
            self.take("rpar")
            return node
        if t.kind == "ref":
            return Ref(*t.value)
        if t.kind == "func":
            self.take("lpar")
            args = []
            if self.peek() is not None and self.peek().kind != "rpar":
                args.append(self.parse_or())
                while self.peek() is not None and self.peek().kind == "comma":
                    self.take()
                    args.append(self.parse_or())
            self.take("rpar")
            return Call(t.value, args)
        if t.kind == "lbr":
            items = []
            if self.peek() is not None and self.peek().kind != "rbr":
                items.append(self.parse_or())
                while self.peek() is not None and self.peek().kind == "comma":
                    self.take()
                    items.append(self.parse_or())
            self.take("rbr")
            return ListLit(items)
        if t.kind == "str":
            return Text(t.value)
        if t.kind == "num":
            return Lit(t.value)
        if t.kind in ("true", "false"):
            return Lit(t.kind == "true")
        if t.kind == "null":
            return Lit(None)
        if t.kind == "word":
            return Lit(t.value)
        raise ConditionError(f"unexpected {t.value!r} at {t.pos} in {self.text!r}")


_AST_CACHE: dict[str, Any] = {}


def parse(text: str):
    """Parse a whole expression; raise ConditionError if anything is left over."""
    if text in _AST_CACHE:
        return _AST_CACHE[text]
    parser = _Parser(text, tokenize(text))
    node = parser.parse_or()
    if parser.peek() is not None:
        t = parser.peek()
        raise ConditionError(f"unexpected {t.value!r} at {t.pos} in {text!r}")
    _AST_CACHE[text] = node
    return node


# ------------------------------------------------------------------------------------------ evaluation


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def _norm_num(v: float) -> int | float:
    return int(v) if float(v).is_integer() and abs(v) < 2**53 else v


def to_text(v: Any) -> str:
    """How CX prints a value inside text: integers without ".0", booleans lower-case, lists/objects as JSON."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(_norm_num(v)) if math.isfinite(v) else str(v)
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False)
    return str(v)


def values_equal(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return na == nb
    if isinstance(a, bool) or isinstance(b, bool):
        return to_text(a).lower() == to_text(b).lower()
    if isinstance(a, (list, dict)) or isinstance(b, (list, dict)):
        return a == b
    return str(a) == str(b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "=":
        return values_equal(a, b)
    if op == "!=":
        return not values_equal(a, b)
    if op == ":":
        if a is None or b is None:
            return False
        if isinstance(a, list):
            return any(values_equal(x, b) for x in a)
        return to_text(b).lower() in to_text(a).lower()
    if a is None or b is None:
        return False
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        a, b = na, nb
    else:
        a, b = to_text(a), to_text(b)
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def truthy(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() not in ("", "false", "0", "null")
    return bool(v)


class Evaluator:
    """Evaluates parsed expressions against a Scope."""

    def __init__(self, scope: Scope):
        self.scope = scope

    def eval(self, node) -> Any:
        if isinstance(node, Lit):
            return node.value
        if isinstance(node, Text):
            return render(node.raw, self.scope)
        if isinstance(node, Ref):
            return self.scope.lookup(node.root, node.path)
        if isinstance(node, ListLit):
            return [self.eval(x) for x in node.items]
        if isinstance(node, Not):
            return not truthy(self.eval(node.operand))
        if isinstance(node, BinOp):
            if node.op == "AND":
                return truthy(self.eval(node.left)) and truthy(self.eval(node.right))
            if node.op == "OR":
                return truthy(self.eval(node.left)) or truthy(self.eval(node.right))
            return _compare(node.op, self.eval(node.left), self.eval(node.right))
        if isinstance(node, Call):
            return self.call(node)
        raise ConditionError(f"cannot evaluate {node!r}")

    def call(self, node: Call) -> Any:
        # IF and NESTED_FIELD look at their arguments before evaluating them; the rest are plain functions.
        if node.name == "IF":
            if len(node.args) != 3:
                raise ConditionError("$sys.func.IF takes 3 arguments")
            cond = node.args[0]
            ok = evaluate_condition(cond.raw, self.scope) if isinstance(cond, Text) else truthy(self.eval(cond))
            return self.eval(node.args[1] if ok else node.args[2])
        if node.name == "NESTED_FIELD":
            return _nested_field(self, node.args)
        fn = FUNCTIONS.get(node.name)
        if fn is None:
            raise UnsupportedFeature(f"$sys.func.{node.name}", detail="system function not modelled")
        return fn(*[self.eval(a) for a in node.args])


def _as_list(v: Any) -> list:
    if v is None:
        return []
    return list(v) if isinstance(v, list) else [v]


def _f_add(*args):
    nums = [_num(a) for a in args]
    if any(n is None for n in nums):
        raise ConditionError(f"$sys.func.ADD needs numbers, got {args!r}")
    return _norm_num(sum(nums))


def _f_minus(a, b):
    na, nb = _num(a), _num(b)
    if na is None or nb is None:
        raise ConditionError(f"$sys.func.MINUS needs numbers, got {(a, b)!r}")
    return _norm_num(na - nb)


def _f_append(lst, *values):
    out = _as_list(lst)
    for v in values:
        out.extend(v if isinstance(v, list) else [v])
    return out


def _f_remove(lst, *values):
    drop = []
    for v in values:
        drop.extend(v if isinstance(v, list) else [v])
    return [x for x in _as_list(lst) if not any(values_equal(x, d) for d in drop)]


def _f_contain(lst, value):
    if isinstance(lst, str):
        return to_text(value) in lst
    return any(values_equal(x, value) for x in _as_list(lst))


def _f_join(sep, lst, last_sep=None):
    items = [to_text(x) for x in _as_list(lst)]
    if last_sep is not None and len(items) > 1:
        return to_text(sep).join(items[:-1]) + to_text(last_sep) + items[-1]
    return to_text(sep).join(items)


def _f_get(lst, index):
    items = _as_list(lst)
    i = _num(index)
    if i is None or not (-len(items) <= int(i) < len(items)):
        return None
    return items[int(i)]


def _f_len(v):
    if v is None:
        return 0
    return len(v) if isinstance(v, (list, dict, str)) else len(to_text(v))


def _nested_field(ev: Evaluator, args: list):
    """Read form: NESTED_FIELD(obj, "field"); the target form (parameter name) is handled by the engine."""
    if len(args) != 2:
        raise ConditionError("$sys.func.NESTED_FIELD takes 2 arguments")
    obj = args[0]
    if isinstance(obj, Text) and obj.raw.strip().startswith("$"):
        obj_value = evaluate_value(obj.raw, ev.scope)
    else:
        obj_value = ev.eval(obj)
    field = to_text(ev.eval(args[1]))
    return obj_value.get(field) if isinstance(obj_value, dict) else None


def _f_to_number(v):
    n = _num(v)
    return None if n is None else _norm_num(n)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "ADD": _f_add,
    "MINUS": _f_minus,
    "APPEND": _f_append,
    "REMOVE": _f_remove,
    "CONTAIN": _f_contain,
    "COUNT": lambda lst: len(_as_list(lst)),
    "CONCATENATE": lambda *a: "".join(to_text(x) for x in a),
    "GET": _f_get,
    "IDENTITY": lambda v: v,
    "JOIN": _f_join,
    "LEN": _f_len,
    "LOWER": lambda v: None if v is None else to_text(v).lower(),
    "UPPER": lambda v: None if v is None else to_text(v).upper(),
    "TO_TEXT": lambda v: to_text(v),
    "TO_NUMBER": _f_to_number,
    "SPLIT": lambda s, sep: to_text(s).split(to_text(sep)),
    "SUBSTITUTE": lambda s, old, new: to_text(s).replace(to_text(old), to_text(new)),
    "MID": lambda s, start, length: to_text(s)[int(_num(start) or 0) : int(_num(start) or 0) + int(_num(length) or 0)],
}


def evaluate_condition(text: str, scope: Scope) -> bool:
    """True if the CX condition holds. An empty condition is true (an intent-only route)."""
    if text is None or not text.strip():
        return True
    return truthy(Evaluator(scope).eval(parse(text)))


def _whole_expression(text: str):
    """The AST when `text` is exactly one reference or function call, else None."""
    s = text.strip()
    if not s.startswith("$"):
        return None
    try:
        node = parse(s)
    except ConditionError:
        return None
    return node if isinstance(node, (Ref, Call)) else None


def evaluate_value(value: Any, scope: Scope) -> Any:
    """A parameter preset value: a lone reference/function keeps its type, other strings are templates."""
    if isinstance(value, dict):
        return {k: evaluate_value(v, scope) for k, v in value.items()}
    if isinstance(value, list):
        return [evaluate_value(v, scope) for v in value]
    if not isinstance(value, str):
        return value
    node = _whole_expression(value)
    if node is not None:
        return Evaluator(scope).eval(node)
    return render(value, scope)


def _outside_strings(text: str, start: int = 0):
    """(index, char, depth) for each character outside string literals; depth counts ( and [ nesting."""
    depth, i, in_str = 0, start, False
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        else:
            if c in "([":
                depth += 1
            elif c in ")]":
                depth -= 1
            yield i, c, depth
        i += 1


def call_end(text: str, open_paren: int) -> int | None:
    """Index just past the bracket that closes the one at `open_paren` (string literals skipped)."""
    for i, _c, depth in _outside_strings(text, open_paren):
        if depth == 0:
            return i + 1
    return None


def split_args(inner: str) -> list[str]:
    """A function call's argument texts, split at its top-level commas."""
    args, start = [], 0
    for i, c, depth in _outside_strings(inner):
        if c == "," and depth == 0:
            args.append(inner[start:i].strip())
            start = i + 1
    args.append(inner[start:].strip())
    return args


def render(text: str, scope: Scope) -> str:
    """Substitute references and inline functions in message text."""
    out, i = [], 0
    while True:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i:j])
        m = _FUNC_RE.match(text, j)
        if m:
            end = call_end(text, m.end() - 1)
            if end is not None:
                out.append(to_text(Evaluator(scope).eval(parse(text[j:end]))))
                i = end
                continue
        m = _REF_RE.match(text, j)
        if m and m.group(2):
            out.append(to_text(scope.lookup(m.group(1), _parse_path(m.group(2)))))
            i = m.end()
            continue
        out.append("$")
        i = j + 1
