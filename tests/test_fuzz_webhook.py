"""Property tests (hypothesis) for everything a stranger can POST: the SalesIQ bot and event webhooks,
the Desk webhook and the sign-in form never answer 500, machine endpoints always answer JSON, and a 200
from the bot webhook is always a well-formed SalesIQ bot response. Random conversations never make the
bot fail (no `bot_error` hand-over) and every accepted customer line is stored.

Each test builds its app once (the `app` fixture) and runs its examples against it, so state carries
over between examples as it does in production; the function-scoped-fixture health check is off for
that reason. The example database is off too: nothing is written into the working tree.
"""
from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from acebuddy.extensions import db
from acebuddy.knowledge.importer import import_directory
from acebuddy.models import Conversation, ConversationEvent, Message, TicketRequest
from tests.helpers import load_directory, make_user

DEMO_KB = Path(__file__).parent.parent / "acebuddy" / "demo_data" / "kb"

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large],
)
ACTIONS = {"reply", "forward", "end"}
_ids = itertools.count(1)

# Any code point, including what JSON can carry but no database stores: NUL and lone UTF-16 surrogates
# (a "\\ud800" escape), plus byte-order marks and bidi controls.
ANY_CHAR = st.characters(exclude_categories=[]) | st.sampled_from("\x00\ud800\udfff\ufeff\u202e")


def text(min_size=0, max_size=None):
    # st.text() never yields surrogates, even from an alphabet that has them: join a list instead.
    return st.text(min_size=min_size, max_size=max_size) | st.lists(
        ANY_CHAR, min_size=min_size, max_size=max_size).map("".join)


# JSON values of every type, nested a little.
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text(max_size=60)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(text(max_size=12), inner, max_size=4), max_leaves=12)
# Identifier-like strings SalesIQ would send, and strings that are almost identifiers.
id_like = st.integers(0, 3).flatmap(
    lambda n: text(max_size=130) if n == 0 else st.from_regex(r"\A[A-Za-z0-9_.:@+#-]{1,40}\Z"))


# Arrays nested deeper than the json module follows (its RecursionError), up to past the size limits.
deep_nesting = st.integers(1, 200_000).map(lambda n: b"[" * n + b"]" * n)


_MISSING = object()


def maybe(strategy):
    """Mostly a plausible value; else any JSON value at all, or the key left out (`_MISSING`, dropped
    by `_drop_missing`). Weighted so that a fair share of bodies get past parsing into the bot."""
    return st.integers(0, 7).flatmap(lambda n: json_values if n == 0 else st.just(_MISSING) if n == 1 else strategy)


def _drop_missing(value):
    """Leave out the keys drawn as missing, at every depth."""
    if isinstance(value, dict):
        return {k: _drop_missing(v) for k, v in value.items() if v is not _MISSING}
    if isinstance(value, list):
        return [_drop_missing(v) for v in value if v is not _MISSING]
    return value


@st.composite
def zobot_bodies(draw):
    visitor = _drop_missing({
        "active_conversation_id": draw(maybe(id_like)),
        "id": draw(maybe(id_like)),
        "name": draw(maybe(text(max_size=250))),
        "email": draw(maybe(st.emails() | text(max_size=40))),
        "phone": draw(maybe(st.text(alphabet="0123456789 +-()", max_size=45))),
        "channel": draw(maybe(st.sampled_from(["Website", "WhatsApp", "Facebook"]))),
    })
    message = draw(maybe(st.fixed_dictionaries(
        {"text": maybe(text(max_size=300))},
        optional={"meta": maybe(st.fixed_dictionaries({"version": st.just("1"),
                                                       "card_data": json_values}))})))
    return _drop_missing({
        "handler": draw(maybe(st.sampled_from(["message", "trigger", "context", "failure", "MESSAGE"]))),
        "operation": draw(maybe(st.sampled_from(["chat", "message", "rechat"]))),
        "org_id": draw(maybe(text(max_size=20))),
        "message": message,
        "visitor": draw(st.one_of(st.just(visitor), json_values, st.just(_MISSING))),
        "request": draw(maybe(st.fixed_dictionaries({"id": maybe(id_like)}).map(_drop_missing))),
        "attachments": draw(maybe(st.lists(json_values, max_size=2))),
        "answers": draw(maybe(st.dictionaries(text(max_size=10), json_values, max_size=3) | text(max_size=40))),
        "context_id": draw(maybe(text(max_size=100))),
    })


