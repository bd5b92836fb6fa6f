"""The SalesIQ REST client, over real HTTP against the SalesIQ and Zoho Accounts sandboxes."""
import pytest
import requests

from acebuddy.config import SANDBOX_SALESIQ_DEPARTMENT_ID, SANDBOX_SALESIQ_SCREEN
from acebuddy.desk.errors import AuthError, PermanentError, RetryableError
from acebuddy.salesiq.client import ChatMessage, SalesIQClient, salesiq_client
from acebuddy.sandbox.accounts import accounts_sandbox, expire_tokens
from acebuddy.sandbox.salesiq import get_store

API_PATH = f"/sandbox/salesiq/api/v2/{SANDBOX_SALESIQ_SCREEN}"
VISITOR = {"name": "John Doe", "email": "john.doe@acme-accounting.example", "phone": "+1 555 010 1234"}


class RecordingSession(requests.Session):
    def __init__(self):
        super().__init__()
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        return super().request(method, url, **kwargs)


@pytest.fixture
def sandbox(live_server):
    return get_store(live_server.app)


@pytest.fixture
def client(live_server):
    with live_server.app.app_context():
        yield salesiq_client()


def _api_calls(store):
    return store.requests(path_contains="/v2/")


def test_post_message_sends_token_path_and_json(live_server, sandbox, client):
    conversation = sandbox.open_conversation(VISITOR)
    message = client.post_message(conversation.id, "Your ticket number is #1042.")

    assert isinstance(message, ChatMessage)
    assert message.text == "Your ticket number is #1042." and message.sender_type == "operator"
    [call] = _api_calls(sandbox)
    assert call.method == "POST"
    assert call.path == f"{API_PATH}/conversations/{conversation.id}/messages"
    assert call.body == {"text": "Your ticket number is #1042."}
    assert call.headers["Content-Type"] == "application/json"
    scheme, token = call.headers["Authorization"].split(" ", 1)
    assert scheme == "Zoho-oauthtoken" and accounts_sandbox(live_server.app).is_valid(token)
    lines = sandbox.messages(conversation.id)
    assert [(m.sender_type, m.text, m.via) for m in lines] == [("operator", "Your ticket number is #1042.", "rest")]


def test_post_to_visitor_reaches_their_latest_open_chat(sandbox, client):
    older = sandbox.open_conversation({**VISITOR, "email": "jo+billing@acme-accounting.example"})
    newer = sandbox.open_conversation({**VISITOR, "email": "jo+billing@acme-accounting.example"})
    client.post_to_visitor("jo+billing@acme-accounting.example", "Following up on your chat.")

    [call] = _api_calls(sandbox)
    assert call.method == "POST"
    assert call.path == f"{API_PATH}/visitors/jo+billing@acme-accounting.example/messages"
    assert call.body == {"text": "Following up on your chat."}
    assert [m.text for m in sandbox.messages(newer.id)] == ["Following up on your chat."]
    assert sandbox.messages(older.id) == []


def test_transfer_is_a_put_with_department_operator_and_note(sandbox, client):
    conversation = sandbox.open_conversation(VISITOR)
    data = client.transfer(conversation.id, SANDBOX_SALESIQ_DEPARTMENT_ID, operator_id="3465000000013", note="Server down")

    [call] = _api_calls(sandbox)
    assert call.method == "PUT"
    assert call.path == f"{API_PATH}/conversations/{conversation.id}/transfer"
    assert call.body == {"department_id": SANDBOX_SALESIQ_DEPARTMENT_ID, "operator_id": "3465000000013", "note": "Server down"}
    assert data["id"] == conversation.id and data["department"]["id"] == SANDBOX_SALESIQ_DEPARTMENT_ID
    stored = sandbox.get(conversation.id)
    assert stored.handed_over and stored.transfers[0]["note"] == "Server down"

    with pytest.raises(PermanentError) as caught:
        client.transfer(conversation.id, "999")
    assert caught.value.code == "1025" and not caught.value.retryable
    assert len(sandbox.get(conversation.id).transfers) == 1


def test_close_uses_put_and_ends_the_chat(sandbox, client):
    conversation = sandbox.open_conversation(VISITOR)
    data = client.close(conversation.id)

    [call] = _api_calls(sandbox)
    assert call.method == "PUT" and call.path == f"{API_PATH}/conversations/{conversation.id}/close"
    assert data["chat_status"]["status_code"] == 2 and "end_time" in data
    assert not sandbox.get(conversation.id).is_open
    with pytest.raises(PermanentError) as caught:  # a closed chat takes no more messages
        client.post_message(conversation.id, "Hello?")
    assert caught.value.code == "1019"


