"""Live events for the dashboard: every committed change to a conversation is published on a Redis
channel, and each open dashboard page holds a server-sent-event stream that turns those notices into
htmx triggers (the page then fetches the fragments it shows).

Publishing hangs off SQLAlchemy's session events, so every writer (webhook, worker, dashboard, CLI)
publishes without knowing this module exists: `after_flush` collects the conversations touched,
`after_commit` publishes them. A notice carries ids only, never content.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time

import redis
from flask import Flask, current_app, has_app_context
from sqlalchemy import event, inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import PASSIVE_NO_INITIALIZE, get_history

from .models import ESCALATED, Conversation, ConversationEvent, Message, Notification, TicketAttempt, TicketRequest
from .redisconn import get_redis

log = logging.getLogger(__name__)

CHANNEL = "acebuddy:live"
EXTENSION = "acebuddy_live"
_PENDING = "acebuddy_live"
# After a failed publish, skip publishing this long: a commit must never wait on a dead Redis twice.
BREAKER_SECONDS = 10.0
# Notices arriving this close together go out as one event per kind (a turn that files a ticket commits
# again when its number is in, and the ticket's job commits right after).
COALESCE_SECONDS = 0.02
# The list-wide `conversations` event goes out at most this often per page (the first at once, the
# rest of a burst together at the window's end): at 100 customer messages a second every open list
# would otherwise refresh without pause (docs/performance/dashboard.md). A page's own conversation and
# escalations are never held back. Under a second with room for the fragment's fetch: a new row is on a
# busy list within the one-second target.
LIST_EVENT_SECONDS = 0.75
HEARTBEAT_SECONDS = 15.0
# A hub with no stream left ends within this long (and a new page starts a new one).
HUB_IDLE_SECONDS = 0.25
# A stream ends after this long and the browser reconnects: no thread is held forever, and a
# restarted web process sheds its old streams.
STREAM_SECONDS = 300.0
RECONNECT_MS = 1000

_installed = False


def init_app(app: Flask) -> None:
    """Install the session listeners (once per process) and note the app's settings."""
    global _installed
    app.extensions.setdefault(EXTENSION, {"down_until": 0.0})
    if not _installed:
        event.listen(Session, "after_flush", _collect)
        event.listen(Session, "after_commit", _publish_committed)
        event.listen(Session, "after_rollback", _forget_rolled_back)
        _installed = True


def _conversation_of(session: Session, obj) -> int | None:
    if isinstance(obj, Conversation):
        return obj.id
    if isinstance(obj, (Message, ConversationEvent, TicketRequest, Notification)):
        return obj.conversation_id
    if isinstance(obj, TicketAttempt):
        # No SQL inside a flush: the attempt's ticket request is normally loaded already.
        key = inspect(TicketRequest).identity_key_from_primary_key([obj.ticket_request_id])
        request = session.identity_map.get(key)
        return request.conversation_id if request is not None else None
    return None


def _newly_escalated(obj) -> bool:
    if not isinstance(obj, Conversation):
        return False
    history = _history(obj, "status")
    return ESCALATED in (history.added or ())


# What the escalation queue and the waiting count show of a conversation: when one of these changes the
# pages get a `queue` event. Customer lines and bot steps change none of them, so at 100 messages a
# second the queue and the alerts stay quiet unless someone is escalated, claimed or handed back.
QUEUE_FIELDS = ("status", "agent_id", "priority", "escalation_reason")


def _queue_changed(obj, is_new: bool) -> bool:
    """Whether this conversation may have entered, left or changed its place in the queue. Any change of
    status counts (the old value may not be loaded, so "from escalated" cannot always be told), except a
    new chat starting with the bot, which happens many times a second."""
    if not isinstance(obj, Conversation):
        return False
    if is_new:
        return obj.status == ESCALATED
    if _history(obj, "status").has_changes():
        return True
    return obj.status == ESCALATED and any(_history(obj, name).has_changes() for name in QUEUE_FIELDS[1:])


