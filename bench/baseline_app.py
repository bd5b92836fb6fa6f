"""The webhook benchmark's baselines, served by the same gunicorn settings as AceBuddy:

- `create_app()`: the goal's baseline, a bare Flask endpoint that parses the same JSON body and does one
  INSERT into the same database (the table `bench_baseline`, created by bench/webhook.py);
- `create_floor_app()`: the SQL a bot turn writes and nothing else, in plain SQLAlchemy Core on
  AceBuddy's own tables: the look-up of the delivery and the open conversation, the conversation's
  INSERT on a chat's first message, the two lines, one timeline entry, the conversation's UPDATE, the
  delivery record, one commit. No bot, no ORM, no live notice: what a turn would cost if everything but
  its database work were free, so the reading says how much of the goal the statements alone allow.

Same driver, pool options and SQLite pragmas as AceBuddy (WAL, busy_timeout), so the difference
measured is AceBuddy's own work.
"""
from __future__ import annotations

import os
from datetime import UTC, datetime

from flask import Flask, jsonify, request
from sqlalchemy import (
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    func,
    insert,
    literal,
    select,
    update,
)

from acebuddy.config import engine_options

metadata = MetaData()
messages = Table(
    "bench_baseline", metadata,
    Column("id", Integer, primary_key=True),
    Column("conversation", String(120)),
    Column("text", Text),
    Column("created_at", DateTime),
)


def engine_for(url: str):
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix):]
    engine = create_engine(url, **engine_options(os.environ, url))
    if url.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.close()
    return engine


def create_app():
    """`gunicorn 'baseline_app:create_app()'`, with DATABASE_URL set."""
    app = Flask(__name__)
    engine = engine_for(os.environ["DATABASE_URL"])

    @app.post("/webhook/salesiq")
    def webhook():
        body = request.get_json()
        visitor = body.get("visitor") or {}
        with engine.begin() as conn:
            conn.execute(insert(messages).values(
                conversation=visitor.get("active_conversation_id"),
                text=(body.get("message") or {}).get("text"),
                created_at=datetime.now(UTC).replace(tzinfo=None),
            ))
        return jsonify({"action": "reply", "replies": ["ok"]})

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app


def create_floor_app():
    """`gunicorn 'baseline_app:create_floor_app()'`, with DATABASE_URL set to a migrated AceBuddy database.
    Its statements are built once with bound parameters, as AceBuddy's look-up and batch INSERTs are."""
    from sqlalchemy import bindparam

    from acebuddy.models import Conversation, ConversationEvent, Message, WebhookDelivery

    conversation, delivery = Conversation.__table__, WebhookDelivery.__table__
    look_up = (select(select(delivery.c.response).where(delivery.c.key == bindparam("key"))
                      .scalar_subquery().label("answer"), conversation.c.id, conversation.c.state)
               .select_from(select(literal(1).label("one")).subquery())
               .outerjoin(conversation, conversation.c.open_key == bindparam("chat")))
    open_chat = insert(conversation).returning(conversation.c.id)
    add_lines = insert(Message.__table__)
    add_event = insert(ConversationEvent.__table__)
    touch = update(conversation).where(conversation.c.id == bindparam("conv_id")).values(
        message_count=conversation.c.message_count + 2, updated_at=func.now())
    record = insert(delivery)
    app = Flask(__name__)
    engine = engine_for(os.environ["DATABASE_URL"])

    @app.post("/webhook/salesiq")
    def webhook():
        body = request.get_json()
        chat = (body.get("visitor") or {}).get("active_conversation_id")
        key = "zobot:" + (body.get("request") or {}).get("id", "")
        text = (body.get("message") or {}).get("text") or ""
        now = datetime.now(UTC).replace(tzinfo=None)
        answer = {"action": "reply", "replies": ["ok"]}
        with engine.begin() as conn:
            row = conn.execute(look_up, {"key": key, "chat": chat}).one()
            if row.answer is not None:
                return jsonify(row.answer)
            conv_id = row.id
            if conv_id is None:
                conv_id = conn.execute(open_chat, {
                    "salesiq_id": chat, "open_key": chat, "source": "zobot", "status": "bot", "data": {},
                    "state": {}, "verification": "none", "verify_failures": 0, "message_count": 0,
                    "last_message_at": now, "created_at": now, "updated_at": now}).scalar_one()
            conn.execute(add_lines, [
                {"conversation_id": conv_id, "role": "customer", "text": text, "masked": False, "created_at": now},
                {"conversation_id": conv_id, "role": "bot", "text": "ok", "masked": False, "created_at": now}])
            conn.execute(add_event, {"conversation_id": conv_id, "kind": "intent", "detail": "floor 1.00",
                                     "created_at": now})
            conn.execute(touch, {"conv_id": conv_id, "state": dict(row.state or {}, turns=1), "last_message_at": now})
            conn.execute(record, {"key": key, "conversation_id": conv_id, "response": answer, "created_at": now})
        return jsonify(answer)

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    return app
