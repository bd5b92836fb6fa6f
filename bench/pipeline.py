"""Ticket pipeline throughput: tickets per minute from outbox row to Desk ticket with its transcript,
against what the Desk concurrency cap allows.

    .venv/bin/python bench/pipeline.py                      # PostgreSQL, 600 tickets, 24 RQ workers
    .venv/bin/python bench/pipeline.py --db sqlite --tickets 400 --workers 16

Runs, on this machine:
  - the Desk sandbox (and the SalesIQ and accounts sandboxes) in one web process,
    `gunicorn -c gunicorn.conf.py wsgi:app` with WEB_CONCURRENCY=1 (the sandboxes keep their state in
    memory) and --sandbox-threads threads (default 64), every Desk call held --latency s (default 0.3)
    by the sandbox's latency hook, and the sandbox's own concurrency limit set to --cap;
  - --workers RQ workers (`python worker.py`, RQ's forking worker, as in production) with
    DESK_CONCURRENCY=--cap (default 15): the Desk client's shared limiter in Redis;
  - a real SMTP server (aiosmtpd) in this process for the e-mails each ticket owes;
  - a throw-away database (a new PostgreSQL database on 127.0.0.1:5432, or a SQLite file) and Redis db
    13 of 127.0.0.1:6379 (flushed; an embedded Redis when none answers).

Then it writes --tickets ticket requests at once, as finished workflows do (a conversation with a few
messages and a unique customer e-mail, `tickets.request_ticket`, commit: the jobs are queued on commit),
and polls the database until every ticket exists in Desk with its transcript comment. Each ticket costs
4 Desk calls (contact search, contact create, ticket create, transcript comment), so the cap allows
cap / latency calls a second = cap / latency / 4 * 60 tickets a minute (750 at 15 and 0.3 s).

Reported: the steady rate (tickets completed between 10 % and 90 % of the run, per minute), the
whole-run rate (from the commit that queued every job to the last transcript), Desk calls made and the sandbox's peak in-flight count, and the e-mails and chat
follow-ups that went out. Writes bench/results/pipeline-<db>-<time>.json.
"""
from __future__ import annotations

import argparse
import calendar
import os
import subprocess
import sys
import time
from datetime import datetime

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stack
from smtpsink import SmtpSink

CONTROL_TOKEN = "bench-sandbox-control"
CALLS_PER_TICKET = 4

MAKE_TICKETS = r"""
import sys, time
from acebuddy import create_app
from acebuddy.extensions import db
from acebuddy import tickets, conversations
from acebuddy.bot.workflows import WORKFLOWS
from acebuddy.models import Conversation

n, tag = int(sys.argv[1]), sys.argv[2]
app = create_app()
with app.app_context():
    workflow = WORKFLOWS["printer_issue"]
    for i in range(n):
        key = f"{tag}-{i}"
        conv = Conversation(salesiq_id=key, open_key=key, visitor_id=f"v-{key}", visitor_name=f"Pat Lee{i}",
                            visitor_email=f"pat.lee.{key}@bench.example", visitor_phone="555 010 1234",
                            data={"printer": "HP LaserJet 404", "location": "front office", "problem": "jams"},
                            state={}, source="zobot")
        db.session.add(conv)
        db.session.flush()
        conversations.add_message(conv, "customer", "our printer keeps jamming")
        conversations.add_message(conv, "bot", "Sorry about that. Which printer is it?")
        conversations.add_message(conv, "customer", "HP LaserJet 404 in the front office")
        tickets.request_ticket(conv, workflow)
    db.session.commit()  # one commit: the jobs are queued together, after it
    print(time.time())
"""


def control(url: str, body: dict) -> dict:
    response = requests.post(url + "/sandbox/desk/_control", json=body, headers={"X-Sandbox-Token": CONTROL_TOKEN},
                             timeout=30)
    response.raise_for_status()
    return response.json()


def snapshot(url: str) -> dict:
    response = requests.get(url + "/sandbox/desk/_control", headers={"X-Sandbox-Token": CONTROL_TOKEN}, timeout=60)
    response.raise_for_status()
    return response.json()


def progress(database_url: str, tag: str) -> dict:
    rows = stack.query(database_url,
                       "SELECT t.state, t.comment_state, count(*) FROM ticket_request t JOIN conversation c "
                       "ON c.id = t.conversation_id WHERE c.salesiq_id LIKE :tag GROUP BY t.state, t.comment_state",
                       tag=f"{tag}-%")
    notes = stack.query(database_url, "SELECT channel, state, count(*) FROM notification GROUP BY channel, state")
    return {"tickets": {f"{s}/{c}": n for s, c, n in rows},
            "notifications": {f"{ch}/{st}": n for ch, st, n in notes}}


