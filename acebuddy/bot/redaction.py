"""Masking of secrets customers type: passwords, one-time codes, card numbers.

Applied before a customer line is stored, and again to anything sent to Desk or e-mail, so a secret
never leaves the webhook in clear. Verification answers are masked whole by the bot (it knows the step).
"""
from __future__ import annotations

import re

MASK = "••••"

_CARD = re.compile(r"(?<!\d)(?:\d[ -]?){12,18}\d(?!\d)")
_SECRET_WORDS = r"(?:password|passwd|passcode|pass\s*word|pwd|pw|pin|otp|one[- ]time\s*(?:code|password)|" \
                r"verification\s*code|security\s*code|mfa\s*code|2fa\s*code|auth(?:entication)?\s*code|code)"
# "my password is Hunter2!", "pwd: abc", "the code was 123 456"
_SECRET_AFTER_WORD = re.compile(
    rf"(\b{_SECRET_WORDS}\b\s*(?:is|was|=|:|-|would be|should be)?\s*)(\"[^\"]+\"|'[^']+'|\S+)",
    re.I,
)
# A bare one-time code in a line that talks about codes: 6 or 8 digits, possibly split "123 456".
_OTP = re.compile(r"(?<!\d)(\d{3}[ -]?\d{3}|\d{8})(?!\d)")
_CODE_CONTEXT = re.compile(r"\b(code|otp|2fa|mfa|verification|authenticator|passcode)\b", re.I)
_NOT_SECRET = {"is", "was", "the", "a", "an", "my", "for", "reset", "expired", "wrong", "not", "doesn't", "doesnt",
               "isn't", "isnt", "invalid", "incorrect", "please", "and", "to", "again", "never", "didn't", "didnt",
               "never", "arrives", "arrive", "arrived", "it", "that", "this", "keeps", "policy", "requirements", "rules",
               "change", "changed", "reset?", "help", "issue", "problem", "sent", "send", "on", "from", "with", "in"}


def luhn_ok(digits: str) -> bool:
    total, double = 0, False
    for ch in reversed(digits):
        n = int(ch)
        if double:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
        double = not double
    return total % 10 == 0


def _card(match: re.Match) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    if 13 <= len(digits) <= 19 and luhn_ok(digits):
        return f"{MASK}{digits[-4:]}" if len(digits) >= 15 else MASK
    return match.group(0)


def _after_word(match: re.Match) -> str:
    value = match.group(2)
    bare = value.strip("\"'.,!?;:").lower()
    # "code 0x204" or "error code 6000" is an error code customers must be able to tell us.
    if bare in _NOT_SECRET or re.fullmatch(r"(0x[0-9a-f]+|h\d{3}|-?\d{1,5}(,\s*-?\d+)?)", bare):
        return match.group(0)
    if match.group(1).strip().lower() == "code" and not re.search(r"\d", bare):
        return match.group(0)
    return match.group(1) + MASK


# Every word _SECRET_AFTER_WORD and _CODE_CONTEXT look for holds one of these: an ASCII line holding none
# of them in any case (most lines) cannot match either and skips their case-blind scans, two thirds of
# this function's cost. A line with any other character is scanned: under IGNORECASE "ſ" matches s and
# "ı" matches i, which lower() leaves as they are.
_SECRET_STEMS = ("pass", "pw", "pin", "otp", "code", "2fa", "mfa", "auth", "verification")


def redact(text: str) -> str:
    if not text:
        return text
    text = _CARD.sub(_card, text)
    lowered = text.lower()  # once, not once a stem
    if not text.isascii() or any(stem in lowered for stem in _SECRET_STEMS):
        text = _SECRET_AFTER_WORD.sub(_after_word, text)
        if _CODE_CONTEXT.search(text):
            text = _OTP.sub(MASK, text)
    return text
