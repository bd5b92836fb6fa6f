"""The in-memory search index over knowledge articles: BM25F over title, tags, headings and body;
query analysis (abbreviations, synonyms, split and joined words, typos); a re-ranking pass that
rewards covering the whole question, title matches, phrases and one strong passage; and extracts.

Pure Python and independent of Flask and the database: `search.py` feeds it rows and keeps one per app.
"""
from __future__ import annotations

import heapq
import math
import re
from array import array
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from . import text
from .extract import make_extract
from .markdown import Block, blocks
from .query import CORRECTED_WEIGHT, Concept, Vocabulary

FIELDS = ("title", "tags", "heading", "body", "category")
FIELD_WEIGHTS = {"title": 3.0, "tags": 2.5, "heading": 2.0, "body": 1.0, "category": 0.5}
FIELD_B = {"title": 0.3, "tags": 0.0, "heading": 0.4, "body": 0.75, "category": 0.0}
K1 = 1.2
RERANK_DEPTH = 30
# First stage: a term found in more articles than this walks only its most impactful ones (the exact
# score of every candidate is computed afterwards); synonyms get a shorter list.
CHAMPIONS, SYNONYM_CHAMPIONS = 600, 150

# Weights of the re-ranking features (each in 0..1); tuned on bench/kb_questions.jsonl only.
W_BM25, W_COVERAGE, W_LABEL, W_PASSAGE, W_PHRASE = 1.0, 0.15, 0.85, 0.3, 0.3
W_RUN = 0.5  # three or more of the question's words in a row, as in a pasted error message
# Skip re-ranking the candidates that cannot reach the results (Index.search); off only to compare.
PRUNE_RERANK = True
# The confidence model (logistic), fitted on the same set; see docs/performance/knowledge.md.
EVIDENCE_SCALE = 3.0  # matched idf mass at which the evidence feature reaches 63%
CONFIDENCE_WEIGHTS = {"coverage": 2.0, "passage": 0.4, "label": 3.3, "margin": 1.0, "evidence": 2.9, "phrase": 1.2}
CONFIDENCE_BIAS = -4.1


@dataclass(frozen=True, slots=True)
class Source:
    """An article as the index receives it."""

    slug: str
    title: str
    category: str | None
    tags: tuple[str, ...]
    body: str


class Passage(NamedTuple):
    """A block with its index terms; a named tuple for the same reason as Block."""

    block: Block
    terms: tuple[str, ...]  # stemmed content terms of the heading and the block, in order
    heading: tuple[str, ...]  # the heading's terms (shared by the passages of a section)


@dataclass(slots=True)
class _Doc:
    slug: str
    title: str
    category: str | None
    label_terms: frozenset[str]  # title and tags
    title_terms: tuple[str, ...]
    passages: list[Passage]


@dataclass(slots=True)
class Result:
    """A ranked article with its confidence, extract and the features behind its score."""

    slug: str
    title: str
    category: str | None
    score: float
    confidence: float
    extract: str
    features: dict = field(default_factory=dict)


class _Question(NamedTuple):
    """A question analysed once for re-ranking every candidate."""

    concepts: list[Concept]
    weights: list[float]  # each concept's weight times its idf: its share of the question
    spellings: list[frozenset[str]]  # each concept's terms
    term_slots: dict[str, list[tuple[int, float]]]  # term -> the (concept, weight) it stands for
    terms: frozenset[str]  # the terms of term_slots
    order: dict[str, int]  # the terms' order in term_slots
    bigrams: dict[tuple[str, str], int]
    total: float  # the question's whole weight
    wanted: re.Pattern | None  # the kind of answer asked for ("how long" -> durations)


