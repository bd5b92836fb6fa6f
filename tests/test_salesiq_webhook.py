"""The SalesIQ webhook contract: HEAD, each handler, the flat form, malformed bodies, signatures,
repeated deliveries and the size limit (specs/salesiq-webhook.md §10)."""
import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy import func, select

from acebuddy.extensions import db
from acebuddy.models import Conversation, Message, WebhookDelivery
from tests.helpers import flat_message, post_raw, zobot_message, zobot_trigger


def assert_bot_response(body: dict):
    assert body["action"] in ("reply", "forward", "end")
    assert isinstance(body["replies"], list)
    assert not ("input" in body and "suggestions" in body)


def test_head_answers_200_with_empty_body(client):
    response = client.head("/webhook/salesiq")
    assert response.status_code == 200
    assert response.get_data() == b""


def test_trigger_greets_with_common_requests(client):
    response = client.post("/webhook/salesiq", json=zobot_trigger("9001"))
    body = response.get_json()
    assert response.status_code == 200
    assert_bot_response(body)
    assert body["action"] == "reply" and body["replies"]
    assert "Reset my password" in body["suggestions"] and "Talk to a person" in body["suggestions"]


def test_trigger_without_conversation_id_still_greets(client):
    response = client.post("/webhook/salesiq", json={"handler": "trigger", "visitor": {}})
    assert response.status_code == 200
    assert response.get_json()["replies"]


@pytest.mark.parametrize("operation", ["chat", "message"])
def test_message_operations_store_the_customer_line(app, client, operation):
    body = zobot_message("Talk to a person", "9002", operation=operation)
    response = client.post("/webhook/salesiq", json=body)
    assert response.status_code == 200
    assert_bot_response(response.get_json())
    with app.app_context():
        conv = db.session.scalar(select(Conversation).where(Conversation.salesiq_id == "9002"))
        assert conv.visitor_name == "John Doe" and conv.channel == "Website"
        roles = [m.role for m in conv.messages]
        assert roles[0] == "customer" and "bot" in roles
        assert all(m.created_at is not None for m in conv.messages)


def test_missing_optional_visitor_fields_are_fine(client):
    body = {"handler": "message", "message": {"text": "Talk to a person"}, "visitor": {"active_conversation_id": "9003"}}
    response = client.post("/webhook/salesiq", json=body)
    assert response.status_code == 200


def test_context_and_unknown_handlers_get_a_valid_reply(client):
    for body in (
        {"handler": "context", "context_id": "x", "answers": {"name": {"text": "Ana"}},
         "visitor": {"active_conversation_id": "9004"}},
        {"handler": "failed", "visitor": {"active_conversation_id": "9004"}, "cause": {"code": 1007}},
        {"handler": "something-new"},
    ):
        response = client.post("/webhook/salesiq", json=body)
        assert response.status_code == 200, body
        assert_bot_response(response.get_json())


def test_flat_form_of_the_flow_diagrams(app, client):
    response = client.post("/webhook/salesiq", json=flat_message("Talk to a person", chat_id="chat_123"))
    assert response.status_code == 200
    body = response.get_json()
    assert_bot_response(body)
    with app.app_context():
        conv = db.session.scalar(select(Conversation).where(Conversation.salesiq_id == "chat_123"))
        assert conv.source == "flat" and conv.visitor_email == "john@company.com" and conv.visitor_id == "visitor_456"


def _good_zobot():
    return zobot_message("hello", "9100")


