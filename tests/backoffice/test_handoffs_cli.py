"""`handoffs list | resolve`: the reactivation the voice agent may not grant, answered once by a named operator."""
from __future__ import annotations

from sqlalchemy import update

from cardstore.models import Card


def _misaki_asks_to_reactivate_1456(caller) -> int:
    misaki = caller("09012345041")
    misaki.authenticate()
    return misaki.call("request_reactivation", last_four_digit_of_card_number="1456")["handoff_id"]


def test_a_reactivation_request_waits_unanswered_for_an_operator(terminal, caller):
    """Dialog 3 ends in a hand-off: the queue shows it 未回答 with the card, masked."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    [waiting] = terminal.json("handoffs", "list", "--status", "unanswered")
    assert waiting["id"] == handoff_id and waiting["status"] == "unanswered"
    assert waiting["card"] == "Visa **** 1456" and waiting["card_status"] == "inactive"
    assert waiting["customer"] == "*********5041"
    assert terminal.json("handoffs", "list", "--status", "answered") == []
    assert "Visa **** 1456" in terminal.ok("handoffs", "list")


def test_reactivating_answers_the_handoff_and_activates_the_card(terminal, caller):
    """Sato reactivates: the card is active, the hand-off 回答済み by sato with the note, both audited as sato."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    out = terminal.ok("handoffs", "resolve", handoff_id, "--operator", "sato", "--reactivate",
                      "--note", "本人確認済み、カード発見")
    assert "reactivated" in out
    [answered] = terminal.json("handoffs", "list", "--status", "answered")
    assert answered["answered_by"] == "sato" and answered["resolution"] == "reactivated"
    assert answered["note"] == "本人確認済み、カード発見" and answered["card_status"] == "active"
    card = caller("09012345041")
    card.authenticate()
    assert card.call("validate_card", last_four_digit_of_card_number="1456")["card_status"] == "active"
    actions = {e["action"]: e for e in terminal.audit("--actor", "sato")}
    assert set(actions) == {"handoff.answered", "card.reactivated"}
    assert actions["card.reactivated"]["before"] == {"status": "inactive"}
    assert actions["card.reactivated"]["card"] == "Visa **** 1456"


def test_rejecting_leaves_the_card_locked(terminal, caller):
    """Rejected: the hand-off is answered, the card stays inactive."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    terminal.ok("handoffs", "resolve", handoff_id, "--operator", "sato", "--reject", "--note", "名義不一致")
    [answered] = terminal.json("handoffs", "list")
    assert answered["resolution"] == "rejected" and answered["card_status"] == "inactive"
    assert [e["action"] for e in terminal.audit("--actor", "sato")] == ["handoff.answered"]


def test_resolving_an_answered_handoff_is_refused(terminal, caller):
    """The second answer is refused, names who answered first, and changes nothing."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    terminal.ok("handoffs", "resolve", handoff_id, "--operator", "sato", "--reject", "--note", "first")
    again = terminal.run("handoffs", "resolve", handoff_id, "--operator", "suzuki", "--reactivate", "--note", "second")
    assert again.exit_code == 1 and "already answered" in again.output and "sato" in again.output
    [answered] = terminal.json("handoffs", "list")
    assert answered["note"] == "first" and answered["card_status"] == "inactive"
    assert terminal.audit("--actor", "suzuki") == []


def test_a_card_blocked_since_the_request_is_not_reactivated(terminal, caller):
    """Misaki blocked 1456 for good after asking: reactivation is refused, the hand-off stays unanswered."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    with terminal.store.unit_of_work() as uow:
        uow.session.execute(update(Card).where(Card.last4 == "1456").values(status="blocked"))
        uow.commit()
    result = terminal.run("handoffs", "resolve", handoff_id, "--operator", "sato", "--reactivate", "--note", "ok")
    assert result.exit_code == 1 and "blocked" in result.output
    [waiting] = terminal.json("handoffs", "list")
    assert waiting["status"] == "unanswered" and waiting["card_status"] == "blocked"


def test_resolve_needs_an_id_that_exists_one_decision_and_a_note(sqlite_terminal, caller):
    """Unknown id, no decision, both decisions, an empty note: each refused with a message, nothing changes."""
    t = sqlite_terminal
    missing = t.run("handoffs", "resolve", "999", "--operator", "sato", "--reject", "--note", "x")
    assert missing.exit_code == 1 and "no hand-off 999" in missing.output
    no_decision = t.run("handoffs", "resolve", "1", "--operator", "sato", "--note", "x")
    assert no_decision.exit_code == 2 and "--reactivate or --reject" in no_decision.output
    no_note = t.run("handoffs", "resolve", "1", "--operator", "sato", "--reject")
    assert no_note.exit_code == 2
    not_a_number = t.run("handoffs", "resolve", "abc", "--operator", "sato", "--reject", "--note", "x")
    assert not_a_number.exit_code == 2
    assert t.audit("--actor", "sato") == []


def test_an_empty_note_is_refused(terminal, caller):
    """A blank --note says nothing about the decision: refused."""
    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    result = terminal.run("handoffs", "resolve", handoff_id, "--operator", "sato", "--reject", "--note", "  ")
    assert result.exit_code == 1 and "--note" in result.output
    assert terminal.json("handoffs", "list", "--status", "unanswered")


def test_two_operators_answering_at_once_give_one_answer(terminal, caller):
    """Sato reactivates while Suzuki rejects, at the same moment: one answer stands, the other changes nothing."""
    import threading

    from backoffice import handoffs
    from backoffice.errors import Refused
    from cardstore.errors import StoreUnavailable

    handoff_id = _misaki_asks_to_reactivate_1456(caller)
    start = threading.Barrier(2)
    outcomes: dict[str, str] = {}

    def answer(operator: str, resolution: str) -> None:
        start.wait()
        try:
            with terminal.store.unit_of_work() as uow:
                handoffs.resolve(uow, handoff_id, operator, resolution, f"by {operator}")
            outcomes[operator] = "answered"
        except Refused:
            outcomes[operator] = "refused"
        except StoreUnavailable:  # SQLite: the loser's snapshot is stale and its write is refused outright
            outcomes[operator] = "refused"

    threads = [threading.Thread(target=answer, args=a) for a in (("sato", "reactivated"), ("suzuki", "rejected"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes.values()) == ["answered", "refused"]
    winner = next(name for name, outcome in outcomes.items() if outcome == "answered")
    [answered] = terminal.json("handoffs", "list")
    assert answered["answered_by"] == winner and answered["note"] == f"by {winner}"
    assert answered["card_status"] == ("active" if winner == "sato" else "inactive")
    loser = "suzuki" if winner == "sato" else "sato"
    assert terminal.audit("--actor", loser) == []
