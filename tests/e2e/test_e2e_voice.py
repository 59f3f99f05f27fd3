"""What a caller hears: the seed dialogs on the phone, where every message is spoken from its SSML twin and numbers
are read digit by digit, while a chat shows the plain text messages."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from e2edialog import heard
from test_e2e_seed_dialogs import DIALOG_1, DIALOG_2, DIALOG_3

CALLERS = {  # dialog -> how the caller dials in (as in the seed dialogs' tests)
    1: ({"phone_number": "09000001111"}, DIALOG_1),
    2: ({"settings": {"trust_upstream_auth_level": True}, "phone_number": "09000002222", "auth_level": 1}, DIALOG_2),
    3: ({"phone_number": "09012345041"}, DIALOG_3),
}
HELLO = {"ja": "こんにちは", "en": "hello"}


def run_dialog(call, lang, dialog):
    """Every turn of a seed dialog, from the greeting to the last answer."""
    params, script = CALLERS[dialog]
    session = call(lang, **params)
    turns = [session.send(text=HELLO[lang])]
    for said, _ in script[lang]:
        turns.append(session.send(text=said))
    return turns


def read_by_characters(turn) -> list[str]:
    return [e.text for e in heard(turn).iter("say-as") if e.get("interpret-as") == "characters"]


def outside_say_as(element: ET.Element) -> str:
    """The text of an SSML element that is not inside a say-as."""
    parts = [] if element.tag == "say-as" else [element.text or ""]
    for child in element:
        parts += [outside_say_as(child), child.tail or ""]
    return "".join(parts)


@pytest.mark.parametrize("lang", ["ja", "en"])
@pytest.mark.parametrize("dialog", [1, 2, 3])
def test_every_turn_is_spoken_in_full_as_ssml(call, dialog, lang):
    """Each turn's audio is one well-formed <speak> document that says every message the chat shows, reads no
    number of four or more digits as a quantity, and the chat messages carry no SSML."""
    for turn in run_dialog(call, lang, dialog):
        assert turn.messages, turn.pages
        assert not re.search(r"\d{4,}", outside_say_as(heard(turn))), turn.audio


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_dialog_1_reads_the_cards_the_phone_and_the_request_number_digit_by_digit(call, lang):
    """Dialog 1 on the phone: the registered phone's last four, the four cards, the chosen card and the request
    number are each read character by character."""
    turns = run_dialog(call, lang, 1)
    ticket = str(int(turns[-1].params["ticket_number"]))
    assert read_by_characters(turns[2]) == ["1111"]
    assert read_by_characters(turns[3]) == ["5555", "6666", "4444", "4449"]
    assert read_by_characters(turns[4]) == ["4444"]
    assert read_by_characters(turns[9]) == ["4444"]
    assert read_by_characters(turns[10]) == [ticket]
    assert f'<say-as interpret-as="characters">{ticket}</say-as>' in turns[10].audio
    assert ticket in turns[10].messages[0] and "say-as" not in turns[10].messages[0]


@pytest.mark.parametrize("lang", ["ja", "en"])
def test_dialog_2_reads_the_card_the_zip_code_and_both_request_numbers_digit_by_digit(call, lang):
    """Dialog 2 on the phone: the card, the request number, the postal code and the reissue request number are
    read character by character."""
    turns = run_dialog(call, lang, 2)
    ticket = str(int(turns[-1].params["ticket_number"]))
    acknowledgement = str(int(turns[-1].params["acknowledgement_number"]))
    assert read_by_characters(turns[1]) == ["4444"]
    assert read_by_characters(turns[3]) == ["4444"]
    assert read_by_characters(turns[6]) == [ticket]
    assert '<say-as interpret-as="characters">12345</say-as>' in turns[7].audio
    assert read_by_characters(turns[8]) == [acknowledgement]
