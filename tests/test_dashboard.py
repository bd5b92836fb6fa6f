"""The agent dashboard over the Flask test client: the live list (status, workflow progress, verification,
priority, waiting time, ticket link), filters and search, the escalation queue and its alert, the
conversation page's regions, every action, and bad input answered with a message, never a 500."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask_login import login_user
from sqlalchemy import select

from acebuddy import clock
from acebuddy.extensions import csrf, db
from acebuddy.models import (
    AGENT,
    BOT,
    CLOSED,
    ESCALATED,
    Conversation,
    ConversationEvent,
    Message,
    Notification,
    TicketAttempt,
    TicketRequest,
    User,
)
from acebuddy.bot.workflows import WORKFLOWS
from tests.helpers import Chat

HX = {"HX-Request": "true"}


def make_agent(app, email="agent@acebuddy.example", role="agent", name="Alex Agent") -> int:
    """A dashboard user without a real password hash (hashing is slow; tests/test_auth.py covers it)."""
    with app.app_context():
        user = User(email=email, name=name, role=role, password_hash="!")
        db.session.add(user)
        db.session.commit()
        return user.id


def login_as(app, client, user_id: int):
    """Signs `user_id` in through Flask-Login's real session (a test-only route; call before other requests)."""
    if "test_login_as" not in app.view_functions:
        def test_login_as(user_id):
            login_user(db.session.get(User, user_id))
            return "signed in"

        app.add_url_rule("/_test/login/<int:user_id>", "test_login_as", test_login_as, methods=["POST"])
        csrf.exempt(test_login_as)
    assert client.post(f"/_test/login/{user_id}").status_code == 200
    return client


def csrf_token(client, url="/dashboard/") -> str:
    page = client.get(url).get_data(as_text=True)
    return re.search(r'<meta name="csrf-token" content="([^"]+)"', page).group(1)


def add_conversation(salesiq_id: str, **fields) -> Conversation:
    fields.setdefault("status", BOT)
    conv = Conversation(salesiq_id=salesiq_id, open_key=None if fields["status"] == CLOSED else salesiq_id,
                        data=fields.pop("data", {}), state=fields.pop("state", {}), **fields)
    db.session.add(conv)
    db.session.commit()
    return conv


def add_ticket(conv: Conversation, **fields) -> TicketRequest:
    defaults = dict(ref=f"AB-{conv.id:06d}", workflow=conv.workflow or "server_slowness", subject="Server Slowness - X",
                    description="d", priority=conv.priority or "High", due_at=clock.now() + timedelta(hours=2),
                    contact_name="X")
    defaults.update(fields)
    ticket = TicketRequest(conversation_id=conv.id, **defaults)
    db.session.add(ticket)
    db.session.commit()
    return ticket


@pytest.fixture
def agent(app, client):
    user_id = make_agent(app)
    login_as(app, client, user_id)
    return user_id


def list_row(page: str, conv_id: int) -> str:
    return re.search(rf'<tr id="conv-{conv_id}".*?</tr>', page, re.S).group(0)


def conv_by_chat(salesiq_id: str) -> Conversation:
    return db.session.scalar(
        select(Conversation).where(Conversation.salesiq_id == salesiq_id).order_by(Conversation.id.desc())
    )


# The list


def test_the_list_shows_what_an_agent_needs_per_conversation(app, client, agent):
    with app.app_context():
        conv = add_conversation("list-1", visitor_name="Dana Scully", visitor_email="dana@fbi.example",
                                workflow="password_reset", step="system", verification="pending", verify_failures=1,
                                priority="Medium")
        add_ticket(conv, desk_ticket_number="1042", desk_web_url="https://desk.zoho.com/support/t/1042", state="created")
        fox = add_conversation("list-2", visitor_name="Fox", status=ESCALATED,
                               escalated_at=clock.now() - timedelta(minutes=4))
        conv_id, fox_id = conv.id, fox.id
    page = client.get("/dashboard/").get_data(as_text=True)
    row = list_row(page, conv_id)
    assert "Dana Scully" in row and "dana@fbi.example" in row
    assert "With the bot" in row and "Password Reset" in row
    names = WORKFLOWS["password_reset"].step_names  # the identity check, then the questions
    k, n = names.index("system") + 1, len(names)
    assert f'<progress value="{k}" max="{n}">step {k} of {n}</progress>' in row
    assert "In progress · 1 attempt left" in row
    assert 'class="priority-Medium">Medium' in row
    assert '<a href="https://desk.zoho.com/support/t/1042" rel="noopener noreferrer" target="_blank">#1042</a>' in row
    escalated = list_row(page, fox_id)
    assert "Waiting for a person" in escalated and re.search(r'data-since="[^"]+">4 min</time>', escalated)


