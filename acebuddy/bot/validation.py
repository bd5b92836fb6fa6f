"""Answer validation for workflow steps: each validator returns the normalised value or raises
`Invalid` with the re-prompt to show. Lenient on form ("50gb", "yes please", "2"), strict on meaning.
"""
from __future__ import annotations

import re
from difflib import get_close_matches


class Invalid(ValueError):
    """The answer does not fit the step; the message says how to answer."""


_EMAIL = re.compile(r"^[A-Za-z0-9._%+'\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}$")
_YES = {"yes", "y", "yeah", "yep", "yup", "sure", "correct", "ok", "okay", "please do", "go ahead", "confirm",
        "right", "affirmative", "absolutely", "definitely", "yes please", "that's right", "thats right"}
_NO = {"no", "n", "nope", "nah", "not yet", "negative", "no thanks", "dont", "don't", "not really"}
_SIZE = re.compile(r"(\d+(?:[.,]\d+)?)\s*(tb|terabytes?|gb|gigs?|gigabytes?|g|t)?\b", re.I)


def text(value: str, *, min_len: int = 2, max_len: int = 1000) -> str:
    value = " ".join(value.split())
    if len(value) < min_len:
        raise Invalid("Could you give me a little more detail?")
    return value[:max_len]


def email(value: str) -> str:
    found = re.search(r"[A-Za-z0-9._%+'\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}", value)
    candidate = found.group(0) if found else value.strip()
    if not _EMAIL.match(candidate):
        raise Invalid("That doesn't look like an e-mail address. Please type it like name@company.com.")
    return candidate.lower()


def phone(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if not 7 <= len(digits) <= 15:
        raise Invalid("Please enter a phone number with 7 to 15 digits.")
    return value.strip()


def yes_no(value: str) -> bool:
    words = re.sub(r"[^a-z' ]", " ", value.lower()).split()
    phrase = " ".join(words)
    if phrase in _YES or (words and words[0] in {"yes", "yeah", "yep", "sure", "y"}):
        return True
    if phrase in _NO or (words and words[0] in {"no", "nope", "nah", "n"}):
        return False
    raise Invalid("Please answer yes or no.")


def choice(value: str, options: tuple[str, ...]) -> str:
    """An option by its text, a close spelling, a distinctive word of it, or its number."""
    answer = value.strip().lower().rstrip(".!")
    lowered = {o.lower(): o for o in options}
    if answer in lowered:
        return lowered[answer]
    if answer.isdigit() and 1 <= int(answer) <= len(options):
        return options[int(answer) - 1]
    close = get_close_matches(answer, list(lowered), n=1, cutoff=0.75)
    if close:
        return lowered[close[0]]
    containing = [o for key, o in lowered.items() if answer and (answer in key or key in answer)]
    if len(containing) == 1:
        return containing[0]
    words = set(re.findall(r"[a-z0-9]+", answer)) - {"the", "a", "my", "is", "it", "i", "to", "of", "and", "or"}
    scored = []
    for key, option in lowered.items():
        overlap = len(words & set(re.findall(r"[a-z0-9]+", key)))
        if overlap:
            scored.append((overlap, option))
    scored.sort(reverse=True)
    if scored and (len(scored) == 1 or scored[0][0] > scored[1][0]):
        return scored[0][1]
    raise Invalid("Please pick one of: " + ", ".join(options) + ".")


def integer(value: str, *, low: int, high: int, unit: str = "") -> int:
    found = re.search(r"\d+", value.replace(",", ""))
    words = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6}
    number = int(found.group(0)) if found else next((n for w, n in words.items() if w in value.lower()), None)
    if number is None or not low <= number <= high:
        raise Invalid(f"Please give a number from {low} to {high}{unit}.")
    return number


def gigabytes(value: str) -> int:
    """Disk space asked for: "50", "50gb", "1.5 TB" → whole GB (1 GB to 16 TB)."""
    match = _SIZE.search(value.replace(",", "."))
    if not match:
        raise Invalid("How much extra space do you need? For example 50 GB or 1 TB.")
    amount = float(match.group(1))
    unit = (match.group(2) or "gb").lower()
    size = amount * 1024 if unit.startswith("t") else amount
    if not 1 <= size <= 16384:
        raise Invalid("Please give an amount between 1 GB and 16 TB.")
    return int(round(size))


def last_four(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    if len(digits) != 4:
        raise Invalid("Please enter exactly four digits: the last four of the phone number on your account.")
    return digits


def username(value: str) -> str:
    value = value.strip().strip(".,;:!?\"'")
    if not 2 <= len(value) <= 150 or " " in value:
        raise Invalid("Please type your username without spaces, for example john.doe or your work e-mail.")
    return value.lower()