class Index:
    """Build once from all articles; `search` is read-only and safe to call from many threads."""

    def __init__(self, sources: list[Source]):
        self.docs: list[_Doc] = []
        # How many answers of a kind (text.ANSWER_TYPES' patterns) a passage's text holds, at most 3,
        # counted the first time a question asks for that kind in that passage: the pattern run over every
        # scored passage was a fifth of a "how long ..." search (docs/performance/webhook.md, change -18).
        # Keyed by the text (the count depends on nothing else), so it grows only with what is asked. The
        # index's only write after its build; threads that race write the same value.
        self.answer_counts: dict[tuple[str, re.Pattern], int] = {}
        self.compounds: dict[str, list[str]] = {}
        surfaces: dict[str, str] = {}
        field_counts: list[dict[str, dict[str, int]]] = []
        field_lengths: list[dict[str, int]] = []
        for source in sources:
            counts, lengths = self._add(source, surfaces)
            field_counts.append(counts)
            field_lengths.append(lengths)
        n = len(self.docs)
        self.n_docs = n
        avg = {f: (sum(lengths[f] for lengths in field_lengths) / n if n else 0.0) or 1.0 for f in FIELDS}
        df: dict[str, int] = {}
        for counts in field_counts:
            seen: set[str] = set()
            for per_field in counts.values():
                seen.update(per_field)
            for term in seen:
                df[term] = df.get(term, 0) + 1
        self.df = df
        self.idf = {t: math.log(1 + (n - d + 0.5) / (d + 0.5)) for t, d in df.items()}
        self.max_idf = math.log(1 + (n + 0.5) / 0.5) if n else 1.0
        doc_lists: dict[str, list[int]] = {}
        weight_lists: dict[str, list[float]] = {}
        idf, k1 = self.idf, K1
        for doc_id, (counts, lengths) in enumerate(zip(field_counts, field_lengths)):
            pseudo: dict[str, float] = {}
            get = pseudo.get
            for f, per_field in counts.items():
                norm = FIELD_WEIGHTS[f] / (1 - FIELD_B[f] + FIELD_B[f] * lengths[f] / avg[f])
                for term, tf in per_field.items():
                    pseudo[term] = get(term, 0.0) + tf * norm
            for term, weighted_tf in pseudo.items():
                docs = doc_lists.get(term)
                if docs is None:
                    docs = doc_lists[term] = []
                    weight_lists[term] = []
                docs.append(doc_id)
                weight_lists[term].append(idf[term] * weighted_tf * (k1 + 1) / (k1 + weighted_tf))
        self.postings = {t: (array("i", d), array("f", weight_lists[t])) for t, d in doc_lists.items()}
        self.champions: dict[str, tuple[array, array]] = {}
        for term, docs in doc_lists.items():
            if len(docs) > SYNONYM_CHAMPIONS:
                ranked = heapq.nlargest(CHAMPIONS, zip(weight_lists[term], docs))
                self.champions[term] = (array("i", (d for _, d in ranked)), array("f", (w for w, _ in ranked)))
        self.vocab = Vocabulary(df, self.idf, self.max_idf, {w: s for w, s in surfaces.items() if s and s in df},
                                self.compounds)

    def _add(self, source: Source, surfaces: dict[str, str]):
        """Tokenise one article. `surfaces` maps each word seen to its stem ("" for stop words)
        and doubles as the stemming cache of the build."""
        stopwords, stem, known = text.STOPWORDS, text.stem, surfaces.get

        def terms_of(chunk: str) -> list[str]:
            out = []
            for w in text.words(chunk):
                s = known(w)
                if s is None:
                    s = surfaces[w] = "" if w in stopwords else stem(w)
                if s:
                    out.append(s)
            if "-" in chunk:
                self.compounds.update(text.hyphenated_compounds(chunk))
            return out

        title_terms = tuple(terms_of(source.title))
        tag_terms = terms_of(" ".join(t.replace("-", " ") for t in source.tags))
        tag_terms += [stem(t.replace("-", "").lower()) for t in source.tags if "-" in t]
        for t in source.tags:
            if "-" in t:
                self.compounds.setdefault(t.replace("-", "").lower(), t.lower().split("-"))
        passages: list[Passage] = []
        heading_terms: list[str] = []
        body_terms: list[str] = []
        heading_cache: dict[str, tuple[str, ...]] = {}
        for block in blocks(source.body):
            h_terms = heading_cache.get(block.heading)
            if h_terms is None:
                h_terms = heading_cache[block.heading] = tuple(terms_of(block.heading))
                heading_terms.extend(h_terms)
            b_terms = terms_of(block.text)
            body_terms.extend(b_terms)
            passages.append(Passage(block, h_terms + tuple(b_terms), h_terms))
        category_terms = terms_of((source.category or "").replace("-", " "))
        fields = {"title": title_terms, "tags": tag_terms, "heading": heading_terms, "body": body_terms,
                  "category": category_terms}
        counts = {f: Counter(terms) for f, terms in fields.items() if terms}
        lengths = {f: len(terms) for f, terms in fields.items()}
        self.docs.append(
            _Doc(source.slug, source.title, source.category, frozenset(title_terms) | frozenset(tag_terms),
                 title_terms, passages)
        )
        return counts, lengths

    def analyse(self, query: str) -> list[Concept]:
        """The question as weighted concepts (see query.py)."""
        return self.vocab.analyse(query)

    def search(self, query: str, limit: int = 5) -> list[Result]:
        """The best `limit` articles for `query`: candidates by BM25F, then re-ranked on exact BM25F,
        coverage of the question, title and tag matches, the best passage and phrase matches."""
        concepts = self.analyse(query)
        if not any(c.known for c in concepts) or limit <= 0:
            return []
        wanted = text.answer_type(text.words(query))
        candidates = self._first_stage(concepts)
        if not candidates:
            return []
        term_slots: dict[str, list[tuple[int, float]]] = {}
        for k, c in enumerate(concepts):
            for term, w in c.alts:
                term_slots.setdefault(term, []).append((k, w))
        weights = [c.weight * c.idf for c in concepts]
        bigrams, pair_weights = _query_bigrams(concepts)
        question = _Question(concepts, weights, [frozenset(t for t, _ in c.alts) for c in concepts], term_slots,
                             frozenset(term_slots), {t: i for i, t in enumerate(term_slots)}, bigrams,
                             sum(weights), wanted)
        mass = question.total or 1.0
        corrections = [CORRECTED_WEIGHT if c.corrected else 1.0 for c in concepts]
        # A bare count ("2", "10") can rank an article but is no evidence it answers anything.
        evidential = [not (c.word.isdigit() and len(c.word) <= 2) for c in concepts]
        pair_mass = sum(pair_weights) or 1.0
        known = [k for k, c in enumerate(concepts) if c.known]  # pair p joins known[p] and known[p + 1]
        rows = []
        for doc_id in candidates:
            bm25, present = self._exact(doc_id, concepts, term_slots)
            rows.append((doc_id, bm25, present))
        top_bm25 = max(r[1] for r in rows) or 1.0
        # The passage, phrase and run features cost most of a search and are computed only for the
        # candidates that can still reach the top: each candidate gets an upper bound of its score from
        # what its postings say, and the best bounds go first; once a bound is below the `need`-th exact
        # score, no candidate left can rank among the results or be the runner-up that sets the top
        # one's margin. The results are the same as scoring every candidate (docs/performance/knowledge.md).
        need = max(limit, 2)
        bounded = []
        for doc_id, bm25, present in rows:
            doc = self.docs[doc_id]
            credit = [x * p * f for x, p, f in zip(weights, present, corrections)]
            matched = sum(credit)
            evidence = sum(x for x, counts in zip(credit, evidential) if counts)
            label, about = _label_match(doc.label_terms, concepts, weights)
            features = {"bm25": bm25, "coverage": matched / mass, "label": label / mass,
                        "evidence": 1.0 - math.exp(-evidence / EVIDENCE_SCALE)}
            head = W_BM25 * bm25 / top_bm25 + W_COVERAGE * features["coverage"] + W_LABEL * features["label"]
            bound = (head + W_PASSAGE * _passage_bound(weights, present, question.total, mass)
                     + W_PHRASE * _phrase_bound(pair_weights, pair_mass, known, present)
                     + W_RUN * _run_bound(pair_weights, known, present))
            bounded.append((bound, head, doc_id, about, features))
        bounded.sort(key=itemgetter(0), reverse=True)
        scored = []
        floor = None  # the need-th best exact score so far
        for bound, head, doc_id, about, features in bounded:
            if floor is not None and bound < floor and PRUNE_RERANK:
                break
            doc = self.docs[doc_id]
            best_passage, best_score, pairs_seen, longest = self._passages(doc, question, about)
            phrase = sum(pair_weights[p] for p in pairs_seen) / pair_mass
            run = max(0, longest - 1) / max(1, len(pair_weights) - 1)
            features.update(passage=best_score / mass, phrase=phrase, run=run)
            score = head + W_PASSAGE * features["passage"] + W_PHRASE * phrase + W_RUN * run
            scored.append((score, doc.slug, doc_id, best_passage, features))
            if len(scored) >= need:
                floor = heapq.nlargest(need, (row[0] for row in scored))[-1]
        scored.sort(key=lambda row: (-row[0], row[1]))
        top_score = scored[0][0] or 1.0
        results = []
        for rank, (score, _slug, doc_id, passage, features) in enumerate(scored[:limit]):
            doc = self.docs[doc_id]
            runner_up = scored[rank + 1][0] if rank + 1 < len(scored) else 0.0
            features["margin"] = max(0.0, score - runner_up) / (score or 1.0) if rank == 0 else 0.0
            features["relative"] = score / top_score
            results.append(Result(
                slug=doc.slug, title=doc.title, category=doc.category, score=round(score, 4),
                confidence=confidence(features),
                extract=make_extract(doc.passages, passage or 0, term_slots),
                features=features,
            ))
        return results

    def _first_stage(self, concepts: list[Concept]) -> list[int]:
        """Candidate articles by approximate BM25F: each concept scores as its best term, and a very
        common term only walks its champion list (the articles where it weighs most)."""
        acc: dict[int, float] = {}
        get = acc.get
        for c in concepts:
            if not c.known:
                continue
            cw = c.weight
            if len(c.alts) == 1:
                docs, weights = self._champions(c.alts[0][0], CHAMPIONS)
                for d, x in zip(docs, weights):
                    acc[d] = get(d, 0.0) + x * cw
                continue
            best: dict[int, float] = {}
            best_get = best.get
            for term, w in c.alts:
                docs, weights = self._champions(term, CHAMPIONS if w >= 1.0 else SYNONYM_CHAMPIONS)
                for d, x in zip(docs, weights):
                    v = x * w
                    if v > best_get(d, 0.0):
                        best[d] = v
            for d, v in best.items():
                acc[d] = get(d, 0.0) + v * cw
        return [d for d, _ in heapq.nlargest(RERANK_DEPTH, acc.items(), key=itemgetter(1))]

    def _champions(self, term: str, cap: int) -> tuple:
        champions = self.champions.get(term)
        if champions is None:
            return self.postings[term]
        return champions[0][:cap], champions[1][:cap]

    def _exact(self, doc_id: int, concepts: list[Concept], term_slots) -> tuple[float, list[float]]:
        """The exact BM25F score of one article, and for each concept the weight of the best of its
        terms the article contains (0 when none)."""
        found: dict[str, float] = {}
        for term in term_slots:
            docs, weights = self.postings[term]
            i = bisect_left(docs, doc_id)
            if i < len(docs) and docs[i] == doc_id:
                found[term] = weights[i]
        score = 0.0
        present = []
        for c in concepts:
            best, best_w = 0.0, 0.0
            for term, w in c.alts:
                x = found.get(term)
                if x is not None:
                    if x * w > best:
                        best = x * w
                    if w > best_w:
                        best_w = w
            score += best * c.weight
            present.append(best_w)
        return score, present

    def _passages(self, doc: _Doc, question: _Question, about: set[int]):
        """The passage that answers most of the question and its score (at most the question's whole
        weight); the query pairs found anywhere in the article (title included), and the longest run
        of them back to back. `about`: the concepts in the article's title or tags."""
        concepts, weights, spellings, term_slots, query_terms, order, bigrams, total, wanted = question
        best, best_score, best_pick = None, 0.0, 0.0
        pairs_seen: set[int] = set()
        longest = 0
        if bigrams and not query_terms.isdisjoint(doc.title_terms):
            found = _pair_positions(doc.title_terms, bigrams)
            pairs_seen.update(found)
            longest = _longest_run(found)
        for position, passage in enumerate(doc.passages):
            terms = passage.terms
            common = query_terms.intersection(terms)
            if not common:
                continue
            # Each concept's best term here, the question's terms taken in order (of equal weights the
            # first term wins, with its count).
            hits: dict[int, tuple[float, int]] = {}
            for t in sorted(common, key=order.__getitem__) if len(common) > 1 else common:
                n = terms.count(t)
                for k, w in term_slots[t]:
                    old = hits.get(k)
                    if old is None or w > old[0]:
                        hits[k] = (w, n)
            if bigrams and len(hits) > 1:
                found = _pair_positions(terms, bigrams)
                if found:
                    pairs_seen.update(found)
                    run = _longest_run(found)
                    if run > longest:
                        longest = run
            score = pick = 0.0
            heading = passage.heading
            for k, (w, n) in hits.items():
                in_heading = heading and not spellings[k].isdisjoint(heading)
                part = weights[k] * w * (n / (n + 0.5)) * (1.25 if in_heading else 1.0)
                score += part
                # To choose the passage to show, words of the title count less: the whole article is
                # about them ("0x204 vpn" -> the step about VPNs, not the first mention of 0x204).
                pick += part * (0.5 if k in about else 1.0)
            # Shorter passages and earlier ones (an article leads with its main answer) win ties.
            shape = (0.75 + 0.25 / (1.0 + len(terms) / 120.0)) / (1.0 + 0.06 * position)
            score *= shape
            pick *= shape
            # The passage shown also looks at the kind of answer asked for ("how long" -> durations);
            # the score used for ranking does not.
            if wanted is not None:
                key = (passage.block.text, wanted)
                answers = self.answer_counts.get(key)
                if answers is None:
                    answers = self.answer_counts[key] = min(3, len(wanted.findall(passage.block.text)))
                pick *= 1.0 + 0.25 * answers
            if pick > best_pick:
                best, best_pick = position, pick
            if score > best_score:
                best_score = score
        return best, min(best_score, total), pairs_seen, longest


