"""Memory per process: the gunicorn web worker after warm-up with the demo knowledge base, the RQ
worker after filing tickets, the scheduler, and a bare Flask worker for comparison. RSS, USS and PSS
through psutil (USS: pages only this process has; PSS: its fair share of the pages it shares).

    .venv/bin/python bench/memory.py                # SQLite; --db postgres for PostgreSQL

Starts on a throw-away database with the demo data (6 customers, 16 articles) and Redis db 13:
  1. AceBuddy `gunicorn -c gunicorn.conf.py wsgi:app` (its workers build the intent model and the
     knowledge index at start-up), measured idle after start-up, then after --messages webhook
     messages (knowledge and password-reset chats), then after 20 s more of 20 concurrent chats;
  2. `python worker.py` (RQ, forking) and `python worker.py --cron`, measured idle, then after the
     worker filed every ticket the chats asked for (the Desk sandbox in a web process of its own, no
     latency; e-mails to a real SMTP server in this process); a work horse's peak is sampled meanwhile;
  3. the baseline app (bench/baseline_app.py) under the same gunicorn settings, after traffic.
Writes bench/results/memory-<db>-<time>.json.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import psutil

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stack
from smtpsink import SmtpSink
from webhook import (
    KB_EXPECT,
    candidate_questions,
    knowledge_chats,
    loadgen,
    probe,
    workflow_chats,
    write_plan,
)


def measure(label: str, procs: list[psutil.Process]) -> list[dict]:
    rows = []
    for proc in procs:
        try:
            rows.append({"process": label, "pid": proc.pid, **stack.rss_mb(proc)})
        except psutil.NoSuchProcess:
            pass
    return rows


def gunicorn_rows(label: str, server: stack.Gunicorn) -> list[dict]:
    master = psutil.Process(server.proc.pid)
    return measure(f"{label} master", [master]) + measure(f"{label} worker", master.children())


class HorseWatch(threading.Thread):
    """Samples the RSS of an RQ worker's work horses (children that live for one job) and keeps the peak."""

    def __init__(self, parent: psutil.Process):
        super().__init__(daemon=True)
        self.parent = parent
        self.peak = {"rss_mb": 0.0, "uss_mb": 0.0, "pss_mb": 0.0}
        self.seen = 0
        self.stop = threading.Event()

    def run(self):
        pids = set()
        while not self.stop.is_set():
            try:
                for child in self.parent.children():
                    try:
                        sample = stack.rss_mb(child)
                    except psutil.NoSuchProcess:
                        continue
                    pids.add(child.pid)
                    if sample["rss_mb"] > self.peak["rss_mb"]:
                        self.peak = sample
            except psutil.NoSuchProcess:
                return
            self.seen = len(pids)
            time.sleep(0.02)


