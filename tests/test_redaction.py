"""Masking of secrets customers type (acebuddy/bot/redaction.py), before a line is stored."""
from __future__ import annotations

import json
import os

import pytest
from hypothesis import given, settings, strategies as st

from acebuddy.bot import redaction
from acebuddy.bot.redaction import MASK, redact


def _scanned(text: str) -> str:
    """What redact gives when every line is scanned (its shortcut skips the case-blind scans of a line
    that holds none of the secret words)."""
    text = redaction._CARD.sub(redaction._card, text)
    text = redaction._SECRET_AFTER_WORD.sub(redaction._after_word, text)
    if redaction._CODE_CONTEXT.search(text):
        text = redaction._OTP.sub(MASK, text)
    return text


def _alternatives(pattern: str) -> list[str]:
    """The top-level alternatives of a pattern's first group (nested groups kept whole)."""
    body = pattern[pattern.index("(") + 1:]
    body = body[2:] if body.startswith("?:") else body
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(body):
        if ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return parts + [body[start:i]]
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    raise AssertionError(f"no closing group in {pattern}")


def test_every_secret_word_holds_a_stem_of_the_shortcut():
    """The shortcut is only sound while each word the scans look for holds one of its stems: a word added
    to the patterns without one would be skipped on ASCII lines."""
    words = _alternatives(redaction._SECRET_WORDS) + _alternatives(redaction._CODE_CONTEXT.pattern)
    assert len(words) > 15
    assert [w for w in words if not any(stem in w.lower() for stem in redaction._SECRET_STEMS)] == []


@pytest.mark.parametrize("line, expected", [
    ("my password is Hunter2!", f"my password is {MASK}"),
    ("MY PASSWORD IS Hunter2!", f"MY PASSWORD IS {MASK}"),
    ("pwd: abc123", f"pwd: {MASK}"),
    ("the PIN was ab12cd", f"the PIN was {MASK}"),
    ("the pin was 4321", "the pin was 4321"),  # a short number reads as an error code: kept
    ("the mfa code is 123 456", f"the mfa code is {MASK}"),
    ("my authenticator shows 123456", f"my authenticator shows {MASK}"),
    ("card 4111 1111 1111 1111 please", f"card {MASK}1111 please"),
    ("paſsword is hunter2", f"paſsword is {MASK}"),  # the long s matches s when case is ignored
    ("error code 0x204 when I connect", "error code 0x204 when I connect"),
    ("my password expired", "my password expired"),
    ("quickbooks will not open since 9am", "quickbooks will not open since 9am"),
    ("call me on 555 123 4567", "call me on 555 123 4567"),
])
def test_secrets_are_masked_and_the_rest_kept(line, expected):
    assert redact(line) == expected == _scanned(line)


def test_the_shortcut_gives_what_scanning_every_line_gives_on_the_eval_messages():
    path = os.path.join(os.path.dirname(__file__), "data", "intents-dev.jsonl")
    with open(path, encoding="utf-8") as fh:
        lines = [json.loads(line)["text"] for line in fh if line.strip()]
    assert len(lines) > 100
    assert [redact(line) for line in lines] == [_scanned(line) for line in lines]


_WORDS = st.sampled_from(["password", "PassWord", "pass word", "pwd", "pw", "PIN", "otp", "one-time code", "code",
                          "2FA code", "mfa", "auth code", "verification", "authenticator", "is", ":", "=", "my",
                          "hunter2", "0x204", "123 456", "12345678", "4111111111111111", "ſ", "ı", "K", "é",
                          "quickbooks", "reset", "the", "'abc def'", "\"x y\""])


@settings(max_examples=300, deadline=None)
@given(st.lists(_WORDS | st.text(max_size=6), max_size=12).map(" ".join))
def test_the_shortcut_gives_what_scanning_every_line_gives(line):
    assert redact(line) == _scanned(line)