MALFORMED = [
    b"",
    b"not json",
    b"\xff\xfe{",
    b"[]",
    b"null",
    b"42",
    b'"a string"',
    b"[" * 5000,
    {"foo": "bar"},
    {"handler": ""},
    {"handler": 5},
    {"handler": None},
    {"handler": "message"},
    {"handler": "message", "message": {"text": "hi"}},
    {**_good_zobot(), "message": 5},
    {**_good_zobot(), "message": {"text": ["a"]}},
    {**_good_zobot(), "message": {"text": None}},
    {**_good_zobot(), "message": {"text": "   "}},
    {**_good_zobot(), "message": {"text": "hi", "meta": "x"}},
    {**_good_zobot(), "visitor": "someone"},
    {**_good_zobot(), "visitor": [1, 2]},
    {**_good_zobot(), "visitor": {"active_conversation_id": {"a": 1}}},
    {**_good_zobot(), "visitor": {"active_conversation_id": "has spaces/and slashes"}},
    {**_good_zobot(), "visitor": {"active_conversation_id": "1", "email": ["x"]}},
    {**_good_zobot(), "visitor": {"active_conversation_id": "1", "name": "x" * 300}},
    {**_good_zobot(), "visitor": {"active_conversation_id": "1", "phone": 1.5}},
    {**_good_zobot(), "request": "abc"},
    {**_good_zobot(), "request": {"id": {"x": 1}}},
    {**_good_zobot(), "operation": 5},
    {**_good_zobot(), "attachments": "file"},
    {"handler": "context", "answers": 5, "visitor": {"active_conversation_id": "1"}},
    {"chat_id": "c1"},
    {"chat_id": "", "message": "hi"},
    {"chat_id": "c1", "message": 5},
    {"chat_id": "c1", "message": ""},
    {"chat_id": "c1", "message": "hi", "extra": 1},
    {"chat_id": ["x"], "message": "hi"},
    {"chat_id": True, "message": "hi"},
    {"chat_id": "c1", "message": "hi", "visitor_email": {"a": 1}},
    {"chat_id": "c1", "message": "hi", "message_id": {"x": 1}},
    b'{"chat_id": NaN, "message": "hi"}',
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_malformed_bodies_get_400_with_a_json_error(app, client, body):
    response = post_raw(client, body)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert isinstance(error, str) and error
    with app.app_context():
        assert db.session.scalar(select(func.count(Message.id))) == 0


def test_wrong_content_type_and_method(client):
    assert client.get("/webhook/salesiq").status_code == 405
    response = client.post("/webhook/salesiq", data="handler=message", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400 and "error" in response.get_json()


def test_oversized_body_is_refused_with_413(client, app):
    body = zobot_message("x" * (app.config["WEBHOOK_MAX_BYTES"] + 10), "9200")
    response = post_raw(client, body)
    assert response.status_code == 413
    assert "error" in response.get_json()


def test_long_text_within_the_limit_is_cut_not_refused(app, client):
    response = post_raw(client, zobot_message("y" * 20000, "9201"))
    assert response.status_code == 200
    with app.app_context():
        stored = db.session.scalar(select(Message).where(Message.role == "customer"))
        assert len(stored.text) == 4000


def test_repeated_zobot_delivery_has_no_second_effect(app, client):
    body = zobot_message("Talk to a person", "9300", request_id="dup-1")
    first = client.post("/webhook/salesiq", json=body)
    second = client.post("/webhook/salesiq", json=body)
    assert first.status_code == second.status_code == 200
    assert first.get_json() == second.get_json()
    with app.app_context():
        assert db.session.scalar(select(func.count(Message.id)).where(Message.role == "customer")) == 1
        assert db.session.scalar(select(func.count(WebhookDelivery.id))) == 1


def _at_once(n: int, send):
    """`send(i)` from n threads released together; the answers in order."""
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait()
        return send(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_a_delivery_repeated_at_the_same_moment_has_one_effect_and_one_answer(live_server):
    """SalesIQ retries while the first try is still running: every try gets the same answer and the
    conversation gets the customer's line once (the loser's turn is rolled back whole)."""
    url = f"{live_server.url}/webhook/salesiq"
    requests.post(url, json=zobot_message("hello", "9400"), timeout=10)
    body = zobot_message("Talk to a person", "9400", request_id="dup-race")
    answers = _at_once(6, lambda i: requests.post(url, json=body, timeout=10))
    assert [a.status_code for a in answers] == [200] * 6
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    with live_server.app.app_context():
        lines = db.session.scalars(select(Message.text).where(Message.role == "customer").order_by(Message.id)).all()
        assert lines == ["hello", "Talk to a person"]
        assert db.session.scalar(select(func.count(WebhookDelivery.id))) == 2


def test_a_new_chat_whose_first_lines_arrive_together_is_one_conversation(live_server):
    url = f"{live_server.url}/webhook/salesiq"
    answers = _at_once(5, lambda i: requests.post(url, json=zobot_message(f"line {i}", "9500"), timeout=10))
    assert [a.status_code for a in answers] == [200] * 5
    with live_server.app.app_context():
        assert db.session.scalar(select(func.count(Conversation.id))) == 1
        texts = db.session.scalars(select(Message.text).where(Message.role == "customer")).all()
        assert sorted(texts) == [f"line {i}" for i in range(5)]


@pytest.mark.parametrize("line", ["hello there", "Talk to a person"])
def test_a_new_chat_opened_by_another_line_during_the_turn_is_answered_on_that_conversation(app, client, monkeypatch,
                                                                                           line):
    """A new chat's conversation goes in at the turn's end (or mid-turn, when an escalation needs its id):
    when another line of the same chat opened it meanwhile, the turn's INSERT loses on the open key, and
    the turn runs again, once, on the winner's conversation: one conversation, every line stored once, a
    normal answer."""
    from acebuddy.bot import engine

    respond, raced = engine.respond, []

    def respond_after_a_rival_opened_the_chat(conv, text):
        if not raced:
            raced.append(text)
            with db.engine.begin() as other:  # another web thread's committed turn
                other.execute(Conversation.__table__.insert().values(
                    salesiq_id="9600", open_key="9600", source="zobot", status="bot", data={}, state={},
                    verification="none", verify_failures=0, message_count=0,
                    last_message_at=conv.last_message_at, created_at=conv.last_message_at,
                    updated_at=conv.last_message_at))
        return respond(conv, text)

    monkeypatch.setattr(engine, "respond", respond_after_a_rival_opened_the_chat)
    answer = client.post("/webhook/salesiq", json=zobot_message(line, "9600"))
    assert answer.status_code == 200
    assert_bot_response(answer.get_json())
    assert raced == [line]
    with app.app_context():
        convs = db.session.scalars(select(Conversation)).all()
        assert [c.salesiq_id for c in convs] == ["9600"]
        if line == "Talk to a person":  # asked for, not the hand-over of a failed bot turn
            assert (convs[0].status, convs[0].escalation_reason) == ("escalated", "the customer asked for a person")
        else:
            assert convs[0].status == "bot"
        lines = db.session.scalars(select(Message.text).where(Message.role == "customer")).all()
        assert lines == [line]
        assert db.session.scalar(select(func.count(WebhookDelivery.id))) == 1


def test_a_new_chats_bot_turn_failing_on_a_constraint_hands_over_without_a_500(app, client, monkeypatch):
    """Only a lost race for the chat's open key runs a turn again: any other IntegrityError in a new
    chat's bot turn is the bot failing, and the chat is handed to a person with the line stored."""
    from sqlalchemy.exc import IntegrityError

    from acebuddy.bot import engine

    def respond_breaking_a_constraint(conv, text):
        raise IntegrityError("INSERT ...", {}, Exception("a constraint the bot broke"))

    monkeypatch.setattr(engine, "respond", respond_breaking_a_constraint)
    answer = client.post("/webhook/salesiq", json=zobot_message("hello there", "9700"))
    assert answer.status_code == 200
    assert answer.get_json()["action"] == "forward"
    with app.app_context():
        conv = db.session.scalars(select(Conversation)).one()
        assert (conv.status, conv.escalation_reason) == ("escalated", "the bot hit an error")
        assert db.session.scalars(select(Message.text).where(Message.role == "customer")).all() == ["hello there"]


def test_repeated_flat_delivery_has_no_second_effect(app, client):
    body = flat_message("Talk to a person", chat_id="chat_dup", message_id="m-1")
    first = client.post("/webhook/salesiq", json=body).get_json()
    second = client.post("/webhook/salesiq", json=body).get_json()
    assert first == second
    other = client.post("/webhook/salesiq", json=flat_message("hello", chat_id="chat_dup", message_id="m-2"))
    assert other.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(func.count(Message.id)).where(Message.role == "customer")) == 2


def test_same_message_id_in_another_chat_is_a_new_message(app, client):
    client.post("/webhook/salesiq", json=flat_message("hello", chat_id="chat_a", message_id="m-1"))
    client.post("/webhook/salesiq", json=flat_message("hello", chat_id="chat_b", message_id="m-1"))
    with app.app_context():
        assert db.session.scalar(select(func.count(Message.id)).where(Message.role == "customer")) == 2


@pytest.fixture(scope="module")
def keys():
    pairs = [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(3)]
    pems = [
        k.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        for k in pairs
    ]
    return pairs, pems


def _sign(private_key, raw: bytes) -> str:
    return base64.b64encode(private_key.sign(raw, padding.PKCS1v15(), hashes.SHA256())).decode()


@pytest.fixture
def signed_client(app, keys):
    _, pems = keys
    app.config["SALESIQ_PUBLIC_KEYS"] = pems[:2]  # rotation: two keys configured
    return app.test_client()


def test_valid_signature_with_either_rotated_key_is_accepted(signed_client, keys):
    privates, _ = keys
    for n, key in enumerate(privates[:2]):
        raw = json.dumps(zobot_message("hello", f"sig-{n}")).encode()
        response = post_raw(signed_client, raw, {"x-siqsignature": _sign(key, raw)})
        assert response.status_code == 200


@pytest.mark.parametrize("case", ["missing", "garbage", "not-base64", "other-key", "tampered", "empty"])
def test_bad_signatures_get_401(signed_client, keys, case):
    privates, _ = keys
    raw = json.dumps(zobot_message("hello", "sig-bad")).encode()
    headers = {
        "missing": {},
        "garbage": {"x-siqsignature": base64.b64encode(b"x" * 256).decode()},
        "not-base64": {"x-siqsignature": "%%%not base64%%%"},
        "other-key": {"x-siqsignature": _sign(privates[2], raw)},
        "tampered": {"x-siqsignature": _sign(privates[0], raw + b" ")},
        "empty": {"x-siqsignature": ""},
    }[case]
    response = post_raw(signed_client, raw, headers)
    assert response.status_code == 401
    assert "error" in response.get_json()


def test_signature_is_checked_before_parsing(signed_client, keys):
    privates, _ = keys
    assert post_raw(signed_client, b"not json").status_code == 401
    response = post_raw(signed_client, b"not json", {"x-siqsignature": _sign(privates[0], b"not json")})
    assert response.status_code == 400


def test_reply_never_mixes_input_and_suggestions(client):
    chat_id = "9400"
    for text in ("hi", "Reset my password", "john.doe", "Talk to a person"):
        body = client.post("/webhook/salesiq", json=zobot_message(text, chat_id)).get_json()
        assert_bot_response(body)
