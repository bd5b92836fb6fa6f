"""The webhook benchmark's baseline: a bare Flask endpoint that parses the same JSON body and does one
INSERT into the same database, served by the same gunicorn settings (`gunicorn 'baseline_app:create_app()'`).

Same driver, pool options and SQLite pragmas as AceBuddy (WAL, busy_timeout), so the difference
measured is AceBuddy's own work. The table `bench_baseline` is created by bench/webhook.py.
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
    insert,
)

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
    engine = create_engine(url, pool_pre_ping=True)
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
