"""Request bodies from outside: what no database stores is taken out, whichever way the JSON carried it."""
from __future__ import annotations

import json

import pytest

from acebuddy.salesiq.payload import parse
from acebuddy.untrusted import loads


@pytest.mark.parametrize("raw", [
    b'{"t": "a\\u0000b", "k\\u0000": ["\\ud800"]}',                     # escapes
    '{"t": "a\\u0000b", "k\\u0000": ["\ud800"]}'.encode("utf-8", "surrogatepass"),  # a surrogate in raw UTF-8
    '{"t": "a\\u0000b", "k\\u0000": ["\\ud800"]}'.encode("utf-16"),       # UTF-16: NUL bytes throughout
])
def test_nuls_and_lone_surrogates_are_taken_out_however_they_came(raw):
    assert loads(raw) == {"t": "ab", "k": ["\ufffd"]}


def test_a_plain_body_is_loaded_as_it_is():
    body = {"text": "Hello, été 한국어 \u2603", "n": [1, 2.5, None, True]}
    assert loads(json.dumps(body, ensure_ascii=False).encode()) == body


def test_a_context_answer_sent_as_json_text_is_scrubbed_too():
    answers = json.dumps({"name": {"text": "Ann\u0000"}})  # JSON inside a JSON string: its own escapes
    inbound = parse(json.dumps({"handler": "context", "context_id": "c1", "answers": answers,
                                "visitor": {"active_conversation_id": "chat-1"}}).encode())
    assert inbound.answers == {"name": {"text": "Ann"}}
