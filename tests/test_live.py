"""Live events: commits publish the conversations they touched on Redis (from any writer, the worker
included), and the dashboard's event stream turns those notices into server-sent events."""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import timedelta

import redis
from sqlalchemy import select

from acebuddy import clock, jobs, live
from acebuddy.extensions import db
from acebuddy.models import AGENT, ESCALATED, Conversation, Message
from acebuddy.redisconn import get_redis
from tests.conftest import wait_until
from tests.helpers import Chat
from tests.test_dashboard import login_as, make_agent


class Listener:
    """A Redis subscriber to the live channel, as the dashboard's stream is."""

    def __init__(self, app):
        self.pubsub = get_redis(app).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(live.CHANNEL)

    def notices(self, timeout: float = 1.0) -> list[dict]:
        found, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message is not None:
                found.append(json.loads(message["data"]))
            elif found:
                break
        return found

    def close(self):
        self.pubsub.close()


def _conversation(**fields) -> Conversation:
    conv = Conversation(salesiq_id=fields.pop("salesiq_id", "live-1"), open_key=fields.pop("open_key", "live-1"),
                        data={}, state={}, **fields)
    db.session.add(conv)
    db.session.commit()
    return conv


def test_a_commit_publishes_the_conversations_it_touched(app_ctx):
    listener = Listener(app_ctx)
    try:
        conv = _conversation()
        first = listener.notices()
        assert first == [{"c": [conv.id], "e": [], "q": []}]  # a new chat with the bot: not in the queue

        db.session.add(Message(conversation_id=conv.id, role="customer", text="hello"))
        db.session.commit()
        assert listener.notices() == [{"c": [conv.id], "e": [], "q": []}]
    finally:
        listener.close()


def test_notices_go_on_each_threads_own_connection_which_is_replaced_when_redis_drops_it(app_ctx):
    """A thread publishes on a connection of its own (cheaper than the pool's checkout on every commit).
    When Redis drops it (a restart, a CLIENT KILL), the next notice goes out on a new one; threads do
    not share one; a thread that publishes for another app uses a connection to that app's Redis."""
    import threading

    listener = Listener(app_ctx)
    client = get_redis(app_ctx)
    try:
        live.publish([1])
        held = live._thread.held[2]
        live.publish([2])
        assert live._thread.held[2] is held  # the same connection again
        held.send_command("CLIENT", "ID")
        assert client.client_kill_filter(_id=held.read_response()) == 1  # as a restart of Redis would
        live.publish([3])
        assert [n["c"] for n in listener.notices()] == [[1], [2], [3]]

        seen = []
        thread = threading.Thread(target=lambda: (live.publish([4], app=app_ctx), seen.append(live._thread.held[2])))
        thread.start()
        thread.join()
        assert seen and seen[0] is not live._thread.held[2]
        assert [n["c"] for n in listener.notices()] == [[4]]

        other = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
        app_ctx.extensions["acebuddy_redis"] = other
        assert live.publish([5]) is False  # the other app's Redis, which is not there: not the held connection
        assert live._thread.held[0] is other
    finally:
        app_ctx.extensions["acebuddy_redis"] = client
        app_ctx.extensions[live.EXTENSION]["down_until"] = 0.0
        listener.close()


def test_a_rollback_publishes_nothing(app_ctx):
    conv = _conversation()
    listener = Listener(app_ctx)
    try:
        db.session.add(Message(conversation_id=conv.id, role="customer", text="never kept"))
        db.session.flush()
        db.session.rollback()
        assert listener.notices(timeout=0.3) == []
    finally:
        listener.close()


def commit_and_hear(listener: Listener) -> list[dict]:
    db.session.commit()
    return listener.notices()


def test_a_new_escalation_is_flagged_but_other_status_changes_are_not(app_ctx):
    conv = _conversation()
    listener = Listener(app_ctx)
    try:
        conv.status = ESCALATED
        assert commit_and_hear(listener) == [{"c": [conv.id], "e": [conv.id], "q": [conv.id]}]
        conv.status = AGENT
        assert commit_and_hear(listener) == [{"c": [conv.id], "e": [], "q": [conv.id]}]
    finally:
        listener.close()


def test_only_what_the_queue_shows_flags_a_queue_change(app_ctx):
    """The queue and the waiting count refresh on `queue` events: escalations, claims, hand-backs,
    closes and priority changes of waiting chats, not the traffic of chats with the bot."""
    with_bot = _conversation(salesiq_id="bot-1", open_key="bot-1")
    waiting = _conversation(salesiq_id="wait-1", open_key="wait-1", status=ESCALATED)
    listener = Listener(app_ctx)
    try:
        with_bot.priority, with_bot.step = "High", "confirm"
        with_bot.message_count += 1
        assert commit_and_hear(listener) == [{"c": [with_bot.id], "e": [], "q": []}]
        waiting.priority = "High"
        assert commit_and_hear(listener) == [{"c": [waiting.id], "e": [], "q": [waiting.id]}]
        waiting.message_count += 1
        assert commit_and_hear(listener) == [{"c": [waiting.id], "e": [], "q": []}]
        with_bot.status = "closed"
        assert commit_and_hear(listener) == [{"c": [with_bot.id], "e": [], "q": [with_bot.id]}]
    finally:
        listener.close()


