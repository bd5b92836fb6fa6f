"""Accuracy of intent routing on the held-out sets: accuracy, macro-F1, per-label F1, confusions.

    .venv/bin/python bench/intents_eval.py            # dev set and our own held-out set
    .venv/bin/python bench/intents_eval.py --errors   # also list every misrouted message
    .venv/bin/python bench/intents_eval.py FILE.jsonl # any file of {"text", "intent"} lines

Neither set is used for training (acebuddy/bot/intent_data/ is the only training data).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from acebuddy.bot.intents import ALL_INTENTS, classify  # noqa: E402

DEV_CANDIDATES = (
    os.environ.get("INTENTS_DEV_SET", ""),
    str(ROOT / "tests" / "data" / "intents-dev.jsonl"),
)
HELDOUT = ROOT / "bench" / "intents_heldout.jsonl"


def load(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def evaluate(rows: list[dict]) -> dict:
    predictions = [classify(row["text"]) for row in rows]
    gold = [row["intent"] for row in rows]
    guessed = [p.intent for p in predictions]
    correct = sum(g == p for g, p in zip(gold, guessed))
    per_label = {}
    for label in ALL_INTENTS:
        tp = sum(g == label and p == label for g, p in zip(gold, guessed))
        fp = sum(g != label and p == label for g, p in zip(gold, guessed))
        fn = sum(g == label and p != label for g, p in zip(gold, guessed))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_label[label] = {"support": tp + fn, "precision": precision, "recall": recall, "f1": f1}
    present = [label for label in ALL_INTENTS if per_label[label]["support"]]
    confusions = Counter((g, p) for g, p in zip(gold, guessed) if g != p)
    # Calibration: accuracy of the answers above a confidence threshold, and expected calibration error.
    scored = [(p.confidence, p.intent == g) for p, g in zip(predictions, gold)]
    bins: dict[int, list] = {}
    for confidence, ok in scored:
        bins.setdefault(min(int(confidence * 10), 9), []).append((confidence, ok))
    ece = sum(
        len(b) / len(scored) * abs(sum(c for c, _ in b) / len(b) - sum(ok for _, ok in b) / len(b))
        for b in bins.values()
    )
    thresholds = {}
    for threshold in (0.5, 0.7, 0.9):
        kept = [ok for confidence, ok in scored if confidence >= threshold]
        thresholds[threshold] = (len(kept) / len(scored), sum(kept) / len(kept) if kept else 0.0)
    errors = [
        (row["text"], g, p.intent, p.confidence)
        for row, g, p in zip(rows, gold, predictions)
        if g != p.intent
    ]
    return {
        "n": len(rows),
        "accuracy": correct / len(rows),
        "macro_f1": sum(per_label[label]["f1"] for label in present) / len(present),
        "per_label": per_label,
        "confusions": confusions,
        "ece": ece,
        "thresholds": thresholds,
        "errors": errors,
    }


def report(name: str, result: dict, show_errors: bool) -> None:
    print(f"== {name}: {result['n']} messages")
    print(f"accuracy {result['accuracy']:.3f}   macro-F1 {result['macro_f1']:.3f}   ECE {result['ece']:.3f}")
    for threshold, (coverage, accuracy) in result["thresholds"].items():
        print(f"  confidence >= {threshold}: {coverage:.0%} of messages, {accuracy:.1%} correct")
    print(f"  {'label':<18} {'n':>3} {'prec':>6} {'rec':>6} {'F1':>6}")
    for label, stats in result["per_label"].items():
        if stats["support"] or stats["precision"]:
            print(
                f"  {label:<18} {stats['support']:>3} {stats['precision']:>6.3f} {stats['recall']:>6.3f}"
                f" {stats['f1']:>6.3f}"
            )
    if result["confusions"]:
        print("  confusions (gold -> predicted):")
        for (gold, predicted), count in result["confusions"].most_common():
            print(f"    {gold} -> {predicted}: {count}")
    if show_errors:
        for text, gold, predicted, confidence in result["errors"]:
            print(f"  MISS {gold} -> {predicted} ({confidence:.2f}): {text}")
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="*", type=Path, help="JSONL files of {text, intent}; default: both sets")
    parser.add_argument("--errors", action="store_true", help="list the misrouted messages")
    args = parser.parse_args()
    files = args.files
    if not files:
        dev = next((Path(p) for p in DEV_CANDIDATES if p and Path(p).is_file()), None)
        if dev is None:
            print("dev set not found (set INTENTS_DEV_SET); evaluating the held-out set only\n")
        files = [p for p in (dev, HELDOUT) if p is not None]
    for path in files:
        report(str(path), evaluate(load(path)), args.errors)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
