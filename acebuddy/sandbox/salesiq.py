"""SalesIQ REST API v2 sandbox: the conversation endpoints AceBuddy calls, answering as SalesIQ does
(HTTP 200 with `{"url","object","data"}`, or HTTP 200 with `{"error":{"code","message"}}`).

State lives in one in-memory, thread-safe `SalesIQSandbox` per app (`app.extensions["salesiq_sandbox"]`):
each conversation's lines (visitor, bot, operator), transfers and close, every request received, and the
fault hooks tests and demos use (fail the next calls with an error code or a 5xx, add latency).
"""
from __future__ import annotations

import copy
import random
import re
import threading
import time
from dataclasses import asdict, dataclass, field

from flask import Blueprint, Flask, current_app, jsonify, request

from ..config import SANDBOX_SALESIQ_DEPARTMENT_ID, SANDBOX_SALESIQ_SCREEN
from . import accounts

api_bp = Blueprint("sandbox_salesiq", __name__, url_prefix="/sandbox/salesiq/api")

EXTENSION = "salesiq_sandbox"
# Zoho ids of one portal share a prefix (the department id above starts with it too).
ID_PREFIX = "34650000"
APP_ID = "3465000000002043"
DEPARTMENTS = {
    SANDBOX_SALESIQ_DEPARTMENT_ID: "Support",
    "3465000000007": "Billing",
}
OPERATORS = {
    # The operator whose OAuth token AceBuddy uses: REST messages appear under this name.
    "3465000000011": {"id": "3465000000011", "name": "AceBuddy Support", "email": "support@acebuddy.example"},
    "3465000000013": {"id": "3465000000013", "name": "Patricia Lee", "email": "patricia.lee@acebuddy.example"},
}
API_OPERATOR = OPERATORS["3465000000011"]
BOT = {"id": "3465000000017", "name": "AceBuddy", "email": "", "is_bot": True}
MAX_TEXT = 10000
CLOSED_BY = {
    "api": "An operator closed the chat.",
    "bot": "The bot ended the chat.",
    "visitor": "You ended the chat.",
}
MAX_RECORDED = 2000