def test_a_ticket_link_that_is_not_http_is_shown_without_a_link(app, client, agent):
    with app.app_context():
        conv = add_conversation("list-js", visitor_name="Mallory")
        add_ticket(conv, desk_ticket_number="77", desk_web_url="javascript:alert(1)", state="created")
    page = client.get("/dashboard/").get_data(as_text=True)
    assert "#77" in page and "javascript:" not in page


def test_closed_conversations_are_left_out_unless_asked_for(app, client, agent):
    with app.app_context():
        add_conversation("open-1", visitor_name="Still Open")
        add_conversation("closed-1", visitor_name="Long Gone", status=CLOSED)
    assert "Long Gone" not in client.get("/dashboard/").get_data(as_text=True)
    closed = client.get("/dashboard/?status=closed").get_data(as_text=True)
    assert "Long Gone" in closed and "Still Open" not in closed
    both = client.get("/dashboard/?status=all").get_data(as_text=True)
    assert "Long Gone" in both and "Still Open" in both


@pytest.mark.parametrize("query, shown", [
    ("status=escalated", {"Waiting One"}),
    ("status=agent", {"Agent One"}),
    ("priority=high", {"High One"}),
    ("workflow=printer_issue", {"Printer One"}),
    ("q=scully", {"Dana Scully"}),
    ("q=DANA%40fbi", {"Dana Scully"}),
    ("q=%23555", {"Printer One"}),
    ("q=%25", set()),  # LIKE wildcards are searched for literally
    ("q=t_O", set()),  # unescaped, "_" would match "Agent One"
    ("q=john.doe", {"Agent One"}),
])
def test_filters_and_search(app, client, agent, query, shown):
    from acebuddy.models import Customer

    with app.app_context():
        add_conversation("f-1", visitor_name="Dana Scully", visitor_email="dana@fbi.example")
        add_conversation("f-2", visitor_name="Waiting One", status=ESCALATED, escalated_at=clock.now())
        customer = Customer(username="john.doe", email="john@company.com", name="John Doe")
        db.session.add(customer)
        db.session.commit()
        add_conversation("f-3", visitor_name="Agent One", status=AGENT, customer_id=customer.id)
        add_conversation("f-4", visitor_name="High One", priority="High")
        printer = add_conversation("f-5", visitor_name="Printer One", workflow="printer_issue", priority="Medium")
        add_ticket(printer, desk_ticket_number="5551", state="created")
    names = {"Dana Scully", "Waiting One", "John Doe", "Agent One", "High One", "Printer One"}
    page = client.get(f"/dashboard/?{query}", headers=HX).get_data(as_text=True)
    listed = {n for n in names if f">{n}</a>" in page}
    if "Agent One" in shown:  # a verified customer is shown by the directory's name
        shown = (shown - {"Agent One"}) | {"John Doe"}
    assert listed == shown


@pytest.mark.parametrize("query, note", [
    ("status=nonsense", "Unknown status filter"),
    ("priority=urgent", "Unknown priority"),
    ("workflow=%3Cscript%3E", "Unknown workflow"),
    ("q=" + "x" * 300, "cut to its first 100 characters"),
])
def test_bad_filters_are_ignored_with_a_message(app, client, agent, query, note):
    response = client.get(f"/dashboard/?{query}")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert note in page and "<script>" not in page


def test_one_url_two_shapes_with_vary(app, client, agent):
    page = client.get("/dashboard/")
    fragment = client.get("/dashboard/", headers=HX)
    assert "HX-Request" in page.headers["Vary"] and "HX-Request" in fragment.headers["Vary"]
    assert "<html" in page.get_data(as_text=True)
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and 'id="conversation_list"' in body
    restored = client.get("/dashboard/", headers={**HX, "HX-History-Restore-Request": "true"})
    assert "<html" in restored.get_data(as_text=True)


