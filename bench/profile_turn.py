"""CPU per webhook turn, in one process, without gunicorn or a load generator: where a turn's time goes.

    .venv/bin/python bench/profile_turn.py                      # SQLite; CPU ms a message by scenario
    .venv/bin/python bench/profile_turn.py --db postgres --profile 25   # plus cProfile's top 25 (cumulative)

Migrates a throw-away database with the demo data (as bench/webhook.py does), builds the app in this
process and sends the webhook benchmark's chats (knowledge: 4 questions; workflow: the 5-turn password
reset) through Flask's test client, `TICKET_REPLY_WAIT=0`. Reports the process CPU time per message,
which is what the closed-loop throughput of bench/webhook.py is made of (that benchmark is the judge;
this one only says where to look). The bare baseline's request and the floor (a turn's SQL alone, see
bench/baseline_app.py) are timed the same way for scale.
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
import uuid
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import stack
from loadgen import zobot_body
from webhook import KB_EXPECT, candidate_questions, knowledge_chats, workflow_chats


def run_chats(client, chats, rounds: int) -> int:
    sent = 0
    for _ in range(rounds):
        for chat in chats:
            conversation = uuid.uuid4().hex
            for n, turn in enumerate(chat["turns"]):
                body = zobot_body(turn["text"], conversation, uuid.uuid4().hex, n == 0)
                reply = client.post("/webhook/salesiq", data=body, content_type="application/json")
                if reply.status_code != 200 or turn["expect"] not in reply.get_data(as_text=True):
                    raise RuntimeError(f"unexpected answer to {turn['text']!r}: {reply.get_data(as_text=True)[:300]}")
                sent += 1
    return sent


@contextmanager
def prepared_stack(db: str, pg_url: str = stack.DEFAULT_PG_URL):
    """A throw-away database (migrated, the demo customers and articles, the baseline's table) and a
    Redis, with this process's environment pointing at them, for apps built in this process."""
    with stack.workdir() as workdir:
        database = stack.Database(db, workdir, pg_url)
        redis = stack.RedisServer(None, workdir)
        try:
            env = stack.base_env(database.url, redis.url, 5000, TICKET_REPLY_WAIT=0)
            stack.prepare_acebuddy_database(env)
            stack.create_baseline_table(database.url)
            os.environ.update(env)
            yield
        finally:
            redis.close()
            database.close()


def knowledge_questions(client) -> list[str]:
    """The candidate questions the demo knowledge base answers (the knowledge chats' lines)."""
    return [q for q in candidate_questions()
            if KB_EXPECT in client.post("/webhook/salesiq", data=zobot_body(q, uuid.uuid4().hex, uuid.uuid4().hex, True),
                                        content_type="application/json").get_data(as_text=True)]


def measure(label: str, client, chats, rounds: int, profile: int) -> None:
    run_chats(client, chats, 1)  # warm caches and connections
    profiler = cProfile.Profile() if profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    sent = run_chats(client, chats, rounds)
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"{label:10} {sent:5} messages  CPU {1000 * cpu / sent:6.2f} ms a message  wall {1000 * wall / sent:6.2f} ms")
    if profiler:
        pstats.Stats(profiler).sort_stats(os.environ.get("PROFILE_SORT", "cumulative")).print_stats(profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--pg-url", default=stack.DEFAULT_PG_URL)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N functions")
    args = parser.parse_args()

    with prepared_stack(args.db, args.pg_url):
        from acebuddy import create_app
        from baseline_app import create_app as create_baseline, create_floor_app

        app = create_app()
        client = app.test_client()
        measure("knowledge", client, knowledge_chats(knowledge_questions(client)), args.rounds, args.profile)
        measure("workflow", client, workflow_chats(), args.rounds * 4, args.profile)
        bare = [{"turns": [{"text": "hello", "expect": "ok"}] * 5}] * 20
        measure("floor", create_floor_app().test_client(), bare, args.rounds * 4, 0)
        measure("baseline", create_baseline().test_client(), bare, args.rounds * 4, 0)
        with app.app_context():
            from acebuddy.extensions import db
            db.engine.dispose()


if __name__ == "__main__":
    main()
