"""Instructions per webhook message, counted by valgrind's callgrind: a measure that does not move with
the machine's speed. On the shared 2-core machine the CPU time of the same run varies by a third from
one minute to the next (docs/performance/webhook.md), too much to see a change of a few percent;
callgrind counts the instructions the process executes, the same for the same code and input.

    .venv/bin/python bench/instructions.py                       # knowledge, workflow, baseline
    .venv/bin/python bench/instructions.py --scenarios knowledge --rounds 2
    .venv/bin/python bench/instructions.py --scenarios knowledge \
        --within acebuddy.salesiq.intake:_commit_turn --within acebuddy.knowledge.search:best_answer
    .venv/bin/python bench/instructions.py --scenarios knowledge --keep /tmp/cg   # then callgrind_annotate

Needs valgrind, its header <valgrind/callgrind.h> and a C compiler: a two-function helper is compiled
into a temporary directory so that only the measured turns are counted (not start-up, imports or the
warm-up round). Each scenario runs in its own process under `valgrind --tool=callgrind
--instr-atstart=no`, on SQLite with the demo data, through Flask's test client as bench/profile_turn.py
does. `--within MODULE:FUNCTION` counts only the instructions run inside that function (a wrapper
switches callgrind's collection on at its outermost entry and off at its exit; one run a function, so
give each as it is looked up at its call site: a name imported with `from ... import` elsewhere is not
wrapped there). Counts user-space instructions only: what the kernel does for a commit's fsync or a socket is not
in them (bench/webhook.py is the judge; this says whether a change made the Python side cheaper).
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
HELPER_C = """#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_ZERO_STATS; CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; CALLGRIND_DUMP_STATS_AT("measured"); }
void cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
"""


def build_helper(directory: str) -> str:
    source, library = os.path.join(directory, "cg.c"), os.path.join(directory, "libcg.so")
    with open(source, "w") as fh:
        fh.write(HELPER_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", library, source], check=True)
    return library


def count_within(counter, target: str) -> list[int]:
    """Wrap MODULE:FUNCTION (or MODULE:Class.method) so that callgrind collects only inside it; the
    returned list counts its outermost calls."""
    module, _, name = target.partition(":")
    owner = importlib.import_module(module)
    *path, attribute = name.split(".")
    for part in path:
        owner = getattr(owner, part)
    original = getattr(owner, attribute)
    depth, calls = [0], [0]

    @functools.wraps(original)
    def counted(*args, **kwargs):
        depth[0] += 1
        if depth[0] == 1:
            calls[0] += 1
            counter.cg_toggle()
        try:
            return original(*args, **kwargs)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                counter.cg_toggle()

    setattr(owner, attribute, counted)
    return calls


def child(scenario: str, rounds: int, library: str, within: str | None) -> None:
    """Runs under callgrind: set up, warm up, then count `rounds` rounds of the scenario's chats."""
    sys.path.insert(0, HERE)
    from profile_turn import knowledge_questions, prepared_stack, run_chats
    from webhook import knowledge_chats, workflow_chats

    counter = ctypes.CDLL(library)
    with prepared_stack("sqlite"):
        from acebuddy import create_app
        from baseline_app import create_app as create_baseline

        if scenario == "baseline":
            client = create_baseline().test_client()
            chats = [{"turns": [{"text": "hello", "expect": "ok"}] * 5}] * 10
        else:
            client = create_app().test_client()
            chats = workflow_chats()[:10] if scenario == "workflow" else knowledge_chats(knowledge_questions(client))
        run_chats(client, chats, 1)  # warm caches and connections, uncounted
        calls = count_within(counter, within) if within else None
        counter.cg_start()
        sent = run_chats(client, chats, rounds)
        counter.cg_stop()
        print(f"SENT {sent}")
        if calls is not None:
            print(f"CALLS {calls[0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="knowledge,workflow,baseline")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--within", action="append", default=[], metavar="MODULE:FUNCTION",
                        help="count only inside this function (repeatable: one run each)")
    parser.add_argument("--keep", metavar="DIRECTORY",
                        help="keep callgrind's output files there, for callgrind_annotate --inclusive=yes")
    parser.add_argument("--child", nargs=3, metavar=("SCENARIO", "LIBRARY", "WITHIN"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.rounds, args.child[1], args.child[2] or None)
        return
    if not shutil.which("valgrind"):
        sys.exit("valgrind is not installed (Debian: apt-get install valgrind)")
    directory = tempfile.mkdtemp(prefix="acebuddy-callgrind-")
    try:
        library = build_helper(directory)
        for scenario in [s for s in args.scenarios.split(",") if s]:
            for within in args.within or [""]:
                run = subprocess.run(
                    ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                     *(["--collect-atstart=no"] if within else []),
                     f"--callgrind-out-file={os.path.join(args.keep or directory, 'callgrind.%p')}",
                     sys.executable, os.path.abspath(__file__), "--rounds", str(args.rounds),
                     "--child", scenario, library, within],
                    capture_output=True, text=True, cwd=os.path.dirname(HERE))
                sent = re.search(r"SENT (\d+)", run.stdout)
                collected = re.search(r"Collected : (\d+)", run.stderr)
                if run.returncode or not sent or not collected:
                    sys.exit(f"{scenario}: the run failed\n{run.stdout[-2000:]}\n{run.stderr[-3000:]}")
                messages, instructions = int(sent.group(1)), int(collected.group(1))
                line = f"{scenario:10} {messages:4} messages  {instructions / messages / 1e6:6.2f} M instructions a message"
                if within:
                    calls = re.search(r"CALLS (\d+)", run.stdout)
                    line += f"  within {within} ({calls.group(1) if calls else '?'} calls)"
                print(line)
        if args.keep:
            print(f"callgrind's files are in {args.keep} (the counted part: callgrind.PID.1)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