def _label_match(label_terms: frozenset[str], concepts: list[Concept], weights: list[float]) -> tuple[float, set[int]]:
    """How much of the question an article's title and tags hold (each concept's weight times its best
    term found there), and which concepts they hold."""
    label, about = 0.0, set()
    for k, c in enumerate(concepts):
        best = None
        for t, w in c.alts:
            if t in label_terms and (best is None or w > best):
                best = w
        if best is not None:
            about.add(k)
            label += weights[k] * best
    return label, about


# Upper bounds of the passage, phrase and run features of an article from `present` (each concept's best
# term weight in the article, see Index._exact), for skipping articles that cannot reach the results.
# A passage holds only the article's terms, each at most its concept's weight and at most 1.25 times it
# in a heading; the slack covers the float rounding of sums taken in another order.
_SLACK = 1.0 + 1e-9


def _passage_bound(weights: list[float], present: list[float], total: float, mass: float) -> float:
    return min(1.25 * _SLACK * sum(x * p for x, p in zip(weights, present)), total) / mass


def _phrase_bound(pair_weights: list[float], pair_mass: float, known: list[int], present: list[float]) -> float:
    """A query pair is found only where both its words are, each in a full-weight spelling."""
    return _SLACK * sum(w for p, w in enumerate(pair_weights)
                        if present[known[p]] >= 1.0 and present[known[p + 1]] >= 1.0) / pair_mass


