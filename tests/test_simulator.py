"""The customer chat simulator: what it sends to the webhook (exact Zobot JSON over real HTTP, signed
when a key is set), how it shows the bot's answers, errors and REST follow-ups."""
import json
import re
import socket
import threading
import time
from urllib.parse import urlsplit

import pytest
from flask import Flask, jsonify, request
from werkzeug.serving import make_server

from acebuddy.config import SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, SANDBOX_REFRESH_TOKEN, SANDBOX_SALESIQ_SCREEN
from tests import helpers
from acebuddy.salesiq import signature
from acebuddy.sandbox.salesiq import get_store

HX = {"HX-Request": "true"}


class Capture:
    """A stand-in webhook on a real HTTP port: records raw requests, answers from a queue."""

    def __init__(self):
        self.calls = []
        self.answers = []
        self.lock = threading.Lock()
        app = Flask("capture")

        @app.post("/webhook")
        @app.post("/events")
        def receive():
            with self.lock:
                self.calls.append({"path": request.path, "headers": dict(request.headers), "raw": request.get_data()})
                answer = self.answers.pop(0) if self.answers and request.path == "/webhook" else None
            if request.path == "/events":
                return "", 200
            if answer is None:
                return jsonify(action="reply", replies=["(no answer queued)"])
            if answer.get("sleep"):
                time.sleep(answer["sleep"])
            if "text" in answer:
                return answer["text"], answer.get("status", 200), {"Content-Type": "text/plain"}
            return jsonify(answer["json"]), answer.get("status", 200)

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = make_server("127.0.0.1", port, app, threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, body=None, *, status=200, text=None, sleep=0):
        answer = {"status": status, "sleep": sleep}
        if text is not None:
            answer["text"] = text
        else:
            answer["json"] = body
        self.answers.append(answer)

    def webhook_calls(self):
        return [c for c in self.calls if c["path"] == "/webhook"]

    def event_calls(self):
        return [c for c in self.calls if c["path"] == "/events"]

    def payloads(self):
        return [json.loads(c["raw"]) for c in self.webhook_calls()]


@pytest.fixture(scope="module")
def capture_server():
    server = Capture()
    yield server
    server.server.shutdown()


@pytest.fixture
def capture(capture_server, app):
    capture_server.calls.clear()
    capture_server.answers.clear()
    app.config["SIMULATOR_WEBHOOK_URL"] = capture_server.url + "/webhook"
    app.config["SIMULATOR_EVENTS_URL"] = capture_server.url + "/events"
    app.config["SIMULATOR_WEBHOOK_TIMEOUT"] = 2.0
    return capture_server


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)


def _meta_csrf(html: str) -> str:
    """The token htmx sends as X-CSRFToken: the page's meta tag (fragments carry it in their forms)."""
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    return found.group(1) if found else _csrf(html)


def sign_in(app, client):
    """An agent signed in through the real sign-in form."""
    with app.app_context():
        helpers.make_user()
    assert helpers.sign_in(client).status_code == 302
    return client


@pytest.fixture
def signed_in(app, client):
    return sign_in(app, client)


def _start(client, **fields):
    page = client.get("/simulator/").get_data(as_text=True)
    data = {"csrf_token": _csrf(page), "name": "John Doe", "email": "john.doe@acme-accounting.example",
            "phone": "+1 555 010 1234", **fields}
    response = client.post("/simulator/chats", data=data)
    assert response.status_code == 303, response.get_data(as_text=True)
    conversation_id = urlsplit(response.headers["Location"]).path.rsplit("/", 1)[1]
    return conversation_id, client.get(f"/simulator/chats/{conversation_id}").get_data(as_text=True)


def _send(client, conversation_id, page, text, **extra):
    response = client.post(f"/simulator/chats/{conversation_id}/messages",
                           data={"text": text, **extra}, headers={**HX, "X-CSRFToken": _meta_csrf(page)})
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_simulator_requires_sign_in(client):
    response = client.get("/simulator/")
    assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