def test_the_page_listens_to_the_live_stream_and_polls_as_fallback(app, client, agent):
    page = client.get("/dashboard/").get_data(as_text=True)
    assert 'hx-ext="sse" sse-connect="/dashboard/events"' in page
    assert 'hx-trigger="sse:conversations, live-poll from:body"' in page
    assert "htmx-ext-sse-2.2.4.min.js" in page and 'hx-history="false"' in page
    assert "<script>" not in page and " style=" not in page and " on" + "click=" not in page


# The escalation queue and its alert


def test_the_queue_orders_by_priority_then_waiting_time(app, client, agent):
    now = clock.now()
    with app.app_context():
        add_conversation("q-1", visitor_name="Low Old", status=ESCALATED, priority="Low", escalated_at=now - timedelta(hours=1))
        add_conversation("q-2", visitor_name="High New", status=ESCALATED, priority="High", escalated_at=now - timedelta(minutes=1))
        add_conversation("q-3", visitor_name="High Old", status=ESCALATED, priority="High", escalated_at=now - timedelta(minutes=9))
        add_conversation("q-4", visitor_name="No Priority", status=ESCALATED, escalated_at=now - timedelta(hours=3))
        add_conversation("q-5", visitor_name="Medium", status=ESCALATED, priority="Medium", escalated_at=now)
        add_conversation("q-6", visitor_name="Not Waiting", status=AGENT, priority="High")
    page = client.get("/dashboard/queue", headers=HX).get_data(as_text=True)
    order = re.findall(r'>([A-Za-z ]+)</a></td>', page)
    assert order == ["High Old", "High New", "Medium", "Low Old", "No Priority"]


def test_the_queue_and_the_list_show_the_first_rows_and_say_so(app, client, agent, monkeypatch):
    from acebuddy.dashboard import queries

    monkeypatch.setattr(queries, "QUEUE_LIMIT", 3)
    monkeypatch.setattr(queries, "LIST_LIMIT", 4)
    now = clock.now()
    with app.app_context():
        for i in range(5):
            add_conversation(f"many-{i}", visitor_name=f"Waiting {i}", status=ESCALATED, priority="Medium",
                             escalated_at=now - timedelta(minutes=10 - i), last_message_at=now - timedelta(minutes=i))
    queue = client.get("/dashboard/queue", headers=HX).get_data(as_text=True)
    assert re.findall(r'>(Waiting \d)</a></td>', queue) == ["Waiting 0", "Waiting 1", "Waiting 2"]
    assert "Showing the first 3 of 5 waiting" in queue
    listed = client.get("/dashboard/", headers=HX).get_data(as_text=True)
    assert re.findall(r'>(Waiting \d)</a>', listed) == ["Waiting 0", "Waiting 1", "Waiting 2", "Waiting 3"]
    assert "Showing the 4 most recent" in listed


def test_a_new_escalation_is_shown_until_dismissed(app, client, agent):
    page = client.get("/dashboard/").get_data(as_text=True)
    seen = int(re.search(r'name="seen" value="(\d+)"', page).group(1))
    assert 'data-waiting="0"' in page and "New escalation" not in page
    assert f'data-latest="{seen}"' in page and 'data-alert-sound="/static/alert.wav"' in page

    Chat(client, "alert-1", name="Walter Skinner").say("talk to a person")
    alerts = client.get(f"/dashboard/alerts?seen={seen}", headers=HX).get_data(as_text=True)
    assert 'data-waiting="1"' in alerts and "New escalation" in alerts and "Walter Skinner" in alerts
    latest = int(re.search(r'data-latest="(\d+)"', alerts).group(1))
    assert latest > seen  # the page's script plays the chime when this grows

    again = client.get(f"/dashboard/alerts?seen={seen}", headers=HX).get_data(as_text=True)
    assert "New escalation" in again  # still shown on later refreshes
    dismissed = client.get(f"/dashboard/alerts?seen={latest}", headers=HX).get_data(as_text=True)
    assert "New escalation" not in dismissed and 'data-waiting="1"' in dismissed