@st.composite
def flat_bodies(draw):
    body = _drop_missing({
        "chat_id": draw(maybe(id_like)),
        "visitor_id": draw(maybe(id_like)),
        "visitor_email": draw(maybe(st.emails())),
        "visitor_name": draw(maybe(text(max_size=100) | text(min_size=195, max_size=205))),
        "visitor_phone": draw(maybe(st.text(alphabet="0123456789 +-()", max_size=42))),
        "message": draw(maybe(text(min_size=1, max_size=300))),
        "message_id": draw(maybe(id_like)),
    })
    if draw(st.booleans()) and draw(st.booleans()):
        body[draw(text(max_size=10))] = draw(json_values)  # an unknown field
    return body


def assert_json(response):
    event(f"HTTP {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code < 500, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/json", (response.status_code, response.mimetype)
    return json.loads(response.get_data(as_text=True))


def assert_bot_response(response):
    body = assert_json(response)
    if response.status_code != 200:
        assert isinstance(body.get("error"), str) and body["error"], body
        return body
    assert body.get("action") in ACTIONS, body
    assert isinstance(body.get("replies"), list), body
    for reply in body["replies"]:
        assert isinstance(reply, str) or (isinstance(reply, dict) and isinstance(reply.get("text", ""), str)), body
    assert not ("input" in body and "suggestions" in body), body
    if "suggestions" in body:
        assert isinstance(body["suggestions"], list) and all(isinstance(s, str) for s in body["suggestions"]), body
    if "input" in body:
        assert isinstance(body["input"], dict) and isinstance(body["input"].get("type"), str), body
    return body


def no_bot_errors(app) -> None:
    with app.app_context():
        failures = db.session.scalars(select(ConversationEvent.conversation_id).where(
            ConversationEvent.kind == "escalated", ConversationEvent.detail == "bot_error")).all()
    assert failures == [], f"the bot failed on conversations {failures}"


def post_json(client, path, body):
    return client.post(path, data=json.dumps(body), content_type="application/json")


@pytest.fixture
def directory(app):
    with app.app_context():
        load_directory()


@pytest.fixture
def knowledge(app):
    with app.app_context():
        assert not import_directory(DEMO_KB).errors


@FUZZ
@given(body=json_values)
def test_any_json_value_gets_json_and_never_500(app, client, body):
    assert_bot_response(post_json(client, "/webhook/salesiq", body))


@FUZZ
@given(body=zobot_bodies())
def test_zobot_shaped_bodies_with_random_field_types(app, client, directory, body):
    assert_bot_response(post_json(client, "/webhook/salesiq", body))
    no_bot_errors(app)


@FUZZ
@given(body=flat_bodies())
def test_flat_form_bodies(app, client, directory, body):
    assert_bot_response(post_json(client, "/webhook/salesiq", body))
    no_bot_errors(app)


@FUZZ
@given(raw=st.binary(max_size=2000) | st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass"))
       | deep_nesting,
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                     "multipart/form-data; boundary=x", "application/json; charset=latin-1"]),
       path=st.sampled_from(["/webhook/salesiq", "/webhook/salesiq/events", "/webhook/desk?token="]))
def test_random_bytes(app, client, raw, content_type, path):
    if path.endswith("token="):
        path += app.config["DESK_WEBHOOK_TOKEN"]
    response = client.post(path, data=raw, content_type=content_type)
    if path == "/webhook/salesiq":
        assert_bot_response(response)
    else:
        assert_json(response)