def test_start_form_is_prefilled_with_the_demo_customer(signed_in):
    page = signed_in.get("/simulator/").get_data(as_text=True)
    for value in ("John Doe", "john.doe@acme-accounting.example", "+1 555 010 1234"):
        assert f'value="{value}"' in page
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)  # no inline script: the CSP forbids it
    assert " style=" not in page and "<style" not in page


def test_start_without_csrf_token_is_refused(signed_in, capture):
    response = signed_in.post("/simulator/chats", data={"name": "John Doe"})
    assert response.status_code == 400
    assert capture.calls == []


def test_start_with_invalid_email_rerenders_the_form(signed_in, capture):
    page = signed_in.get("/simulator/").get_data(as_text=True)
    response = signed_in.post("/simulator/chats", data={"csrf_token": _csrf(page), "name": "John", "email": "nope"})
    assert response.status_code == 200 and "field-error" in response.get_data(as_text=True)
    assert capture.calls == []


def test_a_chat_sends_the_exact_zobot_sequence(app, signed_in, capture):
    capture.answer({"action": "reply", "replies": ["Hi, I'm AceBuddy."], "suggestions": ["Reset my password", "Server is slow"]})
    capture.answer({"action": "reply", "replies": ["What is your e-mail?"],
                    "input": {"type": "email", "placeholder": "name@company.com", "error": ["Please enter a valid e-mail address"]}})
    capture.answer({"action": "reply", "replies": [{"text": "Thanks, checking."}, "Which server?"],
                    "input": {"type": "select", "options": ["ACC-SRV-01", "ACC-SRV-02"]}})
    capture.answer({"action": "reply", "replies": ["Noted."]})
    capture.answer({"action": "reply", "replies": ["Anything else?"]})

    conversation_id, page = _start(signed_in)
    assert conversation_id.isdigit() and len(conversation_id) >= 14
    assert "Hi, I&#39;m AceBuddy." in page
    assert 'name="text" value="Reset my password"' in page and 'name="text" value="Server is slow"' in page
    assert 'placeholder="Type your message"' not in page  # SalesIQ hides the text box under suggestions

    page = _send(signed_in, conversation_id, page, "Reset my password")
    assert 'type="email" name="text" placeholder="name@company.com"' in page
    page = _send(signed_in, conversation_id, page, "john.doe@acme-accounting.example", card="email")
    assert 'name="text" value="ACC-SRV-01"' in page and "Thanks, checking." in page
    page = _send(signed_in, conversation_id, page, "ACC-SRV-02", card="select")
    _send(signed_in, conversation_id, page, "also my printer")

    trigger, first, second, third, fourth = capture.payloads()
    visitor = trigger["visitor"]
    assert trigger == {"handler": "trigger", "visitor": visitor, "org_id": trigger["org_id"], "request": trigger["request"]}
    assert visitor["active_conversation_id"] == conversation_id
    assert (visitor["name"], visitor["email"], visitor["phone"], visitor["channel"]) == (
        "John Doe", "john.doe@acme-accounting.example", "+1 555 010 1234", "Website")
    assert isinstance(trigger["org_id"], str) and trigger["org_id"]

    assert set(first) == {"handler", "operation", "message", "visitor", "org_id", "request", "attachments"}
    assert (first["handler"], first["operation"], first["message"], first["attachments"]) == (
        "message", "chat", {"text": "Reset my password"}, [])
    assert first["visitor"]["active_conversation_id"] == conversation_id
    assert first["visitor"]["question"] == "Reset my password"
    assert first["org_id"] == trigger["org_id"] and first["visitor"]["id"] == visitor["id"]

    assert (second["operation"], second["message"]) == ("message", {
        "text": "john.doe@acme-accounting.example",
        "meta": {"version": "1", "card_data": {"type": "email", "value": "john.doe@acme-accounting.example"}}})
    assert third["message"]["meta"]["card_data"] == {"type": "select", "value": "ACC-SRV-02"}
    assert (fourth["operation"], fourth["message"]) == ("message", {"text": "also my printer"})

    ids = [p["request"]["id"] for p in (trigger, first, second, third, fourth)]
    assert len(set(ids)) == 5 and all(ids)
    for call in capture.webhook_calls():
        assert call["headers"]["Content-Type"].startswith("application/json")
        assert "X-Siqsignature" not in call["headers"]  # no key configured: unsigned, as SalesIQ without "secure"

    lines = [(m.sender_type, m.text) for m in get_store(app).messages(conversation_id) if not m.internal]
    assert lines == [
        ("bot", "Hi, I'm AceBuddy."), ("visitor", "Reset my password"), ("bot", "What is your e-mail?"),
        ("visitor", "john.doe@acme-accounting.example"), ("bot", "Thanks, checking."), ("bot", "Which server?"),
        ("visitor", "ACC-SRV-02"), ("bot", "Noted."), ("visitor", "also my printer"), ("bot", "Anything else?"),
    ]


