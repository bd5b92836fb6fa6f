"""Conversation tests a support lead can write: `tests/conversations/*.yaml`, each a customer's lines and
what the bot must do, driven through POST /webhook/salesiq exactly as SalesIQ sends them.

A file holds `name`, optional `visitor` (name, email) and `turns`; each turn has `customer` (the line) and
optional checks: `contains` / `not_contains` (text or list, case-insensitive), `action` (reply/forward),
`input` (card type), `suggestions` (list that must be offered). `expect` checks the end state: `ticket`
(subject, priority, status, due_hours, workflow, fields: {label: value in the description}) or
`no_ticket: true`, and `conversation` (status, verification). `secrets` lists strings that must never
be stored or sent to Desk.
"""
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from acebuddy.extensions import db
from acebuddy.models import Conversation, Message, TicketRequest
from tests.helpers import Chat, load_directory

FILES = sorted((Path(__file__).parent / "conversations").glob("*.yaml"))


def _listify(value):
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_conversation(app, client, path):
    script = yaml.safe_load(path.read_text(encoding="utf-8"))
    with app.app_context():
        load_directory()
    visitor = script.get("visitor") or {}
    chat = Chat(client, f"conv-{path.stem}", **visitor)
    for number, turn in enumerate(script["turns"], 1):
        reply = chat.say(str(turn["customer"]))
        where = f"{path.name} turn {number} ({turn['customer']!r}): bot said {chat.text!r}"
        text = chat.text.lower()
        for expected in _listify(turn.get("contains", [])):
            assert expected.lower() in text, where
        for unexpected in _listify(turn.get("not_contains", [])):
            assert unexpected.lower() not in text, where
        if "action" in turn:
            assert reply["action"] == turn["action"], where
        if "input" in turn:
            assert (reply.get("input") or {}).get("type") == turn["input"], where
        for suggestion in turn.get("suggestions", []):
            assert suggestion in (reply.get("suggestions") or []), where
        assert not ("input" in reply and "suggestions" in reply), where

    expect = script.get("expect") or {}
    with app.app_context():
        conv = db.session.scalar(select(Conversation).where(Conversation.salesiq_id == chat.conversation_id))
        requests = db.session.scalars(select(TicketRequest).where(TicketRequest.conversation_id == conv.id)).all()
        if expect.get("no_ticket"):
            assert requests == [], path.name
        if "ticket" in expect:
            want = expect["ticket"]
            assert len(requests) == 1, f"{path.name}: {len(requests)} tickets"
            ticket = requests[0]
            for key in ("subject", "priority", "workflow"):
                if key in want:
                    assert getattr(ticket, key) == want[key], path.name
            if "status" in want:
                assert ticket.ticket_status == want["status"], path.name
            if "due_hours" in want:
                assert abs(ticket.due_at - ticket.created_at - timedelta(hours=want["due_hours"])) < timedelta(seconds=5)
            for label, value in (want.get("fields") or {}).items():
                assert f"<b>{label}:</b> {value}" in ticket.description, f"{path.name}: {label}"
        for key, value in (expect.get("conversation") or {}).items():
            assert getattr(conv, key) == value, f"{path.name}: conversation.{key}"
        stored = [m.text for m in db.session.scalars(select(Message).where(Message.conversation_id == conv.id))]
        # The phone on file is rightly in the ticket; its last four digits typed as an answer are not.
        outgoing = stored + [r.description.replace(r.contact_phone or "\0", "") for r in requests] + [str(conv.data)]
        for secret in script.get("secrets", []):
            assert not any(str(secret) in text for text in outgoing), f"{path.name}: secret {secret!r} stored"