@st.composite
def event_bodies(draw):
    conversation = draw(st.sampled_from(["fz-events-1", "fz-events-2"]) | id_like)
    message = _drop_missing({
        "text": draw(maybe(text(max_size=200))),
        "msgid": draw(maybe(id_like)),
        "sender": draw(maybe(st.fixed_dictionaries({"type": st.sampled_from(["visitor", "operator"])}))),
    })
    entity = _drop_missing({"id": draw(maybe(st.just(conversation))), "message": draw(maybe(st.just(message))),
                            "conversation_id": draw(maybe(id_like))})
    return _drop_missing({
        "event": draw(maybe(st.sampled_from(["conversation.visitor.replied", "conversation.operator.replied",
                                             "conversation.completed", "conversation.transfer",
                                             "conversation.rated"]))),
        "entity_id": draw(maybe(st.just(conversation))),
        "entity": draw(st.one_of(st.just(entity), json_values, st.just(_MISSING))),
        "event_time": draw(maybe(st.integers(min_value=0).map(str))),
        "attempt": draw(maybe(st.integers(1, 5))),
    })


@FUZZ
@given(body=event_bodies() | json_values)
def test_salesiq_events(app, client, body):
    with app.app_context():
        if not db.session.scalar(select(func.count(Conversation.id))):
            for key in ("fz-events-1", "fz-events-2"):  # two chats the events can land on
                assert_bot_response(post_json(client, "/webhook/salesiq", {
                    "handler": "message", "message": {"text": "talk to a person"}, "request": {"id": f"r-{key}"},
                    "visitor": {"active_conversation_id": key, "email": "john@company.com"}}))
    assert_json(post_json(client, "/webhook/salesiq/events", body))


@st.composite
def desk_event_lists(draw, ticket_ids, refs):
    def payload():
        return st.fixed_dictionaries({}, optional={
            "id": maybe(st.sampled_from(ticket_ids) | id_like),
            "statusType": maybe(st.sampled_from(["Open", "On Hold", "Closed"])),
            "closedTime": maybe(st.sampled_from(["2026-06-11T16:12:11.000Z", "", "yesterday"])
                                | st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())),
            # mostly distinct, so that events are not all dropped as repeats
            "modifiedTime": maybe(st.datetimes().map(lambda d: d.isoformat() + "Z") | text(max_size=30)),
            "status": maybe(st.sampled_from(["Open", "On Hold", "Closed", "Escalated"]) | text(max_size=50)),
            "webUrl": maybe(text(max_size=80)),
            "cf": maybe(st.fixed_dictionaries({"cf_acebuddy_ref": maybe(st.sampled_from(refs) | text(max_size=20))})),
        }).map(_drop_missing)

    event = st.fixed_dictionaries({}, optional={
        "eventType": maybe(st.sampled_from(["Ticket_Add", "Ticket_Update", "Contact_Add"])),
        "payload": st.one_of(payload(), json_values),
        "eventTime": maybe(text(max_size=30)),
        "prevState": json_values,
    }).map(_drop_missing)
    return _drop_missing(draw(st.lists(event, max_size=4) | event | json_values))


@pytest.fixture
def desk_tickets(app):
    """Two ticket requests already created in Desk, so events can match them by id or by ref."""
    from tests.helpers import request_tickets

    ids = request_tickets(app, 2)
    with app.app_context():
        rows = [db.session.get(TicketRequest, i) for i in ids]
        for number, row in enumerate(rows, 101):
            row.state, row.desk_ticket_id, row.desk_ticket_number = "created", f"18920000004{number}", str(number)
        db.session.commit()
        return [r.desk_ticket_id for r in rows], [r.ref for r in rows]


@FUZZ
@given(data=st.data())
def test_desk_webhook(app, client, desk_tickets, data):
    token = app.config["DESK_WEBHOOK_TOKEN"]
    body = data.draw(desk_event_lists(*desk_tickets))
    assert_json(post_json(client, f"/webhook/desk?token={token}", body))
    raw = data.draw(st.binary(max_size=300))
    assert_json(client.post(f"/webhook/desk?token={token}", data=raw, content_type="application/json"))
    wrong = data.draw(st.text(max_size=40))
    response = post_json(client, f"/webhook/desk?token={wrong}", body)
    assert_json(response)
    assert response.status_code == 403 or wrong == token


