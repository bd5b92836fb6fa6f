"""Knowledge-base retrieval quality: recall@1 and recall@3 of `search()` against a plain BM25 baseline.

Imports the corpus into a temporary SQLite database through `import_directory`, then runs every
question of each set through the product's search and through the baseline (Okapi BM25, k1=1.2,
b=0.75, over title + tags + body, lower-case alphanumeric tokens, stop words removed, no stemming,
synonyms or typo handling), computed in the same run over the same Article rows.

Question files hold one JSON object per line: {"q": "...", "slug": "expected-slug"}; a null slug marks
an off-topic question, used only to check the answer threshold.

    .venv/bin/python bench/kb_eval.py [-v] [--corpus DIR] [SET.jsonl ...]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from acebuddy import create_app  # noqa: E402
from acebuddy.extensions import db  # noqa: E402
from acebuddy.knowledge import ANSWER_THRESHOLD, best_answer, import_directory  # noqa: E402
from acebuddy.knowledge.search import search  # noqa: E402
from acebuddy.knowledge.text import STOPWORDS  # noqa: E402
from acebuddy.models import Article  # noqa: E402

DEFAULT_CORPUS = os.path.join(ROOT, "tests", "data", "kb-corpus")  # the sample articles
DEFAULT_SETS = [os.path.join(ROOT, "bench", "kb_questions.jsonl"), os.path.join(ROOT, "bench", "kb_heldout.jsonl")]
_TOKEN = re.compile(r"[a-z0-9]+")


class PlainBM25:
    """The baseline: one bag of words per article, no field weights, no stemming."""

    def __init__(self, articles, k1: float = 1.2, b: float = 0.75):
        self.k1, self.b = k1, b
        self.slugs = [a.slug for a in articles]
        self.docs = [Counter(self.tokens(f"{a.title} {' '.join(a.tags or [])} {a.body}")) for a in articles]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avg = sum(self.lengths) / len(self.lengths)
        df = Counter(t for d in self.docs for t in d)
        n = len(self.docs)
        self.idf = {t: math.log(1 + (n - f + 0.5) / (f + 0.5)) for t, f in df.items()}

    @staticmethod
    def tokens(text: str) -> list[str]:
        return [t for t in _TOKEN.findall(text.lower()) if t not in STOPWORDS]

    def search(self, query: str, limit: int) -> list[str]:
        terms = [t for t in self.tokens(query) if t in self.idf]
        scored = []
        for slug, doc, length in zip(self.slugs, self.docs, self.lengths):
            score = 0.0
            for t in terms:
                tf = doc.get(t, 0)
                if tf:
                    norm = self.k1 * (1 - self.b + self.b * length / self.avg)
                    score += self.idf[t] * tf * (self.k1 + 1) / (tf + norm)
            if score > 0:
                scored.append((-score, slug))
        return [slug for _, slug in sorted(scored)[:limit]]


def load_questions(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def evaluate(questions: list[dict], baseline: PlainBM25, verbose: bool) -> dict:
    answerable = [q for q in questions if q.get("slug")]
    off_topic = [q for q in questions if not q.get("slug")]
    out = {"questions": len(answerable), "off_topic": len(off_topic)}
    for name, ranker in (("search", lambda q: [h.slug for h in search(q, 3)]),
                         ("bm25", lambda q: baseline.search(q, 3))):
        r1 = r3 = 0
        for q in answerable:
            ranked = ranker(q["q"])
            r1 += ranked[:1] == [q["slug"]]
            r3 += q["slug"] in ranked[:3]
            if verbose and name == "search" and ranked[:1] != [q["slug"]]:
                rank = ranked.index(q["slug"]) + 1 if q["slug"] in ranked else "-"
                print(f"    [{rank}] {q['q']!r}: want {q['slug']}, got {ranked}")
        out[name] = {"recall@1": r1 / len(answerable), "recall@3": r3 / len(answerable)}
    answered = right = 0
    for q in answerable:
        hit, confidence = best_answer(q["q"])
        if hit is not None and confidence >= ANSWER_THRESHOLD:
            answered += 1
            right += hit.slug == q["slug"]
    wrongly = 0
    for q in off_topic:
        hit, confidence = best_answer(q["q"])
        if hit is not None and confidence >= ANSWER_THRESHOLD:
            wrongly += 1
            if verbose:
                print(f"    off-topic answered ({confidence:.2f}): {q['q']!r} -> {hit.slug}")
    out["threshold"] = {
        "answered": answered / len(answerable),
        "right_when_answered": right / answered if answered else 0.0,
        "off_topic_answered": wrongly / len(off_topic) if off_topic else 0.0,
    }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sets", nargs="*", default=DEFAULT_SETS)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("-v", "--verbose", action="store_true", help="list the misses")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()
    if not os.path.isdir(args.corpus):
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    tmp = tempfile.mkdtemp(prefix="kb-eval-")
    report = {}
    try:
        app = create_app({"TESTING": True, "SECRET_KEY": "bench"},
                         environ={"DATABASE_URL": f"sqlite:///{tmp}/kb.db", "ACEBUDDY_DEMO": "1"})
        with app.app_context():
            db.create_all()
            result = import_directory(args.corpus)
            if result.errors:
                print("\n".join(result.errors), file=sys.stderr)
                return 1
            baseline = PlainBM25(db.session.scalars(db.select(Article).order_by(Article.id)).all())
            for path in args.sets:
                if not os.path.exists(path):
                    print(f"(skipping {path}: not found)", file=sys.stderr)
                    continue
                if args.verbose:
                    print(f"{os.path.basename(path)}:")
                report[os.path.basename(path)] = evaluate(load_questions(path), baseline, args.verbose)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"corpus: {args.corpus} ({result.created} articles); answer threshold {ANSWER_THRESHOLD}")
    print("| set | questions | search R@1 | search R@3 | BM25 R@1 | BM25 R@3 | answered | right when answered "
          "| off-topic answered |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in report.items():
        t = r["threshold"]
        print(f"| {name} | {r['questions']} | {r['search']['recall@1']:.3f} | {r['search']['recall@3']:.3f} "
              f"| {r['bm25']['recall@1']:.3f} | {r['bm25']['recall@3']:.3f} | {t['answered']:.3f} "
              f"| {t['right_when_answered']:.3f} | {t['off_topic_answered']:.3f} ({r['off_topic']}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