def completion_times(database_url: str, tag: str) -> list[float]:
    """Seconds since the epoch at which each ticket got its transcript (its row's last update)."""
    rows = stack.query(database_url,
                       "SELECT t.updated_at FROM ticket_request t JOIN conversation c ON c.id = t.conversation_id "
                       "WHERE c.salesiq_id LIKE :tag AND t.state = 'created' AND t.comment_state = 'added'",
                       tag=f"{tag}-%")
    # SQLite hands raw SQL's times back as text
    moments = [datetime.fromisoformat(r.updated_at) if isinstance(r.updated_at, str) else r.updated_at for r in rows]
    return sorted(calendar.timegm(m.timetuple()) + m.microsecond / 1e6 for m in moments)


def steady_rate(times: list[float], low: float = 0.1, high: float = 0.9) -> float | None:
    if len(times) < 10:
        return None
    a, b = times[int(low * (len(times) - 1))], times[int(high * (len(times) - 1))]
    done = int(high * (len(times) - 1)) - int(low * (len(times) - 1))
    return 60 * done / (b - a) if b > a else None


def run(args) -> dict:
    info: dict = {"db": args.db}
    with stack.workdir(args.keep) as workdir:
        database = stack.Database(args.db, workdir, args.pg_url)
        redis = stack.RedisServer(args.redis_url, workdir)
        smtp = SmtpSink().start()
        processes: list[subprocess.Popen] = []
        web = None
        try:
            port = stack.free_port()
            env = stack.base_env(database.url, redis.url, port, DESK_CONCURRENCY=args.cap,
                                 MAIL_PORT=smtp.port, SANDBOX_CONTROL_TOKEN=CONTROL_TOKEN,
                                 TICKET_REPLY_WAIT=3)
            info["demo_data"] = stack.prepare_acebuddy_database(env)
            web = stack.Gunicorn("wsgi:app", env, port, 1, args.sandbox_threads, os.path.join(workdir, "web.log"))
            web.wait_ready()
            control(web.url, {"action": "latency", "method": "*", "path": "*", "seconds": args.latency})
            control(web.url, {"action": "concurrency", "limit": args.cap})

            log = open(os.path.join(workdir, "workers.log"), "ab")  # noqa: SIM115 (the workers write to it until the end)
            for n in range(args.workers):
                name = f"bench-{os.getpid()}-{n}"
                if args.worker_class == "fork":  # production: `python worker.py`
                    command = [stack.PYTHON, os.path.join(stack.ROOT, "worker.py"), "--name", name]
                else:  # the same queue in RQ's non-forking SimpleWorker (the jobs build their app once)
                    command = [os.path.join(os.path.dirname(stack.PYTHON), "rq"), "worker", "-w",
                               "rq.worker.SimpleWorker", "-u", redis.url, "--with-scheduler", "-n", name,
                               "--logging_level", "WARNING", "acebuddy"]
                processes.append(subprocess.Popen(command, env=env, cwd=stack.ROOT, stdout=log,
                                                  stderr=subprocess.STDOUT))
            _wait_workers(redis.url, args.workers)
            info["idle_before_pct"] = stack.wait_quiet(args.quiet_wait)

            tag = f"pipe{os.getpid()}"
            meter = stack.CpuMeter(lambda: web.processes() + _family(processes)).start()
            started = time.time()
            maker = subprocess.run([stack.PYTHON, "-c", MAKE_TICKETS, str(args.tickets), tag], env=env, cwd=stack.ROOT,
                                   capture_output=True, text=True, check=False)
            if maker.returncode != 0:
                raise RuntimeError("writing the ticket requests failed:\n" + maker.stderr[-3000:])
            written = float(maker.stdout.strip().splitlines()[-1])
            print(f"  {args.tickets} ticket requests written and their jobs queued in {written - started:.1f} s",
                  flush=True)
            started = written

            deadline = time.monotonic() + args.timeout
            last = None
            while time.monotonic() < deadline:
                state = progress(database.url, tag)
                done = state["tickets"].get("created/added", 0)
                if done != last:
                    print(f"  {time.time() - started:6.1f} s  {done:5d} done  {state['tickets']}", flush=True)
                    last = done
                if done >= args.tickets:
                    break
                time.sleep(1)
            cpu = meter.stop()
            times = completion_times(database.url, tag)
            snap = snapshot(web.url)
            time.sleep(args.settle)  # let the e-mails of the last tickets go out
            final = progress(database.url, tag)
            info["jobs"] = job_durations(redis.url)
            log.flush()
            with open(log.name, errors="replace") as fh:
                text = fh.read()
            info["ticket_retries"] = text.count("retrying in")
            info["desk_busy_retries"] = text.count("every Desk concurrency slot is busy")

            whole = 60 * len(times) / (times[-1] - started) if times else None
            steady = steady_rate(times)
            # Every contact create follows a search that found nothing; the request log keeps 2,000 entries.
            calls = 2 * len(snap["contacts"]) + len(snap["tickets"]) + sum(len(c) for c in snap["comments"].values())
            credits = snap["credits"]["daily"] - snap["credits"]["remaining"]
            statuses: dict = {}
            for entry in snap["requests"]:
                statuses[str(entry.get("status"))] = statuses.get(str(entry.get("status")), 0) + 1
            cap_rate = args.cap / args.latency / CALLS_PER_TICKET * 60
            info.update({
                "tickets": args.tickets, "completed": len(times),
                "steady_tickets_per_min": round(steady, 1) if steady else None,
                "whole_run_tickets_per_min": round(whole, 1) if whole else None,
                "first_done_s": round(times[0] - started, 2) if times else None,
                "last_done_s": round(times[-1] - started, 2) if times else None,
                "cap_tickets_per_min": round(cap_rate, 1),
                "steady_vs_cap_pct": round(100 * steady / cap_rate, 1) if steady else None,
                "desk_calls": calls, "desk_calls_per_ticket": round(calls / max(1, len(times)), 2),
                "desk_credits_used": credits,
                "desk_peak_in_flight": snap["concurrency"]["peak"], "desk_limit": snap["concurrency"]["limit"],
                "desk_statuses_last_2000": statuses,
                "desk_tickets": len(snap["tickets"]), "desk_contacts": len(snap["contacts"]),
                "desk_comments": sum(len(c) for c in snap["comments"].values()),
                "emails_received": smtp.count, "final": final, "cpu": cpu,
                "settings": {k: v for k, v in vars(args).items()},
            })
        finally:
            for proc in processes:
                if proc.poll() is None:
                    proc.terminate()
            for proc in processes:
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if web is not None:
                web.stop()
            smtp.stop()
            redis.close()
            database.close()
    return info