def test_the_webhook_publishes_without_knowing_about_the_dashboard(app, client):
    listener = Listener(app)
    try:
        Chat(client, "live-hook").say("talk to a person")
        notices = listener.notices()
        with app.app_context():
            conv = db.session.scalar(select(Conversation).where(Conversation.salesiq_id == "live-hook"))
        assert notices and all(n["c"] == [conv.id] for n in notices)
        assert any(n["e"] == [conv.id] for n in notices)
    finally:
        listener.close()


def test_events_for_a_page():
    assert live.events_for({1, 2}, set(), None, {2}) == [("conversations", "2"), ("queue", "1")]
    assert live.events_for({1, 2}, set(), None) == [("conversations", "2")]
    assert live.events_for({1, 2}, set(), 2) == [("conversations", "2"), ("conversation", "2")]
    assert live.events_for({1}, {1}, 5) == [("conversations", "1"), ("escalation", "1")]
    assert live.events_for(set(), set(), 1) == []


def test_the_stream_sends_events_for_its_conversation_only(app_ctx):
    app_ctx.config.update(LIVE_LIST_EVENT_SECONDS=0)  # no holding back here (see the burst test below)
    stream = live.stream(conversation_id=7)
    events = iter(stream)
    try:
        assert next(events).startswith("retry: ")
        live.publish([3], [])
        assert next(events) == "event: conversations\ndata: 1\n\n"
        live.publish([7], [7])
        assert next(events) == ("event: conversations\ndata: 1\n\nevent: conversation\ndata: 7\n\n"
                                "event: escalation\ndata: 7\n\n")
    finally:
        stream.close()


def test_notices_close_together_go_out_as_one_event(app_ctx):
    stream = live.stream(conversation_id=None)
    events = iter(stream)
    try:
        next(events)
        live.publish([1], [])
        live.publish([2], [])
        assert next(events) == "event: conversations\ndata: 2\n\n"
    finally:
        stream.close()


def test_the_stream_sends_keep_alives_and_ends_after_its_lifetime(app_ctx):
    app_ctx.config.update(LIVE_HEARTBEAT_SECONDS=0.2, LIVE_STREAM_SECONDS=0.7)
    stream = live.stream()
    started = time.monotonic()
    chunks = list(stream)
    assert chunks[0].startswith("retry: ") and ": keep-alive\n\n" in chunks
    assert time.monotonic() - started < 3


def test_the_stream_route_needs_sign_in_and_streams_events(app, client):
    login_as(app, client, make_agent(app))
    anonymous = app.test_client().get("/dashboard/events", headers={"Accept": "text/event-stream"})
    assert anonymous.status_code == 401 and anonymous.headers["HX-Redirect"].startswith("/auth/login")

    response = client.get("/dashboard/events?conversation=5", buffered=False)
    try:
        assert response.status_code == 200
        assert response.mimetype == "text/event-stream" and response.headers["Cache-Control"] == "no-cache"
        chunks = iter(response.response)
        assert next(chunks).startswith(b"retry: ")
        with app.app_context():
            live.publish([5], [])
        assert next(chunks) == b"event: conversations\ndata: 1\n\nevent: conversation\ndata: 5\n\n"
    finally:
        response.close()


def test_the_stream_route_answers_503_when_redis_is_away(app, client):
    login_as(app, client, make_agent(app))
    app.extensions["acebuddy_redis"] = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    response = client.get("/dashboard/events")
    assert response.status_code == 503 and "refreshes itself" in response.get_data(as_text=True)


def test_a_commit_succeeds_when_redis_is_away_and_later_commits_do_not_wait(app_ctx):
    conv = _conversation()
    app_ctx.extensions["acebuddy_redis"] = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    db.session.add(Message(conversation_id=conv.id, role="customer", text="still stored"))
    db.session.commit()
    assert app_ctx.extensions[live.EXTENSION]["down_until"] > time.monotonic()
    started = time.monotonic()
    for n in range(5):
        db.session.add(Message(conversation_id=conv.id, role="customer", text=f"line {n}"))
        db.session.commit()
    assert time.monotonic() - started < 0.5
    assert db.session.scalar(select(db.func.count(Message.id))) == 6


def test_a_worker_process_publishes_its_commits(live_server, worker_process):
    """The idle-close job, run by a real worker, closes a conversation; the notice comes from the worker."""
    app = live_server.app
    with app.app_context():
        conv = _conversation(last_message_at=clock.now() - timedelta(hours=2))
        conv_id = conv.id
    listener = Listener(app)
    try:
        worker_process.start()
        with app.app_context():
            jobs.get_queue().enqueue(jobs.close_idle_conversations)
        notices = wait_until(lambda: listener.notices(timeout=0.2), timeout=30)
        assert {"c": [conv_id], "e": [], "q": [conv_id]} in notices  # closed: it changes the open list
        with app.app_context():
            assert db.session.get(Conversation, conv_id).close_reason == "inactivity"
    finally:
        listener.close()


