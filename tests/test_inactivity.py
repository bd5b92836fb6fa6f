"""Idle close: conversations without a message for IDLE_CLOSE_MINUTES are closed with the closing steps by
a job the cron worker runs every minute; the customer's next message starts a fresh conversation."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

import worker
from acebuddy import clock, inactivity, jobs
from acebuddy.extensions import db
from acebuddy.models import AGENT, BOT, CLOSED, ESCALATED, Conversation, ConversationEvent, Notification
from tests.helpers import Chat
from tests.test_dashboard import add_conversation, add_ticket, conv_by_chat


def _idle(salesiq_id: str, minutes: float, **fields) -> Conversation:
    return add_conversation(salesiq_id, last_message_at=clock.now() - timedelta(minutes=minutes), **fields)


def test_idle_conversations_close_and_recent_ones_stay_open(app_ctx):
    assert app_ctx.config["IDLE_CLOSE_MINUTES"] == 30  # the default
    stale = [_idle("idle-bot", 31), _idle("idle-esc", 45, status=ESCALATED), _idle("idle-agent", 90, status=AGENT)]
    recent = _idle("recent", 29)
    done = _idle("done", 500, status=CLOSED)
    done_reason = done.close_reason

    assert inactivity.close_idle() == 3
    for conv in stale:
        db.session.refresh(conv)
        assert conv.status == CLOSED and conv.close_reason == "inactivity" and conv.open_key is None
        assert db.session.scalar(select(ConversationEvent.detail).where(
            ConversationEvent.conversation_id == conv.id, ConversationEvent.kind == "closed")) == "inactivity"
    db.session.refresh(recent)
    db.session.refresh(done)
    assert recent.status == BOT and done.close_reason == done_reason
    assert inactivity.close_idle() == 0  # a second run changes nothing


def test_the_idle_time_is_configurable_and_zero_turns_it_off(app_ctx):
    conv = _idle("cfg", 6)
    app_ctx.config["IDLE_CLOSE_MINUTES"] = 0
    assert inactivity.close_idle() == 0
    app_ctx.config["IDLE_CLOSE_MINUTES"] = 10
    assert inactivity.close_idle() == 0
    app_ctx.config["IDLE_CLOSE_MINUTES"] = 5
    assert inactivity.close_idle() == 1
    db.session.refresh(conv)
    assert conv.status == CLOSED


def test_the_closing_comment_goes_to_the_ticket(app_ctx):
    conv = _idle("ticketed", 60, workflow="server_slowness", priority="High")
    ticket = add_ticket(conv, state="created", desk_ticket_id="7001", desk_ticket_number="71")
    assert inactivity.close_idle() == 1
    comment = db.session.scalar(select(Notification).where(Notification.kind == "closing_comment"))
    assert comment.ticket_request_id == ticket.id and comment.recipient == ticket.ref


def test_a_message_just_in_time_keeps_the_conversation_open(app_ctx, monkeypatch):
    """The job re-reads each conversation before closing it: a line that arrived meanwhile wins."""
    conv = _idle("race", 40)
    real_scalar = db.session.scalar

    def scalar_after_a_new_message(statement, *args, **kwargs):
        if getattr(statement, "_for_update_arg", None) is not None:
            with db.engine.begin() as other:
                other.execute(Conversation.__table__.update().where(Conversation.id == conv.id)
                              .values(last_message_at=clock.now()))
        return real_scalar(statement, *args, **kwargs)

    monkeypatch.setattr(db.session, "scalar", scalar_after_a_new_message)
    assert inactivity.close_idle() == 0
    monkeypatch.undo()
    db.session.refresh(conv)
    assert conv.status == BOT


def test_after_an_idle_close_the_next_message_starts_a_fresh_conversation(app, client):
    chat = Chat(client, "idle-chat")
    chat.say("My server is slow")
    with app.app_context():
        conv = conv_by_chat("idle-chat")
        conv.last_message_at = clock.now() - timedelta(hours=1)
        db.session.commit()
        old_id = conv.id
        assert jobs.close_idle_conversations() == 1  # the job body, run in this app's context
    reply = chat.say("Reset my password")
    assert reply["replies"]
    with app.app_context():
        fresh = conv_by_chat("idle-chat")
        assert fresh.id != old_id and fresh.status == BOT and fresh.workflow == "password_reset"
        assert db.session.get(Conversation, old_id).status == CLOSED


def test_the_cron_worker_runs_the_idle_close_every_minute(app, monkeypatch):
    registered = {}

    class Cron:
        def __init__(self, **kwargs):
            pass

        def register(self, func, **options):
            registered[func.__name__] = options

        def start(self):
            registered["started"] = True

    monkeypatch.setattr(worker, "CronScheduler", Cron)
    monkeypatch.setattr(worker, "create_app", lambda: app)
    worker.main(["--cron"])
    assert registered["started"] is True
    assert registered["close_idle_conversations"]["interval"] == 60
    assert registered["close_idle_conversations"]["queue_name"] == jobs.QUEUE_NAME