def _run_bound(pair_weights: list[float], known: list[int], present: list[float]) -> float:
    longest = length = 0
    for p in range(len(pair_weights)):
        length = length + 1 if present[known[p]] >= 1.0 and present[known[p + 1]] >= 1.0 else 0
        longest = max(longest, length)
    return max(0, longest - 1) / max(1, len(pair_weights) - 1)


def _query_bigrams(concepts: list[Concept]) -> tuple[dict[tuple[str, str], int], list[float]]:
    """Adjacent pairs of the question's words: (term, next term) -> pair number, for every spelling
    each word has at full weight (so "remote pc" also matches "remote computer"); and pair weights."""
    pairs: dict[tuple[str, str], int] = {}
    weights: list[float] = []
    known = [c for c in concepts if c.known]
    for a, b in zip(known, known[1:]):
        number = len(weights)
        weights.append(min(a.idf * a.weight, b.idf * b.weight))
        for ta, wa in a.alts:
            for tb, wb in b.alts:
                if wa >= 1.0 and wb >= 1.0:
                    pairs.setdefault((ta, tb), number)
    return pairs, weights


def _pair_positions(terms: tuple[str, ...], bigrams: dict) -> dict[int, set[int]]:
    """Where each query pair occurs in a run of terms: pair number -> start positions."""
    found: dict[int, set[int]] = {}
    for (a, b), number in bigrams.items():
        if a in terms and b in terms:
            i = terms.index(a)
            while True:
                if i + 1 < len(terms) and terms[i + 1] == b:
                    found.setdefault(number, set()).add(i)
                try:
                    i = terms.index(a, i + 1)
                except ValueError:
                    break
    return found


def _longest_run(found: dict[int, set[int]]) -> int:
    """The most consecutive query pairs matched back to back (2 = three words in a row)."""
    best = 0
    for number, starts in found.items():
        if number - 1 in found:
            continue
        for start in starts:
            length, n, pos = 1, number + 1, start + 1
            while pos in found.get(n, ()):
                length, n, pos = length + 1, n + 1, pos + 1
            best = max(best, length)
    return best


def confidence(features: dict) -> float:
    """How sure we are that this article answers the question, 0..1 (a logistic model over the
    ranking features, fitted on bench/kb_questions.jsonl; see docs/performance/knowledge.md)."""
    if not features.get("evidence"):  # nothing but bare numbers matched
        return 0.0
    z = CONFIDENCE_BIAS + sum(CONFIDENCE_WEIGHTS[name] * features.get(name, 0.0) for name in CONFIDENCE_WEIGHTS)
    return round(features.get("relative", 1.0) / (1.0 + math.exp(-z)), 4)