# SalesIQ's documented error codes (developer-section/rest-api-v2.html) used by the sandbox.
ERRORS = {
    1001: "Unknown authentication error, Contact SalesIQ Team!",
    1002: "Invalid authorization header.",
    1004: "Invalid Request Type.",
    1005: "Invalid portal or wrong screen name.",
    1006: "Invalid URL",
    1007: "Invalid datatypes found in params",
    1008: "Invalid OAuthToken.",
    1009: "Invalid OAuthScope.",
    1015: "Either the input stream is invalid or absent",
    1016: "Operator doesn't have permission to perform the operation",
    1019: "Invalid Resource",
    1023: "Too many requests, lease try after sometime",
    1024: "Invalid Operator id/s",
    1025: "Invalid Department IDs",
    1031: "Insufficient data",
    1054: "Invalid header value",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class SandboxMessage:
    id: str
    sender_type: str  # visitor | bot | operator | info
    sender_name: str
    sender_id: str
    text: str
    time: int
    # Simulator notes (webhook errors, hand-over notices): shown to the person playing the
    # visitor, never listed by the REST API.
    internal: bool = False
    via: str = "widget"  # widget | webhook | rest | simulator
    rich: dict | None = None  # a bot reply's image, file or buttons (links only), for the simulator

    def to_api(self) -> dict:
        return {
            "id": self.id,
            "sender": {"id": self.sender_id, "name": self.sender_name, "type": self.sender_type},
            "type": "info" if self.sender_type == "info" else "text",
            "message": {"text": self.text},
            "time": str(self.time),
        }


@dataclass
class SandboxConversation:
    id: str
    reference_id: str  # the visible "#12" chat number
    visitor: dict
    department_id: str
    start_time: int
    status: str = "open"  # open | closed
    end_time: int | None = None
    closed_by: str | None = None
    attender: dict = field(default_factory=lambda: dict(BOT))
    forwarded: dict | None = None
    transfers: list[dict] = field(default_factory=list)
    messages: list[SandboxMessage] = field(default_factory=list)
    ends_at: float | None = None  # a bot `end` with a delay (epoch seconds)
    version: int = 0

    @property
    def is_open(self) -> bool:
        return self.status == "open"

    @property
    def handed_over(self) -> bool:
        """People hold the chat (a bot `forward` or a REST transfer): SalesIQ stops calling the bot."""
        return self.forwarded is not None or bool(self.transfers)

    def to_api(self) -> dict:
        visible = [m for m in self.messages if not m.internal]
        first_visitor = next((m for m in visible if m.sender_type == "visitor"), None)
        data = {
            "id": self.id,
            "reference_id": self.reference_id,
            "type": "chat",
            "app_id": APP_ID,
            "question": first_visitor.text if first_visitor else "",
            "start_time": str(self.start_time),
            "attender": dict(self.attender),
            "department": {"id": self.department_id, "name": DEPARTMENTS.get(self.department_id, "")},
            "visitor": {k: v for k, v in self.visitor.items() if k in ("name", "email", "phone", "id")},
            "status": "Open" if self.is_open else "Closed",
            "chat_status": {"status_code": 1 if self.is_open else 2, "state": 2 if self.is_open else 4,
                            "label": "Attended Online" if self.is_open else "Closed"},
        }
        if self.end_time is not None:
            data["end_time"] = str(self.end_time)
        if visible:
            data["last_message_info"] = {k: v for k, v in visible[-1].to_api().items() if k != "id"}
        return data


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict
    body: object  # parsed JSON, or the text when it is not JSON
    query: dict
    time: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass
class Fault:
    remaining: int
    code: int | None = None
    status: int | None = None
    message: str | None = None


class SalesIQSandbox:
    """The sandbox's state. Every method takes the lock; readers get copies."""

    def __init__(self, screen: str = SANDBOX_SALESIQ_SCREEN):
        self.screen = screen
        self._lock = threading.RLock()
        self._conversations: dict[str, SandboxConversation] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._latency = 0.0
        self._next_reference = 1
        self._next_message = 0

    # Conversations (the simulator plays the widget through these)
    def open_conversation(self, visitor: dict, department_id: str = SANDBOX_SALESIQ_DEPARTMENT_ID) -> SandboxConversation:
        with self._lock:
            while True:
                conversation_id = ID_PREFIX + f"{random.randrange(10**9):09d}"
                if conversation_id not in self._conversations:
                    break
            conversation = SandboxConversation(
                id=conversation_id,
                reference_id=str(self._next_reference),
                visitor=dict(visitor),
                department_id=department_id,
                start_time=_now_ms(),
            )
            self._next_reference += 1
            self._conversations[conversation_id] = conversation
            return copy.deepcopy(conversation)

    def get(self, conversation_id: str) -> SandboxConversation | None:
        with self._lock:
            conversation = self._live(conversation_id)
            return copy.deepcopy(conversation) if conversation else None

    def conversations(self) -> list[SandboxConversation]:
        with self._lock:
            for conversation_id in list(self._conversations):
                self._live(conversation_id)
            return [copy.deepcopy(c) for c in sorted(self._conversations.values(), key=lambda c: -int(c.reference_id))]

    def set_visitor(self, conversation_id: str, visitor: dict) -> None:
        with self._lock:
            self._require(conversation_id).visitor = dict(visitor)

    def version(self, conversation_id: str) -> int | None:
        with self._lock:
            conversation = self._live(conversation_id)
            return conversation.version if conversation else None

    def add_message(
        self,
        conversation_id: str,
        sender_type: str,
        text: str,
        *,
        sender: dict | None = None,
        internal: bool = False,
        via: str = "widget",
        rich: dict | None = None,
    ) -> SandboxMessage:
        with self._lock:
            conversation = self._require(conversation_id)
            if sender is None:
                sender = self._default_sender(conversation, sender_type)
            message = self._append(conversation, sender_type, sender, text, internal=internal, via=via, rich=rich)
            if sender_type == "visitor" and conversation.ends_at is not None:
                conversation.ends_at = None  # SalesIQ cancels a delayed end when the visitor writes
            return copy.deepcopy(message)

    def note(self, conversation_id: str, text: str) -> SandboxMessage:
        """A line only the simulator shows (an error, a hand-over notice)."""
        with self._lock:
            return copy.deepcopy(self._info(self._require(conversation_id), text))

    def messages(self, conversation_id: str, include_internal: bool = True) -> list[SandboxMessage]:
        with self._lock:
            conversation = self._require(conversation_id)
            return [copy.deepcopy(m) for m in conversation.messages if include_internal or not m.internal]

    def transfer(self, conversation_id: str, department_id: str, operator_id: str | None = None,
                 note: str | None = None, *, by: str = "api") -> SandboxConversation:
        with self._lock:
            conversation = self._require(conversation_id)
            conversation.transfers.append({
                "department_id": department_id, "operator_id": operator_id, "note": note,
                "by": by, "time": _now_ms(),
            })
            conversation.department_id = department_id
            target = DEPARTMENTS.get(department_id, department_id)
            if operator_id and operator_id in OPERATORS:
                conversation.attender = {**OPERATORS[operator_id], "is_bot": False}
                target = f"{OPERATORS[operator_id]['name']} ({target})"
            self._info(conversation, f"The chat was transferred to {target}.")
            return copy.deepcopy(conversation)

    def forward(self, conversation_id: str, department: str | None = None, operators: list | None = None) -> None:
        """The bot answered `action: forward`: SalesIQ hands the chat to people."""
        with self._lock:
            conversation = self._require(conversation_id)
            conversation.forwarded = {"department": department, "operators": list(operators or []), "time": _now_ms()}
            if department:
                conversation.department_id = str(department)
            conversation.attender = {"id": "", "name": DEPARTMENTS.get(str(department), "Operators"), "is_bot": False}
            conversation.version += 1

    def end_after(self, conversation_id: str, delay_seconds: float) -> None:
        """The bot answered `action: end` with a delay; the chat closes then unless the visitor writes."""
        with self._lock:
            conversation = self._require(conversation_id)
            conversation.ends_at = time.time() + max(0.0, delay_seconds)
            conversation.version += 1

    def close(self, conversation_id: str, *, by: str = "api") -> SandboxConversation:
        with self._lock:
            conversation = self._require(conversation_id)
            self._close(conversation, by)
            return copy.deepcopy(conversation)

    # Requests and faults
    def record(self, method: str, path: str, headers: dict, body, query: dict) -> None:
        with self._lock:
            self._requests.append(RecordedRequest(method, path, dict(headers), body, dict(query), time.time()))
            del self._requests[:-MAX_RECORDED]

    def requests(self, method: str | None = None, path_contains: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                copy.deepcopy(r) for r in self._requests
                if (method is None or r.method == method) and (path_contains is None or path_contains in r.path)
            ]

    def fail_next(self, count: int = 1, *, code: int | None = None, status: int | None = None,
                  message: str | None = None) -> None:
        """The next `count` API calls fail: with SalesIQ error `code` (HTTP 200), or with HTTP `status`."""
        if (code is None) == (status is None):
            raise ValueError("give exactly one of code (a SalesIQ error code) or status (an HTTP status)")
        if status is not None and not 400 <= int(status) <= 599:
            raise ValueError("status must be an HTTP error status (400-599)")
        with self._lock:
            self._faults.append(Fault(int(count), int(code) if code is not None else None,
                                      int(status) if status is not None else None, message))

    def set_latency(self, seconds: float) -> None:
        with self._lock:
            self._latency = max(0.0, float(seconds))

    def reset(self) -> None:
        """Forget faults, latency and recorded requests (conversations stay)."""
        with self._lock:
            self._faults.clear()
            self._requests.clear()
            self._latency = 0.0

    def state(self) -> dict:
        with self._lock:
            return {
                "screen": self.screen,
                "latency": self._latency,
                "faults": [asdict(f) for f in self._faults],
                "requests": len(self._requests),
                "conversations": len(self._conversations),
            }

    def take_fault(self) -> tuple[float, Fault | None]:
        """The latency to apply and the fault (if any) for the call arriving now."""
        with self._lock:
            fault = None
            while self._faults and fault is None:
                head = self._faults[0]
                if head.remaining > 0:
                    head.remaining -= 1
                    fault = Fault(1, head.code, head.status, head.message)
                if head.remaining <= 0:
                    self._faults.pop(0)
            return self._latency, fault

    # Internals (lock held)
    def _live(self, conversation_id: str) -> SandboxConversation | None:
        conversation = self._conversations.get(str(conversation_id))
        if conversation and conversation.is_open and conversation.ends_at is not None and time.time() >= conversation.ends_at:
            self._close(conversation, "bot")
        return conversation

    def _require(self, conversation_id: str) -> SandboxConversation:
        conversation = self._live(conversation_id)
        if conversation is None:
            raise KeyError(conversation_id)
        return conversation

    def _close(self, conversation: SandboxConversation, by: str) -> None:
        if conversation.is_open:
            conversation.status = "closed"
            conversation.end_time = _now_ms()
            conversation.closed_by = by
            conversation.ends_at = None
            self._info(conversation, CLOSED_BY.get(by, "The chat was closed."))

    def _info(self, conversation: SandboxConversation, text: str) -> SandboxMessage:
        """What only the simulator shows: the chat itself (closed, transferred) and webhook trouble."""
        return self._append(conversation, "info", {"id": "", "name": "SalesIQ"}, text, internal=True, via="simulator")

    def _append(self, conversation: SandboxConversation, sender_type: str, sender: dict, text: str, *,
                internal: bool, via: str, rich: dict | None = None) -> SandboxMessage:
        # Times never go backwards within a chat, so time order is line order.
        message_time = max(_now_ms(), conversation.messages[-1].time if conversation.messages else 0)
        self._next_message += 1
        message = SandboxMessage(
            id=f"{message_time}{self._next_message:04d}",
            sender_type=sender_type,
            sender_name=str(sender.get("name") or ""),
            sender_id=str(sender.get("id") or ""),
            text=text,
            time=message_time,
            internal=internal,
            via=via,
            rich=rich,
        )
        conversation.messages.append(message)
        conversation.version += 1
        return message

    def _default_sender(self, conversation: SandboxConversation, sender_type: str) -> dict:
        if sender_type == "visitor":
            return {"id": conversation.visitor.get("id", ""), "name": conversation.visitor.get("name") or "Visitor"}
        if sender_type == "bot":
            return BOT
        if sender_type == "operator":
            return API_OPERATOR
        return {"id": "", "name": "SalesIQ"}

    def latest_open_for_email(self, email: str) -> SandboxConversation | None:
        with self._lock:
            matches = [
                c for c in (self._live(cid) for cid in list(self._conversations))
                if c is not None and c.is_open and (c.visitor.get("email") or "").lower() == email.lower()
            ]
            return copy.deepcopy(max(matches, key=lambda c: int(c.reference_id))) if matches else None


def get_store(app: Flask | None = None) -> SalesIQSandbox:
    app = app or current_app
    store = app.extensions.get(EXTENSION)
    if store is None:
        store = app.extensions.setdefault(EXTENSION, SalesIQSandbox())
    return store


@api_bp.record_once
def _attach_store(state) -> None:
    state.app.extensions.setdefault(EXTENSION, SalesIQSandbox())


# The REST API


class ApiError(Exception):
    def __init__(self, code: int, message: str | None = None, **extra):
        super().__init__(message)
        self.code = code
        self.message = message or ERRORS.get(code, "Error")
        self.extra = extra


def _error_response(code: int, message: str | None = None, **extra):
    error = {"code": code, "message": message or ERRORS.get(code, "Error"), **extra}
    return jsonify(error=error), 200


def _api_path() -> str:
    """The path as SalesIQ reports it in `url` (without the sandbox's mount point)."""
    return request.path.removeprefix("/sandbox/salesiq")


def _success(data, object_name: str = "conversations"):
    return jsonify(url=_api_path(), object=object_name, data=data), 200


def _authenticate() -> None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme != "Zoho-oauthtoken" or not token.strip():
        raise ApiError(1002, header="Authorization")
    # The accounts sandbox knows which access tokens it minted and which expired.
    if accounts.authenticate() is not None:
        raise ApiError(1008)


def _json_body() -> dict:
    if request.mimetype != "application/json":
        raise ApiError(1054, header="content-type")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(1015)
    return body


def _text_field(body: dict) -> str:
    text = body.get("text")
    if text is None:
        raise ApiError(1015, json_key="text")
    if not isinstance(text, str):
        raise ApiError(1007, json_key="text")
    if not text.strip() or len(text) > MAX_TEXT:
        raise ApiError(1031, json_key="text")
    return text


def _open_conversation(store: SalesIQSandbox, conversation_id: str) -> SandboxConversation:
    conversation = store.get(conversation_id)
    if conversation is None:
        raise ApiError(1019, "Invalid conversation id")
    if not conversation.is_open:
        raise ApiError(1019, "Conversation already ended")  # code for a closed chat not documented [U]
    return conversation


def post_message(store: SalesIQSandbox, conversation_id: str):
    body = _json_body()
    text = _text_field(body)
    _open_conversation(store, conversation_id)
    message = store.add_message(conversation_id, "operator", text, via="rest")
    return _success(message.to_api(), "message")


def list_messages(store: SalesIQSandbox, conversation_id: str):
    if store.get(conversation_id) is None:
        raise ApiError(1019, "Invalid conversation id")
    items = [m.to_api() for m in store.messages(conversation_id, include_internal=False)]
    from_time = request.args.get("from_time")
    if from_time is not None:
        if not from_time.isdigit():
            raise ApiError(1007, param="from_time")
        items = [m for m in items if int(m["time"]) > int(from_time)]
    limit = request.args.get("limit")
    more = False
    if limit is not None:
        if not limit.isdigit() or not 1 <= int(limit) <= 99:
            raise ApiError(1007, param="limit")
        more = len(items) > int(limit)
        items = items[: int(limit)]
    return jsonify(url=_api_path(), object="message", data=items, more_data_available=more), 200


def post_to_visitor(store: SalesIQSandbox, email: str):
    body = _json_body()
    text = _text_field(body)
    if "@" not in email:
        raise ApiError(1007, "Invalid email id")
    conversation = store.latest_open_for_email(email)
    if conversation is None:
        raise ApiError(1019, "No active conversation for this visitor")
    message = store.add_message(conversation.id, "operator", text, via="rest")
    return _success(message.to_api(), "message")


def transfer(store: SalesIQSandbox, conversation_id: str):
    body = _json_body()
    department_id = body.get("department_id")
    if department_id in (None, ""):
        raise ApiError(1015, json_key="department_id")
    if not isinstance(department_id, (str, int)) or str(department_id) not in DEPARTMENTS:
        raise ApiError(1025)
    operator_id = body.get("operator_id")
    if operator_id not in (None, "") and str(operator_id) not in OPERATORS:
        raise ApiError(1024)
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise ApiError(1007, json_key="note")
    _open_conversation(store, conversation_id)
    conversation = store.transfer(
        conversation_id, str(department_id), str(operator_id) if operator_id else None, note, by="api"
    )
    return _success(conversation.to_api())


def close(store: SalesIQSandbox, conversation_id: str):
    _open_conversation(store, conversation_id)
    return _success(store.close(conversation_id, by="api").to_api())


def get_conversation(store: SalesIQSandbox, conversation_id: str):
    conversation = store.get(conversation_id)
    if conversation is None:
        raise ApiError(1019, "Invalid conversation id")
    return _success(conversation.to_api())


# (pattern, {method: handler}); the close method is undocumented [U], so both PUT and POST are served.
ROUTES = [
    (re.compile(r"conversations/([^/]+)/messages"), {"POST": post_message, "GET": list_messages}),
    (re.compile(r"visitors/([^/]+)/messages"), {"POST": post_to_visitor}),
    (re.compile(r"conversations/([^/]+)/transfer"), {"PUT": transfer}),
    (re.compile(r"conversations/([^/]+)/close"), {"PUT": close, "POST": close}),
    (re.compile(r"conversations/([^/]+)"), {"GET": get_conversation}),
]


@api_bp.route("/v2/<screen>/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def api(screen: str, rest: str):
    store = get_store()
    body = request.get_json(silent=True)
    store.record(request.method, request.path, dict(request.headers), body if body is not None else request.get_data(as_text=True), request.args.to_dict())
    latency, fault = store.take_fault()
    if latency:
        time.sleep(latency)
    if fault is not None:
        if fault.status is not None:
            return (fault.message or "Service Unavailable"), fault.status, {"Content-Type": "text/plain; charset=utf-8"}
        return _error_response(fault.code, fault.message)
    try:
        if screen != store.screen:
            raise ApiError(1005)
        _authenticate()
        for pattern, handlers in ROUTES:
            match = pattern.fullmatch(rest.strip("/"))
            if match:
                handler = handlers.get(request.method)
                if handler is None:
                    raise ApiError(1004)
                return handler(store, *match.groups())
        raise ApiError(1006)
    except ApiError as error:
        return _error_response(error.code, error.message, **error.extra)


# Control: the fault hooks and the recorded state, for tests and the demo (never part of SalesIQ).


@api_bp.before_request
def _guard_control():
    if request.path.startswith(f"{api_bp.url_prefix}/_control"):
        from . import control_refused

        return control_refused()


@api_bp.get("/_control")
def control_state():
    return jsonify(get_store().state())


@api_bp.post("/_control")
def control():
    """JSON: {"fail": {"count", "code" | "status", "message"?}}, {"latency": seconds}, {"reset": true}."""
    store = get_store()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return jsonify(error="expected a JSON object"), 400
    try:
        if body.get("reset"):
            store.reset()
        if "latency" in body:
            store.set_latency(float(body["latency"]))
        fail = body.get("fail")
        if fail is not None:
            if not isinstance(fail, dict):
                raise ValueError("fail must be an object")
            store.fail_next(int(fail.get("count", 1)), code=fail.get("code"), status=fail.get("status"),
                            message=fail.get("message"))
    except (TypeError, ValueError) as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(store.state())


@api_bp.get("/_control/requests")
def control_requests():
    store = get_store()
    found = store.requests(method=request.args.get("method"), path_contains=request.args.get("path"))
    return jsonify(requests=[r.to_json() for r in found])


@api_bp.get("/_control/conversations/<conversation_id>")
def control_conversation(conversation_id: str):
    conversation = get_store().get(conversation_id)
    if conversation is None:
        return jsonify(error="no such conversation"), 404
    return jsonify(asdict(conversation))
