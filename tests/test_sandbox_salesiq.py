"""The SalesIQ REST sandbox answers as SalesIQ does: HTTP 200 envelopes, documented error codes,
OAuth tokens from the accounts sandbox, and the fault hooks tests rely on."""
import threading
import time

import pytest

from acebuddy.config import (
    SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET,
    SANDBOX_REFRESH_TOKEN,
    SANDBOX_SALESIQ_DEPARTMENT_ID,
    SANDBOX_SALESIQ_SCREEN,
)
from acebuddy.sandbox.accounts import expire_tokens
from acebuddy.sandbox.salesiq import SalesIQSandbox, get_store

API = f"/sandbox/salesiq/api/v2/{SANDBOX_SALESIQ_SCREEN}"
VISITOR = {"name": "John Doe", "email": "john.doe@acme-accounting.example", "phone": "+1 555 010 1234"}


@pytest.fixture
def token(client):
    response = client.post("/sandbox/accounts/oauth/v2/token", data={
        "grant_type": "refresh_token", "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET, "refresh_token": SANDBOX_REFRESH_TOKEN,
    })
    return response.get_json()["access_token"]


@pytest.fixture(autouse=True)
def control_token(app, client):
    """Scripts drive the control endpoints with SANDBOX_CONTROL_TOKEN."""
    app.config["SANDBOX_CONTROL_TOKEN"] = "s3cret"
    client.environ_base["HTTP_X_SANDBOX_TOKEN"] = "s3cret"


def test_control_endpoints_refuse_strangers(app):
    assert app.test_client().get("/sandbox/salesiq/api/_control").status_code == 401


@pytest.fixture
def store(app):
    return get_store(app)


@pytest.fixture
def auth(token):
    return {"Authorization": f"Zoho-oauthtoken {token}"}


def _error(response):
    assert response.status_code == 200  # SalesIQ reports errors with HTTP 200
    body = response.get_json()
    assert set(body) == {"error"}
    return body["error"]


def test_store_is_attached_to_the_app(app, store):
    assert app.extensions["salesiq_sandbox"] is store and isinstance(store, SalesIQSandbox)


def test_post_message_answers_the_success_envelope(client, store, auth):
    conversation = store.open_conversation(VISITOR)
    response = client.post(f"{API}/conversations/{conversation.id}/messages", json={"text": "Ticket #1042 is open."}, headers=auth)

    assert response.status_code == 200
    body = response.get_json()
    assert set(body) == {"url", "object", "data"}
    assert body["url"] == f"/api/v2/{SANDBOX_SALESIQ_SCREEN}/conversations/{conversation.id}/messages"
    assert body["data"]["message"] == {"text": "Ticket #1042 is open."}
    assert body["data"]["sender"]["type"] == "operator"
    assert body["data"]["time"].isdigit()
    assert [(m.sender_type, m.text) for m in store.messages(conversation.id)] == [("operator", "Ticket #1042 is open.")]


def test_conversation_ids_look_like_salesiq_ids(store):
    ids = {store.open_conversation(VISITOR).id for _ in range(50)}
    assert len(ids) == 50
    assert all(i.isdigit() and len(i) == 17 for i in ids)


def test_missing_or_malformed_authorization_is_1002(client, store):
    conversation = store.open_conversation(VISITOR)
    url = f"{API}/conversations/{conversation.id}/messages"
    assert _error(client.post(url, json={"text": "x"}))["code"] == 1002
    assert _error(client.post(url, json={"text": "x"}, headers={"Authorization": "Bearer abc"}))["code"] == 1002
    assert store.messages(conversation.id) == []


def test_unknown_or_expired_token_is_1008(app, client, store, auth):
    conversation = store.open_conversation(VISITOR)
    url = f"{API}/conversations/{conversation.id}/messages"
    error = _error(client.post(url, json={"text": "x"}, headers={"Authorization": "Zoho-oauthtoken 1000.forged"}))
    assert error == {"code": 1008, "message": "Invalid OAuthToken."}
    assert client.post(url, json={"text": "ok"}, headers=auth).get_json()["data"]
    expire_tokens(app)
    assert _error(client.post(url, json={"text": "late"}, headers=auth))["code"] == 1008
    assert [m.text for m in store.messages(conversation.id)] == ["ok"]


