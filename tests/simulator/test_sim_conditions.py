"""The CX condition language, system functions and text templates."""

import pytest

from simulator.conditions import evaluate_condition, evaluate_value, render
from simulator.errors import ConditionError, UnsupportedFeature


class FakeScope:
    def __init__(self, session=None, flow=None, page=None):
        self.data = {"session.params": session or {}, "flow": flow or {}, "page.params": page or {}}

    def lookup(self, root, path):
        value = self.data.get(root)
        if value is None:
            raise UnsupportedFeature(f"${root}")
        for p in path:
            if isinstance(p, int):
                value = value[p] if isinstance(value, list) and p < len(value) else None
            else:
                value = value.get(p) if isinstance(value, dict) else None
        return value


SCOPE = FakeScope(
    session={"auth_level": 1.0, "card_count": 4, "name": "Hanako", "verified": True, "last4": "0042",
             "cards": ["5555", "6666"], "damage-description": "spray paint", "empty": ""},
    flow={"retry": 2, "missing": ["route", "locality"], "list": ["a"], "webhook": ["CA"]},
    page={"status": "FINAL", "otp": {"status": "INVALID"}},
)


@pytest.mark.parametrize(
    "condition, expected",
    [
        ("true", True),
        ("false", False),
        ("", True),
        ("$session.params.auth_level = 1", True),
        ("$session.params.auth_level >= 1 AND $session.params.verified = true", True),
        ("$session.params.auth_level < 1 OR $session.params.card_count > 3", True),
        ("NOT $session.params.verified = true", False),
        ("$session.params.missing = null", True),
        ("$session.params.name != null", True),
        ('$session.params.name = "Hanako"', True),
        ("$session.params.name = Hanako", True),
        ('$session.params.name : "ana"', True),
        ('$session.params.cards : "6666"', True),
        ("$session.params.card_count <= 4 AND $session.params.card_count > 3.5", True),
        ('$session.params.last4 = "0042"', True),
        ("$session.params.last4 = 42", True),
        ("$flow.retry < 3", True),
        ("$flow.retry >= 3", False),
        ("$flow.nothing < 3", False),
        ('$page.params.status = "FINAL"', True),
        ('$page.params.otp.status = "INVALID"', True),
        ("($flow.retry = 1 OR $flow.retry = 2) AND $session.params.verified = true", True),
        ("$session.params.damage-description != null", True),
        ("$sys.func.COUNT($flow.missing) = 2", True),
        ("$sys.func.CONTAIN($flow.missing, locality)", True),
        ('$sys.func.LOWER($session.params.name) = "hanako"', True),
        ("$sys.func.LEN($flow.webhook[0]) > 3", False),
        ('$session.params.empty = ""', True),
        ("$sys.func.TO_TEXT($flow.nothing) = N/A", False),
    ],
)
def test_condition(condition, expected):
    """Each condition evaluates as CX documents."""
    assert evaluate_condition(condition, SCOPE) is expected


@pytest.mark.parametrize(
    "value, expected",
    [
        ("$sys.func.ADD($flow.retry, 1)", 3),
        ("$sys.func.MINUS($flow.retry, 1)", 1),
        ("$flow.missing", ["route", "locality"]),
        ('$sys.func.APPEND($flow.list, "b")', ["a", "b"]),
        ('$sys.func.APPEND($flow.none, "x")', ["x"]),
        ('$sys.func.REMOVE($flow.missing, ["route"])', ["locality"]),
        ('$sys.func.JOIN(", ", $flow.missing)', "route, locality"),
        ('$sys.func.JOIN(", ", $flow.missing, " and ")', "route and locality"),
        ('$sys.func.IF("$flow.retry = 2", "two", "other")', "two"),
        ('$sys.func.IF($sys.func.CONTAIN($flow.missing, "route"), true, false)', True),
        ('$sys.func.CONCATENATE("a", " ", $session.params.name)', "a Hanako"),
        ("$sys.func.GET($session.params.cards, 1)", "6666"),
        ("$sys.func.IDENTITY($session.params.card_count)", 4),
        ("$sys.func.TO_TEXT($session.params.auth_level)", "1"),
        ("Hello $session.params.name.", "Hello Hanako."),
        ("Cards: $sys.func.JOIN(\", \", $session.params.cards)!", "Cards: 5555, 6666!"),
        ({"lines": "$session.params.name", "n": 3}, {"lines": "Hanako", "n": 3}),
        (7, 7),
        (None, None),
    ],
)
def test_value(value, expected):
    """A preset value keeps its type when it is one expression and is a template otherwise."""
    assert evaluate_value(value, SCOPE) == expected


def test_template_leaves_unknown_dollars_alone():
    """Text with a dollar that is not a reference is left as it is."""
    assert render("costs $5 for $session.params.name", SCOPE) == "costs $5 for Hanako"


def test_missing_reference_renders_empty():
    """A parameter that is not set renders as an empty string, as in CX."""
    assert render("[$session.params.nope]", SCOPE) == "[]"


@pytest.mark.parametrize("bad", ['$session.params.x = "open', "$session.params.x = = 1", "(true", "true)"])
def test_syntax_errors_are_reported(bad):
    """A malformed condition raises ConditionError instead of evaluating to something."""
    with pytest.raises(ConditionError):
        evaluate_condition(bad, SCOPE)


def test_unknown_system_function_is_unsupported():
    """A system function the simulator does not model is named in an UnsupportedFeature."""
    with pytest.raises(UnsupportedFeature, match="NOW"):
        evaluate_value("$sys.func.NOW()", SCOPE)
