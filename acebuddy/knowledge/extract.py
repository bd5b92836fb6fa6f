"""Extracts: the passage chosen for a hit, as a few lines of plain text for a chat bubble."""
from __future__ import annotations

from typing import TYPE_CHECKING

from . import text

if TYPE_CHECKING:
    from .index import Passage

EXTRACT_CHARS = 400
EXTEND_BELOW = 160  # an extract shorter than this takes in what follows it in the same section


def make_extract(passages: list[Passage], index: int, term_slots: dict) -> str:
    """The chosen passage as chat text, under its section heading ("Please don't:" changes what a
    list means): cut to the run of sentences or steps that holds most query words when too long,
    joined with what follows in its section when it is only a lead-in."""
    if not passages:
        return ""
    heading = passages[index].block.heading
    prefix = heading if not heading or heading[-1] in ".:?!" else heading + ":"
    budget = EXTRACT_CHARS - len(prefix) - 1
    if not prefix or budget < EXTRACT_CHARS // 2:
        return _extract_body(passages, index, term_slots, EXTRACT_CHARS)
    return f"{prefix}\n{_extract_body(passages, index, term_slots, budget)}"


def _extract_body(passages: list[Passage], index: int, term_slots: dict, limit: int) -> str:
    passage = passages[index]
    lines = list(passage.block.lines)
    full = "\n".join(lines)
    if len(full) <= limit:
        for nxt in passages[index + 1: index + 3]:
            if len(full) >= EXTEND_BELOW or nxt.block.heading != passage.block.heading:
                break
            extra = _fitting(nxt.block.lines, limit - len(full) - 1)
            if not extra:
                break
            full = "\n".join([full, *extra])
        return full
    units: list[str] = []
    for line in lines:
        if passage.block.kind == "para":
            units.extend(_sentences(line))
        else:
            units.append(line)
    scores = []
    for unit in units:
        terms = set(text.content_terms(unit))
        scores.append(sum(max(w for _, w in term_slots[t]) for t in terms if t in term_slots))
    best = (-1.0, 0, 0)
    for start in range(len(units)):
        total, size, end = 0.0, 0, start
        while end < len(units) and size + len(units[end]) + 1 <= limit:
            size += len(units[end]) + 1
            total += scores[end]
            end += 1
        if end == start:  # one unit longer than the limit
            total, end = scores[start], start + 1
        key = (total, -start, end - start)
        if key > (best[0], -best[1], best[2] - best[1]):
            best = (total, start, end)
    _, start, end = best
    sep = " " if passage.block.kind == "para" else "\n"
    chosen = sep.join(units[start:end])
    if len(chosen) > limit:
        chosen = chosen[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "\u2026"
    return chosen


def _fitting(lines, room: int) -> list[str]:
    """The leading lines of a block that fit in `room` characters (all of a paragraph or none)."""
    out, size = [], 0
    for line in lines:
        if size + len(line) + 1 > room:
            break
        out.append(line)
        size += len(line) + 1
    return out


def _sentences(paragraph: str) -> list[str]:
    out, start = [], 0
    for i, ch in enumerate(paragraph):
        if ch in ".!?" and i + 1 < len(paragraph) and paragraph[i + 1] == " " and (
            i + 2 < len(paragraph) and (paragraph[i + 2].isupper() or paragraph[i + 2] in "\"'(")
        ):
            out.append(paragraph[start: i + 1].strip())
            start = i + 2
    tail = paragraph[start:].strip()
    if tail:
        out.append(tail)
    return out