def test_a_burst_gives_one_list_event_at_once_and_one_at_the_end_of_the_window(app_ctx):
    """At 100 messages a second a list would refresh without pause: the list-wide event goes out at most
    once a window (the first at once, the rest of the burst together after it); the page's own
    conversation is never held back."""
    app_ctx.config.update(LIVE_LIST_EVENT_SECONDS=0.5)
    stream = live.stream(conversation_id=9)
    events = iter(stream)
    try:
        next(events)
        started = time.monotonic()
        live.publish([1], [])
        assert next(events) == "event: conversations\ndata: 1\n\n"
        assert time.monotonic() - started < 0.4
        for conversation_id in (2, 3, 2, 9):
            live.publish([conversation_id], [])
            time.sleep(0.03)
        assert next(events) == "event: conversation\ndata: 9\n\n"  # its own conversation: at once
        assert time.monotonic() - started < 0.45
        assert next(events) == "event: conversations\ndata: 3\n\n"  # 2, 3 and 9, after the window
        assert time.monotonic() - started >= 0.5
    finally:
        stream.close()


def test_the_pages_of_a_process_share_one_subscription_which_ends_with_the_last(app_ctx):
    """Each notice is read once a process, not once a page: the streams join one hub, each still gets
    its own events, and the hub (its Redis subscription) ends when its last stream goes."""
    app_ctx.config.update(LIVE_LIST_EVENT_SECONDS=0)
    streams = [live.stream(conversation_id=n) for n in (1, 2, 3)]
    events = [iter(stream) for stream in streams]
    try:
        hub = streams[0].hub
        assert all(stream.hub is hub for stream in streams)
        for page in events:
            assert next(page).startswith("retry: ")
        live.publish([2], [])
        assert next(events[0]) == "event: conversations\ndata: 1\n\n"
        assert next(events[1]) == "event: conversations\ndata: 1\n\nevent: conversation\ndata: 2\n\n"
        assert next(events[2]) == "event: conversations\ndata: 1\n\n"
    finally:
        for stream in streams:
            stream.close()
    wait_until(lambda: not hub.open, timeout=5)
    later = live.stream()
    try:
        assert later.hub is not hub and later.hub.open
    finally:
        later.close()


def test_losing_redis_ends_every_stream_of_the_process_and_the_next_page_subscribes_again(app_ctx, monkeypatch):
    """The browsers reconnect after `retry` and poll meanwhile; the next stream makes a new subscription."""
    streams = [live.stream(), live.stream(conversation_id=4)]
    events = [iter(stream) for stream in streams]
    for page in events:
        next(page)
    hub = streams[0].hub

    def gone(**_kwargs):
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(hub.pubsub, "get_message", gone)
    started = time.monotonic()
    for page in events:
        assert list(page) == []  # the stream ends, without a keep-alive or an event first
    assert time.monotonic() - started < 3 and not hub.open
    later = live.stream()
    try:
        assert later.hub is not hub and later.hub.open
    finally:
        later.close()


@contextmanager
def _list_window_stream(app_ctx):
    """A list stream with a 0.3 s window that has just sent a list event: the next change is held."""
    app_ctx.config.update(LIVE_LIST_EVENT_SECONDS=0.3, LIVE_HEARTBEAT_SECONDS=5)
    stream = live.stream()
    events = iter(stream)
    try:
        next(events)
        live.publish([1], [])
        assert next(events) == LIST_EVENT
        yield stream, events
    finally:
        stream.close()


LIST_EVENT = "event: conversations\ndata: 1\n\n"


def test_a_change_held_for_the_list_window_goes_out_when_the_window_ends(app_ctx):
    """Not at the stream's next heartbeat check: a busy list shows a new row within its window."""
    with _list_window_stream(app_ctx) as (_stream, events):
        sent = time.monotonic()
        time.sleep(0.05)
        live.publish([2], [])
        assert next(events) == LIST_EVENT
        assert 0.2 <= time.monotonic() - sent < 0.8  # the window's end; the stream's check came at 1 s


def test_a_list_change_that_came_while_the_stream_was_away_goes_out_when_the_window_ends(app_ctx):
    """The hub can deliver a notice while the stream is between waits (writing to the browser): its
    wake-up finds no one waiting, and the stream's next wait must still end with the list's window."""
    with _list_window_stream(app_ctx) as (stream, events):
        sent = time.monotonic()
        live.publish([2], [])
        deadline = sent + 2
        while not stream.inbox.changed and time.monotonic() < deadline:  # the stream is not waiting now
            time.sleep(0.005)
        assert stream.inbox.changed == {2}
        assert next(events) == LIST_EVENT
        assert time.monotonic() - sent < 0.8  # the window's end (0.3 s), not the stream's 1 s check
