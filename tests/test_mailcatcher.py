"""The mail catcher: a real SMTP server (aiosmtpd) into a Maildir, and its viewer."""
import smtplib
import socket
import time
from email.message import EmailMessage

import pytest

from tests import helpers
from acebuddy.sandbox.mailcatcher import HTML_PART_POLICY, MailCatcher, maildir_path, read_messages


def sign_in(app, client):
    """An agent signed in through the real sign-in form."""
    with app.app_context():
        helpers.make_user()
    assert helpers.sign_in(client).status_code == 302
    return client


@pytest.fixture
def catcher(app):
    catcher = MailCatcher(maildir_path(app)).start("127.0.0.1", 0)
    yield catcher
    catcher.stop()


@pytest.fixture
def signed_in(app, client):
    return sign_in(app, client)


def _send(catcher, subject, *, to="john.doe@acme-accounting.example", bcc=None, html=None, text="Hello John"):
    message = EmailMessage()
    message["From"] = "AceBuddy Support <support@acebuddy.test>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    with smtplib.SMTP(catcher.host, catcher.port, timeout=5) as smtp:
        smtp.send_message(message, to_addrs=[to] + ([bcc] if bcc else []))


def test_smtp_message_shows_in_the_json_listing(signed_in, catcher):
    _send(catcher, "Ticket #1042 created — Password Reset", bcc="support-team@acebuddy.test",
          text="Your ticket #1042 is open.\nWe answer within 2-4 hours.", html="<p>Your ticket <b>#1042</b></p>")

    body = signed_in.get("/sandbox/mail/api/messages").get_json()
    [message] = body["messages"]
    assert message["subject"] == "Ticket #1042 created — Password Reset"
    assert message["from"] == "AceBuddy Support <support@acebuddy.test>"
    assert message["to"] == "john.doe@acme-accounting.example"
    assert "support-team@acebuddy.test" in message["envelope_to"]  # Bcc is only on the envelope
    assert message["text"].strip() == "Your ticket #1042 is open.\nWe answer within 2-4 hours."
    assert message["html"].strip() == "<p>Your ticket <b>#1042</b></p>"
    only_team = signed_in.get("/sandbox/mail/api/messages", query_string={"to": "support-team@"}).get_json()
    assert len(only_team["messages"]) == 1
    assert signed_in.get("/sandbox/mail/api/messages", query_string={"to": "nobody@"}).get_json() == {"messages": []}


def test_list_page_is_newest_first_and_escaped(signed_in, catcher):
    _send(catcher, "First <img src=x onerror=alert(1)>")
    time.sleep(0.05)  # delivery times are file modification times
    _send(catcher, "Second")

    page = signed_in.get("/sandbox/mail/").get_data(as_text=True)
    assert page.index("Second") < page.index("First")
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    keys = [m["key"] for m in signed_in.get("/sandbox/mail/api/messages").get_json()["messages"]]
    assert [m.key for m in catcher.messages()] == keys and len(keys) == 2


def test_detail_shows_headers_text_and_a_sandboxed_html_link(signed_in, catcher):
    _send(catcher, "Your ticket", text="Line one\n<script>alert(1)</script>", html="<h1>Hi</h1><script>alert(2)</script>")
    [message] = signed_in.get("/sandbox/mail/api/messages").get_json()["messages"]

    page = signed_in.get(f"/sandbox/mail/{message['key']}").get_data(as_text=True)
    assert '<pre class="mail">Line one\n&lt;script&gt;alert(1)&lt;/script&gt;' in page
    assert "alert(2)" not in page  # the HTML part is never inlined
    assert f"/sandbox/mail/{message['key']}/html" in page
    assert "Message-Id" in page or "Message-ID" in page or "X-Peer" in page

    html = signed_in.get(f"/sandbox/mail/{message['key']}/html")
    assert html.status_code == 200 and html.mimetype == "text/html"
    assert html.headers["Content-Security-Policy"] == HTML_PART_POLICY
    assert "sandbox" in html.headers["Content-Security-Policy"]
    assert "<h1>Hi</h1>" in html.get_data(as_text=True)


def test_text_only_message_has_no_html_view(signed_in, catcher):
    _send(catcher, "Plain")
    [message] = signed_in.get("/sandbox/mail/api/messages").get_json()["messages"]
    assert message["html"] is None
    assert signed_in.get(f"/sandbox/mail/{message['key']}/html").status_code == 404
    assert signed_in.get("/sandbox/mail/no-such-key").status_code == 404


def test_missing_or_empty_maildir_is_an_empty_list(app, signed_in, tmp_path):
    app.config["MAILCATCHER_DIR"] = str(tmp_path / "never-created")
    assert signed_in.get("/sandbox/mail/api/messages").get_json() == {"messages": []}
    page = signed_in.get("/sandbox/mail/")
    assert page.status_code == 200 and "No mail yet." in page.get_data(as_text=True)
    assert read_messages(str(tmp_path / "never-created")) == []


def test_viewer_requires_sign_in(client):
    page = client.get("/sandbox/mail/")
    assert page.status_code == 302 and "/auth/login" in page.headers["Location"]
    api = client.get("/sandbox/mail/api/messages")
    assert api.status_code == 401 and api.get_json() == {"error": "sign in first"}


def test_clear_deletes_everything(signed_in, catcher):
    _send(catcher, "To be cleared")
    page = signed_in.get("/sandbox/mail/").get_data(as_text=True)
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    assert signed_in.post("/sandbox/mail/clear", data={"csrf_token": token}).status_code == 303
    assert catcher.messages() == []


def test_fragment_request_renders_only_the_list(signed_in, catcher):
    _send(catcher, "Fragment")
    response = signed_in.get("/sandbox/mail/", headers={"HX-Request": "true"})
    text = response.get_data(as_text=True)
    assert 'id="mail_list"' in text and "<html" not in text and "Fragment" in text
    assert "HX-Request" in response.headers["Vary"]


def test_stop_closes_the_port(app):
    catcher = MailCatcher(maildir_path(app)).start("127.0.0.1", 0)
    port = catcher.port
    catcher.stop()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    with pytest.raises(RuntimeError):
        catcher.start("127.0.0.1", port).start("127.0.0.1", port)
    catcher.stop()