def test_an_escalation_someone_took_is_no_longer_new(app, client, agent):
    Chat(client, "alert-2", name="Taken Customer").say("talk to a person")
    with app.app_context():
        conv = conv_by_chat("alert-2")
        conv.status = AGENT
        db.session.commit()
    alerts = client.get("/dashboard/alerts?seen=0", headers=HX).get_data(as_text=True)
    assert "New escalation" not in alerts and 'data-waiting="0"' in alerts


def test_the_alert_endpoint_takes_junk_markers(app, client, agent):
    for query in ("seen=abc", "seen=-3", "seen=99999999999999999999", "seen=%00"):
        assert client.get(f"/dashboard/alerts?{query}").status_code == 200


# The conversation page


def test_the_conversation_page_shows_transcript_data_ticket_and_timeline(app, client, agent):
    chat = Chat(client, "page-1", name="Sam Mask")
    chat.say("My server is slow")
    chat.say("ACME-RDS01 and my password is Hunter2!")
    with app.app_context():
        conv = conv_by_chat("page-1")
        ticket = add_ticket(conv, desk_ticket_number="2001", desk_web_url="https://desk.zoho.com/t/2001",
                            desk_status="On Hold", state="created")
        db.session.add(TicketAttempt(ticket_request_id=ticket.id, outcome="retryable", error="Desk answered 503"))
        db.session.add(Notification(key="n-1", kind="ticket_customer", channel="email", conversation_id=conv.id,
                                    ticket_request_id=ticket.id, recipient="sam@example.com", state="sent"))
        db.session.commit()
        conv_id = conv.id
    page = client.get(f"/dashboard/conversations/{conv_id}").get_data(as_text=True)
    assert "Hunter2" not in page
    assert "ACME-RDS01 and my password is ••••" in page  # transcript and collected answers, masked
    assert "<dt>Server</dt><dd>ACME-RDS01 and my password is ••••</dd>" in page
    names = WORKFLOWS["server_slowness"].step_names
    k, n = names.index("scope") + 1, len(names)
    assert f'<progress value="{k}" max="{n}">step {k} of {n}</progress>' in page
    assert '<a href="https://desk.zoho.com/t/2001" rel="noopener noreferrer" target="_blank">#2001</a>' in page
    assert "On Hold" in page
    timeline = client.get(f"/dashboard/conversations/{conv_id}/timeline").get_data(as_text=True)
    for kind in ("opened", "workflow_started", "step_answered", "ticket_attempt", "queued_email"):
        assert f'data-kind="{kind}"' in timeline
    assert "Desk answered 503" in timeline and "ticket_customer by email: sent" in timeline


def test_each_region_has_its_own_fragment(app, client, agent):
    Chat(client, "frag-1").say("talk to a person")
    with app.app_context():
        conv_id = conv_by_chat("frag-1").id
    for region, root in (("summary", "conversation_summary"), ("transcript", "transcript"),
                         ("timeline", "timeline"), ("actions", "conversation_actions")):
        body = client.get(f"/dashboard/conversations/{conv_id}/{region}", headers=HX).get_data(as_text=True)
        assert f'id="{root}"' in body and "<html" not in body


def test_the_actions_region_is_refetched_only_when_the_holder_changes(app, client, agent):
    Chat(client, "act-1").say("talk to a person")
    with app.app_context():
        conv_id = conv_by_chat("act-1").id
    url = f"/dashboard/conversations/{conv_id}/actions"
    assert client.get(f"{url}?s=escalated-0", headers=HX).status_code == 204
    changed = client.get(f"{url}?s=bot-0", headers=HX)
    assert changed.status_code == 200 and 'value="escalated-0"' in changed.get_data(as_text=True)


@pytest.mark.parametrize("path", ["", "/summary", "/transcript", "/timeline", "/actions"])
def test_an_unknown_conversation_is_a_404_page(app, client, agent, path):
    response = client.get(f"/dashboard/conversations/999{path}")
    assert response.status_code == 404 and "No such conversation." in response.get_data(as_text=True)


@pytest.mark.parametrize("action", ["claim", "takeover", "messages", "handback", "close"])
def test_an_action_on_an_unknown_conversation_is_a_404(app, client, agent, action):
    token = csrf_token(client)
    response = client.post(f"/dashboard/conversations/999/{action}", data={"csrf_token": token, "text": "hi"})
    assert response.status_code == 404


# Actions over HTTP