def test_typed_card_is_checked_before_sending(signed_in, capture):
    capture.answer({"action": "reply", "replies": ["Your phone?"],
                    "input": {"type": "tel", "placeholder": "Phone number", "error": ["Please enter a valid phone number"]}})
    conversation_id, page = _start(signed_in)
    assert 'type="tel" name="text" placeholder="Phone number"' in page
    page = _send(signed_in, conversation_id, page, "call me maybe", card="tel")
    assert "Please enter a valid phone number" in page
    assert len(capture.webhook_calls()) == 1  # only the trigger went out
    _send(signed_in, conversation_id, page, "+1 555 010 1234", card="tel")
    assert capture.payloads()[1]["message"]["meta"]["card_data"] == {"type": "tel", "value": "+1 555 010 1234"}


def test_requests_are_signed_when_a_private_key_is_set(app, signed_in, capture):
    private, public = signature.generate_key_pair()
    _, other_public = signature.generate_key_pair()
    app.config["SALESIQ_SANDBOX_PRIVATE_KEY"] = private
    capture.answer({"action": "reply", "replies": ["Hello"]})
    conversation_id, page = _start(signed_in)
    _send(signed_in, conversation_id, page, "My RDP session keeps dropping")

    calls = capture.webhook_calls()
    assert len(calls) == 2
    for call in calls:
        header = call["headers"]["X-Siqsignature"]
        assert signature.verify(call["raw"], header, [public])
        assert not signature.verify(call["raw"], header, [other_public])
        assert not signature.verify(call["raw"] + b" ", header, [public])


def test_forward_hands_over_and_later_lines_become_events(app, signed_in, capture):
    capture.answer({"action": "reply", "replies": ["Hi"]})
    capture.answer({"action": "forward", "department": "3465000000005", "replies": ["Connecting you with an operator now."]})
    conversation_id, page = _start(signed_in)
    page = _send(signed_in, conversation_id, page, "I want a person")
    assert "Connecting you with an operator now." in page
    assert "You are being connected to a person" in page and "handed the chat over" in page
    assert "the bot no longer answers" in page

    _send(signed_in, conversation_id, page, "Hello? Anyone?")
    assert len(capture.webhook_calls()) == 2  # the bot hears nothing after a forward
    [event_call] = capture.event_calls()
    event = json.loads(event_call["raw"])
    assert event["event"] == "conversation.visitor.replied" and event["entity_id"] == conversation_id
    assert event["entity"]["message"]["text"] == "Hello? Anyone?"
    assert event["entity"]["message"]["sender"]["type"] == "visitor"
    assert get_store(app).get(conversation_id).forwarded["department"] == "3465000000005"


@pytest.mark.parametrize(
    ("answer", "shown"),
    [
        ({"status": 500, "text": "boom"}, "Webhook error: HTTP 500"),
        ({"status": 400, "json": {"error": "message.text is empty"}}, "Webhook error: HTTP 400: message.text is empty"),
        ({"status": 200, "text": "<html>not json</html>"}, "the answer is not a JSON object"),
        ({"status": 200, "json": {"replies": ["no action"]}}, "unknown or missing action"),
        ({"status": 200, "json": {"action": "reply", "replies": "not a list"}}, "replies must be a list"),
        ({"status": 200, "json": {"action": "reply", "replies": ["x"]}, "sleep": 1.0}, "no answer within 0.3 s"),
    ],
)
def test_webhook_failures_show_as_system_lines(app, signed_in, capture, answer, shown):
    app.config["SIMULATOR_WEBHOOK_TIMEOUT"] = 0.3
    capture.answers.append(answer)
    conversation_id, page = _start(signed_in)
    assert shown in page
    assert "bubble system" in page
    notes = [m.text for m in get_store(app).messages(conversation_id) if m.internal]
    assert any(shown in n for n in notes)