def test_url_errors_use_salesiq_codes(client, store, auth):
    conversation = store.open_conversation(VISITOR)
    assert _error(client.get(f"/sandbox/salesiq/api/v2/other-portal/conversations/{conversation.id}/messages", headers=auth))["code"] == 1005
    assert _error(client.get(f"{API}/no/such/thing", headers=auth))["code"] == 1006
    assert _error(client.get(f"{API}/conversations/{conversation.id}/transfer", headers=auth))["code"] == 1004
    assert _error(client.post(f"{API}/conversations/99999/messages", json={"text": "x"}, headers=auth))["code"] == 1019


def test_bad_bodies_are_refused(client, store, auth):
    conversation = store.open_conversation(VISITOR)
    url = f"{API}/conversations/{conversation.id}/messages"
    assert _error(client.post(url, data="text=hi", headers=auth, content_type="application/x-www-form-urlencoded")) == {
        "code": 1054, "message": "Invalid header value", "header": "content-type"}
    assert _error(client.post(url, json={}, headers=auth))["json_key"] == "text"
    assert _error(client.post(url, json={"text": 5}, headers=auth))["code"] == 1007
    assert _error(client.post(url, json={"text": "   "}, headers=auth))["code"] == 1031
    assert store.messages(conversation.id) == []


def test_transfer_needs_known_department_and_operator(client, store, auth):
    conversation = store.open_conversation(VISITOR)
    url = f"{API}/conversations/{conversation.id}/transfer"
    assert _error(client.put(url, json={"note": "x"}, headers=auth)) ["json_key"] == "department_id"
    assert _error(client.put(url, json={"department_id": "1"}, headers=auth))["code"] == 1025
    assert _error(client.put(url, json={"department_id": SANDBOX_SALESIQ_DEPARTMENT_ID, "operator_id": "7"}, headers=auth))["code"] == 1024
    assert not store.get(conversation.id).transfers

    body = client.put(url, json={"department_id": SANDBOX_SALESIQ_DEPARTMENT_ID, "note": "VIP"}, headers=auth).get_json()
    assert body["object"] == "conversations" and body["data"]["department"]["id"] == SANDBOX_SALESIQ_DEPARTMENT_ID
    [transfer] = store.get(conversation.id).transfers
    assert transfer["department_id"] == SANDBOX_SALESIQ_DEPARTMENT_ID and transfer["note"] == "VIP"


@pytest.mark.parametrize("method", ["put", "post"])
def test_close_answers_the_closed_conversation(client, store, auth, method):
    conversation = store.open_conversation(VISITOR)
    store.add_message(conversation.id, "visitor", "Can you help me with my server?")
    response = getattr(client, method)(f"{API}/conversations/{conversation.id}/close", headers=auth)

    data = response.get_json()["data"]
    assert data["id"] == conversation.id and data["chat_status"]["status_code"] == 2
    assert data["question"] == "Can you help me with my server?" and data["end_time"].isdigit()
    closed = store.get(conversation.id)
    assert not closed.is_open and closed.closed_by == "api"
    error = _error(client.post(f"{API}/conversations/{conversation.id}/messages", json={"text": "x"}, headers=auth))
    assert error["code"] == 1019


def test_post_to_visitor_needs_an_open_chat(client, store, auth):
    url = f"{API}/visitors/nobody@example.com/messages"
    assert _error(client.post(url, json={"text": "x"}, headers=auth))["code"] == 1019
    conversation = store.open_conversation({**VISITOR, "email": "Nobody@Example.com"})
    assert client.post(url, json={"text": "found you"}, headers=auth).get_json()["data"]
    assert [m.text for m in store.messages(conversation.id)] == ["found you"]


def test_list_messages_hides_simulator_notes_and_pages(client, store, auth):
    conversation = store.open_conversation(VISITOR)
    first = store.add_message(conversation.id, "visitor", "one")
    store.add_message(conversation.id, "bot", "two")
    store.note(conversation.id, "webhook error")
    store.add_message(conversation.id, "operator", "three")
    url = f"{API}/conversations/{conversation.id}/messages"

    body = client.get(url, headers=auth).get_json()
    assert [m["message"]["text"] for m in body["data"]] == ["one", "two", "three"]
    assert [m["sender"]["type"] for m in body["data"]] == ["visitor", "bot", "operator"]
    assert body["more_data_available"] is False
    paged = client.get(url, query_string={"limit": 2}, headers=auth).get_json()
    assert len(paged["data"]) == 2 and paged["more_data_available"] is True
    later = client.get(url, query_string={"from_time": first.time}, headers=auth).get_json()
    assert "one" not in [m["message"]["text"] for m in later["data"]]
    assert _error(client.get(url, query_string={"limit": "lots"}, headers=auth))["code"] == 1007