def _history(obj, name: str):
    """One attribute's history, without loading it (what `inspect(obj).attrs[name].history` gives, without
    building the object's whole set of attribute views: a tenth of a million instructions a turn)."""
    return get_history(obj, name, passive=PASSIVE_NO_INITIALIZE)


def _collect(session: Session, _flush_context) -> None:
    new = session.new
    for obj in (*new, *session.dirty, *session.deleted):
        collect(session, obj, is_new=obj in new)


def collect(session: Session, obj, *, is_new: bool = False) -> None:
    """Note the change of one object for the next commit's notice. A flush does it for every object it
    writes; a writer that bypasses the flush (conversations.write_changes) calls it before the change
    is marked written, while the object's attribute history still tells what changed."""
    try:
        conversation_id = _conversation_of(session, obj)
    except Exception:  # never let the dashboard's bookkeeping break a writer's flush
        log.exception("live: could not read the conversation of %s", type(obj).__name__)
        return
    if conversation_id is None:
        return
    pending = _pending(session)
    pending["c"].add(conversation_id)
    if _newly_escalated(obj):
        pending["e"].add(conversation_id)
    if _queue_changed(obj, is_new):
        pending["q"].add(conversation_id)


def touched(session: Session, conversation_ids) -> None:
    """Conversations changed by rows written without ORM objects (conversations.batch_rows)."""
    _pending(session)["c"].update(conversation_ids)


def _pending(session: Session) -> dict:
    return session.info.setdefault(_PENDING, {"c": set(), "e": set(), "q": set()})


def _forget_rolled_back(session: Session) -> None:
    if session.in_nested_transaction():  # a savepoint: the outer transaction may still commit
        return
    session.info.pop(_PENDING, None)


def _publish_committed(session: Session) -> None:
    if session.in_nested_transaction():
        return
    pending = session.info.pop(_PENDING, None)
    if not pending or not pending["c"] or not has_app_context():
        return
    publish(sorted(pending["c"]), sorted(pending["e"]), sorted(pending["q"]))


def publish(conversation_ids, escalated_ids=(), queue_ids=(), app: Flask | None = None) -> bool:
    """Tell every open dashboard that these conversations changed (`queue_ids`: those whose place in the
    escalation queue may have changed); False when Redis is away."""
    app = app or current_app._get_current_object()
    state = app.extensions.setdefault(EXTENSION, {"down_until": 0.0})
    if time.monotonic() < state["down_until"]:
        return False
    notice = _encode({"c": list(conversation_ids), "e": list(escalated_ids), "q": list(queue_ids)})
    try:
        _send(get_redis(app), notice)
    except (redis.RedisError, OSError) as exc:
        state["down_until"] = time.monotonic() + BREAKER_SECONDS
        log.warning("live: could not publish (%s); dashboards fall back to polling", exc)
        return False
    return True


_encode = json.JSONEncoder(separators=(",", ":")).encode  # built once: json.dumps builds one a call
# Each thread's own connection for its notices: (client, process id, connection).
_thread = threading.local()


def _send(client: redis.Redis, notice: str) -> None:
    """PUBLISH the notice on this thread's own connection to the client's Redis, made as its pool makes
    them. Every commit publishes: through the client's pool a PUBLISH cost 0.16 M instructions (the
    pool's checkout and return, its metrics, the command's retry wrapper), on a held connection a fifth
    of that (docs/performance/webhook.md, change -21). A connection that went stale (Redis restarted)
    is replaced once; a second failure raises, and the caller's breaker takes over."""
    held = getattr(_thread, "held", None)
    if held is None or held[0] is not client or held[1] != os.getpid():
        if held is not None:
            held[2].disconnect()
        pool = client.connection_pool
        held = _thread.held = (client, os.getpid(), pool.connection_class(**pool.connection_kwargs))
    connection = held[2]
    try:
        connection.send_command("PUBLISH", CHANNEL, notice)
        connection.read_response()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        connection.disconnect()
        connection.send_command("PUBLISH", CHANNEL, notice)
        connection.read_response()