def test_list_messages_returns_the_visible_transcript_in_order(sandbox, client):
    conversation = sandbox.open_conversation(VISITOR)
    sandbox.add_message(conversation.id, "visitor", "My server is down")
    sandbox.add_message(conversation.id, "bot", "Which server?")
    sandbox.note(conversation.id, "simulator-only line")
    client.post_message(conversation.id, "An engineer is on it.")

    lines = client.list_messages(conversation.id)
    assert [(m.sender_type, m.text) for m in lines] == [
        ("visitor", "My server is down"), ("bot", "Which server?"), ("operator", "An engineer is on it."),
    ]
    assert all(m.time and m.id for m in lines)
    assert [m.text for m in client.list_messages(conversation.id, limit=1)] == ["My server is down"]
    assert _api_calls(sandbox)[-1].method == "GET"


def test_expired_token_is_refreshed_once_and_the_call_retried(live_server, sandbox, client):
    conversation = sandbox.open_conversation(VISITOR)
    client.post_message(conversation.id, "first")
    expire_tokens(live_server.app)

    client.post_message(conversation.id, "second")

    calls = _api_calls(sandbox)
    assert [c.body["text"] for c in calls] == ["first", "second", "second"]
    tokens = [c.headers["Authorization"] for c in calls]
    assert tokens[0] == tokens[1] != tokens[2]
    assert accounts_sandbox(live_server.app).minted == 2
    assert [m.text for m in sandbox.messages(conversation.id)] == ["first", "second"]


def test_token_refused_twice_is_an_auth_error(sandbox, client):
    conversation = sandbox.open_conversation(VISITOR)
    sandbox.fail_next(2, code=1008)
    with pytest.raises(AuthError) as caught:
        client.post_message(conversation.id, "hello")
    assert caught.value.code == "1008"
    assert len(_api_calls(sandbox)) == 2  # one retry, no more
    assert sandbox.messages(conversation.id) == []


def test_http_200_with_error_body_raises_typed_error(sandbox, client):
    conversation = sandbox.open_conversation(VISITOR)
    cases = [(1023, RetryableError, True), (1009, PermanentError, False), (1016, PermanentError, False),
             (1025, PermanentError, False), (1099, PermanentError, False)]
    for code, error_type, retryable in cases:
        sandbox.fail_next(1, code=code)
        with pytest.raises(error_type) as caught:
            client.post_message(conversation.id, "hello")
        assert caught.value.code == str(code) and caught.value.status == 200
        assert caught.value.retryable is retryable
        assert not isinstance(caught.value, AuthError)
        if code == 1023:  # rate limit or IP lock: come back later
            assert caught.value.retry_after and caught.value.retry_after > 0
    assert len(_api_calls(sandbox)) == len(cases)  # none of these is worth a token refresh
    assert sandbox.messages(conversation.id) == []


def test_server_error_is_retryable(sandbox, client):
    conversation = sandbox.open_conversation(VISITOR)
    sandbox.fail_next(1, status=503)
    with pytest.raises(RetryableError) as caught:
        client.post_message(conversation.id, "hello")
    assert caught.value.status == 503
    client.post_message(conversation.id, "hello")  # the fault was for one call only
    assert [m.text for m in sandbox.messages(conversation.id)] == ["hello"]


def test_unknown_conversation_and_wrong_screen_are_permanent(client):
    with pytest.raises(PermanentError) as caught:
        client.post_message("346500009999999", "hello")
    assert caught.value.code == "1019"
    wrong = SalesIQClient(client.base_url.replace(SANDBOX_SALESIQ_SCREEN, "someone-else"), client.tokens)
    with pytest.raises(PermanentError) as caught:
        wrong.list_messages("1")
    assert caught.value.code == "1005"


def test_every_call_has_the_configured_timeout_and_a_slow_post_is_outcome_unknown(live_server, sandbox):
    session = RecordingSession()
    with live_server.app.app_context():
        client = salesiq_client(session=session)
    client.timeout = 0.3
    conversation = sandbox.open_conversation(VISITOR)
    client.list_messages(conversation.id)
    sandbox.set_latency(1.0)
    try:
        with pytest.raises(RetryableError) as caught:
            client.post_message(conversation.id, "slow")
    finally:
        sandbox.set_latency(0)
    assert caught.value.outcome_unknown is True
    assert [kwargs["timeout"] for _, _, kwargs in session.calls] == [0.3, 0.3]


def test_factory_uses_the_configured_url_and_timeout(app):
    app.config["SALESIQ_TIMEOUT"] = 4.5
    with app.app_context():
        client = salesiq_client()
    assert client.timeout == 4.5
    assert client.base_url == app.config["SALESIQ_API_URL"]
    assert client.base_url.endswith(API_PATH)