def test_every_request_is_recorded_even_refused_ones(client, store, auth):
    conversation = store.open_conversation(VISITOR)
    client.post(f"{API}/conversations/{conversation.id}/messages", json={"text": "hi"}, headers=auth)
    client.put(f"{API}/conversations/{conversation.id}/transfer", json={"department_id": "1"})

    first, second = store.requests()
    assert (first.method, first.path, first.body) == ("POST", f"{API}/conversations/{conversation.id}/messages", {"text": "hi"})
    assert first.headers["Authorization"] == auth["Authorization"]
    assert (second.method, second.body) == ("PUT", {"department_id": "1"})
    assert "Authorization" not in second.headers
    listed = client.get("/sandbox/salesiq/api/_control/requests", query_string={"method": "PUT"}).get_json()["requests"]
    assert [r["path"] for r in listed] == [f"{API}/conversations/{conversation.id}/transfer"]


def test_fault_hooks_fail_the_next_calls_then_recover(client, store, auth):
    conversation = store.open_conversation(VISITOR)
    url = f"{API}/conversations/{conversation.id}/messages"
    store.fail_next(2, code=1023)
    store.fail_next(1, status=502)

    assert _error(client.post(url, json={"text": "a"}, headers=auth))["code"] == 1023
    assert _error(client.post(url, json={"text": "b"}, headers=auth))["code"] == 1023
    assert client.post(url, json={"text": "c"}, headers=auth).status_code == 502
    assert client.post(url, json={"text": "d"}, headers=auth).get_json()["data"]["message"]["text"] == "d"
    assert [m.text for m in store.messages(conversation.id)] == ["d"]
    assert len(store.requests()) == 4


def test_control_endpoint_sets_faults_and_latency(client, store, auth):
    conversation = store.open_conversation(VISITOR)
    url = f"{API}/conversations/{conversation.id}/messages"
    state = client.post("/sandbox/salesiq/api/_control", json={"fail": {"count": 1, "code": 1016}, "latency": 0.2}).get_json()
    assert state["latency"] == 0.2 and state["faults"][0]["code"] == 1016

    started = time.monotonic()
    assert _error(client.post(url, json={"text": "x"}, headers=auth))["code"] == 1016
    assert time.monotonic() - started >= 0.2

    client.post("/sandbox/salesiq/api/_control", json={"reset": True})
    assert client.get("/sandbox/salesiq/api/_control").get_json() | {"conversations": 0} == {
        "screen": SANDBOX_SALESIQ_SCREEN, "latency": 0.0, "faults": [], "requests": 0, "conversations": 0}
    assert client.post(url, json={"text": "y"}, headers=auth).get_json()["data"]
    assert client.post("/sandbox/salesiq/api/_control", json={"fail": {"code": 1, "status": 500}}).status_code == 400
    assert client.post("/sandbox/salesiq/api/_control", data="nope").status_code == 400


def test_control_shows_a_conversation_with_transfers_and_close(client, store):
    conversation = store.open_conversation(VISITOR)
    store.transfer(conversation.id, SANDBOX_SALESIQ_DEPARTMENT_ID, note="escalated")
    store.close(conversation.id, by="api")
    body = client.get(f"/sandbox/salesiq/api/_control/conversations/{conversation.id}").get_json()
    assert body["status"] == "closed" and body["transfers"][0]["note"] == "escalated"
    assert client.get("/sandbox/salesiq/api/_control/conversations/nope").status_code == 404


def test_delayed_end_closes_unless_the_visitor_writes(store):
    kept = store.open_conversation(VISITOR)
    ended = store.open_conversation(VISITOR)
    store.end_after(kept.id, 0.05)
    store.end_after(ended.id, 0.05)
    store.add_message(kept.id, "visitor", "wait, one more thing")
    time.sleep(0.1)
    assert store.get(kept.id).is_open
    closed = store.get(ended.id)
    assert not closed.is_open and closed.closed_by == "bot"


def test_store_is_safe_under_concurrent_writers():
    store = SalesIQSandbox()
    conversation = store.open_conversation(VISITOR)

    def write(n):
        for i in range(100):
            store.add_message(conversation.id, "operator", f"{n}-{i}")
            store.record("POST", "/x", {}, {"n": n}, {})

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = store.messages(conversation.id)
    assert len(lines) == 800 and len({m.id for m in lines}) == 800
    assert [m.time for m in lines] == sorted(m.time for m in lines)
    assert len(store.requests()) == 800
    assert store.get(conversation.id).version == 800
