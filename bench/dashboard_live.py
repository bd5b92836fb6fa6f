"""How fast does a customer's message reach an agent's screen? Measured in real Chromium.

    .venv/bin/python bench/dashboard_live.py [--rounds 30] [--json]

Starts AceBuddy on a loopback port (werkzeug, threaded; SQLite and the embedded Redis in a temporary
instance folder), signs an agent in through the sign-in page in Chromium (/usr/bin/chromium, through
Playwright), and measures, from just before each webhook POST to the moment the text is in the page's
DOM (a MutationObserver in the page stamps Date.now(); the same machine clock as the POST):

  list:       a new conversation's first message -> its row on the conversations list
  transcript: a message in an open conversation  -> its line in the conversation page's transcript

No page reload happens in between (checked). The webhook's own bot turn is included in the time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
# Stamps the first time each awaited text is seen inside `root` (set before each POST).
OBSERVE = """() => {
  window.__seenAt = {};
  window.__await = function (text, selector) {
    const check = () => {
      const root = document.querySelector(selector);
      if (!(text in window.__seenAt) && root && root.textContent.includes(text)) window.__seenAt[text] = Date.now();
    };
    new MutationObserver(check).observe(document.body, {childList: true, subtree: true, characterData: true});
    check();
  };
}"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(app, port: int):
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server


def build(instance: str, port: int):
    from acebuddy import create_app
    from acebuddy.extensions import db
    from acebuddy.models import User
    from acebuddy.redisconn import ensure_embedded

    redis_url = ensure_embedded(os.path.join(instance, "redis"))
    env = {"PORT": str(port), "REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{instance}/bench.db",
           "ACEBUDDY_DEMO": "1", "SESSION_COOKIE_SECURE": "0", "MAIL_PORT": "1", "LOG_LEVEL": "WARNING"}
    app = create_app({"TESTING": True, "SECRET_KEY": "bench", "TICKET_REPLY_WAIT": 0.0}, environ=env)
    app.instance_path = instance
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with app.app_context():
        db.create_all()
        user = User(email="bench@acebuddy.example", name="Bench Agent", role="agent")
        user.set_password("bench-password-1")
        db.session.add(user)
        db.session.commit()
    return app


def post(url: str, chat: str, text: str, first: bool, name: str) -> None:
    body = {"handler": "message", "operation": "chat" if first else "message", "org_id": "1",
            "message": {"text": text}, "request": {"id": f"{chat}-{time.time_ns()}"}, "attachments": [],
            "visitor": {"active_conversation_id": chat, "name": name, "email": "bench@customer.example"}}
    response = requests.post(f"{url}/webhook/salesiq", json=body, timeout=10)
    response.raise_for_status()


def measure(page, url: str, chat: str, text: str, first: bool, name: str, marker: str, selector: str) -> float:
    page.evaluate("([m, s]) => window.__await(m, s)", [marker, selector])
    started = time.time() * 1000
    post(url, chat, text, first, name)
    page.wait_for_function("(m) => m in window.__seenAt", arg=marker, timeout=10_000)
    return page.evaluate("(m) => window.__seenAt[m]", marker) - started


def summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"n": len(values), "median_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[max(0, int(len(ordered) * 0.95) - 1)], 1), "max_ms": round(ordered[-1], 1),
            "min_ms": round(ordered[0], 1)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from acebuddy.redisconn import stop_embedded

    instance = tempfile.mkdtemp(prefix="acebuddy-bench-")
    port = free_port()
    app = build(instance, port)
    server = serve(app, port)
    url = f"http://127.0.0.1:{port}"
    results = {"list": [], "transcript": []}
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page()
            page.goto(f"{url}/auth/login")
            page.fill('input[name="email"]', "bench@acebuddy.example")
            page.fill('input[name="password"]', "bench-password-1")
            page.click('button[type="submit"]')
            page.wait_for_selector("[data-live].live-open")
            page.evaluate(OBSERVE)
            page.evaluate("window.__sameDocument = true")
            # Menu choices keep the bot's turn on its fast path (no classifier), as most chat lines are.
            for n in range(args.rounds):
                name = f"Bench Customer {n:03d}"
                results["list"].append(measure(page, url, f"bench-list-{n}", "My server is slow", True, name,
                                               name, "#conversation_list"))
            assert page.evaluate("window.__sameDocument") is True, "the list page reloaded"

            post(url, "bench-chat", "Talk to a person", True, "Transcript Customer")
            page.goto(f"{url}/dashboard/")
            page.click("text=Transcript Customer")
            page.wait_for_selector("[data-live].live-open")
            page.evaluate(OBSERVE)
            page.evaluate("window.__sameDocument = true")
            for n in range(args.rounds):
                line = f"still waiting, line {n:03d}"
                results["transcript"].append(measure(page, url, "bench-chat", line, False, "Transcript Customer",
                                                     line, "#transcript"))
            assert page.evaluate("window.__sameDocument") is True, "the conversation page reloaded"
            browser.close()
    finally:
        server.shutdown()
        stop_embedded(os.path.join(instance, "redis"))
    report = {"rounds": args.rounds, "list": summary(results["list"]), "transcript": summary(results["transcript"])}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for key in ("list", "transcript"):
            s = report[key]
            print(f"{key:<11} n={s['n']}  median {s['median_ms']} ms  p95 {s['p95_ms']} ms  "
                  f"max {s['max_ms']} ms  min {s['min_ms']} ms")
    return report


if __name__ == "__main__":
    main()
