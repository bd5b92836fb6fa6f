"""The demo mail catcher: a real SMTP server (aiosmtpd) delivering into a Maildir, and its viewer at
/sandbox/mail (signed-in users), with a JSON listing for tests. HTML mail is never rendered inside our
pages: it is served on its own URL under a `sandbox` content security policy.
"""
from __future__ import annotations

import email
import email.policy
import mailbox
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

from flask import Blueprint, Flask, abort, current_app, jsonify, redirect, render_template, request, url_for
from flask_login import current_user

from ..extensions import login_manager

bp = Blueprint("mailcatcher", __name__, url_prefix="/sandbox/mail")

# The HTML part may carry its own styles; nothing else (no scripts, images, forms, same-origin access).
HTML_PART_POLICY = "sandbox; default-src 'none'; style-src 'unsafe-inline'"
MAX_LISTED = 500


@dataclass
class CaughtMail:
    key: str
    delivered_at: datetime  # when the catcher stored it (UTC)
    date: datetime | None  # the Date header
    sender: str
    to: str
    cc: str
    envelope_to: str  # every RCPT TO, Bcc included (aiosmtpd's X-RcptTo)
    subject: str
    text: str | None = None
    html: str | None = None
    attachments: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "key": self.key,
            "delivered_at": self.delivered_at.isoformat().replace("+00:00", "Z"),
            "date": self.date.isoformat() if self.date else None,
            "from": self.sender,
            "to": self.to,
            "cc": self.cc,
            "envelope_to": self.envelope_to,
            "subject": self.subject,
        }

    def to_json(self) -> dict:
        return {**self.summary(), "text": self.text, "html": self.html, "attachments": self.attachments}


def _open(maildir: str, create: bool = False) -> mailbox.Maildir | None:
    try:
        return mailbox.Maildir(maildir, factory=None, create=create)
    except (mailbox.NoSuchMailboxError, OSError):
        return None


def _parse(box: mailbox.Maildir, key: str) -> CaughtMail:
    stored = box.get_message(key)  # a MaildirMessage: knows when it was delivered
    message = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
    try:
        date = parsedate_to_datetime(message["Date"]) if message["Date"] else None
    except (TypeError, ValueError):
        date = None
    text = html = None
    attachments = []
    try:
        part = message.get_body(preferencelist=("plain",))
        text = part.get_content() if part is not None else None
        part = message.get_body(preferencelist=("html",))
        html = part.get_content() if part is not None else None
        attachments = [a.get_filename() or a.get_content_type() for a in message.iter_attachments()]
    except (LookupError, ValueError, AttributeError):  # unknown charset or a broken structure
        payload = message.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None

    def header(name: str) -> str:
        try:
            return str(message.get(name, "") or "")
        except (ValueError, TypeError):
            return ""

    return CaughtMail(
        key=key,
        delivered_at=datetime.fromtimestamp(stored.get_date(), timezone.utc),
        date=date,
        sender=header("From"),
        to=header("To"),
        cc=header("Cc"),
        envelope_to=header("X-RcptTo"),
        subject=header("Subject"),
        text=text,
        html=html,
        attachments=attachments,
        headers=[(name, header(name)) for name in dict.fromkeys(message.keys())],
    )


def read_messages(maildir: str, limit: int = MAX_LISTED) -> list[CaughtMail]:
    """Messages in the Maildir, newest first; an absent or empty Maildir gives []."""
    box = _open(maildir)
    if box is None:
        return []
    found = []
    for key in box.keys():
        try:
            found.append(_parse(box, key))
        except (KeyError, OSError):  # removed while we read
            continue
    found.sort(key=lambda m: (m.delivered_at, m.key), reverse=True)
    return found[:limit]


def read_message(maildir: str, key: str) -> CaughtMail | None:
    box = _open(maildir)
    if box is None:
        return None
    try:
        return _parse(box, key)
    except (KeyError, OSError):
        return None


def clear_messages(maildir: str) -> None:
    box = _open(maildir)
    if box is not None:
        box.clear()


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MailCatcher:
    """A real SMTP server (aiosmtpd, in its own thread) storing every message in a Maildir."""

    def __init__(self, maildir: str):
        self.maildir = maildir
        self.host: str | None = None
        self.port: int | None = None
        self._controller = None

    def start(self, host: str = "127.0.0.1", port: int = 1025) -> MailCatcher:
        """Listen on host:port (port 0: any free port; see `.port`)."""
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Mailbox

        if self._controller is not None:
            raise RuntimeError("the mail catcher is already running")
        # mailbox.Maildir makes tmp/new/cur only when it makes the folder itself.
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.maildir, sub), exist_ok=True)
        if port == 0:
            port = _free_port(host)
        controller = Controller(Mailbox(self.maildir), hostname=host, port=port, server_hostname="acebuddy-mailcatcher")
        controller.start()
        self._controller, self.host, self.port = controller, host, port
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def messages(self) -> list[CaughtMail]:
        return read_messages(self.maildir)

    def clear(self) -> None:
        clear_messages(self.maildir)

    def __enter__(self) -> MailCatcher:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def maildir_path(app: Flask | None = None) -> str:
    app = app or current_app
    return app.config.get("MAILCATCHER_DIR") or os.path.join(app.instance_path, "mailcatcher")


# The viewer


@bp.before_request
def require_sign_in():
    if current_user.is_authenticated:
        return None
    if request.path.startswith(bp.url_prefix + "/api/"):
        return jsonify(error="sign in first"), 401
    return login_manager.unauthorized()


@bp.get("/")
def index():
    messages = read_messages(maildir_path())
    fragment = bool(request.headers.get("HX-Request")) and not request.headers.get("HX-Boosted")
    template = "sandbox/partials/mail_list.html" if fragment else "sandbox/mail.html"
    return render_template(template, messages=messages), 200, {"Vary": "HX-Request"}


@bp.get("/api/messages")
def api_messages():
    messages = read_messages(maildir_path())
    recipient = (request.args.get("to") or "").lower()
    if recipient:
        messages = [m for m in messages if recipient in f"{m.to} {m.cc} {m.envelope_to}".lower()]
    return jsonify(messages=[m.to_json() for m in messages])


@bp.post("/clear")
def clear():
    clear_messages(maildir_path())
    return redirect(url_for("mailcatcher.index"), code=303)


@bp.get("/<key>")
def message(key: str):
    found = read_message(maildir_path(), key)
    if found is None:
        abort(404, "No such message (it may have been cleared).")
    return render_template("sandbox/mail_message.html", message=found)


@bp.get("/<key>/html")
def message_html(key: str):
    found = read_message(maildir_path(), key)
    if found is None or found.html is None:
        abort(404, "This message has no HTML part.")
    headers = {
        "Content-Type": "text/html; charset=utf-8",
        "Content-Security-Policy": HTML_PART_POLICY,
        "Cache-Control": "no-store",
    }
    return found.html, 200, headers