def _post(client, conv_id, action, token, hx=True, **data):
    headers = {**HX, "X-CSRFToken": token} if hx else {}
    return client.post(f"/dashboard/conversations/{conv_id}/{action}", data={"csrf_token": token, **data},
                       headers=headers)


def test_take_over_write_hand_back_and_close_over_htmx(app, client, agent):
    chat = Chat(client, "flow-1")
    chat.say("talk to a person")
    with app.app_context():
        conv_id = conv_by_chat("flow-1").id
    token = csrf_token(client)

    response = _post(client, conv_id, "takeover", token)
    body = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["HX-Trigger"] == "conversation-changed"
    assert "the bot stays silent" in body and 'name="text"' in body and 'value="agent-' in body

    response = _post(client, conv_id, "messages", token, text="Hi, I'm Alex. Let me check.")
    assert "Sent to the customer." in response.get_data(as_text=True)
    assert chat.say("thanks")["replies"] == []  # the bot is silent while an agent holds the chat
    transcript = client.get(f"/dashboard/conversations/{conv_id}/transcript").get_data(as_text=True)
    assert "Hi, I&#39;m Alex. Let me check." in transcript and 'data-delivery="pending"' in transcript

    response = _post(client, conv_id, "handback", token)
    assert "the bot answers the customer" in response.get_data(as_text=True)
    assert chat.say("Reset my password")["replies"]  # the bot answers again

    response = _post(client, conv_id, "close", token)
    assert "Conversation closed." in response.get_data(as_text=True)
    with app.app_context():
        conv = db.session.get(Conversation, conv_id)
        assert conv.status == CLOSED and conv.close_reason == "closed by an agent"
        kinds = [e.kind for e in db.session.scalars(select(ConversationEvent).where(
            ConversationEvent.conversation_id == conv_id))]
    assert kinds.count("taken_over") == kinds.count("handed_back") == kinds.count("agent_closed") == 1


def test_a_plain_form_post_redirects_with_the_outcome(app, client, agent):
    Chat(client, "plain-1").say("talk to a person")
    with app.app_context():
        conv_id = conv_by_chat("plain-1").id
    token = csrf_token(client)
    response = _post(client, conv_id, "claim", token, hx=False, next="/dashboard/queue")
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/queue"
    assert "You claimed this conversation." in client.get("/dashboard/queue").get_data(as_text=True)
    response = _post(client, conv_id, "claim", token, hx=False, next="https://evil.example/")
    assert response.headers["Location"] == f"/dashboard/conversations/{conv_id}"


@pytest.mark.parametrize("action, data, message", [
    ("messages", {"text": "hello"}, "Take over the conversation before writing to the customer."),
    ("messages", {"text": "   "}, "Type a message first."),
    ("messages", {}, "Type a message first."),
    ("handback", {}, "The bot already has this conversation."),
    ("claim", {}, "Only a conversation waiting for a person can be claimed."),
])
def test_a_refused_action_answers_with_a_message(app, client, agent, action, data, message):
    with app.app_context():
        conv_id = add_conversation("refuse-1").id
    token = csrf_token(client)
    response = _post(client, conv_id, action, token, **data)
    assert response.status_code == 200 and message in response.get_data(as_text=True)
    response = _post(client, conv_id, action, token, hx=False, **data)
    assert response.status_code == 303
    assert message.replace("'", "&#39;") in client.get(f"/dashboard/conversations/{conv_id}").get_data(as_text=True)


def test_a_too_long_message_is_refused_with_its_length(app, client, agent):
    with app.app_context():
        conv_id = add_conversation("long-1", status=AGENT, agent_id=agent).id
    token = csrf_token(client)
    body = _post(client, conv_id, "messages", token, text="x" * 2500).get_data(as_text=True)
    assert "too long (2500 characters; at most 2000)" in body
    with app.app_context():
        assert db.session.scalar(select(db.func.count(Message.id))) == 0


def test_actions_on_a_closed_conversation_are_refused(app, client, agent):
    with app.app_context():
        conv_id = add_conversation("gone-1", status=CLOSED).id
    token = csrf_token(client)
    for action in ("takeover", "close", "handback", "messages"):
        body = _post(client, conv_id, action, token, text="hi").get_data(as_text=True)
        assert "This conversation is closed" in body


