"""The compiled speedups (acebuddy/speedups.py): used only while they match their sources, and giving the
same answers as the pure-Python modules, to the last digit of every score."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from acebuddy import speedups

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "data" / "kb-corpus"
QUESTIONS = [REPO / "tests" / "data" / "intents-dev.jsonl", REPO / "bench" / "kb_questions.jsonl"]

# Run in a fresh interpreter: which modules run compiled is decided when they are first imported.
_ANSWERS = r"""
import json, sys
from acebuddy import speedups
from acebuddy.bot import intents
from acebuddy.knowledge import index
from tests.helpers import corpus_sources

corpus, questions = sys.argv[1], []
for path in sys.argv[2:]:
    with open(path, encoding="utf-8") as fh:
        questions += [(lambda row: row.get("text") or row["q"])(json.loads(line)) for line in fh if line.strip()]
built = index.Index(corpus_sources(corpus, index))
print(json.dumps({
    "compiled": sorted(speedups.active()),
    "questions": len(questions),
    "intents": [[c.intent, c.confidence, c.alternatives] for c in map(intents.classify, questions)],
    "search": [[[r.slug, r.score, r.confidence, r.extract, r.features] for r in built.search(q, 3)] for q in questions],
}))
"""


def _answers(enabled: bool) -> dict:
    env = {**os.environ, "ACEBUDDY_SPEEDUPS": "1" if enabled else "0"}
    run = subprocess.run([sys.executable, "-c", _ANSWERS, str(CORPUS), *map(str, QUESTIONS)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout)


def test_compiled_and_pure_python_give_the_same_answers():
    if not speedups.current():
        if os.environ.get("CI") == "true":
            pytest.fail("the speedups are not built or out of date: `make install` builds them")
        pytest.skip("the speedups are not built (`python -m acebuddy.speedups build`, needs a C compiler)")
    compiled, pure = _answers(True), _answers(False)
    assert compiled["compiled"] == sorted(speedups.MODULES)
    assert pure["compiled"] == []
    assert compiled["questions"] == pure["questions"] > 300
    assert sum(1 for hits in pure["search"] if hits) > 300
    assert compiled["intents"] == pure["intents"]
    assert compiled["search"] == pure["search"]


def _fake_build(tmp_path: Path, stamp: dict) -> Path:
    (tmp_path / speedups.MANIFEST).write_text(json.dumps(stamp))
    return tmp_path


def test_a_build_counts_only_while_every_source_matches_it(tmp_path):
    stamp = speedups.fingerprint()
    assert speedups.current(_fake_build(tmp_path, stamp))
    edited = {**stamp, "sources": {**stamp["sources"], "acebuddy.knowledge.index": "0" * 64}}
    assert not speedups.current(_fake_build(tmp_path, edited))
    other_python = {**stamp, "abi": ".cpython-39-x86_64-linux-gnu.so"}
    assert not speedups.current(_fake_build(tmp_path, other_python))
    (tmp_path / speedups.MANIFEST).write_text("{not json")
    assert not speedups.current(tmp_path)
    assert not speedups.current(tmp_path / "absent")


def test_turned_off_or_out_of_date_the_sources_run(monkeypatch):
    path = ["/src/acebuddy/knowledge"]
    monkeypatch.setenv("ACEBUDDY_SPEEDUPS", "0")
    speedups.use("acebuddy.knowledge", path)
    assert path == ["/src/acebuddy/knowledge"]
    monkeypatch.setenv("ACEBUDDY_SPEEDUPS", "1")
    monkeypatch.setattr(speedups, "_build_current", lambda: False)
    speedups.use("acebuddy.knowledge", path)
    assert path == ["/src/acebuddy/knowledge"]
    monkeypatch.setattr(speedups, "_build_current", lambda: True)
    speedups.use("acebuddy.salesiq", path)  # nothing of it is compiled
    assert path == ["/src/acebuddy/knowledge"]
    speedups.use("acebuddy.knowledge", path)
    assert path[0] == str(speedups.BUILD / "acebuddy" / "knowledge") and path[1:] == ["/src/acebuddy/knowledge"]


def test_the_command_says_what_it_did(capsys):
    assert speedups.main(["status"]) == 0
    assert capsys.readouterr().out.strip() in ("current", "absent or out of date (pure Python)")
    assert speedups.main(["frobnicate"]) == 2
    assert "usage" in capsys.readouterr().err


def test_make_rebuilds_them_when_any_of_their_sources_changes():
    makefile = (REPO / "Makefile").read_text().replace("\\\n", " ")
    listed = next(line for line in makefile.splitlines() if line.startswith("SPEEDUPS_SOURCES"))
    assert set(listed.split(":=")[1].split()) == {"acebuddy/speedups.py"} | {
        str(speedups.source(m).relative_to(REPO)) for m in speedups.MODULES}
