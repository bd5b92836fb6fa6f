"""Knowledge-base search speed with 10,000 articles.

Generates the articles (the kb-corpus plus synthetic variants that mix sections of several articles,
product names and filler words, so the index has realistic long posting lists and a large
vocabulary), writes them as Markdown, imports them through `import_directory` into a temporary SQLite
database, then times `search()` and `best_answer()` over the question sets and their typo variants.

    .venv/bin/python bench/kb_speed.py [--articles 10000] [--rounds 3] [--corpus DIR] [--exhaustive]
                                       [--rerank-all]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from acebuddy import create_app  # noqa: E402
from acebuddy.extensions import db  # noqa: E402
from acebuddy.knowledge import best_answer, import_directory  # noqa: E402
from acebuddy.knowledge.search import search  # noqa: E402
from acebuddy.knowledge.importer import parse_article  # noqa: E402

DEFAULT_CORPUS = os.path.join(ROOT, "tests", "data", "kb-corpus")  # the sample articles
PRODUCTS = ["Sage 50", "Drake Tax", "Lacerte", "ProSeries", "UltraTax CS", "Xero", "QuickBooks Enterprise",
            "Microsoft Excel", "Adobe Acrobat", "Windows Server 2022", "Outlook for Mac", "Android 15",
            "iOS 18", "ScanSnap", "Brother HL-L2350", "HP LaserJet", "Zebra GK420", "Chrome", "Edge"]
AUDIENCES = ["for administrators", "for new staff", "on dedicated servers", "on shared plans",
             "during tax season", "for remote workers", "in the Canadian region", "for bookkeepers"]


def _sections(body: str) -> list[str]:
    parts, current = [], []
    for line in body.splitlines():
        if line.startswith("## ") and current:
            parts.append("\n".join(current))
            current = []
        current.append(line)
    if current:
        parts.append("\n".join(current))
    return parts


def _filler(rng: random.Random, vocabulary: list[str], n: int) -> str:
    words = [rng.choice(vocabulary) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def generate(corpus: str, count: int, out_dir: str, seed: int = 7) -> int:
    rng = random.Random(seed)
    base = []
    for name in sorted(os.listdir(corpus)):
        if name.endswith(".md"):
            with open(os.path.join(corpus, name), encoding="utf-8") as fh:
                base.append(parse_article(fh.read(), name))
    # A vocabulary of made-up words the size of a real help centre's long tail.
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choice(letters) for _ in range(rng.randint(4, 11))) for _ in range(30000)]
    sections = [s for a in base for s in _sections(a.body)]
    written = 0
    for i in range(count):
        src = base[i % len(base)]
        if i < len(base):
            title, slug, tags, body = src.title, src.slug, list(src.tags), src.body
        else:
            product = rng.choice(PRODUCTS)
            title = f"{src.title} with {product} {rng.choice(AUDIENCES)}"
            slug = f"{src.slug}-{i:05d}"
            tags = src.tags[: rng.randint(1, len(src.tags) or 1)] + [product.lower().replace(" ", "-")]
            own = _sections(src.body)
            rng.shuffle(own)
            borrowed = rng.sample(sections, 2)
            filler = _filler(rng, vocabulary, rng.randint(20, 60))
            body = "\n\n".join(own[: max(2, len(own) - 1)] + borrowed + [f"## Notes on {product}\n{filler}"])
        with open(os.path.join(out_dir, f"{slug}.md"), "w", encoding="utf-8") as fh:
            fh.write(f"---\ntitle: {json.dumps(title)}\nslug: {slug}\ncategory: {src.category or ''}\n"
                     f"tags: [{', '.join(tags)}]\n---\n{body}\n")
        written += 1
    return written


def _typo(rng: random.Random, q: str) -> str:
    words = q.split()
    k = rng.randrange(len(words))
    w = words[k]
    if len(w) > 4:
        i = rng.randrange(1, len(w) - 1)
        words[k] = w[:i] + w[i + 1:]
    return " ".join(words)


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    k = max(0, min(len(values) - 1, int(round(p / 100 * (len(values) - 1)))))
    return values[k]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=3, help="passes over the query list")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--exhaustive", action="store_true",
                        help="walk every posting in the first stage (no champion lists), to compare")
    parser.add_argument("--rerank-all", action="store_true",
                        help="re-rank every candidate (no score-bound pruning), to compare")
    args = parser.parse_args()
    if args.rerank_all:
        from acebuddy.knowledge import index

        index.PRUNE_RERANK = False
    if args.exhaustive:
        from acebuddy.knowledge import index

        index.CHAMPIONS = index.SYNONYM_CHAMPIONS = 10 ** 9
    if not os.path.isdir(args.corpus):
        print(f"corpus not found: {args.corpus}", file=sys.stderr)
        return 2
    queries, labelled = [], []
    for name in ("kb_questions.jsonl", "kb_heldout.jsonl"):
        path = os.path.join(ROOT, "bench", name)
        if os.path.exists(path):
            with open(path, encoding="utf-8") as fh:
                rows = [json.loads(line) for line in fh if line.strip()]
            queries += [row["q"] for row in rows]
            labelled += [row for row in rows if row.get("slug")]
    rng = random.Random(3)
    queries += [_typo(rng, q) for q in queries]

    tmp = tempfile.mkdtemp(prefix="kb-speed-")
    try:
        articles_dir = os.path.join(tmp, "articles")
        os.makedirs(articles_dir)
        t0 = time.perf_counter()
        n = generate(args.corpus, args.articles, articles_dir)
        t_gen = time.perf_counter() - t0
        app = create_app({"TESTING": True, "SECRET_KEY": "bench"},
                         environ={"DATABASE_URL": f"sqlite:///{tmp}/kb.db", "ACEBUDDY_DEMO": "1"})
        with app.app_context():
            db.create_all()
            t0 = time.perf_counter()
            result = import_directory(articles_dir)
            t_import = time.perf_counter() - t0
            assert not result.errors, result.errors[:5]
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            t0 = time.perf_counter()
            search("warm up the index")
            t_build = time.perf_counter() - t0
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            timings, answer_timings = [], []
            for _ in range(args.rounds):
                for q in queries:
                    t0 = time.perf_counter()
                    search(q, 5)
                    timings.append((time.perf_counter() - t0) * 1000)
            for q in queries:
                t0 = time.perf_counter()
                best_answer(q)
                answer_timings.append((time.perf_counter() - t0) * 1000)
            # Sanity check of the pruned first stage: does the article (or one of its synthetic
            # variants, which borrow sections from other articles) still come first?
            right = total = 0
            for q in labelled:
                total += 1
                top = [re.sub(r"-\d{5}$", "", h.slug) for h in search(q["q"], 1)]
                right += top == [q["slug"]]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"articles: {n} (generated in {t_gen:.1f} s), imported in {t_import:.1f} s: {result}")
    print(f"index build at first search: {t_build:.2f} s; peak RSS {rss_before / 1024:.0f} MB before, "
          f"{rss_after / 1024:.0f} MB after")
    print(f"search(q, 5) over {len(timings)} queries: p50 {percentile(timings, 50):.2f} ms, "
          f"p90 {percentile(timings, 90):.2f} ms, p99 {percentile(timings, 99):.2f} ms, "
          f"max {max(timings):.2f} ms, mean {statistics.mean(timings):.2f} ms")
    print(f"best_answer(q) over {len(answer_timings)} queries: p50 {percentile(answer_timings, 50):.2f} ms, "
          f"p99 {percentile(answer_timings, 99):.2f} ms")
    print(f"first hit is the article or one of its variants: {right}/{total} = {right / total:.3f}"
          + (" (exhaustive first stage)" if args.exhaustive else "")
          + (" (every candidate re-ranked)" if args.rerank_all else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
