"""Webhook throughput and latency through gunicorn (gthread), side by side with a bare Flask baseline.

    .venv/bin/python bench/webhook.py --db sqlite        # or --db postgres, or --db sqlite,postgres
    .venv/bin/python bench/webhook.py --db postgres --duration 30 --open-duration 60

For each database: a throw-away database (a SQLite file, or a new PostgreSQL database on
127.0.0.1:5432 dropped afterwards), migrated and loaded with the demo data (customer directory and
the 16-article demo knowledge base); Redis db 13 of 127.0.0.1:6379 (flushed; an embedded Redis when
none answers). Then, one after the other on the same machine:

  AceBuddy  `gunicorn -c gunicorn.conf.py wsgi:app`, TICKET_REPLY_WAIT=0 (a finished workflow's
            reply does not wait for the ticket job: no RQ worker runs, so the wait would only add a
            sleep), no SalesIQ signature keys.
  baseline  `gunicorn -c gunicorn.conf.py 'baseline_app:create_app()'` with the same workers and threads: one
            JSON parse and one INSERT into the same database per request.
  floor     `gunicorn -c gunicorn.conf.py 'baseline_app:create_floor_app()'`: the SQL statements of a bot turn
            in plain Core on AceBuddy's tables, no bot, no ORM (closed loop only, after everything else,
            on the mixed plan): how close to the goal a turn's database work alone allows.

and for each: a warm-up (discarded), the closed loop at --concurrency chats (default 50) for each
scenario, and the open loop at --rate messages a second (default 100). The closed loop runs the baseline,
then AceBuddy's scenarios and the baseline again, --rounds times (default 1); each scenario's "vs base"
is against the baseline runs just before and after it, and with several rounds a last line gives each
scenario's ratios and their median. The load generator is
bench/loadgen.py in its own process (wrk for the closed loop when installed, unless --loadgen python).

Scenarios, every chat under its own conversation id, every message its own request id:
  knowledge  chats of 4 informational questions, each answered from the knowledge base
  workflow   password-reset chats of 5 turns: ask, username, last four phone digits (verified),
             which system, confirm (the ticket request is written; its job waits in Redis)
  mixed      (open loop) knowledge and workflow chats alternating

Goals (issue 8): closed loop >= 50 % of the baseline's throughput; open loop p99 <= 100 ms.
Prints a table per database and writes bench/results/webhook-<db>-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stack
from loadgen import wrk_available, zobot_body

QUESTION_FILES = [os.path.join(stack.BENCH, "kb_questions.jsonl"), os.path.join(stack.BENCH, "kb_heldout.jsonl")]
KB_EXPECT = "Did this help?"

PASSWORD_OPENERS = [
    "I forgot my password", "i need to reset my password", "can't remember my password",
    "password reset please", "I forgot my password and need a new one", "please reset my password",
    "my password expired and I can't sign in", "need a password reset for my account",
]
SYSTEMS = ["QuickBooks", "E-mail", "Client portal", "Remote desktop / Windows sign-in"]


def workflow_chats() -> list[dict]:
    chats = []
    for i, opener in enumerate(PASSWORD_OPENERS):
        chats.append({"kind": "workflow", "turns": [
            {"text": opener, "expect": "username"},
            {"text": "john.doe", "expect": "last four digits"},
            {"text": "1234", "expect": "you're verified"},
            {"text": SYSTEMS[i % len(SYSTEMS)], "expect": "Shall I create"},
            {"text": "Yes, create the ticket", "expect": "logging your request"},
        ]})
    return chats


def candidate_questions() -> list[str]:
    """The knowledge questions of the KB benchmarks (written for the 60-article corpus); the probe
    keeps those the demo knowledge base answers."""
    questions = []
    for path in QUESTION_FILES:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    row = json.loads(line)
                    if row.get("slug") and row["q"] not in questions:
                        questions.append(row["q"])
    return questions


def probe(url: str, texts: list[str], expect: str) -> list[str]:
    """The texts the running bot answers as expected, asked as the first message of a new chat."""
    kept = []
    session = requests.Session()
    for n, text in enumerate(texts):
        conversation = f"probe-{os.getpid()}-{n}-{time.monotonic_ns()}"
        body = zobot_body(text, conversation, f"{conversation}-r", True)
        reply = session.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=60)
        if reply.status_code == 200 and expect in reply.text:
            kept.append(text)
    return kept


def knowledge_chats(questions: list[str], per_chat: int = 4) -> list[dict]:
    chats = []
    for start in range(0, len(questions), per_chat):
        group = questions[start:start + per_chat]
        if len(group) < per_chat:
            group += questions[: per_chat - len(group)]
        chats.append({"kind": "knowledge", "turns": [{"text": q, "expect": KB_EXPECT} for q in group]})
    return chats


def write_plan(workdir: str, name: str, chats: list[dict], expect: bool = True) -> str:
    if not expect:
        chats = [{**c, "turns": [{**t, "expect": ""} for t in c["turns"]]} for c in chats]
    path = os.path.join(workdir, f"plan-{name}.json")
    with open(path, "w") as fh:
        json.dump({"chats": chats}, fh)
    return path


def loadgen(mode: str, plan: str, url: str, args, tool: str, run_id: str, **extra) -> dict:
    command = [stack.PYTHON, os.path.join(stack.BENCH, "loadgen.py"), mode, plan, "--url", url,
               "--run-id", run_id, "--tool", tool]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# Every server keeps a pooled connection for each of its threads (acebuddy.config.engine_options), and
# three servers' pools exceed PostgreSQL's default of 100 connections: the benchmark's database closes
# sessions idle this long, and each run is followed by a pause longer than that, so the next server
# finds the connections of the one before it gone.
IDLE_SESSION_TIMEOUT = 2.0


def closed(server, label, scenario, plan, args, tool, run_id) -> dict:
    meter = stack.CpuMeter(server.processes).start()
    result = loadgen("closed", plan, server.url + "/webhook/salesiq", args, tool, run_id,
                     concurrency=args.concurrency, duration=args.duration)
    result["cpu"] = meter.stop()
    result.update(target=label, scenario=scenario)
    _print_one(result)
    time.sleep(IDLE_SESSION_TIMEOUT + 1)
    return result


def open_loop(server, label, plan, args, run_id) -> dict:
    meter = stack.CpuMeter(server.processes).start()
    result = loadgen("open", plan, server.url + "/webhook/salesiq", args, "python", run_id, rate=args.rate,
                     chats=args.chats, duration=args.open_duration)
    result["cpu"] = meter.stop()
    result.update(target=label, scenario="mixed")
    _print_one(result)
    time.sleep(IDLE_SESSION_TIMEOUT + 1)
    return result


def _print_one(r: dict) -> None:
    lat = r["latency"]
    print(f"  {r['target']:9} {r['mode']:6} {r['scenario']:9} {r['throughput_rps']:8.1f} msg/s  "
          f"p50 {lat['p50_ms']} ms  p99 {lat['p99_ms']} ms  errors {r['errors']}", flush=True)


def run_database(kind: str, args) -> dict:
    """Both servers run at once (an idle one costs nothing) and their runs alternate, so a change in
    the machine's load during the run touches both; the baseline's closed loop runs before and after."""
    results: list[dict] = []
    info: dict = {"db": kind}
    tag = f"{kind[0]}{os.getpid()}"
    with stack.workdir(args.keep) as workdir:
        database = stack.Database(kind, workdir, args.pg_url, idle_timeout=IDLE_SESSION_TIMEOUT)
        redis = stack.RedisServer(args.redis_url, workdir)
        servers = []
        try:
            port = stack.free_port()
            env = stack.base_env(database.url, redis.url, port, TICKET_REPLY_WAIT=0)
            info["demo_data"] = stack.prepare_acebuddy_database(env)
            stack.create_baseline_table(database.url)
            tool = "wrk" if (args.loadgen == "wrk" or (args.loadgen == "auto" and wrk_available())) else "python"
            info["closed_loop_tool"] = tool

            acebuddy = stack.Gunicorn("wsgi:app", env, port, args.workers, args.threads,
                                      os.path.join(workdir, "acebuddy.log"))
            servers.append(acebuddy)
            bare_port = stack.free_port()
            baseline = stack.Gunicorn("baseline_app:create_app()", dict(env, PYTHONPATH=f"{stack.ROOT}:{stack.BENCH}"),
                                      bare_port, args.workers, args.threads, os.path.join(workdir, "baseline.log"))
            servers.append(baseline)
            floor_port = stack.free_port()
            floor = stack.Gunicorn("baseline_app:create_floor_app()", dict(env, PYTHONPATH=f"{stack.ROOT}:{stack.BENCH}"),
                                   floor_port, args.workers, args.threads, os.path.join(workdir, "floor.log"))
            servers.append(floor)
            acebuddy.wait_ready()
            baseline.wait_ready()
            floor.wait_ready()

            webhook = acebuddy.url + "/webhook/salesiq"
            questions = probe(webhook, candidate_questions(), KB_EXPECT)
            openers = probe(webhook, PASSWORD_OPENERS, "username")
            if len(questions) < 8 or not openers:
                raise RuntimeError(f"the bot answered too few probes: {len(questions)} questions, "
                                   f"{len(openers)} openers")
            info["knowledge_questions"] = len(questions)
            chats = {"knowledge": knowledge_chats(questions),
                     "workflow": [c for c in workflow_chats() if c["turns"][0]["text"] in openers]}
            chats["mixed"] = [c for pair in zip(chats["knowledge"], chats["workflow"] * 10) for c in pair]
            plans = {name: write_plan(workdir, name, c) for name, c in chats.items()}
            bare = {name: write_plan(workdir, f"{name}-bare", c, expect=False) for name, c in chats.items()}

            # Warm-up: every worker builds its models and fills its caches before anything is counted.
            for server, plan in ((acebuddy, plans["mixed"]), (baseline, bare["mixed"])):
                loadgen("closed", plan, server.url + "/webhook/salesiq", args, tool, f"{tag}-warm{server.port}",
                        concurrency=args.concurrency, duration=args.warmup)
                time.sleep(IDLE_SESSION_TIMEOUT + 1)
            info["idle_before_pct"] = stack.wait_quiet(args.quiet_wait)

            # Baseline, AceBuddy's scenarios, baseline, ... (--rounds times): each scenario is compared with
            # the baselines just before and just after it, so a drift of the machine's speed touches both.
            results.append(closed(baseline, "baseline", "insert", bare["mixed"], args, tool, f"{tag}-b0"))
            for n in range(1, args.rounds + 1):
                for scenario in args.scenarios:
                    results.append(closed(acebuddy, "acebuddy", scenario, plans[scenario], args, tool,
                                          f"{tag}-{scenario}{n}"))
                results.append(closed(baseline, "baseline", "insert", bare["mixed"], args, tool, f"{tag}-b{n}"))
            if args.open_duration > 0:
                results.append(open_loop(acebuddy, "acebuddy", plans["mixed"], args, f"{tag}-ao"))
                results.append(open_loop(baseline, "baseline", bare["mixed"], args, f"{tag}-bo"))
            info["acebuddy_rows"] = _row_counts(database.url)
            info["acebuddy_log_tail"] = stack.tail(acebuddy.log.name)
            loadgen("closed", bare["mixed"], floor.url + "/webhook/salesiq", args, tool, f"{tag}-warmf",
                    concurrency=args.concurrency, duration=args.warmup)
            results.append(closed(floor, "floor", "turn SQL", bare["mixed"], args, tool, f"{tag}-floor"))
        finally:
            for server in servers:
                server.stop()
            redis.close()
            database.close()
    info["results"] = results
    return info


def _row_counts(url: str) -> dict:
    counts = {table: stack.query(url, f"SELECT count(*) FROM {table}")[0][0]
              for table in ("conversation", "message", "conversation_event", "webhook_delivery", "ticket_request")}
    counts["kb_answers"] = stack.query(url, "SELECT count(*) FROM conversation_event WHERE kind = 'kb_answer'")[0][0]
    return counts


def ratios(results: list[dict]) -> list[float | None]:
    """For each closed-loop run of AceBuddy or the floor, its throughput against the mean of the baseline
    runs just before and just after it (the floor, after the last baseline: against the mean of all)."""
    closed_bases = [(i, r["throughput_rps"]) for i, r in enumerate(results)
                    if r["target"] == "baseline" and r["mode"] == "closed"]
    overall = sum(b for _, b in closed_bases) / len(closed_bases) if closed_bases else None
    out: list[float | None] = []
    for i, r in enumerate(results):
        if r["target"] == "baseline" or r["mode"] != "closed":
            out.append(None)
            continue
        before = [b for j, b in closed_bases if j < i][-1:]
        after = [b for j, b in closed_bases if j > i][:1]
        base = sum(before + after) / len(before + after) if before and after else overall
        out.append(r["throughput_rps"] / base if base else None)
    return out


def summary(infos: list[dict]) -> str:
    """Per database and scenario: each round's ratio and their median (with --rounds above 1)."""
    lines = []
    for info in infos:
        by_scenario: dict[str, list[float]] = {}
        for r, ratio in zip(info["results"], ratios(info["results"])):
            if r["target"] == "acebuddy" and ratio is not None:
                by_scenario.setdefault(r["scenario"], []).append(ratio)
        for scenario, values in by_scenario.items():
            if len(values) > 1:
                rounds = ", ".join(f"{100 * v:.0f} %" for v in values)
                lines.append(f"{info['db']:8} {scenario:9} rounds {rounds}; median {100 * statistics.median(values):.0f} %")
    return "\n".join(lines)