def _script_lines() -> list[str]:
    """Everything the conversation tests' customers say, and the buttons they press: a vocabulary that
    walks deep into the workflows, mixed below with arbitrary text."""
    lines = set()
    for path in (Path(__file__).parent / "conversations").glob("*.yaml"):
        script = yaml.safe_load(path.read_text(encoding="utf-8"))
        for turn in script["turns"]:
            lines.add(str(turn["customer"]))
            lines.update(str(s) for s in turn.get("suggestions", []))
    return sorted(lines)


SCRIPT_LINES = _script_lines()
# Knowledge questions, the answers to "Did this help?", off-topic and goodbye.
OTHER_LINES = ["how long do you keep my backups for?", "how do I map a printer", "Yes", "No",
               "what's the weather like in paris tomorrow", "thanks, bye", "talk to a person"]
chat_lines = st.one_of(
    st.sampled_from(SCRIPT_LINES), st.sampled_from(SCRIPT_LINES), st.sampled_from(OTHER_LINES), text(max_size=80),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=1, max_size=4500),
)


@settings(FUZZ, max_examples=80)
@given(lines=st.lists(chat_lines, min_size=1, max_size=10), zobot=st.booleans())
def test_random_conversations_never_crash_the_bot(app, client, directory, knowledge, lines, zobot):
    key = f"fz-chat-{next(_ids)}"
    accepted = 0
    for number, line in enumerate(lines):
        if zobot:
            body = {"handler": "message", "operation": "chat" if number == 0 else "message",
                    "message": {"text": line}, "request": {"id": f"{key}-{number}"},
                    "visitor": {"active_conversation_id": key, "name": "John Doe", "email": "john@company.com",
                                "phone": "555-010-1234"}}
        else:
            body = {"chat_id": key, "visitor_id": "v1", "visitor_email": "john@company.com",
                    "visitor_name": "John Doe", "message": line, "message_id": str(number)}
        response = post_json(client, "/webhook/salesiq", body)
        assert_bot_response(response)
        accepted += response.status_code == 200
        if response.status_code != 200:  # only an empty line (after control characters go) is refused
            assert not re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", "", line).strip(), response.get_json()
    no_bot_errors(app)
    with app.app_context():
        stored = db.session.scalar(select(func.count(Message.id)).join(Conversation).where(
            Conversation.salesiq_id == key, Message.role == "customer"))
        kinds = db.session.scalars(select(ConversationEvent.kind).join(Conversation).where(
            Conversation.salesiq_id == key)).all()
    for kind in {"workflow_started", "verified", "verification_failed", "ticket_requested", "escalated",
                 "workflow_switched", "reprompts_exhausted", "kb_answer", "closed"} & set(kinds):
        event(f"reached {kind}")
    assert stored == accepted


@pytest.fixture
def login_page(app, client):
    with app.app_context():
        make_user()
    # The throttle would answer 429 after a few failures and skip the password check; fuzz the full path.
    app.config.update(LOGIN_MAX_FAILURES=10**6, LOGIN_MAX_FAILURES_PER_IP=10**6)
    return {"token": csrf_token(client)}


def csrf_token(client) -> str:
    page = client.get("/auth/login").get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


huge_unicode = st.text(min_size=200, max_size=3000) | st.text(alphabet=st.characters(codec="utf-8"), max_size=300)
login_emails = st.one_of(st.just("agent@acebuddy.example"), st.emails(), st.text(max_size=60), huge_unicode,
                         st.emails().map(lambda e: e.upper()), st.just(""))
login_passwords = st.one_of(st.just("agent-password-1"), st.text(max_size=60), huge_unicode, st.just(""))


@settings(FUZZ, max_examples=100)
@given(email=login_emails, password=login_passwords, extra=st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=2))
def test_sign_in_form_never_fails(app, client, login_page, email, password, extra):
    form = {**extra, "email": email, "password": password, "csrf_token": login_page["token"]}
    response = client.post("/auth/login", data=form)
    event(f"HTTP {response.status_code}")
    assert response.status_code in (200, 302, 400, 413), response.status_code
    if response.status_code == 302:  # signed in: only with the real password; sign out for the next example
        assert email.strip().lower() == "agent@acebuddy.example" and password == "agent-password-1"
        assert client.post("/auth/logout", data={"csrf_token": login_page["token"]}).status_code == 302
        login_page["token"] = csrf_token(client)
