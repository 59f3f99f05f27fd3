"""What the caller hears (`turn.audio`) and what a chat shows (`turn.messages`), by CX's rule: outputAudioText
messages, when a turn has any, are all that is spoken; otherwise the text messages are."""

import io
import sys

from cxbuild import handler, param, route, write_agent
from simulator import Session
from simulator.__main__ import main

ENTITIES = {"card_last4": {"kind": "KIND_REGEXP", "ja": {"last4": [r"\b\d{4}\b"]}}}


def audio(ssml: str) -> dict:
    return {"outputAudioText": {"ssml": ssml}, "languageCode": "ja"}


def text(said: str) -> dict:
    return {"text": {"text": [said]}, "languageCode": "ja"}


def agent_saying(build_agent, messages: list[dict], **page):
    return build_agent(flows={"Default Start Flow": {
        "routes": [route(condition="true", page="say")],
        "pages": {"say": {"entry": {"messages": messages}, **page}},
    }}, entities=ENTITIES, languages=("ja",))


def test_text_only_is_spoken_as_text(build_agent):
    """Without outputAudioText the caller hears the text messages, joined by a space."""
    turn = Session(agent_saying(build_agent, [text("こんにちは。"), text("ご用件をどうぞ。")])).send()
    assert turn.messages == ["こんにちは。", "ご用件をどうぞ。"]
    assert turn.audio == "こんにちは。 ご用件をどうぞ。"


def test_ssml_twins_are_heard_and_the_chat_sees_the_text_once(build_agent):
    """Text with SSML twins: the chat shows each text once; the caller hears one <speak> of the twins, references
    filled in."""
    agent = agent_saying(build_agent, [
        text("番号は $session.params.ticket_number です。"),
        audio('<speak>番号は <say-as interpret-as="characters">$session.params.ticket_number</say-as> です。</speak>'),
        text("ありがとうございました。"),
        audio("<speak>ありがとうございました。</speak>"),
    ])
    turn = Session(agent, session_params={"ticket_number": 1234567}).send()
    assert turn.messages == ["番号は 1234567 です。", "ありがとうございました。"]
    assert turn.audio == ('<speak>番号は <say-as interpret-as="characters">1234567</say-as> です。 '
                          "ありがとうございました。</speak>")


def test_one_audio_message_silences_every_text_message(build_agent):
    """A turn with one plain outputAudioText: the caller hears only it; the chat still shows the text."""
    turn = Session(agent_saying(build_agent, [text("画面の文です。"),
                                              {"outputAudioText": {"text": "音声の文です。"}}])).send()
    assert turn.messages == ["画面の文です。"]
    assert turn.audio == "音声の文です。"


def test_plain_audio_text_among_ssml_is_escaped_into_one_document(build_agent):
    """Plain audio text next to SSML joins the one <speak> document, its & escaped."""
    turn = Session(agent_saying(build_agent, [{"outputAudioText": {"text": "A & B"}},
                                              audio("<speak>C</speak>")])).send()
    assert turn.messages == []
    assert turn.audio == "<speak>A &amp; B C</speak>"


def test_a_handler_that_only_speaks_has_said_something(build_agent):
    """A no-match handler with only an audio message counts as an answer: the form's prompt is not repeated."""
    form = [param("last4", "@card_last4", prompt="末尾 4 桁をどうぞ。", reprompts=[
        handler("sys.no-match-1", **{"messages": [audio("<speak>もう一度お願いします。</speak>")]})])]
    session = Session(agent_saying(build_agent, [], form=form))
    assert session.send().messages == ["末尾 4 桁をどうぞ。"]
    turn = session.send(text="わかりません")
    assert turn.messages == [] and turn.audio == "<speak>もう一度お願いします。</speak>"


def test_the_verbose_chat_shows_what_a_caller_hears(tmp_path, monkeypatch, capsys):
    """`chat --verbose` prints the chat text and, under it, the SSML a caller would hear."""
    root = write_agent(tmp_path / "voiced", flows={"Default Start Flow": {
        "routes": [route(condition="true", page="say")],
        "pages": {"say": {"entry": {"messages": [text("こんにちは。"), audio("<speak>こんにちは。</speak>")]},
                          "routes": [route(condition="true", page="END_SESSION")]}},
    }}, languages=("ja",))
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    assert main(["chat", "--agent", str(root), "--lang", "ja", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "agent> こんにちは。" in out and out.count("こんにちは。") == 2
    assert "· audio: <speak>こんにちは。</speak>" in out
