"""Article bodies as passages: Markdown split into sections and blocks (paragraphs, lists, tables),
each cleaned into plain lines that read well in a chat bubble."""
from __future__ import annotations

import re
from typing import NamedTuple

_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LIST_ITEM = re.compile(r"^\s*(?:([-*+])|(\d+)[.)])\s+(.*)$")
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_AUTOLINK = re.compile(r"<(https?://[^>]+)>")
_HTML = re.compile(
    r"</?(?:a|b|i|u|p|br|hr|em|strong|span|div|img|sup|sub|kbd|code|small|mark|details|summary|table|"
    r"thead|tbody|tr|td|th|ul|ol|li|blockquote|pre)\b[^>]*>",
    re.I,
)
_EMPHASIS = re.compile(
    r"(\*\*|__)(.+?)\1"  # **bold** or __bold__
    r"|(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"  # *italic*
    r"|(?<![\w_])_(?!\s)(.+?)(?<!\s)_(?![\w_])"  # _italic_ (not snake_case)
)
_SPACES = re.compile(r"[ \t]+")
_LIST_STARTS = frozenset("-*+0123456789")


class Block(NamedTuple):
    """A paragraph, a list, a table or a code block, with the heading it sits under. (A named tuple
    of strings: the garbage collector can stop tracking the many of them a large index holds.)"""

    heading: str
    lines: tuple[str, ...]  # cleaned, display-ready
    kind: str  # "para" | "list" | "table" | "code"

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def clean_inline(text: str) -> str:
    """Markdown inline syntax removed: emphasis, code ticks, links (their text kept), HTML tags."""
    if "](" in text:
        text = _IMAGE.sub(r"\1", text)
        text = _LINK.sub(r"\1", text)
    if "<" in text:
        text = _AUTOLINK.sub(r"\1", text)
        text = _HTML.sub("", text)
    if "*" in text or "_" in text:
        for _ in range(2):  # nested emphasis such as ***bold italic***
            text = _EMPHASIS.sub(_emphasis_text, text)
    text = text.replace("`", "")
    return _SPACES.sub(" ", text).strip()


def _emphasis_text(match: re.Match) -> str:
    return match.group(2) or match.group(3) or match.group(4) or ""


def _table_line(row: str) -> str:
    cells = [clean_inline(c) for c in row.strip().strip("|").split("|")]
    cells = [c for c in cells if c]
    if len(cells) <= 1:
        return "".join(cells)
    return f"{cells[0]}: " + ", ".join(cells[1:])


def blocks(body: str) -> list[Block]:
    """The body's blocks in order. A paragraph ending in a colon is joined to the list or table it
    introduces ("Check, in this order:" + the steps), so a passage never stops at its own promise."""
    out: list[Block] = []
    heading = ""
    current: list[str] = []
    kind = ""

    def flush():
        nonlocal current, kind
        lines = [line for line in current if line]
        if lines:
            if (
                out
                and kind in ("list", "table", "code")
                and out[-1].kind == "para"
                and out[-1].heading == heading
                and out[-1].lines[-1].endswith(":")
            ):
                intro = out.pop()
                out.append(Block(heading, intro.lines + tuple(lines), kind))
            else:
                out.append(Block(heading, tuple(lines), kind))
        current, kind = [], ""

    in_fence = False
    for raw in body.splitlines():
        stripped = raw.lstrip()
        first = stripped[:1]
        if first in ("`", "~") and _FENCE.match(raw):
            if in_fence:
                in_fence = False
                flush()
            else:
                flush()
                in_fence, kind = True, "code"
            continue
        if in_fence:
            if raw.strip():
                current.append(raw.strip())
            continue
        if not raw.strip():
            if kind != "list":
                flush()
            continue
        match = _HEADING.match(raw) if first == "#" else None
        if match:
            flush()
            heading = clean_inline(match.group(2))
            continue
        item = _LIST_ITEM.match(raw) if first in _LIST_STARTS else None
        if first == "|":
            if kind != "table":
                flush()
                kind = "table"
            if not _TABLE_RULE.match(raw):
                current.append(_table_line(raw))
        elif item:
            if kind != "list":
                flush()
                kind = "list"
            marker = f"{item.group(2)}." if item.group(2) else "\u2022"
            current.append(f"{marker} {clean_inline(item.group(3))}")
        elif kind == "list" and (raw.startswith((" ", "\t")) or not raw.strip()):
            current[-1] = f"{current[-1]} {clean_inline(raw)}".rstrip()
        else:
            if kind not in ("para", ""):
                flush()
            kind = "para"
            current.append(clean_inline(raw))
    flush()
    # A paragraph's source lines are one display line.
    return [Block(b.heading, (" ".join(b.lines),), b.kind) if b.kind == "para" else b for b in out]