def job_durations(redis_url: str) -> dict:
    """Per job function: how many finished, and their run time (RQ's started_at..ended_at) p50/p90/max."""
    import redis as redis_lib
    from rq import Queue
    from rq.job import Job

    connection = redis_lib.Redis.from_url(redis_url)
    queue = Queue("acebuddy", connection=connection)
    ids = queue.finished_job_registry.get_job_ids()
    by_func: dict[str, list[float]] = {}
    for job in Job.fetch_many(ids, connection=connection):
        if job is None or not job.started_at or not job.ended_at:
            continue
        by_func.setdefault(job.func_name.rsplit(".", 1)[-1], []).append((job.ended_at - job.started_at).total_seconds())
    out = {}
    for name, values in by_func.items():
        values.sort()
        out[name] = {"n": len(values), "p50_s": round(stack.percentile(values, 50), 3),
                     "p90_s": round(stack.percentile(values, 90), 3), "max_s": round(values[-1], 3)}
    return out


def _family(processes) -> list:
    import psutil

    out = []
    for proc in processes:
        try:
            parent = psutil.Process(proc.pid)
            out += [parent] + parent.children(recursive=True)
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_workers(redis_url: str, count: int, timeout: float = 120) -> None:
    import redis as redis_lib
    from rq import Worker

    connection = redis_lib.Redis.from_url(redis_url)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Worker.count(connection=connection) >= count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"only {Worker.count(connection=connection)} of {count} RQ workers started")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="postgres", choices=("postgres", "sqlite"))
    parser.add_argument("--tickets", type=int, default=600)
    parser.add_argument("--workers", type=int, default=24, help="RQ worker processes")
    parser.add_argument("--worker-class", choices=("fork", "simple"), default="fork",
                        help="fork: `python worker.py` (RQ forks a work horse per job, as in production); "
                             "simple: RQ's SimpleWorker on the same queue, for comparison")
    parser.add_argument("--cap", type=int, default=15, help="DESK_CONCURRENCY and the sandbox's own limit")
    parser.add_argument("--latency", type=float, default=0.3, help="seconds every Desk call takes")
    parser.add_argument("--sandbox-threads", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--settle", type=float, default=5)
    parser.add_argument("--quiet-wait", type=float, default=60)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--pg-url", default=stack.DEFAULT_PG_URL)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    print(f"[{args.db}] {args.tickets} tickets, {args.workers} RQ workers ({args.worker_class}), Desk cap {args.cap}, "
          f"{args.latency:g} s a Desk call, sandbox {args.sandbox_threads} threads", flush=True)
    info = run(args)
    data = {"benchmark": "pipeline", "machine": stack.machine(), "git": stack.git_revision(), **info}
    path = stack.write_result(f"pipeline-{args.db}", data)
    rows = [[args.db, f"{args.workers} {args.worker_class}", info["completed"], info["steady_tickets_per_min"],
             info["whole_run_tickets_per_min"], info["cap_tickets_per_min"], f"{info['steady_vs_cap_pct']} %",
             info["desk_calls_per_ticket"], info["desk_peak_in_flight"], info["emails_received"],
             round(info["cpu"]["server_cpu_s"], 1), info["cpu"]["machine_busy_pct"]]]
    print()
    print(stack.table(rows, ["db", "workers", "tickets", "steady /min", "whole run /min", "cap allows /min",
                             "vs cap", "calls/ticket", "peak in flight", "e-mails", "CPU s", "machine busy %"]))
    print(f"notifications: {info['final']['notifications']}")
    print(f"job run times: {info['jobs']}")
    print(f"ticket retries: {info['ticket_retries']} (no free Desk slot within DESK_TIMEOUT: {info['desk_busy_retries']})")
    print(f"wrote {os.path.relpath(path, stack.ROOT)}")


if __name__ == "__main__":
    main()