def test_unreachable_webhook_is_a_system_line(app, signed_in):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app.config["SIMULATOR_WEBHOOK_URL"] = f"http://127.0.0.1:{port}/webhook/salesiq"
    _, page = _start(signed_in)
    assert "Webhook error: could not reach" in page


def test_bot_text_is_escaped(signed_in, capture):
    capture.answer({"action": "reply", "replies": ['<script>alert("x")</script>', {"text": "<b>bold</b>", "image": "javascript:alert(1)"}]})
    _, page = _start(signed_in)
    assert '<script>alert("x")</script>' not in page and "&lt;script&gt;" in page
    assert "<b>bold</b>" not in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "javascript:" not in page


def test_rest_follow_ups_appear_in_the_polled_transcript(app, signed_in, capture):
    capture.answer({"action": "reply", "replies": ["Filing your ticket."]})
    conversation_id, page = _start(signed_in)
    store = get_store(app)
    version = store.version(conversation_id)
    url = f"/simulator/chats/{conversation_id}/transcript"
    assert signed_in.get(url, query_string={"v": version, "s": "open-bot"}, headers=HX).status_code == 204

    token = signed_in.post("/sandbox/accounts/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET, "refresh_token": SANDBOX_REFRESH_TOKEN}).get_json()["access_token"]
    posted = signed_in.post(f"/sandbox/salesiq/api/v2/{SANDBOX_SALESIQ_SCREEN}/conversations/{conversation_id}/messages",
                            json={"text": "Your ticket #1042 is open."}, headers={"Authorization": f"Zoho-oauthtoken {token}"})
    assert posted.get_json()["data"]

    response = signed_in.get(url, query_string={"v": version, "s": "open-bot"}, headers=HX)
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith("{#") is False and 'id="simulator_transcript"' in fragment
    assert "Your ticket #1042 is open." in fragment and 'hx-trigger="every 1s"' in fragment
    assert "HX-Trigger" not in response.headers

    signed_in.put(f"/sandbox/salesiq/api/v2/{SANDBOX_SALESIQ_SCREEN}/conversations/{conversation_id}/close",
                  headers={"Authorization": f"Zoho-oauthtoken {token}"})
    response = signed_in.get(url, query_string={"v": version, "s": "open-bot"}, headers=HX)
    assert response.headers["HX-Trigger"] == "simulator-state-changed"
    assert 'hx-trigger="every 1s"' not in response.get_data(as_text=True)  # polling stops once ended
    composer = signed_in.get(f"/simulator/chats/{conversation_id}/composer").get_data(as_text=True)
    assert "This chat has ended." in composer


def test_end_action_and_visitor_end(app, signed_in, capture):
    capture.answer({"action": "end", "replies": ["Goodbye!"]})
    conversation_id, page = _start(signed_in)
    assert "Goodbye!" in page and "This chat has ended." in page
    assert not get_store(app).get(conversation_id).is_open

    capture.answer({"action": "reply", "replies": ["Hi"]})
    conversation_id, page = _start(signed_in)
    response = signed_in.post(f"/simulator/chats/{conversation_id}/end", headers={**HX, "X-CSRFToken": _meta_csrf(page)})
    assert "This chat has ended." in response.get_data(as_text=True)
    assert get_store(app).get(conversation_id).closed_by == "visitor"
    [event_call] = capture.event_calls()
    assert json.loads(event_call["raw"])["event"] == "conversation.completed"


def test_unknown_chat_is_404(signed_in):
    assert signed_in.get("/simulator/chats/123").status_code == 404
