"""Customer chat simulator: a signed-in person plays the SalesIQ visitor. The server side calls our
webhook over real HTTP exactly as SalesIQ's Zobot platform does (specs/salesiq-webhook.md §3), renders
the bot's answer as the widget would (§4), and shows what our system later posts through the SalesIQ
REST sandbox. After a hand-over the bot hears nothing more: visitor lines go out as event webhooks (§6).
"""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import requests
from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user, login_required
from flask_wtf import FlaskForm
from wtforms import EmailField, StringField
from wtforms.validators import DataRequired, Length, Optional, Regexp

from ..salesiq import signature
from .salesiq import APP_ID, SandboxConversation, get_store

bp = Blueprint("simulator", __name__, url_prefix="/simulator")

EXTENSION = "salesiq_simulator"
DEMO_VISITOR = {"name": "John Doe", "email": "john.doe@acme-accounting.example", "phone": "+1 555 010 1234"}
DEFAULT_ORG_ID = "346500001"
# What SalesIQ waits for a bot answer: 10 s in most copies of its docs, 5 s in one (spec §2).
DEFAULT_TIMEOUT = 10.0
SLOW_ANSWER = 5.0
ACTIONS = {"reply", "forward", "end", "operator_busy", "block", "context"}
CARD_TYPES_TYPED = {"email", "tel"}
CARD_TYPES_CHOICE = {"select", "drop-down", "dropdown"}
MAX_LINE = 4000


@bp.before_request
@login_required
def require_sign_in():
    """The simulator is for signed-in dashboard users only."""


class StartChatForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=200)])
    # A plain pattern: wtforms' Email() needs the email_validator package, which is not a dependency.
    email = EmailField(
        "E-mail",
        validators=[Optional(), Length(max=254), Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", message="Not an e-mail address.")],
    )
    phone = StringField(
        "Phone",
        validators=[Optional(), Length(max=40), Regexp(r"^[0-9+().\-\s]*$", message="Digits, spaces and + - ( ) only.")],
    )


@dataclass
class ChatState:
    """What the widget remembers about one simulated chat, beside the sandbox's transcript."""

    conversation_id: str
    visitor: dict  # the `visitor` object sent with every call
    started_by: int | None = None
    messages_sent: int = 0  # handler:"message" calls so far: the first is operation "chat"
    card: dict | None = None  # {"suggestions": [...]} or {"input": {...}} from the bot's last answer
    card_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class Simulator:
    """The simulator's chats of one app (in memory, like the SalesIQ sandbox it writes to)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._chats: dict[str, ChatState] = {}

    def add(self, chat: ChatState) -> ChatState:
        with self._lock:
            self._chats[chat.conversation_id] = chat
        return chat

    def get(self, conversation_id: str) -> ChatState | None:
        with self._lock:
            return self._chats.get(conversation_id)


def get_simulator(app: Flask | None = None) -> Simulator:
    app = app or current_app
    simulator = app.extensions.get(EXTENSION)
    if simulator is None:
        simulator = app.extensions.setdefault(EXTENSION, Simulator())
    return simulator


# Building what SalesIQ sends


def _settings(app: Flask) -> dict:
    public = app.config.get("PUBLIC_URL", "").rstrip("/")
    events_url = app.config.get("SIMULATOR_EVENTS_URL")
    return {
        "webhook_url": app.config.get("SIMULATOR_WEBHOOK_URL") or f"{public}/webhook/salesiq",
        "events_url": f"{public}/webhook/salesiq/events" if events_url is None else events_url,
        "timeout": float(app.config.get("SIMULATOR_WEBHOOK_TIMEOUT") or DEFAULT_TIMEOUT),
        "private_key": (app.config.get("SALESIQ_SANDBOX_PRIVATE_KEY") or "").replace("\\n", "\n").strip(),
        "org_id": str(app.config.get("SIMULATOR_ORG_ID") or DEFAULT_ORG_ID),
        "public_url": public,
    }


def make_visitor(conversation_id: str, name: str, email: str, phone: str, public_url: str) -> dict:
    """The `visitor` object: documented keys (spec §3) plus `id`, which real payloads carry."""
    page = f"{public_url}/support"
    return {
        "active_conversation_id": conversation_id,
        "id": "$" + "".join(random.choice("0123456789") for _ in range(19)),
        "name": name,
        "email": email,
        "phone": phone,
        "channel": "Website",
        "browser": "Google Chrome",
        "os": "Windows",
        "language": "en",
        "time_zone": "America/New_York",
        "country": "United States",
        "current_page_url": page,
        "current_page_title": "Support - Managed cloud hosting",
        "landing_page_url": page,
        "landing_page_title": "Support - Managed cloud hosting",
    }


def _request_object() -> dict:
    """`request` (spec §3): `id` is unique per action."""
    return {
        "id": str(uuid.uuid4()),
        "app_id": APP_ID,
        "os": "Windows",
        "browser": "Google Chrome",
        "ip": "203.0.113.24",
        "location": {"country": "US", "city": "New York", "state": "New York"},
    }


def trigger_payload(chat: ChatState, org_id: str) -> dict:
    return {"handler": "trigger", "visitor": dict(chat.visitor), "org_id": org_id, "request": _request_object()}


def message_payload(chat: ChatState, text: str, org_id: str, meta: dict | None = None) -> dict:
    message = {"text": text}
    if meta:
        message["meta"] = meta
    return {
        "handler": "message",
        "operation": "chat" if chat.messages_sent == 0 else "message",
        "message": message,
        "visitor": dict(chat.visitor),
        "org_id": org_id,
        "request": _request_object(),
        "attachments": [],
    }


def event_payload(event: str, conversation: SandboxConversation, org_id: str, entity: dict) -> dict:
    """The event-webhook envelope (spec §6); the entity shape is known from code only [M]."""
    return {
        "entity_type": "conversation",
        "org_id": org_id,
        "event": event,
        "entity_id": conversation.id,
        "attempt": 1,
        "version": "1",
        "app_id": APP_ID,
        "event_time": str(int(time.time() * 1000)),
        "webhook": {"id": "3465000000019"},
        "entity": entity,
    }


@dataclass
class Delivery:
    """How one call to our webhook went."""

    status: int | None = None
    body: object = None
    error: str | None = None
    elapsed: float = 0.0


def deliver(url: str, payload: dict, *, private_key: str = "", timeout: float = DEFAULT_TIMEOUT) -> Delivery:
    """POST `payload` as SalesIQ does: JSON over HTTP, signed into `x-siqsignature` when a key is set."""
    raw = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": "application/json; charset=UTF-8", "Accept": "application/json"}
    note = None
    if private_key:
        try:
            headers[signature.HEADER] = signature.sign(raw, private_key)
        except (ValueError, TypeError) as exc:
            note = f"could not sign the request ({exc}); sent it unsigned"
    started = time.monotonic()
    try:
        response = requests.post(url, data=raw, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        return Delivery(error=f"no answer within {timeout:g} s; SalesIQ would give up", elapsed=time.monotonic() - started)
    except requests.RequestException as exc:
        return Delivery(error=f"could not reach {url} ({type(exc).__name__})", elapsed=time.monotonic() - started)
    elapsed = time.monotonic() - started
    try:
        body = response.json()
    except ValueError:
        body = None
    return Delivery(status=response.status_code, body=body, error=note, elapsed=elapsed)


# Showing the bot's answer as the widget would


def _safe_url(value) -> str | None:
    if isinstance(value, str) and urlsplit(value).scheme in ("http", "https"):
        return value
    return None


def _reply_line(item) -> tuple[str, dict | None] | None:
    """A `replies[]` item as (text, rich parts); rich parts are links the page may show."""
    if isinstance(item, str):
        return item, None
    if not isinstance(item, dict):
        return None
    text = item.get("text")
    text = text if isinstance(text, str) else ""
    rich = {}
    if _safe_url(item.get("image")):
        rich["image"] = item["image"]
    if item.get("type") == "file" and _safe_url(item.get("url")):
        rich["file"] = item["url"]
    actions = []
    for action in item.get("actions") or []:
        if isinstance(action, dict) and isinstance(action.get("label"), str):
            actions.append({"label": action["label"][:80], "link": _safe_url(action.get("link"))})
    if actions:
        rich["actions"] = actions
    if not text and not rich:
        return None
    return text, rich or None


def _card_from(body: dict) -> tuple[dict | None, list[str]]:
    """The card to show after this answer, and notes on anything SalesIQ would drop."""
    notes = []
    card_input = body.get("input")
    suggestions = body.get("suggestions")
    if card_input is not None:
        if suggestions:
            notes.append("The answer had both input and suggestions; SalesIQ shows the input card only.")
        if not isinstance(card_input, dict) or not isinstance(card_input.get("type"), str):
            notes.append("The input card has no type; SalesIQ would not show it.")
            return None, notes
        card = dict(card_input)
        if card["type"] in CARD_TYPES_TYPED and not card.get("placeholder"):
            notes.append(f"A {card['type']} card needs a placeholder (SalesIQ makes it mandatory).")
        if card["type"] in CARD_TYPES_CHOICE:
            options = []
            for option in card.get("options") or []:
                if isinstance(option, dict):
                    label = str(option.get("label") or option.get("value") or "")
                    options.append({"label": label, "value": str(option.get("value") or label)})
                elif isinstance(option, (str, int, float)):
                    options.append({"label": str(option), "value": str(option)})
            if not options:
                notes.append("The select card has no options.")
                return None, notes
            if len(options) > 20:
                notes.append("SalesIQ shows at most 20 options.")
            card["options"] = options[:20]
        return {"input": card}, notes
    if suggestions is not None:
        if not isinstance(suggestions, list):
            notes.append("suggestions must be a list of strings.")
            return None, notes
        shown = [s for s in suggestions if isinstance(s, str) and s.strip()]
        if len(shown) != len(suggestions):
            notes.append("Suggestions that are not strings were left out.")
        return ({"suggestions": shown} if shown else None), notes
    return None, notes


def apply_answer(chat: ChatState, delivery: Delivery) -> None:
    """Put the bot's answer (or what went wrong) into the transcript and set the card."""
    store = get_store()
    conversation_id = chat.conversation_id
    chat.card, chat.card_error = None, None
    if delivery.status is None:
        store.note(conversation_id, f"Webhook error: {delivery.error}")
        return
    if delivery.error:
        store.note(conversation_id, f"Simulator: {delivery.error}")
    if delivery.status != 200:
        detail = ""
        if isinstance(delivery.body, dict) and isinstance(delivery.body.get("error"), str):
            detail = f": {delivery.body['error'][:300]}"
        store.note(conversation_id, f"Webhook error: HTTP {delivery.status}{detail}")
        return
    if delivery.elapsed > SLOW_ANSWER:
        store.note(conversation_id, f"The webhook took {delivery.elapsed:.1f} s; SalesIQ may give up after 5 s.")
    body = delivery.body
    if not isinstance(body, dict):
        store.note(conversation_id, "Webhook error: the answer is not a JSON object; SalesIQ would ignore it.")
        return
    action = body.get("action")
    if action not in ACTIONS:
        store.note(conversation_id, f"Webhook error: unknown or missing action {action!r}; SalesIQ would ignore the answer.")
        return
    replies = body.get("replies")
    if not isinstance(replies, list):
        store.note(conversation_id, "Webhook error: replies must be a list; SalesIQ would ignore the answer.")
        replies = []
    for item in replies:
        line = _reply_line(item)
        if line is None:
            store.note(conversation_id, "A reply the widget cannot show was left out.")
            continue
        text, rich = line
        store.add_message(conversation_id, "bot", text[:MAX_LINE], via="webhook", rich=rich)

    if action == "reply":
        card, notes = _card_from(body)
        for note in notes:
            store.note(conversation_id, note)
        chat.card = card
    elif action == "forward":
        department = body.get("department")
        operators = body.get("operators") if isinstance(body.get("operators"), list) else []
        store.forward(conversation_id, str(department) if department else None, operators)
        target = f"department {department}" if department else ("operators " + ", ".join(map(str, operators)) if operators else "any available operator")
        store.note(conversation_id, f"You are being connected to a person. The bot handed the chat over ({target}).")
    elif action == "end":
        delay = body.get("delay")
        try:
            seconds = float(delay) if delay not in (None, "") else 0.0
        except (TypeError, ValueError):
            seconds = 0.0
        if seconds > 0:
            store.end_after(conversation_id, seconds)
            store.note(conversation_id, f"The bot will end this chat in {seconds:g} s unless you write.")
        else:
            store.close(conversation_id, by="bot")
    elif action == "operator_busy":
        store.note(conversation_id, "No operator is free: SalesIQ asks the visitor to leave a message and marks the chat missed.")
        store.close(conversation_id, by="bot")
    elif action == "block":
        store.note(conversation_id, "The bot blocked this visitor's IP address.")
        store.close(conversation_id, by="bot")
    elif action == "context":
        store.note(conversation_id, "The bot asked a context question flow; the simulator does not play context flows.")


def start_chat(name: str, email: str, phone: str) -> ChatState:
    """Open a conversation as the widget does and send the `trigger` call."""
    app = current_app._get_current_object()
    settings = _settings(app)
    store = get_store()
    conversation = store.open_conversation({"name": name, "email": email, "phone": phone})
    visitor = make_visitor(conversation.id, name, email, phone, settings["public_url"])
    store.set_visitor(conversation.id, visitor)
    chat = get_simulator().add(
        ChatState(conversation.id, visitor, started_by=getattr(current_user, "id", None))
    )
    with chat.lock:
        delivery = deliver(
            settings["webhook_url"], trigger_payload(chat, settings["org_id"]),
            private_key=settings["private_key"], timeout=settings["timeout"],
        )
        apply_answer(chat, delivery)
    return chat


def send_line(chat: ChatState, text: str, meta: dict | None = None) -> None:
    """The visitor writes a line: to the bot while it holds the chat, else to people (event webhook)."""
    app = current_app._get_current_object()
    settings = _settings(app)
    store = get_store()
    with chat.lock:
        conversation = store.get(chat.conversation_id)
        if conversation is None or not conversation.is_open:
            return
        message = store.add_message(chat.conversation_id, "visitor", text, via="widget")
        chat.card, chat.card_error = None, None
        if conversation.handed_over:
            _send_event(chat, "conversation.visitor.replied", settings, message={
                "sender": {"id": chat.visitor.get("id"), "name": chat.visitor.get("name"), "type": "visitor"},
                "text": text, "msgid": message.id, "meta": meta or {},
            })
            return
        if chat.messages_sent == 0:
            chat.visitor["question"] = text
        payload = message_payload(chat, text, settings["org_id"], meta)
        chat.messages_sent += 1
        delivery = deliver(settings["webhook_url"], payload, private_key=settings["private_key"], timeout=settings["timeout"])
        apply_answer(chat, delivery)


def end_chat(chat: ChatState) -> None:
    """The visitor closes the chat window's conversation."""
    settings = _settings(current_app._get_current_object())
    store = get_store()
    with chat.lock:
        conversation = store.get(chat.conversation_id)
        if conversation is None or not conversation.is_open:
            return
        store.close(chat.conversation_id, by="visitor")
        chat.card = None
        _send_event(chat, "conversation.completed", settings)


def _send_event(chat: ChatState, event: str, settings: dict, message: dict | None = None) -> None:
    url = settings["events_url"]
    if not url:
        return
    store = get_store()
    conversation = store.get(chat.conversation_id)
    entity = conversation.to_api()
    entity["visitor_conversation_id"] = conversation.reference_id
    entity["visitor"] = dict(chat.visitor)
    if message is not None:
        entity["message"] = message
    delivery = deliver(url, event_payload(event, conversation, settings["org_id"], entity),
                       private_key=settings["private_key"], timeout=settings["timeout"])
    if delivery.status is None:
        store.note(chat.conversation_id, f"Event webhook error ({event}): {delivery.error}")
    elif not 200 <= delivery.status < 300:
        store.note(chat.conversation_id, f"Event webhook error ({event}): HTTP {delivery.status}")


# Views


def _is_fragment_request() -> bool:
    return bool(request.headers.get("HX-Request")) and not request.headers.get("HX-Boosted")


def _chat_or_404(conversation_id: str) -> tuple[ChatState, SandboxConversation]:
    chat = get_simulator().get(conversation_id)
    conversation = get_store().get(conversation_id)
    if chat is None or conversation is None:
        abort(404, "No such simulated chat (the simulator forgets its chats when the server restarts).")
    return chat, conversation


def _state_key(conversation: SandboxConversation) -> str:
    """What the composer depends on: open or closed, bot or people."""
    return f"{conversation.status}-{'people' if conversation.handed_over else 'bot'}"


def _context(chat: ChatState, conversation: SandboxConversation) -> dict:
    return {
        "chat": chat,
        "conversation": conversation,
        "lines": get_store().messages(conversation.id),
        "state_key": _state_key(conversation),
        "clock": _clock,
    }


def _clock(ms: int) -> str:
    """SalesIQ's epoch milliseconds as the widget shows them (server local time)."""
    return time.strftime("%H:%M:%S", time.localtime(ms / 1000))


@bp.get("/")
def index():
    form = StartChatForm(data=DEMO_VISITOR)
    return _index_page(form)


def _index_page(form: StartChatForm):
    return render_template(
        "sandbox/simulator.html", form=form, conversations=get_store().conversations()[:20], clock=_clock
    )


@bp.post("/chats")
def start():
    form = StartChatForm()
    if not form.validate_on_submit():
        return _index_page(form)
    chat = start_chat(form.name.data.strip(), (form.email.data or "").strip(), (form.phone.data or "").strip())
    return redirect(url_for("simulator.chat", conversation_id=chat.conversation_id), code=303)


@bp.get("/chats/<conversation_id>")
def chat(conversation_id: str):
    chat_state, conversation = _chat_or_404(conversation_id)
    template = "sandbox/partials/simulator_chat.html" if _is_fragment_request() else "sandbox/simulator_chat.html"
    return render_template(template, **_context(chat_state, conversation)), 200, {"Vary": "HX-Request"}


@bp.get("/chats/<conversation_id>/transcript")
def transcript(conversation_id: str):
    """Polled every second; 204 (htmx keeps the page as it is) while nothing changed."""
    chat_state, conversation = _chat_or_404(conversation_id)
    if request.args.get("v") == str(conversation.version):
        return "", 204
    headers = {}
    if request.args.get("s") and request.args.get("s") != _state_key(conversation):
        headers["HX-Trigger"] = "simulator-state-changed"
    return render_template("sandbox/partials/simulator_transcript.html", **_context(chat_state, conversation)), 200, headers


@bp.get("/chats/<conversation_id>/composer")
def composer(conversation_id: str):
    chat_state, conversation = _chat_or_404(conversation_id)
    return render_template("sandbox/partials/simulator_composer.html", **_context(chat_state, conversation))


@bp.post("/chats/<conversation_id>/messages")
def send(conversation_id: str):
    chat_state, conversation = _chat_or_404(conversation_id)
    text = (request.form.get("text") or "").strip()[:MAX_LINE]
    card_type = request.form.get("card") or ""
    meta = None
    if text and conversation.is_open:
        card = (chat_state.card or {}).get("input")
        if card and card_type and card_type == card.get("type"):
            error = _card_error(card, text)
            if error:
                chat_state.card_error = error
                return _after_post(conversation_id)
            value = text
            for option in card.get("options") or []:
                if option.get("label") == text:
                    value = option.get("value", text)
            meta = {"version": "1", "card_data": {"type": card["type"], "value": value}}
        send_line(chat_state, text, meta)
    return _after_post(conversation_id)


@bp.post("/chats/<conversation_id>/end")
def end(conversation_id: str):
    chat_state, _ = _chat_or_404(conversation_id)
    end_chat(chat_state)
    return _after_post(conversation_id)


def _after_post(conversation_id: str):
    if not _is_fragment_request():
        return redirect(url_for("simulator.chat", conversation_id=conversation_id), code=303)
    chat_state, conversation = _chat_or_404(conversation_id)
    return render_template("sandbox/partials/simulator_chat.html", **_context(chat_state, conversation))


def _card_error(card: dict, text: str) -> str | None:
    """The widget checks typed cards before sending, showing the card's own error text."""
    errors = card.get("error") if isinstance(card.get("error"), list) else []
    message = str(errors[0]) if errors else None
    if card.get("type") == "email":
        local, _, domain = text.partition("@")
        if not local or "." not in domain or " " in text:
            return message or "Enter a valid e-mail address."
    if card.get("type") == "tel":
        digits = sum(ch.isdigit() for ch in text)
        if not 7 <= digits <= 14 or any(not (ch.isdigit() or ch in "+-() .") for ch in text):
            return message or "Enter a valid phone number."
    return None