def _parse(data) -> tuple[set[int], set[int], set[int]]:
    """(changed, escalated, queue) conversation ids of a notice; a notice without "q" (published by an
    older process during a rolling deploy) counts every change as a queue change."""
    try:
        notice = json.loads(data)
        changed = {int(i) for i in notice.get("c", [])}
        queue = {int(i) for i in notice["q"]} if "q" in notice else set(changed)
        return changed, {int(i) for i in notice.get("e", [])}, queue
    except (TypeError, ValueError, AttributeError):
        return set(), set(), set()


def events_for(changed: set[int], escalated: set[int], conversation_id: int | None,
               queue: set[int] = frozenset()) -> list[tuple[str, str]]:
    """The SSE events one page gets for a batch of notices: (event name, data)."""
    out = []
    if changed:
        out.append(("conversations", str(len(changed))))
    if conversation_id is not None and conversation_id in changed:
        out.append(("conversation", str(conversation_id)))
    if escalated:
        out.append(("escalation", ",".join(str(i) for i in sorted(escalated))))
    if queue:
        out.append(("queue", str(len(queue))))
    return out


def format_event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"


class _Inbox:
    """What the hub has gathered for one stream since it last looked. The hub wakes the stream only when
    there is something to send now: its own conversation, an escalation, a queue change, or a list change
    once the list's window (`list_at`) has passed; other changes wait for the stream's own timer."""

    def __init__(self, conversation_id: int | None):
        self.conversation_id = conversation_id
        self.ready = threading.Condition()
        self.changed: set[int] = set()
        self.escalated: set[int] = set()
        self.queue: set[int] = set()
        self.list_at = 0.0  # when the stream may send its next list event (written by the stream)
        self.wake_at = 0.0  # when the stream's current wait ends
        self.urgent = False
        self.failed = False

    def offer(self, changed: set[int], escalated: set[int], queue: set[int]) -> None:
        with self.ready:
            self.changed |= changed
            self.escalated |= escalated
            self.queue |= queue
            if escalated or queue or self.conversation_id in changed or (changed and time.monotonic() >= self.list_at):
                self.urgent = True
                self.ready.notify()
            elif changed and self.wake_at > self.list_at + COALESCE_SECONDS:
                # The stream would sleep past the list's window: wake it to wait for the window instead.
                self.ready.notify()

    def fail(self) -> None:
        with self.ready:
            self.failed = True
            self.ready.notify()

    def take(self, timeout: float) -> tuple[set[int], set[int], set[int]]:
        """Wait up to `timeout` for something to send; then what has gathered, notices arriving within
        COALESCE_SECONDS of the first included (commits come in bursts)."""
        with self.ready:
            if not self.urgent and not self.failed:
                now = time.monotonic()
                if self.changed:
                    # A list change came while the stream was away (sending, say): its wake-up found
                    # no one waiting, so wait no longer than the list's window.
                    timeout = min(timeout, max(0.0, self.list_at - now))
                self.wake_at = now + timeout
                self.ready.wait(timeout)
            woken = self.urgent
        if woken:
            time.sleep(COALESCE_SECONDS)
        with self.ready:
            taken = self.changed, self.escalated, self.queue
            self.changed, self.escalated, self.queue = set(), set(), set()
            self.urgent = False
            return taken


