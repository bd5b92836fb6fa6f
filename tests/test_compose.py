"""Knowledge answers composed by a language model, against a stand-in OpenAI-compatible server over real
HTTP on loopback: what is sent (and never sent), the fallbacks to the extract, and the chat replies."""
from __future__ import annotations

import json
import logging
import os
import threading
import time

import pytest
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from acebuddy.bot.redaction import MASK
from acebuddy.config import Config, ConfigError
from acebuddy.extensions import db
from acebuddy.knowledge import search
from acebuddy.knowledge.compose import ANSWER_CHARS, NOT_COVERED, compose_answer, mask_question
from acebuddy.knowledge.importer import import_directory
from tests.conftest import build_app
from tests.helpers import Chat

DEMO_KB = os.path.join(os.path.dirname(os.path.dirname(__file__)), "acebuddy", "demo_data", "kb")
BACKUP_QUESTION = "how long do you keep my backups for?"
MODEL_TEXT = "Nightly backups are kept for 30 days and daytime snapshots for a week."


class StandInModel:
    """A tiny /v1/chat/completions on loopback (werkzeug, threaded) that records what it receives.

    Set `answer` (the assistant's text), `status`, `body` (raw bytes instead of a completion),
    `delay` (seconds before answering) or `drip` (seconds spent trickling the body out)."""

    def __init__(self):
        self.received: list[dict] = []
        self.answer = MODEL_TEXT
        self.status = 200
        self.body: bytes | None = None
        self.delay = 0.0
        self.drip = 0.0
        self.finish_reason = "stop"
        self.release = threading.Event()  # set at teardown, so no handler outlives its test
        self._server = make_server("127.0.0.1", 0, self._app, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.port}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @Request.application
    def _app(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return Response("not found", status=404)
        self.received.append({"headers": dict(request.headers), "json": request.get_json(silent=True),
                              "raw": request.get_data(as_text=True)})
        if self.delay:
            self.release.wait(self.delay)
        if self.drip:
            return Response(self._trickle(), content_type="application/json")
        if self.body is not None:
            return Response(self.body, status=self.status, content_type="application/json")
        completion = {"id": "chatcmpl-1", "object": "chat.completion", "model": "stand-in",
                      "choices": [{"index": 0, "finish_reason": self.finish_reason,
                                   "message": {"role": "assistant", "content": self.answer}}]}
        return Response(json.dumps(completion), status=self.status, content_type="application/json")

    def _trickle(self):
        deadline = time.monotonic() + self.drip
        yield b'{"choices": ['
        while time.monotonic() < deadline and not self.release.wait(0.05):
            yield b" "
        yield b"]}"

    @property
    def last(self) -> dict:
        assert self.received, "the stand-in model received nothing"
        return self.received[-1]

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.release.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def model():
    server = StandInModel().start()
    yield server
    server.stop()


def _kb_app(tmp_path, redis_url, environ=None):
    app = build_app(tmp_path, redis_url, environ=environ or {})
    with app.app_context():
        result = import_directory(DEMO_KB)
        assert not result.errors and result.created > 10
    return app


@pytest.fixture
def make_app(tmp_path, redis_url, _external_schema, model):
    """An app with the demo knowledge base, composing with the stand-in model; keywords change the env."""
    apps = []

    def make(**environ):
        env = {"LLM_API_URL": model.url, "LLM_API_KEY": "sk-test-key", "LLM_MODEL": "acme-chat-small",
               "LLM_TIMEOUT": "2"}
        env.update({k: v for k, v in environ.items() if v is not None})
        for name in [k for k, v in environ.items() if v is None]:
            env.pop(name, None)
        app = _kb_app(tmp_path / f"app{len(apps)}", redis_url, env)
        apps.append(app)
        return app

    yield make
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def llm_app(make_app):
    return make_app()


def _hits(app, question=BACKUP_QUESTION, limit=1):
    with app.app_context():
        hits = search.search(question, limit)
    assert hits
    return hits


def _compose(app, question=BACKUP_QUESTION, hits=None, **kw):
    hits = hits or _hits(app)
    with app.app_context():
        return compose_answer(question, hits, **kw)


def test_the_request_is_an_openai_chat_completion_with_the_configured_model_and_key(llm_app, model):
    assert _compose(llm_app) == MODEL_TEXT
    sent = model.last
    assert sent["headers"]["Authorization"] == "Bearer sk-test-key"
    assert sent["headers"]["Content-Type"] == "application/json"
    body = sent["json"]
    assert body["model"] == "acme-chat-small"
    assert body["temperature"] == 0.2 and 0 < body["max_tokens"] <= 400
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert NOT_COVERED in body["messages"][0]["content"] and "only" in body["messages"][0]["content"]


def test_no_authorization_header_without_a_key(make_app, model):
    app = make_app(LLM_API_KEY=None)
    assert _compose(app) == MODEL_TEXT
    assert "Authorization" not in model.last["headers"]


def test_only_the_passages_and_the_question_are_sent(llm_app, model):
    hits = _hits(llm_app, limit=3)
    _compose(llm_app, hits=hits)
    user = model.last["json"]["messages"][1]["content"]
    assert user.rstrip().endswith(BACKUP_QUESTION)
    assert hits[0].title in user and hits[0].extract.splitlines()[-1] in user
    assert all(hit.title in user for hit in hits)
    # Nothing but the two messages: no user id, metadata or tools travel with them.
    assert set(model.last["json"]) == {"model", "messages", "temperature", "max_tokens"}
    assert len(model.last["raw"]) < 6000


def test_a_typed_password_card_email_and_phone_arrive_masked(llm_app, model):
    question = ("my password is Hunter2!x and my card 4111 1111 1111 1111 got charged, mail me at "
                "pat.lee@example.org or call +1 (555) 010-7788. how long do you keep my backups for?")
    _compose(llm_app, question=question)
    raw = model.last["raw"]
    for secret in ("Hunter2", "4111 1111 1111 1111", "pat.lee@example.org", "555", "7788"):
        assert secret not in raw
    user = model.last["json"]["messages"][1]["content"]
    assert MASK in user and "how long do you keep my backups for?" in user


def test_the_customers_own_name_is_masked_but_error_codes_and_dates_are_kept():
    masked = mask_question("Hi, I'm Pat Lee (pat). QuickBooks says H202 and error 0x80070005 since 2024-03-12",
                           identity=("Pat Lee", "pat@example.com", None))
    assert "Pat" not in masked and "Lee" not in masked and "pat" not in masked
    assert "H202" in masked and "0x80070005" in masked and "2024-03-12" in masked


def test_a_not_covered_answer_gives_none(llm_app, model):
    for answer in (NOT_COVERED, "Not covered.", "not covered by the passages", "  NOT COVERED  "):
        model.answer = answer
        assert _compose(llm_app) is None


def test_a_refusal_or_an_empty_answer_gives_none(llm_app, model):
    model.answer = ""
    assert _compose(llm_app) is None
    model.body = json.dumps({"choices": [{"finish_reason": "stop", "message": {
        "role": "assistant", "content": None, "refusal": "I can't help with that."}}]}).encode()
    assert _compose(llm_app) is None
    model.body = json.dumps({"choices": [{"finish_reason": "content_filter",
                                          "message": {"role": "assistant", "content": "Partial"}}]}).encode()
    assert _compose(llm_app) is None


@pytest.mark.parametrize("status, body", [
    (500, b'{"error": {"message": "overloaded"}}'),
    (401, b'{"error": {"message": "bad key"}}'),
    (200, b"<html>gateway says hello</html>"),
    (200, b'{"choices": []}'),
    (200, b'["not", "an", "object"]'),
    (200, b'{"choices": [{"message": {"content": 42}}]}'),
])
def test_http_errors_and_garbage_give_none(llm_app, model, status, body):
    model.status, model.body = status, body
    assert _compose(llm_app) is None


def test_an_unreachable_server_gives_none(make_app, model):
    model.stop()
    app = make_app()
    assert _compose(app) is None


def test_a_slow_server_gives_none_within_the_timeout(make_app, model):
    app = make_app(LLM_TIMEOUT="0.5")
    model.delay = 5
    started = time.monotonic()
    assert _compose(app) is None
    assert time.monotonic() - started < 2.5  # the 0.5 s deadline, with room for a busy machine; not the 5 s


def test_a_trickling_server_cannot_stretch_the_timeout(make_app, model):
    # Each read gets bytes in time, so only a deadline on the whole call stops it.
    app = make_app(LLM_TIMEOUT="0.5")
    model.drip = 5
    started = time.monotonic()
    assert _compose(app) is None
    assert time.monotonic() - started < 2.5  # the 0.5 s deadline, with room for a busy machine; not the 5 s


def test_the_answer_is_plain_text_capped_and_links_are_only_those_of_the_passages(llm_app, model):
    model.answer = ("## Backups\n**Nightly** backups are kept for *30 days*. See [our page](https://evil.example/x) "
                    "or https://evil.example/y.\n- Snapshots: <b>one week</b>.\n```\nrm -rf\n```\n"
                    + "More detail follows here. " * 60)
    answer = _compose(llm_app)
    assert answer.startswith("Backups\nNightly backups are kept for 30 days.")
    assert "\u2022 Snapshots: one week." in answer
    for markup in ("**", "##", "<b>", "```", "](", "evil.example"):
        assert markup not in answer
    assert len(answer) <= ANSWER_CHARS and answer.endswith(".")


def test_an_answer_cut_by_the_token_limit_ends_at_its_last_whole_sentence(llm_app, model):
    model.answer, model.finish_reason = "Nightly backups are kept for 30 days. Snapshots are kept for a", "length"
    assert _compose(llm_app) == "Nightly backups are kept for 30 days."


def test_logs_carry_the_outcome_and_latency_but_no_question_answer_or_key(llm_app, model, caplog):
    caplog.set_level(logging.DEBUG, logger="acebuddy")
    _compose(llm_app, question="my password is Hunter2!x, " + BACKUP_QUESTION)
    model.status, model.body = 500, b'{"error": "boom"}'
    _compose(llm_app)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("acebuddy"))
    assert "llm compose: answered in" in logged and "llm compose: http 500 in" in logged
    for private in ("Hunter2", "backups for", "Nightly", "sk-test-key", "boom"):
        assert private not in logged


