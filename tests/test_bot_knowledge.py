"""Knowledge answers in the chat and the public article page they link to."""
import os

import pytest

from acebuddy.knowledge.importer import import_directory
from acebuddy.models import Article
from acebuddy.extensions import db
from tests.helpers import Chat

DEMO_KB = os.path.join(os.path.dirname(os.path.dirname(__file__)), "acebuddy", "demo_data", "kb")


@pytest.fixture
def kb(app):
    with app.app_context():
        result = import_directory(DEMO_KB)
        assert not result.errors and result.created > 10


def test_an_informational_question_gets_an_extract_a_link_and_a_follow_up(app, client, kb):
    chat = Chat(client, "kb-1")
    reply = chat.say("how long do you keep my backups for?")
    assert reply["action"] == "reply" and reply["suggestions"] == ["Yes", "No"]
    texts = chat.text
    assert "/kb/" in texts and "Did this help?" in texts
    slug = texts.split("/kb/")[1].split()[0]
    page = client.get(f"/kb/{slug}")
    assert page.status_code == 200 and "backup" in page.get_data(as_text=True).lower()


def test_not_helpful_offers_the_matching_workflow_or_a_person(app, client, kb):
    chat = Chat(client, "kb-2")
    chat.say("how long do you keep my backups for?")
    assert "Did this help?" in chat.text
    chat.say("No")
    assert "Sorry about that" in chat.text
    assert "Talk to a person" in chat.last["suggestions"]


def test_off_topic_questions_are_not_guessed(app, client, kb):
    chat = Chat(client, "kb-3")
    chat.say("what's the weather like in paris tomorrow")
    assert "not sure" in chat.text.lower()
    assert "Talk to a person" in chat.last["suggestions"]


def test_three_misses_hand_over_to_a_person(app, client, kb):
    chat = Chat(client, "kb-4")
    for text in ("blorp zzzt", "qwerty uiop asdf", "xyzzy plugh frobnicate"):
        chat.say(text)
    assert chat.last["action"] == "forward"


def test_article_page_escapes_and_404s(app, client):
    with app.app_context():
        db.session.add(Article(slug="evil", title="<script>alert(1)</script>", body="Hello <b>x</b>\n\n- step <i>one</i>",
                               tags=[]))
        db.session.commit()
    page = client.get("/kb/evil").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert client.get("/kb/nope").status_code == 404
