"""Soak: minutes of mixed chat traffic against a real AceBuddy stack while faults are injected at random,
then a reconciliation of everything that was asked for against everything that happened.

    .venv/bin/python bench/soak.py                       # 30 minutes, production timings
    .venv/bin/python bench/soak.py --minutes 5 --chats 6
    .venv/bin/python bench/soak.py --short               # the CI version (tests/e2e/test_soak.py), ~75 s
    .venv/bin/python bench/soak.py --json bench/results/soak.json

The stack, started here and torn down at the end: the web app (SalesIQ webhook, Desk webhook and the
Desk, accounts and SalesIQ sandboxes) on a threaded werkzeug server in this process; `--workers` real
`python worker.py` processes and one `python worker.py --cron`; an SMTP sink (aiosmtpd); Redis
(REDIS_URL, else an embedded redis-server in the instance folder); the database (DATABASE_URL, else
SQLite in the instance folder). DATABASE_URL and REDIS_URL must be throw-away: the soak empties the
tables and flushes the Redis db, so it refuses them without --wipe.

Traffic: `--chats` customers at once, each running chat after chat through POST /webhook/salesiq in the
Zobot format: the conversation scripts of tests/conversations/*.yaml (every workflow, failed
verification, hand-overs, cancels; the bot's answers are checked against the script) and knowledge
questions. Each chat is opened in the SalesIQ sandbox first, so follow-ups posted through the REST API
have somewhere to go. A delivery that fails (5xx, timeout) is sent again with the same request.id, as
SalesIQ would; a few successful deliveries are repeated on purpose.

Faults, one every --fault-every seconds (each kind at least once, then at random): Desk 5xx; Desk 429
THRESHOLD_EXCEEDED with Retry-After (an org-wide block); Desk 429 TOO_MANY_REQUESTS with Retry-After (a
per-call refusal); Desk commits a ticket then holds the answer past the client timeout; Desk commits then
drops the connection; SIGKILL of a worker (with its work horse) or of the scheduler, restarted a few
seconds later; a Redis restart (embedded: the server is stopped, stays down a few seconds and is started
again; with REDIS_URL: FLUSHDB as the stand-in, which loses every queued job but not the connection); an
SMTP outage of --smtp-outage seconds. The first THRESHOLD_EXCEEDED is also followed by a Redis fault
inside its Retry-After window (the block must hold from its database copy).

Reconciliation, once the traffic has stopped, every fault has healed and the outbox has drained:
  messages     every customer line the load generator got a 200 for is one Message row
  workflows    every chat whose script completes a workflow has exactly one TicketRequest, others none
  tickets      every TicketRequest is created in Desk exactly once (sandbox tickets by cf_acebuddy_ref:
               none missing, none doubled, none unknown), with one transcript comment; closing comments once
  e-mail       every e-mail Notification is sent and the SMTP sink received each Message-ID exactly once
  chat         every chat follow-up sent through the SalesIQ REST API reached its conversation once
  retry-after  no Desk call arrived inside a THRESHOLD_EXCEEDED Retry-After window (calls arriving
               within GRACE seconds of the 429 were already on the wire and are listed, not failed)
  processes    no worker or scheduler died other than by the injected kills
It prints the reconciliation and exits 1 on any discrepancy.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.smtpsink import SmtpSink  # noqa: E402

SCRIPTS = ROOT / "tests" / "conversations"
DEMO_KB = ROOT / "acebuddy" / "demo_data" / "kb"
DESK_API = "/sandbox/desk/api/v1"
GRACE = 1.0  # seconds after a 429 during which arriving calls were already sent before the block was known
VISITOR = {"name": "John Doe", "email": "john@company.com", "phone": "555-1234"}
KNOWLEDGE_QUESTIONS = [
    "how long do you keep my backups for?",
    "how do I copy files to my hosted desktop",
    "how do I get my work email on my phone",
    "when do you install windows updates on the servers",
    "can two people use quickbooks at the same time",
    "how do I set up two-factor authentication",
    "what should I do when my session is running slow",
    "how do I print to the printer on my desk",
]
FAULT_KINDS = ("desk_5xx", "desk_429", "desk_busy", "commit_hang", "commit_drop", "worker_kill", "cron_kill",
               "redis_restart", "smtp_outage")
FAULT_WEIGHTS = {"desk_5xx": 3, "desk_429": 1, "desk_busy": 1, "commit_hang": 2, "commit_drop": 1, "worker_kill": 3,
                 "cron_kill": 1, "redis_restart": 1, "smtp_outage": 1}
# Short timeouts and backoff so that every fault plays out within seconds (the logic is the production one).
FAST_TIMINGS = {"DESK_TIMEOUT": "2", "DESK_LANDING_MARGIN": "1", "OUTBOX_BACKOFF_SCALE": "0.05",
                "SWEEP_INTERVAL": "1", "SWEEP_STALE_AFTER": "2", "MAIL_TIMEOUT": "2", "SALESIQ_TIMEOUT": "2",
                "TICKET_REPLY_WAIT": "1"}


@dataclass
class Settings:
    minutes: float = 30.0
    chats: int = 8  # customers chatting at once
    workers: int = 3
    seed: int | None = None
    fault_every: float = 45.0
    smtp_outage: float = 60.0
    retry_after: int = 30  # Retry-After of the injected THRESHOLD_EXCEEDED
    redis_down: float = 5.0  # how long the embedded Redis stays stopped
    think: tuple[float, float] = (0.3, 2.0)  # seconds a customer takes between lines
    repeat_rate: float = 0.03  # share of deliveries SalesIQ "retries" although they succeeded
    drain_timeout: float = 1200.0
    idle_close_minutes: int = 2
    timings: dict = field(default_factory=dict)  # environment overrides for the app and the workers
    instance: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    wipe: bool = False

    @classmethod
    def short(cls, **overrides) -> Settings:
        """The CI version: about 45 s of traffic with every fault kind, fast timings, a short drain."""
        values = dict(minutes=0.75, chats=6, workers=2, fault_every=3.5, smtp_outage=10.0, retry_after=10,
                      redis_down=2.0, think=(0.1, 0.4), repeat_rate=0.05, drain_timeout=120.0,
                      idle_close_minutes=1, timings=dict(FAST_TIMINGS))
        values.update(overrides)
        return cls(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DeskCall:
    arrived: float
    answered: float
    method: str
    path: str
    status: int
    error_code: str | None
    retry_after: float | None


class Stack:
    """Everything the soak runs against, and the hooks that record what happened."""

    def __init__(self, settings: Settings, log):
        self.s = settings
        self.log = log
        self.own_instance = settings.instance is None
        self.instance = settings.instance or tempfile.mkdtemp(prefix="acebuddy-soak-")
        self.redis_dir = os.path.join(self.instance, "redis")
        self.desk_calls: list[DeskCall] = []
        self.processes: dict[str, subprocess.Popen] = {}
        self.down: set[str] = set()  # processes stopped on purpose (a kill waiting for its restart)
        self.exits: list[tuple[str, bool]] = []  # (process, during a Redis outage) of exits not injected
        self.redis_outages: list[list[float]] = []  # [start, end] of each Redis restart
        self._proc_lock = threading.Lock()
        self._supervising = threading.Event()
        self.server = None
        self.smtp = None
        self.app = None

    @property
    def embedded_redis(self) -> bool:
        return not self.s.redis_url

    def environment(self) -> dict:
        """What the web app and the worker processes read (nothing of the caller's shell but PATH & co)."""
        env = {
            "PORT": str(self.port),
            "ACEBUDDY_URL": self.url,
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "ACEBUDDY_DEMO": "1",
            "SECRET_KEY": "soak-secret",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": str(self.smtp.port),
            "MAIL_DEFAULT_SENDER": "AceBuddy <support@acebuddy.example>",
            "SUPPORT_TEAM_EMAIL": "support-team@acebuddy.example",
            "SESSION_COOKIE_SECURE": "0",
            "IDLE_CLOSE_MINUTES": str(self.s.idle_close_minutes),
            "LOG_LEVEL": "WARNING",
        }
        env.update(self.s.timings)
        return env

    def start(self) -> None:
        from acebuddy import create_app
        from acebuddy.redisconn import ensure_embedded

        os.makedirs(self.instance, exist_ok=True)
        external = [name for name, value in (("DATABASE_URL", self.s.database_url), ("REDIS_URL", self.s.redis_url))
                    if value]
        if external and not self.s.wipe:
            raise SystemExit(f"{' and '.join(external)} set: the soak empties them; pass --wipe if they are throw-away")
        self.redis_url = self.s.redis_url or ensure_embedded(self.redis_dir)
        self.database_url = self.s.database_url or f"sqlite:///{self.instance}/soak.db"
        self.smtp = SmtpSink().start()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app({"SECRET_KEY": "soak-secret"}, environ=self.environment())
        self.app.instance_path = self.instance
        self._prepare_data()
        self._record_desk_calls()
        self._warm_up()
        self._serve()
        for number in range(1, self.s.workers + 1):
            self.spawn(f"worker-{number}")
        self.spawn("cron", "--cron")
        self._supervising.set()
        threading.Thread(target=self._supervise, name="soak-supervisor", daemon=True).start()

    def _prepare_data(self) -> None:
        from sqlalchemy import text

        from acebuddy.extensions import db
        from acebuddy.knowledge.importer import import_directory
        from acebuddy.redisconn import get_redis
        # The customer directory the conversation scripts were written against.
        from tests.helpers import load_directory

        with self.app.app_context():
            db.create_all()
            for table in reversed(db.metadata.sorted_tables):
                db.session.execute(text(f'DELETE FROM "{table.name}"'))
            db.session.commit()
            get_redis().flushdb()
            load_directory()
            result = import_directory(str(DEMO_KB))
            if result.errors:
                raise RuntimeError(f"knowledge import failed: {result.errors}")

    def _record_desk_calls(self) -> None:
        """Every call the Desk sandbox answers: when it arrived, its status, errorCode and Retry-After."""
        from flask import g, request

        @self.app.before_request
        def _arrived():
            if request.path.startswith(DESK_API):
                g.soak_arrived = time.time()

        @self.app.after_request
        def _answered(response):
            arrived = g.get("soak_arrived")
            if arrived is not None:
                code = None
                if response.status_code >= 400:
                    body = response.get_json(silent=True)
                    code = body.get("errorCode") if isinstance(body, dict) else None
                retry_after = response.headers.get("Retry-After")
                self.desk_calls.append(DeskCall(arrived, time.time(), request.method, request.path[len(DESK_API):],
                                                response.status_code, code,
                                                float(retry_after) if retry_after else None))
            return response

    def _warm_up(self) -> None:
        from acebuddy.bot import intents
        from acebuddy.knowledge import search

        intents.warm_up()
        search.warm(self.app, background=False)

    def _serve(self) -> None:
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                         name="soak-web").start()

    def spawn(self, name: str, *args: str) -> None:
        env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
        env.update(self.environment())
        logfile = open(os.path.join(self.instance, f"{name.split('-')[0]}.log"), "ab")
        # Its own process group, so that a kill takes the work horse and the scheduler with it.
        process = subprocess.Popen([sys.executable, str(ROOT / "worker.py"), *args], env=env, cwd=str(ROOT),
                                   stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
        logfile.close()
        with self._proc_lock:
            self.processes[name] = process
            self.down.discard(name)

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children (work horse, scheduler), as a crash would."""
        with self._proc_lock:
            process = self.processes[name]
            self.down.add(name)
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(10)

    def _supervise(self) -> None:
        """A process that died without being killed on purpose is counted and restarted (as systemd or
        compose's restart policy would)."""
        while self._supervising.is_set():
            with self._proc_lock:
                dead = [name for name, p in self.processes.items() if p.poll() is not None and name not in self.down]
            for name in dead:
                code = self.processes[name].returncode
                during = self.during_redis_outage(time.time())
                self.exits.append((name, during))
                why = "while Redis was away" if during else "for no injected reason"
                self.log(f"  ! {name} exited {why} (status {code}); restarting it")
                self.spawn(name, *(("--cron",) if name == "cron" else ()))
            time.sleep(0.5)

    def during_redis_outage(self, moment: float) -> bool:
        """Within a Redis restart, or the few seconds a process needs to notice it came back."""
        return any(start <= moment <= (end or moment) + 10 for start, end in self.redis_outages)

    def redis_restart(self) -> str:
        from acebuddy.redisconn import ensure_embedded, get_redis, stop_embedded

        outage = [time.time(), None]
        self.redis_outages.append(outage)
        if not self.embedded_redis:
            with self.app.app_context():
                get_redis().flushdb()
            outage[1] = time.time()
            return "FLUSHDB (external Redis: the stand-in for a restart that loses its data)"
        stop_embedded(self.redis_dir)
        time.sleep(self.s.redis_down)
        ensure_embedded(self.redis_dir)
        outage[1] = time.time()
        return f"stopped, down {self.s.redis_down:.0f} s, started"

    def stop(self) -> None:
        self._supervising.clear()
        with self._proc_lock:
            processes = list(self.processes.items())
            self.down.update(self.processes)
        for _name, process in processes:
            if process.poll() is None:
                process.terminate()
        for _name, process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.smtp is not None:
            self.smtp.stop()
        if self.app is not None:
            from acebuddy.extensions import db

            with self.app.app_context():
                db.session.remove()
                db.engine.dispose()
            redis_client = self.app.extensions.get("acebuddy_redis")
            if redis_client is not None:
                redis_client.close()
        if self.embedded_redis:
            from acebuddy.redisconn import stop_embedded

            stop_embedded(self.redis_dir)

    def cleanup(self) -> None:
        if self.own_instance:
            shutil.rmtree(self.instance, ignore_errors=True)


@dataclass
class Chat:
    conversation: str
    script: str
    expect_ticket: bool
    accepted: int = 0  # distinct message deliveries answered 200
    gave_up: bool = False
    check_failures: list = field(default_factory=list)


class Traffic:
    """The load generator: customers chatting through the webhook over real HTTP."""

    def __init__(self, stack: Stack, settings: Settings, rng: random.Random):
        from acebuddy.sandbox.salesiq import get_store

        self.stack = stack
        self.s = settings
        self.rng = rng
        self.store = get_store(stack.app)
        self.scripts = [yaml.safe_load(p.read_text(encoding="utf-8")) | {"file": p.stem}
                        for p in sorted(SCRIPTS.glob("*.yaml"))]
        self.chats: list[Chat] = []
        self.latencies: list[float] = []
        self.slow: list[float] = []  # when each delivery over 5 s (SalesIQ's deadline) was answered
        self.failed_attempts: Counter = Counter()  # status or exception of deliveries sent again
        self.repeats = 0
        self.repeat_mismatches = 0
        self.deliveries = 0
        self.triggers = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        for number in range(self.s.chats):
            rng = random.Random(self.rng.random())
            thread = threading.Thread(target=self._customer, args=(deadline, rng), name=f"soak-customer-{number}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _customer(self, deadline: float, rng: random.Random) -> None:
        with requests.Session() as session:
            while time.monotonic() < deadline:
                if rng.random() < 0.8:
                    script = rng.choice(self.scripts)
                else:
                    script = {"file": "knowledge", "turns": [{"customer": rng.choice(KNOWLEDGE_QUESTIONS)},
                                                             {"customer": rng.choice(["Yes", "No"])}],
                              "expect": {"no_ticket": True}}
                self._chat(session, script, rng)

    def _chat(self, session, script: dict, rng: random.Random) -> None:
        conversation = self.store.open_conversation(dict(VISITOR)).id
        chat = Chat(conversation, script["file"], "ticket" in (script.get("expect") or {}))
        with self._lock:
            self.chats.append(chat)
        visitor = {**VISITOR, **(script.get("visitor") or {}), "active_conversation_id": conversation,
                   "channel": "Website"}
        if rng.random() < 0.5:  # SalesIQ's trigger when the chat window opens
            body = {"handler": "trigger", "org_id": "55778119", "visitor": visitor, "request": {"id": uuid.uuid4().hex}}
            if self._deliver(session, body, rng) is None:
                chat.gave_up = True
                return
            with self._lock:
                self.triggers += 1
        for number, turn in enumerate(script["turns"]):
            body = {"handler": "message", "operation": "chat" if number == 0 else "message", "org_id": "55778119",
                    "message": {"text": str(turn["customer"])}, "visitor": visitor,
                    "request": {"id": uuid.uuid4().hex}, "attachments": []}
            reply = self._deliver(session, body, rng)
            if reply is None:
                chat.gave_up = True
                return
            chat.accepted += 1
            self._check(chat, number, turn, reply)
            if reply.get("action") == "forward":  # SalesIQ hands the chat to people
                self.store.forward(conversation, reply.get("department"))
            if rng.random() < self.s.repeat_rate:
                again = self._deliver(session, body, rng)
                with self._lock:
                    self.repeats += 1
                    self.repeat_mismatches += again != reply
            time.sleep(rng.uniform(*self.s.think))

    def _deliver(self, session, body: dict, rng: random.Random) -> dict | None:
        """POST until a 200 (same request.id each time, as SalesIQ retries); None after 8 tries."""
        for _attempt in range(8):
            started = time.monotonic()
            try:
                response = session.post(self.stack.url + "/webhook/salesiq", json=body, timeout=20)
                outcome = response.status_code
                if outcome == 200:
                    reply = response.json()
                    took = time.monotonic() - started
                    with self._lock:
                        self.latencies.append(took)
                        self.deliveries += 1
                        if took > 5:
                            self.slow.append(time.time())
                    return reply
            except requests.RequestException as exc:
                outcome = type(exc).__name__
            with self._lock:
                self.failed_attempts[outcome] += 1
            time.sleep(rng.uniform(0.5, 1.5))
        return None

    @staticmethod
    def _check(chat: Chat, number: int, turn: dict, reply: dict) -> None:
        """The script's expectations for this turn, as tests/test_conversations.py checks them."""
        def listify(value):
            return value if isinstance(value, list) else [value]

        replies = reply.get("replies")
        problems = []
        if reply.get("action") not in ("reply", "forward", "end") or not isinstance(replies, list):
            problems.append(f"not a bot response: {reply!r:.200}")
            replies = []
        text = "\n".join(r if isinstance(r, str) else str(r.get("text", "")) for r in replies).lower()
        problems += [f"missing {w!r}" for w in listify(turn.get("contains", [])) if w.lower() not in text]
        problems += [f"unexpected {w!r}" for w in listify(turn.get("not_contains", [])) if w.lower() in text]
        if "action" in turn and reply.get("action") != turn["action"]:
            problems.append(f"action {reply.get('action')!r}")
        if "input" in turn and (reply.get("input") or {}).get("type") != turn["input"]:
            problems.append(f"input {reply.get('input')!r:.80}")
        problems += [f"no suggestion {s!r}" for s in turn.get("suggestions", []) if s not in (reply.get("suggestions") or [])]
        if "input" in reply and "suggestions" in reply:
            problems.append("both input and suggestions")
        if problems:
            chat.check_failures.append(f"{chat.script} turn {number + 1}: {'; '.join(problems)}")


class Faults:
    """Injects one fault every `fault_every` seconds: first every kind once (shuffled), then at random."""

    def __init__(self, stack: Stack, settings: Settings, rng: random.Random, log):
        from acebuddy.sandbox.desk import desk_sandbox

        self.stack = stack
        self.s = settings
        self.rng = rng
        self.log = log
        self.desk = desk_sandbox(stack.app)
        self.injected: list[tuple[float, str, str]] = []
        self._stop = threading.Event()
        self._background: list[threading.Thread] = []
        self._smtp_busy = threading.Event()
        self._window_fault_planned = False
        self._redis_lock = threading.Lock()  # one Redis fault at a time
        self._thread = threading.Thread(target=self._run, name="soak-faults", daemon=True)
        self.started = time.time()
        desk_timeout = float(settings.timings.get("DESK_TIMEOUT", 10))
        self.hang_seconds = desk_timeout + 3

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """No new faults; wait until every outage has ended and every killed process is back."""
        self._stop.set()
        self._thread.join()
        for thread in self._background:
            thread.join()

    def _run(self) -> None:
        # desk_429 brings its own Redis fault inside its window: it stands for the planned redis_restart,
        # so a short run loses Redis no more often than before (later faults are drawn at random).
        plan = [kind for kind in FAULT_KINDS if kind != "redis_restart"]
        self.rng.shuffle(plan)
        kinds, weights = zip(*FAULT_WEIGHTS.items())
        while not self._stop.wait(self.s.fault_every * self.rng.uniform(0.7, 1.3)):
            kind = plan.pop(0) if plan else self.rng.choices(kinds, weights)[0]
            if kind == "smtp_outage" and self._smtp_busy.is_set():
                kind = "desk_5xx"
            detail = getattr(self, kind)()
            self.injected.append((time.time(), kind, detail))
            self.log(f"  {time.time() - self.started:7.1f}s  {kind:13} {detail}")

    def _later(self, seconds: float, action) -> None:
        def run():
            time.sleep(seconds)
            action()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        self._background.append(thread)

    def desk_5xx(self) -> str:
        method, path = self.rng.choice([("POST", "/tickets"), ("POST", "/contacts"), ("GET", "/contacts/search"),
                                        ("POST", "/tickets/*/comments"), ("GET", "/tickets/search")])
        count, status = self.rng.randint(1, 3), self.rng.choice([500, 503])
        self.desk.fail_next(method, path, count=count, status=status)
        return f"next {count} {method} {path} answer {status}"

    def desk_429(self) -> str:
        self.desk.fail_next("*", "*", count=1, status=429, error_code="THRESHOLD_EXCEEDED",
                            retry_after=self.s.retry_after)
        detail = f"next call answers 429 THRESHOLD_EXCEEDED, Retry-After {self.s.retry_after}"
        if not self._window_fault_planned:  # the first one also gets a Redis fault inside its window
            self._window_fault_planned = True
            since = time.time()
            self._later(0, lambda: self.redis_fault_inside_the_window(since))
            detail += "; Redis is lost inside its window"
        return detail

    def desk_busy(self) -> str:
        self.desk.fail_next("*", "*", count=2, status=429, error_code="TOO_MANY_REQUESTS", retry_after=1)
        return "next 2 calls answer 429 TOO_MANY_REQUESTS, Retry-After 1"

    def commit_hang(self) -> str:
        self.desk.commit_then_hang("POST", "/tickets", self.hang_seconds)
        return f"next POST /tickets is committed, its answer held {self.hang_seconds:.0f} s"

    def commit_drop(self) -> str:
        self.desk.commit_then_drop("POST", "/tickets")
        return "next POST /tickets is committed, then the connection dropped"

    def worker_kill(self, name: str | None = None) -> str:
        with self.stack._proc_lock:
            running = [n for n, p in self.stack.processes.items()
                       if n.startswith("worker") and n not in self.stack.down and p.poll() is None]
        if not running:
            return "no worker running"
        name = name or self.rng.choice(running)
        self.stack.kill(name)
        back = self.rng.uniform(1, 5)
        self._later(back, lambda: self.stack.spawn(name))
        return f"SIGKILL {name}; restarted after {back:.1f} s"

    def cron_kill(self) -> str:
        self.stack.kill("cron")
        back = self.rng.uniform(1, 5)
        self._later(back, lambda: self.stack.spawn("cron", "--cron"))
        return f"SIGKILL the scheduler; restarted after {back:.1f} s"

    def redis_restart(self) -> str:
        with self._redis_lock:
            inside = self.window_open_since(0.0)
            return self.stack.redis_restart() + (" (inside a Retry-After window)" if inside else "")

    def window_open_since(self, since: float) -> bool:
        """Whether a THRESHOLD_EXCEEDED window answered after `since` is open now."""
        now = time.time()
        return any(since <= c.answered and now < c.answered + (c.retry_after or 60) - 1.0
                   for c in list(self.stack.desk_calls)
                   if c.status == 429 and c.error_code == "THRESHOLD_EXCEEDED")

    def redis_fault_inside_the_window(self, since: float) -> None:
        """Once the injected THRESHOLD_EXCEEDED has been answered, lose Redis while its window is open:
        the block must hold from its database copy (docs/desk.md)."""
        deadline = time.time() + 120
        while not self._stop.is_set() and time.time() < deadline and not self.window_open_since(since):
            time.sleep(0.1)
        # Without a window by then (no Desk call met the 429 before the traffic stopped), Redis is still
        # lost once: this fault stands for the run's planned redis_restart.
        detail = self.redis_restart()
        self.injected.append((time.time(), "redis_restart", detail))
        self.log(f"  {time.time() - self.started:7.1f}s  {'redis_restart':13} {detail}")

    def smtp_outage(self) -> str:
        self._smtp_busy.set()
        self.stack.smtp.stop()

        def end():
            self.stack.smtp.start()
            self._smtp_busy.clear()

        self._later(self.s.smtp_outage, end)
        return f"SMTP server stopped for {self.s.smtp_outage:.0f} s"


def settled(app) -> tuple[bool, str]:
    """Whether the outbox has nothing left to do: every ticket created with its transcript, every
    notification due by now delivered (or refused for good)."""
    from sqlalchemy import func, select

    from acebuddy import clock
    from acebuddy.extensions import db
    from acebuddy.models import (
        CREATED,
        FAILED,
        N_FAILED,
        N_SENT,
        Notification,
        TicketRequest,
    )

    with app.app_context():
        try:
            tickets = db.session.execute(
                select(TicketRequest.state, TicketRequest.comment_state, func.count()).group_by(
                    TicketRequest.state, TicketRequest.comment_state)).all()
            notes = db.session.execute(
                select(Notification.state, func.count()).where(Notification.not_before <= clock.now())
                .group_by(Notification.state)).all()
        finally:
            db.session.remove()
    open_tickets = sum(n for state, comment, n in tickets
                       if state not in (CREATED, FAILED) or (state == CREATED and comment not in ("added", "failed")))
    open_notes = sum(n for state, n in notes if state not in (N_SENT, N_FAILED))
    return open_tickets == 0 and open_notes == 0, f"{open_tickets} ticket(s) and {open_notes} notification(s) pending"


@dataclass
class Check:
    name: str
    ok: bool
    lines: list[str]


@dataclass
class Report:
    settings: dict
    duration: dict
    traffic: dict
    faults: dict
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def text(self) -> str:
        out = ["", "AceBuddy soak: reconciliation", "=" * 29]
        out.append("run       " + ", ".join(f"{k} {v}" for k, v in self.duration.items()))
        out.append("traffic   " + ", ".join(f"{k} {v}" for k, v in self.traffic.items()))
        out.append("faults    " + ", ".join(f"{k} {v}" for k, v in sorted(self.faults.items())))
        for check in self.checks:
            out.append(f"{'OK  ' if check.ok else 'FAIL'}  {check.name}")
            out += [f"        {line}" for line in check.lines]
        out.append("RESULT    " + ("every check passed" if self.ok else "DISCREPANCIES FOUND"))
        return "\n".join(out)


def reconcile(stack: Stack, traffic: Traffic) -> list[Check]:
    from sqlalchemy import func, select

    from acebuddy import mail
    from acebuddy.extensions import db
    from acebuddy.models import Conversation, ConversationEvent, Message, Notification, TicketAttempt, TicketRequest
    from acebuddy.sandbox.desk import desk_sandbox
    from acebuddy.tickets import TRANSCRIPT_MARKER

    checks = []
    app = stack.app
    chats = {c.conversation: c for c in traffic.chats}
    with app.app_context():
        stored = dict(db.session.execute(
            select(Conversation.salesiq_id, func.count(Message.id)).join(Message)
            .where(Message.role == "customer").group_by(Conversation.salesiq_id)).all())
        requested = Counter(db.session.scalars(select(Conversation.salesiq_id).join(TicketRequest)).all())
        rows = db.session.scalars(select(TicketRequest)).all()
        ticket_rows = [(r.id, r.ref, r.state, r.desk_ticket_id, r.comment_state, r.last_error) for r in rows]
        notifications = db.session.scalars(select(Notification)).all()
        emails = [(n.kind, n.state, n.last_error, mail.message_id(n)) for n in notifications if n.channel == "email"]
        chat_rest = Counter(n.conversation.salesiq_id for n in notifications
                            if n.channel == "chat" and n.state == "sent" and n.sent_via == "rest"
                            and n.kind != "transfer_chat")
        closings = Counter(n.ticket_request.desk_ticket_id for n in notifications
                           if n.kind == "closing_comment" and n.state == "sent")
        notes_open = Counter((n.channel, n.state) for n in notifications if n.state not in ("sent",))
        outcomes = Counter(db.session.scalars(select(TicketAttempt.outcome)).all())
        adopted = db.session.scalar(select(func.count(ConversationEvent.id)).where(
            ConversationEvent.kind == "ticket_created", ConversationEvent.detail.like("%(found)%")))
        db.session.remove()

    # Messages: each accepted customer line is one row.
    expected = sum(c.accepted for c in chats.values())
    wrong = {cid: (c.accepted, stored.get(cid, 0)) for cid, c in chats.items() if stored.get(cid, 0) != c.accepted}
    strangers = set(stored) - set(chats)
    gave_up = [cid for cid, c in chats.items() if c.gave_up]
    lines = [f"accepted (200) {expected}, stored {sum(stored.get(cid, 0) for cid in chats)}; "
             f"conversations {len(chats)}, differing {len(wrong)}, unknown to the load generator {len(strangers)}; "
             f"chats abandoned after 8 failed deliveries {len(gave_up)}"]
    lines += [f"{cid}: accepted {a}, stored {s}" for cid, (a, s) in list(wrong.items())[:10]]
    checks.append(Check("messages: every accepted customer line stored once", not wrong and not strangers and not gave_up,
                        lines))

    # Workflows: a completed script has exactly one ticket request, the others none.
    failures = [f for c in chats.values() for f in c.check_failures]
    wrong = {cid: (c.script, int(c.expect_ticket), requested.get(cid, 0)) for cid, c in chats.items()
             if not c.gave_up and requested.get(cid, 0) != int(c.expect_ticket)}
    lines = [f"chats {len(chats)} ({sum(c.expect_ticket for c in chats.values())} complete a workflow), "
             f"ticket requests {sum(requested.values())}, chats with the wrong number {len(wrong)}, "
             f"script checks failed {len(failures)}"]
    lines += [f"{cid} ({script}): expected {e}, requested {n}" for cid, (script, e, n) in list(wrong.items())[:10]]
    lines += failures[:10]
    checks.append(Check("workflows: one ticket request per completed workflow, answers as scripted",
                        not wrong and not failures, lines))

    # Tickets: one Desk ticket per request, by cf_acebuddy_ref; one transcript; closing comments once.
    snapshot = desk_sandbox(app).snapshot()
    desk = defaultdict(list)
    for ticket in snapshot["tickets"]:
        desk[ticket["cf"].get("cf_acebuddy_ref")].append(ticket)
    refs = {ref for _id, ref, *_ in ticket_rows}
    missing = [ref for ref in refs if not desk.get(ref)]
    doubled = {ref: len(t) for ref, t in desk.items() if len(t) > 1}
    unknown = [ref for ref in desk if ref not in refs]
    not_created = [(ref, state, error) for _id, ref, state, _t, _c, error in ticket_rows if state != "created"]
    mismatched = [ref for _id, ref, state, ticket_id, *_ in ticket_rows
                  if len(desk.get(ref, [])) == 1 and desk[ref][0]["id"] != ticket_id]
    transcripts, closing_wrong = [], []
    comments = snapshot["comments"]
    for _id, ref, state, ticket_id, comment_state, _e in ticket_rows:
        contents = [c.get("content") or "" for c in comments.get(ticket_id or "", [])]
        marked = [c for c in contents if f"{TRANSCRIPT_MARKER} ({ref})" in c]
        if comment_state != "added" or len(marked) != 1:
            transcripts.append(f"{ref}: comment_state {comment_state}, transcript comments {len(marked)}")
        closed = sum(c.startswith("AceBuddy: the chat was closed") for c in contents)
        if closed != closings.get(ticket_id, 0):
            closing_wrong.append(f"{ref}: closing comments {closed}, sent {closings.get(ticket_id, 0)}")
    posts = sum(1 for c in stack.desk_calls if c.method == "POST" and c.path == "/tickets")
    lines = [f"ticket requests {len(refs)}, Desk tickets {len(snapshot['tickets'])} "
             f"(POST /tickets answered {posts} times); missing {len(missing)}, doubled {len(doubled)}, "
             f"unknown {len(unknown)}, not created {len(not_created)}, id mismatches {len(mismatched)}; "
             f"transcripts wrong {len(transcripts)}; closing comments {sum(closings.values())}, wrong {len(closing_wrong)}"]
    lines.append(f"create attempts by outcome {dict(outcomes)}; tickets found by cf_acebuddy_ref after an unknown "
                 f"outcome instead of created again: {adopted}")
    lines += [f"missing {ref}" for ref in missing[:5]] + [f"doubled {ref} x{n}" for ref, n in list(doubled.items())[:5]]
    lines += [f"unknown {ref}" for ref in unknown[:5]] + [f"not created {r} ({s}): {e}" for r, s, e in not_created[:5]]
    lines += transcripts[:5] + closing_wrong[:5]
    checks.append(Check("tickets: exactly one Desk ticket per ticket request",
                        not (missing or doubled or unknown or not_created or mismatched or transcripts or closing_wrong),
                        lines))

    # E-mail: every requested e-mail sent, each Message-ID received exactly once.
    sent_ids = Counter(mid for _k, state, _e, mid in emails if state == "sent")
    received = Counter(stack.smtp.message_ids)
    not_sent = [(kind, state, error) for kind, state, error, _m in emails if state != "sent"]
    missing = [mid for mid in sent_ids if mid not in received]
    duplicates = {mid: n for mid, n in received.items() if n > 1}
    unexpected = [mid for mid in received if mid not in sent_ids]
    kinds = Counter(kind for kind, *_ in emails)
    lines = [f"e-mails requested {len(emails)} ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}); "
             f"sent {sum(sent_ids.values())}, received {sum(received.values())} ({len(received)} distinct); "
             f"not sent {len(not_sent)}, missing {len(missing)}, duplicates {len(duplicates)}, unexpected {len(unexpected)}"]
    lines += [f"not sent: {k} {s} {e}" for k, s, e in not_sent[:5]] + [f"duplicate {m} x{n}" for m, n in list(duplicates.items())[:5]]
    lines += [f"missing {m}" for m in missing[:5]] + [f"unexpected {m}" for m in unexpected[:5]]
    checks.append(Check("e-mail: every requested e-mail delivered exactly once",
                        not (not_sent or missing or duplicates or unexpected), lines))

    # Chat follow-ups through the SalesIQ REST API reach the conversation once.
    wrong = []
    for cid in chats:
        posted = sum(1 for m in traffic.store.messages(cid) if m.via == "rest")
        if posted != chat_rest.get(cid, 0):
            wrong.append(f"{cid}: REST messages {posted}, sent {chat_rest.get(cid, 0)}")
    stuck = {f"{channel} {state}": n for (channel, state), n in notes_open.items() if channel != "email"}
    lines = [f"follow-ups sent through REST {sum(chat_rest.values())}, conversations differing {len(wrong)}; "
             f"other notifications not sent: {stuck or 'none'}"] + wrong[:5]
    checks.append(Check("chat: every REST follow-up reached its conversation once", not wrong and not stuck, lines))

    # Retry-After: no Desk call inside an org-wide THRESHOLD_EXCEEDED window.
    calls = sorted(stack.desk_calls, key=lambda c: c.arrived)
    windows = [(c.answered, c.answered + (c.retry_after or 60)) for c in calls
               if c.status == 429 and c.error_code == "THRESHOLD_EXCEEDED"]
    inside, on_the_wire, gaps = [], 0, []
    for start, end in windows:
        during = [c for c in calls if start < c.arrived < end]
        on_the_wire += sum(1 for c in during if c.arrived <= start + GRACE)
        inside += [(start, c) for c in during if c.arrived > start + GRACE]
        after = [c.arrived for c in calls if c.arrived >= start]
        gaps.append(min((a - start for a in after if a > start + GRACE), default=None))
    busy = sum(1 for c in calls if c.status == 429 and c.error_code != "THRESHOLD_EXCEEDED")
    statuses = Counter(c.status for c in calls)
    shown = ", ".join(f"{g:.1f}" for g in gaps if g is not None) or "none"
    lines = [f"Desk calls {len(calls)} ({', '.join(f'{s}: {n}' for s, n in sorted(statuses.items()))}); "
             f"THRESHOLD_EXCEEDED windows {len(windows)}, calls inside {len(inside)}, already on the wire "
             f"{on_the_wire}; first call after each window opened (s): {shown}; TOO_MANY_REQUESTS answers {busy}"]
    lines += [f"{c.method} {c.path} arrived {c.arrived - s:.2f} s into a window" for s, c in inside[:5]]
    checks.append(Check("retry-after: no Desk call inside a Retry-After window", not inside, lines))

    # RQ's worker quits when Redis goes away while it watches a job (rq.worker: "found an unhandled
    # exception, quitting"); a restart policy brings it back, as the supervisor here does.
    unexplained = Counter(name for name, during in stack.exits if not during)
    on_redis = Counter(name for name, during in stack.exits if during)
    checks.append(Check("processes: no worker or scheduler died but by the injected kills", not unexplained,
                        [f"exits during a Redis restart (restarted by the supervisor): {dict(on_redis) or 'none'}; "
                         f"other exits: {dict(unexplained) or 'none'}"]))
    return checks


def run(settings: Settings, log=print) -> Report:
    """Start the stack, run traffic and faults, drain, reconcile, tear down; returns the report."""
    seed = settings.seed if settings.seed is not None else random.randrange(10**6)
    rng = random.Random(seed)
    stack = Stack(settings, log)
    began = time.monotonic()
    try:
        stack.start()
        log(f"soak: {settings.minutes:g} min, {settings.chats} chats at once, {settings.workers} workers + cron, "
            f"seed {seed}, web {stack.url}, instance {stack.instance}")
        log(f"      database {'DATABASE_URL' if settings.database_url else 'SQLite'}, "
            f"Redis {'REDIS_URL' if settings.redis_url else 'embedded'}")
        traffic = Traffic(stack, settings, rng)
        faults = Faults(stack, settings, rng, log)
        traffic.start(settings.minutes * 60)
        faults.start()
        traffic.join()
        traffic_done = time.monotonic()
        log("traffic stopped; healing the last faults")
        faults.stop()
        log("draining the outbox")
        deadline = time.monotonic() + settings.drain_timeout
        state = ""
        while time.monotonic() < deadline:
            done, state = settled(stack.app)
            if done:
                break
            time.sleep(1.0)
        # No new idle closes or SLA alerts from here on; whatever the scheduler queued last is delivered.
        stack.kill("cron")
        time.sleep(1.0)
        while time.monotonic() < deadline:
            done, state = settled(stack.app)
            if done:
                break
            time.sleep(1.0)
        time.sleep(1.0)  # anything sent twice arrives by now
        drained = time.monotonic()
        log(f"drained in {drained - traffic_done:.0f} s ({state})")
        checks = reconcile(stack, traffic)
        if not done:
            checks.append(Check("drain: the outbox emptied in time", False,
                                [f"after {settings.drain_timeout:.0f} s: {state}"]))
        lat = sorted(traffic.latencies)

        def pct(p):
            return f"{lat[min(len(lat) - 1, int(p * len(lat)))]:.2f}s" if lat else "-"

        report = Report(
            settings={**{k: v for k, v in asdict(settings).items() if k != "timings"}, "seed": seed,
                      "timings": settings.timings or "production defaults"},
            duration={"traffic": f"{traffic_done - began:.0f}s", "drain": f"{drained - traffic_done:.0f}s",
                      "total": f"{time.monotonic() - began:.0f}s"},
            traffic={"chats": len(traffic.chats), "webhook deliveries (200)": traffic.deliveries,
                     "triggers": traffic.triggers, "repeated on purpose": traffic.repeats,
                     "repeats answered differently": traffic.repeat_mismatches,
                     "failed attempts sent again": dict(traffic.failed_attempts) or 0,
                     "latency p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99),
                     "max": f"{lat[-1]:.2f}s" if lat else "-",
                     "over 5 s": len(traffic.slow),
                     "of which during a Redis restart": sum(stack.during_redis_outage(t) for t in traffic.slow)},
            faults=dict(Counter(kind for _t, kind, _d in faults.injected)),
            checks=checks,
        )
        if traffic.repeat_mismatches:
            report.checks.append(Check("repeats: a repeated delivery gets the same answer", False,
                                       [f"{traffic.repeat_mismatches} of {traffic.repeats} answered differently"]))
        return report
    finally:
        stack.stop()
        stack.cleanup()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, help="traffic duration (default 30; --short: 0.75)")
    parser.add_argument("--chats", type=int, help="customers chatting at once (default 8)")
    parser.add_argument("--workers", type=int, help="worker.py processes (default 3) besides the one --cron")
    parser.add_argument("--fault-every", type=float, help="seconds between faults (default 45)")
    parser.add_argument("--smtp-outage", type=float, help="seconds the SMTP server stays down (default 60)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--short", action="store_true", help="the CI version: ~45 s of traffic, fast timings")
    parser.add_argument("--fast", action="store_true", help="fast timings (short timeouts and backoff) for any length")
    parser.add_argument("--wipe", action="store_true", help="allow emptying DATABASE_URL / flushing REDIS_URL")
    parser.add_argument("--keep", metavar="DIR", help="instance folder to use and keep (logs of web and workers)")
    parser.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    args = parser.parse_args(argv)

    options = {k: v for k, v in (("minutes", args.minutes), ("chats", args.chats), ("workers", args.workers),
                                 ("fault_every", args.fault_every), ("smtp_outage", args.smtp_outage),
                                 ("seed", args.seed)) if v is not None}
    options.update(database_url=os.environ.get("DATABASE_URL") or None, redis_url=os.environ.get("REDIS_URL") or None,
                   wipe=args.wipe, instance=args.keep)
    settings = Settings.short(**options) if args.short else Settings(**options)
    if args.fast:
        settings.timings = dict(FAST_TIMINGS)
    if args.keep:
        os.makedirs(args.keep, exist_ok=True)
    log_dir = args.keep or tempfile.gettempdir()
    logging.basicConfig(filename=os.path.join(log_dir, "acebuddy-soak-web.log"), level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    report = run(settings, log=lambda line: print(line, flush=True))
    print(report.text())
    print(f"web app log: {os.path.join(log_dir, 'acebuddy-soak-web.log')}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(asdict(report) | {"ok": report.ok}, fh, indent=2, default=str)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