def report(infos: list[dict], args) -> str:
    rows = []
    for info in infos:
        for r, share in zip(info["results"], ratios(info["results"])):
            lat = r["latency"]
            ratio = "" if share is None else f"{100 * share:.0f} %"
            cpu = r.get("cpu", {})
            per_msg = (1000 * cpu["server_cpu_s"] / r["requests"]) if r.get("requests") and cpu else None
            rows.append([info["db"], r["target"], r["mode"], r["scenario"], r["throughput_rps"], ratio,
                         lat["p50_ms"], lat["p90_ms"], lat["p99_ms"], lat["max_ms"], r["errors"],
                         None if per_msg is None else f"{per_msg:.2f}", cpu.get("machine_busy_pct")])
    return stack.table(rows, ["db", "target", "loop", "scenario", "msg/s", "vs base", "p50 ms", "p90 ms",
                              "p99 ms", "max ms", "errors", "srv CPU ms/msg", "machine busy %"])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite", help="sqlite, postgres, or both comma-separated")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker (default: gunicorn.conf.py's)")
    parser.add_argument("--concurrency", type=int, default=50, help="chats at once in the closed loop")
    parser.add_argument("--duration", type=float, default=20, help="seconds per closed-loop scenario")
    parser.add_argument("--rounds", type=int, default=1,
                        help="closed-loop rounds, each AceBuddy's scenarios followed by a baseline run")
    parser.add_argument("--warmup", type=float, default=8, help="seconds of discarded load first")
    parser.add_argument("--rate", type=float, default=100, help="messages a second in the open loop")
    parser.add_argument("--chats", type=int, default=100, help="chats in the open loop (each rate/chats msg/s)")
    parser.add_argument("--open-duration", type=float, default=30, help="seconds of open loop (0: skip)")
    parser.add_argument("--scenarios", default="knowledge,workflow")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="closed-loop load generator (the open loop always uses bench/loadgen.py)")
    parser.add_argument("--redis-url", default=None, help=f"default {stack.DEFAULT_REDIS_URL}, else embedded")
    parser.add_argument("--pg-url", default=stack.DEFAULT_PG_URL, help="a database to connect to to create ours")
    parser.add_argument("--quiet-wait", type=float, default=60,
                        help="wait up to this many seconds for the machine to be idle before measuring")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite file)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    args.workers = args.workers or _conf("workers")
    args.threads = args.threads or _conf("threads")

    print(f"gunicorn gthread: {args.workers} workers x {args.threads} threads; closed loop {args.concurrency} "
          f"chats x {args.duration:g} s; open loop {args.rate:g} msg/s x {args.open_duration:g} s; "
          f"TICKET_REPLY_WAIT=0", flush=True)
    machine = stack.machine()
    infos = []
    for kind in args.db.split(","):
        print(f"[{kind}]", flush=True)
        info = run_database(kind.strip(), args)
        infos.append(info)
        data = {"benchmark": "webhook", "machine": machine, "git": stack.git_revision(),
                "settings": {k: v for k, v in vars(args).items()}, **info}
        path = stack.write_result(f"webhook-{kind}", data)
        print(f"  rows after the AceBuddy runs: {info.get('acebuddy_rows')}")
        print(f"  wrote {os.path.relpath(path, stack.ROOT)}")
    print()
    print(report(infos, args))
    rounds = summary(infos)
    if rounds:
        print(rounds)


def _conf(name: str) -> int:
    import runpy

    return int(runpy.run_path(os.path.join(stack.ROOT, "gunicorn.conf.py"))[name])


if __name__ == "__main__":
    main()