def test_settings_are_off_by_default_and_checked_at_start_up():
    config = Config({})
    assert (config.LLM_API_URL, config.LLM_API_KEY, config.LLM_MODEL, config.LLM_TIMEOUT) == (None, None, None, 4.0)
    assert Config({"LLM_API_URL": "http://127.0.0.1:9/v1/", "LLM_MODEL": "m"}).LLM_API_URL == "http://127.0.0.1:9/v1"
    with pytest.raises(ConfigError, match="LLM_MODEL"):
        Config({"LLM_API_URL": "http://127.0.0.1:9/v1"})
    with pytest.raises(ConfigError, match="LLM_TIMEOUT"):
        Config({"LLM_TIMEOUT": "0"})


def _chat_reply(app, conversation_id):
    chat = Chat(app.test_client(), conversation_id)
    chat.say(BACKUP_QUESTION)
    assert chat.last["action"] == "reply" and chat.last["suggestions"] == ["Yes", "No"]
    replies = chat.last["replies"]
    assert len(replies) == 3 and "/kb/" in replies[1] and replies[2] == "Did this help?"
    return replies


def test_the_chat_reply_carries_the_models_answer_and_no_identity_is_sent(llm_app, model):
    replies = _chat_reply(llm_app, "2243000000777001")
    assert replies[0] == MODEL_TEXT
    raw = model.last["raw"]
    for identity in ("John", "Doe", "john@company.com", "555-1234", "2243000000777001"):
        assert identity not in raw
    assert BACKUP_QUESTION in raw


