"""The SQL a webhook turn sends: the turn's cost is its database work (docs/performance/webhook.md), so
these pin the statements of the common turns. A change that adds a round trip to every message fails
here, not only in a benchmark."""
from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from acebuddy.extensions import db
from acebuddy.knowledge.importer import import_directory
from tests.helpers import Chat, load_directory, zobot_message
from tests.test_bot_knowledge import DEMO_KB


# The writes of a combined statement (prebuilt.together on PostgreSQL: each a WITH clause).
_WRITES = re.compile(r"\b(INSERT) INTO\s+\"?(\w+)|\b(UPDATE)\s+\"?(\w+)")


class Statements:
    """The statements an engine runs, as "VERB table" (the knowledge index's own reads left out: it
    checks the article table's version every few seconds, whichever turn that falls on). A combined
    statement counts as its writes, in order, in `seen`, and as one statement in `sent` (`last` once taken)."""

    def __init__(self, engine):
        self.engine = engine
        self.seen: list[str] = []
        self.sent: list[list[str]] = []
        self.last: list[list[str]] = []
        self.commits = 0
        self.begun: list[bool] = []
        event.listen(engine, "before_cursor_execute", self._record)
        event.listen(engine, "commit", self._commit)

    def _commit(self, conn):
        self.commits += 1
        if conn.dialect.driver == "psycopg":  # whether the commit has a transaction to end (prebuilt._unbegun)
            self.begun.append(conn.connection.driver_connection.info.transaction_status != 0)

    def _record(self, _conn, _cursor, statement, _params, _context, _many):
        verb = statement.split(None, 1)[0].upper()
        if verb == "WITH":
            names = [" ".join(filter(None, found)) for found in _WRITES.findall(statement)]
        else:
            table = re.search(r"\b(?:INTO|UPDATE|FROM)\s+\"?(\w+)", statement)
            names = [f"{verb} {table.group(1) if table else ''}".strip()]
        if not any("article" in name for name in names):
            self.seen.extend(names)
            self.sent.append(names)

    def take(self) -> list[str]:
        seen, self.seen = self.seen, []
        self.last, self.sent = self.sent, []  # the taken statements as sent
        return seen

    def after(self, chat: Chat, line: str) -> list[str]:
        """The statements of the turn that answers `line`."""
        self.take()
        chat.say(line)
        return self.take()

    def close(self):
        event.remove(self.engine, "before_cursor_execute", self._record)
        event.remove(self.engine, "commit", self._commit)


@pytest.fixture
def statements(app):
    with app.app_context():
        load_directory()
        assert not import_directory(DEMO_KB).errors
        recorder = Statements(db.engine)
    yield recorder
    recorder.close()


# The look-up of the delivery and the conversation (one query), then one write a table.
LOOK_UP = "SELECT webhook_delivery"


def test_a_knowledge_turn_is_one_look_up_and_one_write_a_table(client, statements):
    chat = Chat(client, "stmt-kb")
    # A new chat: its conversation goes in with the turn, already as the turn leaves it (no UPDATE), its
    # lines and timeline entries after it, in one commit; nothing is read back.
    statements.commits = 0
    assert statements.after(chat, "how long do you keep my backups for?") == [
        LOOK_UP, "INSERT conversation", "INSERT message", "INSERT conversation_event", "INSERT webhook_delivery"]
    assert statements.commits == 1
    chat.say("Yes")
    chat.say("how do I connect to the VPN?")
    assert statements.after(chat, "how long do you keep my backups for?") == [
        LOOK_UP, "INSERT message", "INSERT conversation_event", "UPDATE conversation", "INSERT webhook_delivery"]
    assert "Did this help?" in chat.text


def test_on_postgresql_a_turns_writes_are_one_statement(client, statements):
    """prebuilt.together: the lines, the timeline entry, the conversation's UPDATE and the delivery record
    go as one statement on PostgreSQL (one WITH clause each), one after the other elsewhere. On
    PostgreSQL the look-up and that statement go without BEGIN and COMMIT (prebuilt._unbegun)."""
    chat = Chat(client, "stmt-together")
    chat.say("how do I connect to the VPN?")
    chat.say("Yes")
    writes = ["INSERT message", "INSERT conversation_event", "UPDATE conversation", "INSERT webhook_delivery"]
    assert statements.after(chat, "how long do you keep my backups for?") == [LOOK_UP, *writes]
    if statements.engine.dialect.name == "postgresql":
        assert statements.last == [[LOOK_UP], writes]
        # Neither went in a transaction of its own making: no BEGIN, and a commit with nothing to end.
        assert statements.begun[-1] is False
    else:
        assert statements.last == [[LOOK_UP], *([write] for write in writes)]


def test_a_repeated_delivery_is_one_query(client, statements):
    body = zobot_message("how long do you keep my backups for?", "stmt-repeat", request_id="stmt-r1")
    first = client.post("/webhook/salesiq", json=body).get_json()
    statements.take()
    assert client.post("/webhook/salesiq", json=body).get_json() == first
    assert statements.take() == [LOOK_UP]


def test_a_workflow_step_writes_its_line_and_its_state(client, statements):
    chat = Chat(client, "stmt-wf")
    chat.say("I forgot my password")
    assert statements.after(chat, "john.doe") == [
        LOOK_UP, "SELECT customer", "INSERT message", "UPDATE conversation", "INSERT webhook_delivery"]
    assert "last four digits" in chat.text


def test_the_turn_that_files_a_ticket_writes_the_conversation_once(client, statements):
    """The ticket request goes in with the turn's one flush (its job learns its id after the commit)."""
    chat = Chat(client, "stmt-ticket")
    for line in ("I forgot my password", "john.doe", "1234", "QuickBooks"):
        chat.say(line)
    assert "Shall I create" in chat.text
    seen = statements.after(chat, "Yes, create the ticket")
    assert "logging your request" in chat.text
    assert seen.count("UPDATE conversation") == 1 and seen.count("INSERT ticket_request") == 1
    assert seen[0] == LOOK_UP and seen[-1] == "INSERT webhook_delivery"
