"""Parsing of what SalesIQ POSTs: the Zobot webhook format and the flat format of the original flow
diagrams, into one `Inbound`. Anything malformed raises `PayloadError`, which the webhook turns into 400.

Zobot fields follow specs/salesiq-webhook.md §3: every visitor key is optional in practice, `message`
is an object with `text`, `request.id` is unique per action and serves as the delivery key.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ..untrusted import loads, scrub, strip_control

# Longer customer lines are cut, not refused: nothing a customer typed is lost for being long.
MAX_TEXT = 4000
_ID = re.compile(r"^[A-Za-z0-9_.:@+\-#]{1,120}$")
FLAT_FIELDS = {"chat_id", "visitor_id", "visitor_email", "visitor_name", "visitor_phone", "message", "message_id"}


class PayloadError(ValueError):
    """The request body is not something SalesIQ (or the flat form) would send."""


@dataclass
class Visitor:
    id: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    channel: str | None = None


@dataclass
class Inbound:
    format: str  # zobot | flat
    handler: str  # trigger | message | context | anything else SalesIQ may add
    conversation_key: str | None
    delivery_key: str | None
    text: str = ""
    operation: str | None = None
    visitor: Visitor = field(default_factory=Visitor)
    meta: dict | None = None
    context_id: str | None = None
    answers: dict = field(default_factory=dict)

    @property
    def is_message(self) -> bool:
        return self.handler == "message"


def clean_text(value: str) -> str:
    return strip_control(value)[:MAX_TEXT]


def _optional_str(container: dict, key: str, where: str, limit: int = 254) -> str | None:
    value = container.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(f"{where}{key} must be a string")
    text = clean_text(str(value))
    if len(text) > limit:
        raise PayloadError(f"{where}{key} is too long (at most {limit} characters)")
    return text or None


def _identifier(value, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise PayloadError(f"{name} must be a string")
    text = str(value).strip()
    if not _ID.match(text):
        raise PayloadError(f"{name} must be 1-120 letters, digits or . _ - : @ + #")
    return text


def parse(raw: bytes) -> Inbound:
    if not raw:
        raise PayloadError("empty body: expected a JSON object")
    try:
        body = loads(raw)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise PayloadError("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise PayloadError("body must be a JSON object")
    if "handler" in body:
        return _parse_zobot(body)
    if "chat_id" in body:
        return _parse_flat(body)
    raise PayloadError("expected a SalesIQ Zobot request (handler) or the flat form (chat_id, message)")


def _parse_zobot(body: dict) -> Inbound:
    handler = body.get("handler")
    if not isinstance(handler, str) or not handler.strip():
        raise PayloadError("handler must be a non-empty string")
    handler = handler.strip().lower()[:40]

    visitor_raw = body.get("visitor") or {}
    if not isinstance(visitor_raw, dict):
        raise PayloadError("visitor must be an object")
    request_raw = body.get("request") or {}
    if not isinstance(request_raw, dict):
        raise PayloadError("request must be an object")
    operation = body.get("operation")
    if operation is not None and not isinstance(operation, str):
        raise PayloadError("operation must be a string")
    if "attachments" in body and not isinstance(body["attachments"], list):
        raise PayloadError("attachments must be a list")

    visitor = Visitor(
        # `id`/`visitor_id` appear only in real code, not in Zoho's docs (spec §3): read either.
        id=_optional_str(visitor_raw, "id", "visitor.", 120) or _optional_str(visitor_raw, "visitor_id", "visitor.", 120),
        name=_optional_str(visitor_raw, "name", "visitor.", 200),
        email=_optional_str(visitor_raw, "email", "visitor.", 254),
        phone=_optional_str(visitor_raw, "phone", "visitor.", 40),
        channel=_optional_str(visitor_raw, "channel", "visitor.", 40),
    )
    conversation = visitor_raw.get("active_conversation_id")
    conversation_key = _identifier(conversation, "visitor.active_conversation_id") if conversation not in (None, "") else None
    request_id = request_raw.get("id")
    delivery_key = f"zobot:{_identifier(request_id, 'request.id')}" if request_id not in (None, "") else None

    inbound = Inbound(
        format="zobot",
        handler=handler,
        operation=operation.strip().lower() if operation else None,
        conversation_key=conversation_key,
        delivery_key=delivery_key,
        visitor=visitor,
    )
    if handler == "message":
        message = body.get("message")
        if isinstance(message, str):  # lenient: some senders flatten the object
            message = {"text": message}
        if not isinstance(message, dict):
            raise PayloadError("message must be an object with text")
        text = message.get("text")
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            text = str(text)
        if not isinstance(text, str):
            raise PayloadError("message.text must be a string")
        meta = message.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise PayloadError("message.meta must be an object")
        inbound.text = clean_text(text)
        inbound.meta = meta
        if not inbound.text and not body.get("attachments"):
            raise PayloadError("message.text is empty")
        if conversation_key is None:
            raise PayloadError("visitor.active_conversation_id is required for a message")
    elif handler == "context":
        answers = body.get("answers") or {}
        if isinstance(answers, str):  # the webhook page types it "String" (spec §3, [M])
            try:
                answers = scrub(json.loads(answers))  # a JSON text inside the JSON: its escapes too
            except (ValueError, RecursionError):
                answers = {}
        if not isinstance(answers, dict):
            raise PayloadError("answers must be an object")
        context_id = body.get("context_id")
        inbound.context_id = str(context_id)[:80] if context_id is not None else None
        inbound.answers = answers
    return inbound


def _parse_flat(body: dict) -> Inbound:
    unknown = set(body) - FLAT_FIELDS
    if unknown:
        raise PayloadError(f"unknown field(s) in the flat form: {', '.join(sorted(unknown))}")
    chat_id = _identifier(body.get("chat_id"), "chat_id")
    message = body.get("message")
    if not isinstance(message, str):
        raise PayloadError("message must be a string")
    text = clean_text(message)
    if not text:
        raise PayloadError("message is empty")
    message_id = body.get("message_id")
    delivery_key = None
    if message_id not in (None, ""):
        # message ids are only promised unique within a chat
        delivery_key = f"flat:{chat_id}:{_identifier(message_id, 'message_id')}"
    return Inbound(
        format="flat",
        handler="message",
        conversation_key=chat_id,
        delivery_key=delivery_key,
        text=text,
        visitor=Visitor(
            id=_optional_str(body, "visitor_id", "", 120),
            name=_optional_str(body, "visitor_name", "", 200),
            email=_optional_str(body, "visitor_email", "", 254),
            phone=_optional_str(body, "visitor_phone", "", 40),
        ),
    )