def test_the_chat_reply_is_the_extract_when_the_model_says_not_covered(llm_app, model):
    model.answer = NOT_COVERED
    hit, _ = _best(llm_app)
    assert _chat_reply(llm_app, "2243000000777002")[0] == hit.extract


def test_the_chat_reply_is_the_extract_when_the_model_fails_or_is_slow(make_app, model):
    app = make_app(LLM_TIMEOUT="0.5")
    hit, _ = _best(app)
    model.status, model.body = 500, b"oops"
    assert _chat_reply(app, "2243000000777003")[0] == hit.extract
    model.status, model.body, model.delay = 200, None, 5
    started = time.monotonic()
    assert _chat_reply(app, "2243000000777004")[0] == hit.extract
    assert time.monotonic() - started < 1.5


def test_the_chat_reply_is_the_plain_extract_by_default(tmp_path, redis_url, _external_schema, model):
    app = _kb_app(tmp_path, redis_url)
    try:
        assert app.config["LLM_API_URL"] is None
        hit, _ = _best(app)
        assert _chat_reply(app, "2243000000777005")[0] == hit.extract
        assert model.received == []
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _best(app):
    with app.app_context():
        hit, confidence = search.best_answer(BACKUP_QUESTION)
    assert hit is not None and confidence >= search.ANSWER_THRESHOLD
    return hit, confidence