def run(args) -> dict:
    rows: list[dict] = []
    info: dict = {"db": args.db}
    with stack.workdir(args.keep) as workdir:
        database = stack.Database(args.db, workdir, args.pg_url)
        redis = stack.RedisServer(args.redis_url, workdir)
        smtp = SmtpSink().start()
        servers, procs = [], []
        try:
            # The sandboxes keep their state (issued tokens, tickets) in memory: one process of their own,
            # which every client reaches through ACEBUDDY_URL.
            sandbox_port = stack.free_port()
            env = stack.base_env(database.url, redis.url, sandbox_port, TICKET_REPLY_WAIT=0, MAIL_PORT=smtp.port)
            info["demo_data"] = stack.prepare_acebuddy_database(env)
            sandbox = stack.Gunicorn("wsgi:app", env, sandbox_port, 1, 16, os.path.join(workdir, "sandbox.log"))
            servers.append(sandbox)
            sandbox.wait_ready()
            port = stack.free_port()
            web = stack.Gunicorn("wsgi:app", env, port, args.workers, args.threads, os.path.join(workdir, "web.log"))
            servers.append(web)
            web.wait_ready()
            time.sleep(args.settle)  # the workers' warm-up threads build the intent model and the index
            rows += gunicorn_rows("web worker idle after start-up", web)

            log = open(os.path.join(workdir, "workers.log"), "ab")  # noqa: SIM115 (the workers write to it until the end)
            worker = subprocess.Popen([stack.PYTHON, os.path.join(stack.ROOT, "worker.py")], env=env, cwd=stack.ROOT,
                                      stdout=log, stderr=subprocess.STDOUT)
            cron = subprocess.Popen([stack.PYTHON, os.path.join(stack.ROOT, "worker.py"), "--cron"], env=env,
                                    cwd=stack.ROOT, stdout=log, stderr=subprocess.STDOUT)
            procs += [worker, cron]
            time.sleep(args.settle)
            rows += measure("RQ worker idle after start-up", [psutil.Process(worker.pid)])
            watch = HorseWatch(psutil.Process(worker.pid))
            watch.start()

            url = web.url + "/webhook/salesiq"
            questions = probe(url, candidate_questions(), KB_EXPECT)
            plan = write_plan(workdir, "mixed", [c for pair in zip(knowledge_chats(questions), workflow_chats() * 5)
                                                 for c in pair])
            sent = len(questions)
            result = loadgen("closed", plan, url, args, "python", f"m{os.getpid()}a", concurrency=8,
                             duration=max(1.0, args.messages / 100))
            sent += result["requests"]
            rows += gunicorn_rows(f"web worker after {sent} messages", web)
            result = loadgen("closed", plan, url, args, "python", f"m{os.getpid()}b", concurrency=20, duration=20)
            sent += result["requests"]
            rows += gunicorn_rows(f"web worker after {sent} messages (20 more s at 20 chats)", web)

            tickets = _wait_tickets(database.url, args.timeout)
            watch.stop.set()
            rows += measure(f"RQ worker after filing {tickets['created']} tickets", [psutil.Process(worker.pid)])
            rows.append({"process": f"RQ work horse (peak over {watch.seen} jobs sampled)", "pid": None, **watch.peak})
            rows += measure("RQ scheduler (worker.py --cron)", [psutil.Process(cron.pid)])
            info["tickets"] = tickets
            info["messages"] = sent

            bare_port = stack.free_port()
            bare = stack.Gunicorn("baseline_app:create_app()", dict(env, PYTHONPATH=f"{stack.ROOT}:{stack.BENCH}"),
                                  bare_port, args.workers, args.threads, os.path.join(workdir, "baseline.log"))
            servers.append(bare)
            stack.create_baseline_table(database.url)
            bare.wait_ready()
            loadgen("closed", plan, bare.url + "/webhook/salesiq", args, "python", f"m{os.getpid()}c",
                    concurrency=20, duration=10)
            rows += gunicorn_rows("baseline (bare Flask + 1 INSERT)", bare)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
                    try:
                        proc.wait(20)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            for server in servers:
                server.stop()
            smtp.stop()
            redis.close()
            database.close()
    info["rows"] = rows
    return info


def _wait_tickets(database_url: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        states = dict(stack.query(database_url, "SELECT state, count(*) FROM ticket_request GROUP BY state"))
        busy = stack.query(database_url, "SELECT count(*) FROM notification WHERE state IN ('pending', 'sending') "
                                         "AND not_before < CURRENT_TIMESTAMP")[0][0]
        open_ = states.get("pending", 0) + states.get("creating", 0)
        if (open_ == 0 and not busy) or time.monotonic() > deadline:
            return {"created": states.get("created", 0), "open": open_, "states": states}
        time.sleep(1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite", choices=("sqlite", "postgres"))
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--messages", type=int, default=1000, help="webhook messages before the second reading")
    parser.add_argument("--settle", type=float, default=8, help="seconds after start-up before the idle reading")
    parser.add_argument("--timeout", type=float, default=300, help="for the worker to file every ticket")
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--pg-url", default=stack.DEFAULT_PG_URL)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)
    from webhook import _conf

    args.workers = args.workers or _conf("workers")
    args.threads = args.threads or _conf("threads")
    info = run(args)
    data = {"benchmark": "memory", "machine": stack.machine(), "git": stack.git_revision(),
            "settings": vars(args), **info}
    path = stack.write_result(f"memory-{args.db}", data)
    print(stack.table([[r["process"], r["pid"] or "", r["rss_mb"], r["uss_mb"], r["pss_mb"]] for r in info["rows"]],
                      ["process", "pid", "RSS MB", "USS MB", "PSS MB"]))
    print(f"tickets filed by the RQ worker: {info['tickets']}")
    print(f"wrote {os.path.relpath(path, stack.ROOT)}")


if __name__ == "__main__":
    main()