class _Hub:
    """One subscription to the channel for all of a process's open streams: each notice is read and
    parsed once, not once a page, and a page's thread sleeps until it has something to send. (With one
    subscription a page, 20 pages at 100 notices a second took a third of a core to read them:
    docs/performance/dashboard.md.) The hub ends with its last stream, or with its Redis connection, and
    its streams with it (their browsers reconnect, and poll meanwhile)."""

    def __init__(self, client: redis.Redis, first: _Inbox):
        self.client = client
        self.pubsub = client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(CHANNEL)  # raises when Redis is away: no stream, the page polls
        self.inboxes = {first}  # before the thread starts: it ends when it finds none
        self.lock = threading.Lock()
        self.open = True
        threading.Thread(target=self._run, name="acebuddy-live", daemon=True).start()

    def join(self, inbox: _Inbox) -> bool:
        with self.lock:
            if self.open:
                self.inboxes.add(inbox)
            return self.open

    def leave(self, inbox: _Inbox) -> None:
        with self.lock:
            self.inboxes.discard(inbox)

    def _run(self) -> None:
        try:
            while True:
                message = self.pubsub.get_message(timeout=HUB_IDLE_SECONDS)
                with self.lock:
                    inboxes = list(self.inboxes)
                    if not inboxes:
                        self.open = False
                        return
                if message is not None:
                    notice = _parse(message.get("data"))
                    for inbox in inboxes:
                        inbox.offer(*notice)
        except (redis.RedisError, OSError) as exc:
            log.warning("live: stream ended by Redis error: %s", exc)
        finally:
            with self.lock:
                self.open = False
                inboxes, self.inboxes = list(self.inboxes), set()
            for inbox in inboxes:
                inbox.fail()
            with _hubs_lock:
                if _hubs.get(id(self.client)) is self:
                    del _hubs[id(self.client)]
            try:
                self.pubsub.close()
            except (redis.RedisError, OSError):  # pragma: no cover - closing a broken connection
                pass


_hubs: dict[int, _Hub] = {}
_hubs_lock = threading.Lock()


def _join_hub(client: redis.Redis, inbox: _Inbox) -> _Hub:
    """The process's hub for this Redis client (a new one if it has none, or its last one ended)."""
    with _hubs_lock:
        hub = _hubs.get(id(client))
        if hub is None or hub.client is not client or not hub.join(inbox):
            hub = _hubs[id(client)] = _Hub(client, inbox)
        return hub


class EventStream:
    """One browser's stream. Joins its process's subscription on creation, so nothing committed after
    the page asked for it is missed; `close()` (called by the WSGI server when the client goes) leaves."""

    def __init__(self, client: redis.Redis, *, conversation_id: int | None = None,
                 heartbeat: float = HEARTBEAT_SECONDS, lifetime: float = STREAM_SECONDS,
                 list_every: float = LIST_EVENT_SECONDS):
        self.conversation_id = conversation_id
        self.heartbeat = heartbeat
        self.lifetime = lifetime
        self.list_every = list_every
        self.inbox = _Inbox(conversation_id)
        self.hub = _join_hub(client, self.inbox)

    def __iter__(self):
        return self._events()

    def _events(self):
        yield f"retry: {RECONNECT_MS}\n: connected\n\n"
        started = last = time.monotonic()
        inbox = self.inbox
        held: set[int] = set()  # conversations changed since the last list event, while it is held back
        list_at = 0.0  # when the next list event may go out
        try:
            while time.monotonic() - started < self.lifetime:
                wait = min(1.0, self.heartbeat)
                if held:
                    wait = max(0.0, min(wait, list_at - time.monotonic()))
                changed, escalated, queue = inbox.take(wait)
                if inbox.failed:
                    return
                now = time.monotonic()
                events = events_for(changed, escalated, self.conversation_id, queue)
                if changed:
                    events = [event for event in events if event[0] != "conversations"]
                    held |= changed
                if held and now >= list_at:
                    events.insert(0, ("conversations", str(len(held))))
                    held = set()
                    list_at = inbox.list_at = now + self.list_every
                if events:
                    last = now
                    yield "".join(format_event(name, data) for name, data in events)
                elif now - last >= self.heartbeat:
                    last = now
                    yield ": keep-alive\n\n"
        finally:
            self.close()

    def close(self) -> None:
        self.hub.leave(self.inbox)


def stream(conversation_id: int | None = None, app: Flask | None = None) -> EventStream:
    """A subscribed event stream for one page (the conversation page passes its id)."""
    app = app or current_app._get_current_object()
    return EventStream(
        get_redis(app),
        conversation_id=conversation_id,
        heartbeat=float(app.config.get("LIVE_HEARTBEAT_SECONDS") or HEARTBEAT_SECONDS),
        lifetime=float(app.config.get("LIVE_STREAM_SECONDS") or STREAM_SECONDS),
        list_every=float(app.config.get("LIVE_LIST_EVENT_SECONDS", LIST_EVENT_SECONDS)),
    )
