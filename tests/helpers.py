"""Test helpers: SalesIQ payload builders, a chat driver over the webhook, demo directory data, sign-in."""
from __future__ import annotations

import io
import itertools
import json
import re

from acebuddy.directory import import_customers
from acebuddy.extensions import db
from acebuddy.models import User

_request_ids = itertools.count(1)

DIRECTORY_CSV = """username,email,name,phone,company,poc_email,security_question,security_answer
john.doe,john@company.com,John Doe,555-010-1234,Acme Accounting,poc@acme.example,What city were you born in?,Springfield
jane.roe,jane@company.com,Jane Roe,555 010 9876,Acme Accounting,poc@acme.example,,
"""


def load_directory(csv_text: str = DIRECTORY_CSV):
    return import_customers(io.StringIO(csv_text))


def zobot_message(text: str, conversation_id: str = "2243000000123001", *, operation: str = "message",
                  request_id: str | None = None, visitor: dict | None = None) -> dict:
    base_visitor = {"active_conversation_id": conversation_id, "name": "John Doe", "email": "john@company.com",
                    "phone": "555-1234", "channel": "Website"}
    base_visitor.update(visitor or {})
    return {
        "handler": "message",
        "operation": operation,
        "org_id": "55778119",
        "message": {"text": text},
        "visitor": base_visitor,
        "request": {"id": request_id or f"req-{next(_request_ids)}"},
        "attachments": [],
    }


def zobot_trigger(conversation_id: str = "2243000000123001", request_id: str | None = None) -> dict:
    return {
        "handler": "trigger",
        "org_id": "55778119",
        "visitor": {"active_conversation_id": conversation_id, "name": "John Doe", "email": "john@company.com"},
        "request": {"id": request_id or f"req-{next(_request_ids)}"},
    }


def flat_message(text: str, chat_id: str = "chat_123", message_id: str | None = None) -> dict:
    body = {"chat_id": chat_id, "visitor_id": "visitor_456", "visitor_email": "john@company.com",
            "visitor_name": "John Doe", "visitor_phone": "555-1234", "message": text}
    if message_id:
        body["message_id"] = message_id
    return body


class Chat:
    """Drives one conversation through POST /webhook/salesiq as SalesIQ would (Zobot format)."""

    def __init__(self, client, conversation_id: str = "2243000000123001", **visitor):
        self.client = client
        self.conversation_id = conversation_id
        self.visitor = visitor
        self.sent = 0
        self.last: dict | None = None

    def say(self, text: str) -> dict:
        body = zobot_message(text, self.conversation_id, operation="chat" if self.sent == 0 else "message",
                             visitor=self.visitor)
        self.sent += 1
        response = self.client.post("/webhook/salesiq", json=body)
        assert response.status_code == 200, response.get_data(as_text=True)
        self.last = response.get_json()
        return self.last

    @property
    def text(self) -> str:
        return "\n".join(r if isinstance(r, str) else r.get("text", "") for r in self.last["replies"])


def post_raw(client, data, headers=None):
    if not isinstance(data, (bytes, str)):
        data = json.dumps(data)
    return client.post("/webhook/salesiq", data=data, content_type="application/json", headers=headers or {})


def make_user(email="agent@acebuddy.example", password="agent-password-1", role="agent", name="Alex Agent") -> User:
    user = User(email=email, name=name, role=role)
    user.set_password(password)
    db.session.add(user)
    db.session.commit()
    return user


def sign_in(client, email="agent@acebuddy.example", password="agent-password-1"):
    page = client.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    return client.post("/auth/login", data={"email": email, "password": password, "csrf_token": token})


def request_tickets(app, n: int = 1, workflow: str = "printer_issue") -> list[int]:
    """Ticket requests as a finished workflow writes them (their jobs are queued on commit)."""
    import time

    from acebuddy import tickets
    from acebuddy.bot.workflows import WORKFLOWS
    from acebuddy.models import Conversation

    requests = []
    with app.app_context():
        for i in range(n):
            key = f"req-{i}-{time.monotonic_ns()}"
            conv = Conversation(salesiq_id=key, open_key=key, visitor_name="Pat Lee", visitor_email=f"pat{i}@example.com",
                                visitor_id=f"v{i}", data={"model": "HP 404"}, state={})
            db.session.add(conv)
            db.session.flush()
            requests.append(tickets.request_ticket(conv, WORKFLOWS[workflow]))
        db.session.commit()  # the requests get their ids here, with the turn's one flush
        return [request.id for request in requests]


def pure_module(name: str):
    """A fresh copy of module `name` run from its source, also where the process runs it compiled
    (acebuddy/speedups.py): for tests that replace a module's internals, which compiled code does not
    look up when it runs. Not left in sys.modules."""
    import importlib.util
    import sys

    from acebuddy import speedups

    spec = importlib.util.spec_from_file_location(name, speedups.source(name))
    module = importlib.util.module_from_spec(spec)
    saved = sys.modules.get(name)
    sys.modules[name] = module  # while it runs: dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = saved
    return module


def corpus_sources(folder: str, index_module) -> list:
    """The Markdown articles of `folder` as `index_module.Source`s, for an index built without a database."""
    import os

    from acebuddy.knowledge.importer import parse_article

    sources = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".md"):
            with open(os.path.join(folder, name), encoding="utf-8") as fh:
                a = parse_article(fh.read(), name)
            sources.append(index_module.Source(a.slug, a.title, a.category, tuple(a.tags), a.body))
    return sources