def test_another_agents_chat_is_shown_as_theirs(app, client, agent):
    other = make_agent(app, email="other@acebuddy.example", name="Olivia Other")
    with app.app_context():
        conv_id = add_conversation("theirs-1", status=AGENT, agent_id=other).id
    body = client.get(f"/dashboard/conversations/{conv_id}/actions").get_data(as_text=True)
    assert "Olivia Other is handling this chat." in body and "Take over" not in body and "Close" not in body
    token = csrf_token(client)
    assert "Olivia Other is already handling" in _post(client, conv_id, "takeover", token).get_data(as_text=True)


# Sign-in and CSRF on every route


def _page_rules(app):
    """GET pages of the dashboard, manager and sandbox UIs (not the machine APIs)."""
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.split(".")[0]
        if "/api/" in rule.rule:
            continue
        if blueprint in ("dashboard", "manager", "simulator", "mailcatcher") or "manager" in rule.endpoint \
                or rule.endpoint == "sandbox_desk.tickets_page":
            yield rule


def _url(rule) -> str:
    values = {arg: 1 if rule._converters[arg].__class__.__name__ == "IntegerConverter" else "x" for arg in rule.arguments}
    return rule.build(values, append_unknown=False)[1]


def test_every_dashboard_page_requires_sign_in(app, client):
    rules = [r for r in _page_rules(app) if "GET" in r.methods]
    endpoints = {r.endpoint for r in rules}
    assert {"dashboard.index", "dashboard.queue", "dashboard.conversation", "dashboard.events"} <= endpoints
    for rule in rules:
        response = client.get(_url(rule))
        assert response.status_code == 302, rule.endpoint
        assert response.headers["Location"].startswith("/auth/login"), rule.endpoint
        fragment = client.get(_url(rule), headers=HX)
        assert fragment.status_code == 401 and fragment.headers["HX-Redirect"].startswith("/auth/login"), rule.endpoint


def test_signing_in_comes_back_to_the_page_asked_for(app, client):
    response = client.get("/dashboard/queue?x=1")
    assert response.headers["Location"] == "/auth/login?next=/dashboard/queue?x%3D1"


def test_every_post_needs_a_csrf_token(app, client, agent):
    with app.app_context():
        conv_id = add_conversation("csrf-1", status=ESCALATED).id
    rules = [r for r in app.url_map.iter_rules() if "POST" in r.methods and r.endpoint.split(".")[0] in
             ("dashboard", "auth", "manager", "simulator", "mailcatcher")]
    assert len([r for r in rules if r.endpoint.startswith("dashboard.")]) == 5
    for rule in rules:
        url = _url(rule).replace("/1/", f"/{conv_id}/")
        response = client.post(url, data={"text": "hi"}, headers=HX)
        assert response.status_code == 400, rule.endpoint
    with app.app_context():
        conv = db.session.get(Conversation, conv_id)
        assert conv.status == ESCALATED and conv.agent_id is None
    assert client.get("/dashboard/").status_code == 200  # the sign-out post was refused too


def test_junk_never_makes_a_500(app, client, agent):
    with app.app_context():
        conv_id = add_conversation("junk-1", status=AGENT, agent_id=agent).id
    token = csrf_token(client)
    for url in ("/dashboard/?status=%00&priority=%ff&workflow=&q=%25%5F%5C", "/dashboard/?q=" + "é" * 500,
                "/dashboard/events?conversation=abc", "/dashboard/conversations/abc",
                "/dashboard/conversations/-1", f"/dashboard/conversations/{conv_id}/actions?s=" + "x" * 5000,
                "/dashboard/conversations/99999999999999999999999"):
        response = client.get(url, headers=HX) if "events" not in url else None
        if response is not None:
            assert response.status_code < 500, url
    for text, shown in (("\x00\x01", "Type a message first."), ("a\x00b", "Sent to the customer."),
                        ("<script>", "Sent to the customer."), ("x" * 100000, "too long"),
                        ("😀" * 10, "Sent to the customer.")):
        response = _post(client, conv_id, "messages", token, text=text)
        assert response.status_code == 200 and shown in response.get_data(as_text=True), text[:10]
    with app.app_context():
        texts = [m.text for m in db.session.scalars(select(Message).where(Message.conversation_id == conv_id))]
    assert texts == ["ab", "<script>", "😀" * 10]
