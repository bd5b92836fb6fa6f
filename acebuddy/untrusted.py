"""Cleaning text that comes from outside (webhook bodies, query strings, agents' forms) before it is
stored or sent to the database: what no database stores, and control characters no one meant to type."""
from __future__ import annotations

import json
import re

CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # C0 controls but tab, newline and carriage return
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def strip_control(value: str | None) -> str:
    """The text without control characters (NUL included: PostgreSQL refuses it in text), trimmed."""
    return CONTROL.sub("", value or "").strip()


def scrub(value):
    """What JSON can carry but no database stores, at any depth (keys too): NULs (`\\u0000`) are dropped,
    lone UTF-16 surrogates (`\\ud800`) become U+FFFD. Deep nesting raises RecursionError, as json does."""
    if isinstance(value, str):
        return _UNSTORABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", value)
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


# A JSON body can hold a NUL or a lone surrogate only through a \u escape, a UTF-8 sequence led by
# 0xED (U+D000-U+DFFF, which json.loads decodes with surrogatepass), or UTF-16/32 (NUL bytes). A body
# with none of them needs no scrub: the webhook's usual case, where the walk was a measurable part of a
# call (docs/performance/webhook.md).
_MAY_NEED_SCRUB = (b"\\u", b"\xed", b"\x00")


def loads(raw: bytes):
    """`json.loads` of a request body, scrubbed (see `scrub`). Raises ValueError, UnicodeDecodeError or
    RecursionError as json does."""
    body = json.loads(raw)
    if any(marker in raw for marker in _MAY_NEED_SCRUB):
        body = scrub(body)
    return body
