"""Zoho Desk sandbox: an in-memory Desk API v1 (specs/zoho-desk-api.md §10) for demo mode and tests.

Same paths, headers, status codes, error bodies, id and time formats as Desk, with its daily credits
and concurrency limit. Tests steer it through `desk_sandbox(app)` (fault hooks, request log) or the
JSON control endpoint /sandbox/desk/_control; agents see it at /sandbox/desk/tickets.
"""
from __future__ import annotations

import copy
import fnmatch
import logging
import queue
import re
import socket
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta

import requests
from flask import Blueprint, Flask, current_app, flash, g, jsonify, redirect, render_template, request, url_for
from flask_login import login_required

from .. import clock
from ..config import SANDBOX_DEPARTMENT_ID, SANDBOX_ORG_ID
from ..extensions import csrf
from . import accounts, control_refused

log = logging.getLogger(__name__)

api_bp = Blueprint("sandbox_desk_api", __name__, url_prefix="/sandbox/desk/api/v1")
pages_bp = Blueprint("sandbox_desk", __name__, url_prefix="/sandbox/desk")

API_PREFIX = "/sandbox/desk/api/v1"
ID_PREFIX = "1892000000"  # + 9 digits = 19-digit ids, as Desk's
AGENT_ID = "1892000000139001"
LAYOUT_ID = "1892000000074011"
PORTAL = "acebuddy"

PRIORITIES = ("High", "Medium", "Low")
# Default statuses and the statusType each maps to (§7.6); Escalated's type is unconfirmed: Open.
STATUS_TYPES = {"Open": "Open", "On Hold": "On Hold", "Escalated": "Open", "Closed": "Closed"}
CHANNELS = ("Email", "Phone", "Web", "Chat", "Twitter", "Facebook", "Forums", "Feedback Widget")

# The custom fields AceBuddy writes (CONTRACT.md), as an admin would create them in Desk.
DEFAULT_CUSTOM_FIELDS = {
    "cf_salesiq_chat_id": "SalesIQ Chat ID",
    "cf_salesiq_visitor_id": "SalesIQ Visitor ID",
    "cf_automation_source": "Automation Source",
    "cf_workflow_type": "Workflow Type",
    "cf_acebuddy_ref": "AceBuddy Ref",
}

TICKET_FIELDS = {
    "subject", "departmentId", "contactId", "contact", "description", "email", "phone", "status",
    "priority", "channel", "classification", "category", "subCategory", "language", "dueDate",
    "assigneeId", "teamId", "productId", "accountId", "secondaryContacts", "uploads", "resolution",
    "layoutId", "cf", "customFields",
}
CONTACT_FIELDS = {
    "lastName", "firstName", "email", "secondaryEmail", "phone", "mobile", "accountId", "ownerId",
    "type", "title", "description", "street", "city", "state", "zip", "country", "cf", "customFields",
    "layoutId", "language",
}
TEXT_LIMITS = {"subject": 255, "description": 65535, "email": 150, "phone": 120, "lastName": 200,
               "firstName": 40, "secondaryEmail": 255, "mobile": 120}

HEADER_NAMES = {"orgid": "orgId", "sourceid": "sourceId"}

ISO_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,3})?Z$")
DIGITS = re.compile(r"^[0-9]+$")

_create_guard = threading.Lock()


class DeskApiError(Exception):
    """Raised by views and hooks; rendered as Desk's JSON error body."""

    def __init__(self, status: int, code: str, message: str, errors: list | None = None, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.errors, self.headers = status, code, message, errors, headers


def invalid_data(errors: list[dict]) -> DeskApiError:
    return DeskApiError(422, "INVALID_DATA", "The data does not comply to the validation restrictions defined.", errors)


def bad_param(name: str, extra: bool = False) -> DeskApiError:
    message = (f"Extra query parameter '{name}' is present in the input." if extra
               else f"The value passed for the '{name}' parameter is invalid.")
    return DeskApiError(422, "UNPROCESSABLE_ENTITY", message, [{"fieldName": name, "errorType": "invalid"}])


NOT_FOUND = (404, "URL_NOT_FOUND", "The URL you requested could not be found.")


@dataclass
class Rule:
    """A fault: for the next `count` calls matching method + path glob (relative to /api/v1)."""

    kind: str  # "error", "latency", "commit_hang", "commit_drop"
    method: str
    path: str
    count: int | None = 1  # None: every call
    status: int = 503
    error_code: str = "INTERNAL_SERVER_ERROR"
    message: str = "Internal server error."
    retry_after: int | None = None
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method in ("*", method)) and fnmatch.fnmatchcase(path, self.path) and self.count != 0


def _now() -> datetime:
    return clock.now().replace(microsecond=0)


def _iso(moment: datetime | None) -> str | None:
    return clock.iso_z(moment) if moment else None


def _midnight_seconds() -> int:
    now = clock.now()
    return max(1, int((datetime(now.year, now.month, now.day) + timedelta(days=1) - now).total_seconds()))


class DeskSandbox:
    """The Desk org's state, fault rules and request log. Every change happens under `lock`."""

    def __init__(self, org_id: str, department_id: str, webhook_url: str | None = None,
                 accounts_store: accounts.AccountsSandbox | None = None):
        self.org_id = org_id
        self.accounts = accounts_store
        self.department_id = department_id
        self.default_webhook_url = webhook_url
        self.lock = threading.RLock()
        self.wake = threading.Event()  # set by reset(): ends injected sleeps at once
        self.delivered = threading.Condition(self.lock)
        # One delivery thread: events reach the receiver in the order they happened.
        self._outbox: queue.Queue = queue.Queue()
        self._courier: threading.Thread | None = None
        self.reset()

    def reset(self) -> None:
        """Back to a fresh org: seed departments, no contacts or tickets, no faults, full credits."""
        self.wake.set()
        with self.lock:
            self.wake = threading.Event()
            self._next_id = 400001
            self._next_number = 101
            created = _iso(_now())
            self.departments = {}
            for dep_id, name, default in ((self.department_id, "Support", True),
                                          (ID_PREFIX + "006931", "Billing", False)):
                self.departments[dep_id] = {
                    "id": dep_id, "name": name, "description": None, "createdTime": created,
                    "chatStatus": "NOT_CREATED", "nameInCustomerPortal": name, "creatorId": AGENT_ID,
                    "isEnabled": True, "isDefault": default, "isAssignToTeamEnabled": True,
                    "isVisibleInCustomerPortal": True, "hasLogo": False, "sanitizedName": name.lower(),
                }
            self.custom_fields = dict(DEFAULT_CUSTOM_FIELDS)
            self.contacts: dict[str, dict] = {}
            self.tickets: dict[str, dict] = {}
            self.comments: dict[str, list[dict]] = {}
            self.rules: list[Rule] = []
            self.log: deque[dict] = deque(maxlen=2000)
            self.daily_credits = 50000
            self.credits = self.daily_credits
            self.credits_day = clock.now().date()
            self.credits_retry_after: int | None = None
            self.concurrency_limit = 10
            self.in_flight = 0
            self.peak_in_flight = 0
            self.webhook_url = self.default_webhook_url
            self.validated_urls: set[str] = set()
            self.deliveries: list[dict] = []

    def new_id(self) -> str:
        with self.lock:
            value = f"{ID_PREFIX}{self._next_id:09d}"
            self._next_id += 1000
            return value

    def fail_next(self, method: str, path: str, *, count: int = 1, status: int = 503,
                  error_code: str | None = None, message: str | None = None, retry_after: int | None = None) -> None:
        """The next `count` calls to method + path (a glob such as "/tickets/*") get this error."""
        defaults = {500: "INTERNAL_SERVER_ERROR", 503: "INTERNAL_SERVER_ERROR", 429: "THRESHOLD_EXCEEDED",
                    401: "INVALID_OAUTH", 404: "URL_NOT_FOUND"}
        rule = Rule("error", method.upper(), path, count, status, error_code or defaults.get(status, "BAD_REQUEST"),
                    message or "Injected failure.", retry_after)
        with self.lock:
            self.rules.append(rule)

    def add_latency(self, method: str, path: str, seconds: float, *, count: int | None = None) -> None:
        """Calls to method + path wait `seconds` before being handled (every call unless `count`)."""
        with self.lock:
            self.rules.append(Rule("latency", method.upper(), path, count, seconds=seconds))

    def commit_then_hang(self, method: str, path: str, seconds: float, *, count: int = 1) -> None:
        """The call is carried out, then its answer is held back `seconds` (past the client's timeout)."""
        with self.lock:
            self.rules.append(Rule("commit_hang", method.upper(), path, count, seconds=seconds))

    def commit_then_drop(self, method: str, path: str, *, count: int = 1) -> None:
        """The call is carried out, then the connection is closed without an answer."""
        with self.lock:
            self.rules.append(Rule("commit_drop", method.upper(), path, count))

    def expire_tokens(self) -> None:
        """Every access token issued so far becomes invalid, as on expiry."""
        self.accounts.expire_tokens()

    def set_credits(self, remaining: int, *, daily: int | None = None, retry_after: int | None = None) -> None:
        with self.lock:
            if daily is not None:
                self.daily_credits = daily
            self.credits = remaining
            self.credits_day = clock.now().date()
            self.credits_retry_after = retry_after

    def set_concurrency(self, limit: int) -> None:
        with self.lock:
            self.concurrency_limit = limit

    def set_webhook_url(self, url: str | None) -> None:
        with self.lock:
            self.webhook_url = url or None

    def define_custom_fields(self, fields: dict[str, str]) -> None:
        """Replace the ticket layout's custom fields ({api name: label})."""
        with self.lock:
            self.custom_fields = dict(fields)

    def _take_rule(self, kind: str, method: str, path: str) -> Rule | None:
        with self.lock:
            for rule in self.rules:
                if rule.kind == kind and rule.matches(method, path):
                    if rule.count is not None:
                        rule.count -= 1
                    return rule
        return None

    def sleep(self, seconds: float) -> None:
        self.wake.wait(seconds)

    @property
    def requests(self) -> list[dict]:
        with self.lock:
            return copy.deepcopy(list(self.log))

    def snapshot(self) -> dict:
        """Everything, as a deep copy (safe to read while the sandbox keeps serving)."""
        with self.lock:
            return copy.deepcopy({
                "requests": list(self.log),
                "tickets": sorted(self.tickets.values(), key=lambda t: int(t["ticketNumber"])),
                "contacts": list(self.contacts.values()),
                "comments": self.comments,
                "deliveries": self.deliveries,
                "credits": {"remaining": self.credits, "daily": self.daily_credits},
                "concurrency": {"limit": self.concurrency_limit, "peak": self.peak_in_flight},
                "tokens_minted": self.accounts.minted if self.accounts else None,
                "webhook_url": self.webhook_url,
            })

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[dict]:
        with self.delivered:
            self.delivered.wait_for(lambda: len(self.deliveries) >= count, timeout)
            return list(self.deliveries)

    def agent_set_status(self, ticket_id: str, status: str) -> dict:
        """An agent changes the status in Desk: the ticket changes and a webhook event goes out."""
        if status not in STATUS_TYPES:
            raise invalid_data([{"fieldName": "/status", "errorType": "invalid"}])
        with self.lock:
            ticket = self.tickets.get(ticket_id)
            if ticket is None:
                raise DeskApiError(*NOT_FOUND)
            return self._apply_update(ticket, {"status": status})

    def _apply_update(self, ticket: dict, changes: dict) -> dict:
        with self.lock:
            previous = {"status": ticket["status"], "statusType": ticket["statusType"]}
            now = _now()
            for key, value in changes.items():
                if key == "cf":
                    ticket["cf"].update(value)
                    ticket["customFields"] = {self.custom_fields[k]: v for k, v in ticket["cf"].items()
                                              if k in self.custom_fields}
                else:
                    ticket[key] = value
            if "status" in changes:
                status_type = STATUS_TYPES[ticket["status"]]
                if status_type != previous["statusType"]:
                    ticket["closedTime"] = _iso(now) if status_type == "Closed" else None
                    ticket["onholdTime"] = _iso(now) if status_type == "On Hold" else None
                ticket["statusType"] = status_type
                ticket["isEscalated"] = ticket["status"] == "Escalated"
            ticket["modifiedTime"] = _iso(now)
            if ticket["status"] != previous["status"]:
                self._emit("Ticket_Update", ticket, previous)
            return copy.deepcopy(ticket)

    def _emit(self, event_type: str, ticket: dict, previous: dict) -> None:
        url = self.webhook_url
        if not url:
            return
        event = {
            "eventType": event_type,
            "orgId": self.org_id,
            "eventTime": _iso(_now()),
            "payload": copy.deepcopy(ticket),
            "prevState": previous,
        }
        self._outbox.put((url, [event]))
        if self._courier is None or not self._courier.is_alive():
            self._courier = threading.Thread(target=self._deliver_forever, daemon=True, name="desk-sandbox-webhooks")
            self._courier.start()

    def _deliver_forever(self) -> None:
        while True:
            url, events = self._outbox.get()
            self._deliver(url, events)

    def _deliver(self, url: str, events: list[dict]) -> None:
        record = {"url": url.split("?", 1)[0], "events": events, "status": None, "error": None}
        try:
            if url not in self.validated_urls:
                # Desk checks a webhook URL with a GET that must answer 200 before it delivers (§9).
                check = requests.get(url, timeout=5)
                if check.status_code != 200:
                    raise _NotValidated(f"validation GET answered {check.status_code}")
                with self.lock:
                    self.validated_urls.add(url)
            # Desk gives a receiver 5 s (older docs) or 10 s (newer); the stricter figure.
            response = requests.post(url, json=events, timeout=5)
            record["status"] = response.status_code
            if response.status_code == 410:  # Gone: Desk deletes the subscription (§9)
                with self.lock:
                    if self.webhook_url == url:
                        self.webhook_url = None
        except _NotValidated as exc:
            record["error"] = str(exc)
        except requests.RequestException as exc:
            record["error"] = type(exc).__name__
            log.info("Desk sandbox webhook to %s failed: %s", record["url"], record["error"])
        with self.delivered:
            self.deliveries.append(record)
            self.delivered.notify_all()


class _NotValidated(Exception):
    pass


def desk_sandbox(app: Flask | None = None) -> DeskSandbox:
    """The app's Desk sandbox, created on first use."""
    app = app or current_app._get_current_object()
    store = app.extensions.get("desk_sandbox")
    if store is None:
        with _create_guard:
            store = app.extensions.get("desk_sandbox")
            if store is None:
                store = DeskSandbox(
                    str(app.config.get("ZOHO_ORG_ID") or SANDBOX_ORG_ID),
                    str(app.config.get("ZOHO_DEPARTMENT_ID") or SANDBOX_DEPARTMENT_ID),
                    app.config.get("DESK_SANDBOX_WEBHOOK_URL"),
                    accounts.accounts_sandbox(app),
                )
                app.extensions["desk_sandbox"] = store
    return store


def _json_response(body, status: int = 200, headers: dict | None = None):
    response = jsonify(body)
    response.status_code = status
    response.headers["Content-Type"] = "application/json;charset=UTF-8"
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


@api_bp.errorhandler(DeskApiError)
def _desk_error(error: DeskApiError):
    body = {"errorCode": error.code, "message": error.message}
    if error.errors:
        body["errors"] = error.errors
    return _json_response(body, error.status, error.headers)


@api_bp.before_request
def _gate():
    store = desk_sandbox()
    path = request.path[len(API_PREFIX):] or "/"
    method = request.method
    entry = {
        "method": method,
        "path": request.path,  # as received
        "api_path": path,  # after /api/v1, as the spec and the fault rules name it
        "query": request.args.to_dict(),
        # WSGI loses header case; give Desk's own headers back their documented names.
        "headers": {HEADER_NAMES.get(k.lower(), k): v for k, v in request.headers.items()},
        "json": request.get_json(silent=True) if request.data else None,
        "at": clock.iso_z(clock.now()),
        "status": None,
    }
    with store.lock:
        store.log.append(entry)
    g.desk_entry, g.desk_path, g.desk_weight, g.desk_slot, g.desk_after = entry, path, 1, False, None

    failure = accounts.authenticate()
    if failure is not None:
        raise DeskApiError(failure[1], failure[0]["errorCode"], failure[0]["message"])

    if path != "/organizations":
        org = request.headers.get("orgId")
        # Desk's answer to a missing orgId is not documented; a malformed one gets this 422 (§2.4).
        if not org or not DIGITS.match(org):
            raise bad_param("orgId")
        if org != store.org_id:
            raise DeskApiError(403, "OAUTH_ORG_MISMATCH", "The OAuthToken is not valid for specified organization.")

    with store.lock:
        today = clock.now().date()
        if today != store.credits_day:
            store.credits, store.credits_day, store.credits_retry_after = store.daily_credits, today, None
        if store.credits <= 0:
            retry_after = store.credits_retry_after or _midnight_seconds()
            raise DeskApiError(429, "THRESHOLD_EXCEEDED", "The API limit for this organization has been exceeded.",
                               headers={"Retry-After": str(retry_after)})
        if store.in_flight >= store.concurrency_limit:
            raise DeskApiError(429, "TOO_MANY_REQUESTS", "Too many requests are being made concurrently.")
        store.in_flight += 1
        store.peak_in_flight = max(store.peak_in_flight, store.in_flight)
        g.desk_slot = True

    # Injected latency is time spent processing, so it holds a concurrency slot like real work.
    latency = store._take_rule("latency", method, path)
    if latency is not None:
        store.sleep(latency.seconds)
    failure_rule = store._take_rule("error", method, path)
    if failure_rule is not None:
        headers = {"Retry-After": str(failure_rule.retry_after)} if failure_rule.retry_after is not None else None
        raise DeskApiError(failure_rule.status, failure_rule.error_code, failure_rule.message, headers=headers)
    g.desk_after = store._take_rule("commit_hang", method, path) or store._take_rule("commit_drop", method, path)
    return None


@api_bp.after_request
def _after(response):
    store = desk_sandbox()
    entry = g.get("desk_entry")
    if entry is not None:
        entry["status"] = response.status_code
    if 200 <= response.status_code < 300 and g.get("desk_slot"):
        with store.lock:
            store.credits = max(0, store.credits - g.desk_weight)
            remaining = store.credits
        response.headers["X-Rate-Limit-Remaining-v3"] = str(remaining)
        response.headers["X-Rate-Limit-Request-Weight-v3"] = str(g.desk_weight)
        if request.method in ("POST", "PATCH") and g.desk_path.startswith("/tickets"):
            for name in ("isassignmentruleapplied", "isslaapplied", "iswfruleapplied"):
                response.headers[name] = "false"
        rule = g.get("desk_after")
        if rule is not None and rule.kind == "commit_hang":
            store.sleep(rule.seconds)
        elif rule is not None and rule.kind == "commit_drop":
            sock = request.environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # the server's write then fails quietly
                except OSError:
                    pass
    return response


@api_bp.teardown_request
def _release(_exc):
    if g.get("desk_slot"):
        store = desk_sandbox()
        with store.lock:
            store.in_flight -= 1
        g.desk_slot = False


def _allow(*names: str) -> None:
    """Desk rejects query parameters it does not know (§3)."""
    allowed = set(names) | {"orgId"}
    for key in request.args:
        if key not in allowed:
            raise bad_param(key, extra=True)


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not DIGITS.match(raw) or not low <= int(raw) <= high:
        raise bad_param(name)
    return int(raw)


def _body() -> dict:
    if not request.data:
        raise DeskApiError(422, "EMPTY_PAYLOAD", "The payload is empty.")
    if not request.is_json:
        raise DeskApiError(415, "UNSUPPORTED_MEDIA_TYPE", "The media type of the request is not supported.")
    body = request.get_json(silent=True)
    if body is None:
        raise DeskApiError(400, "BAD_REQUEST", "The request is not valid JSON.")
    if not isinstance(body, dict):
        raise invalid_data([{"fieldName": "/", "errorType": "invalid"}])
    return body


def _page(rows: list, *, search: bool = False, default_limit: int = 25, max_limit: int = 100,
          max_from: int | None = None):
    start = _int_arg("from", 0, 0, max_from if max_from is not None else 10**9)
    limit = _int_arg("limit", default_limit, 1, max_limit)
    window = rows[start:start + limit]
    if not window:
        return "", 204
    body = {"data": window}
    if search:
        body["count"] = len(rows)
    return _json_response(body)


def _matches(actual, expression: str) -> bool:
    """Desk search values: exact (case-insensitive), trailing * wildcard, comma = OR, ${empty}."""
    actual = "" if actual is None else str(actual)
    for option in expression.split(","):
        option = option.strip()
        if option == "${empty}":
            hit = actual == ""
        elif option == "${notempty}":
            hit = actual != ""
        elif option.endswith("*"):
            hit = actual.lower().startswith(option[:-1].lower())
        else:
            hit = actual.lower() == option.lower()
        if hit:
            return True
    return False


def _time_range(name: str) -> tuple[datetime, datetime] | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    parts = raw.split(",")
    if len(parts) != 2 or not all(ISO_Z.match(p.strip()) for p in parts):
        raise bad_param(name)
    start, end = (clock.parse_iso(p.strip()) for p in parts)
    return start, end


def _check_text(body: dict, errors: list, *names: str) -> None:
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or len(value.encode("utf-16-le")) // 2 > TEXT_LIMITS.get(name, 255):
            errors.append({"fieldName": f"/{name}", "errorType": "invalid"})


def _check_unknown(body: dict, allowed: set, errors: list) -> None:
    # Whether Desk refuses unknown keys is unconfirmed; refusing them catches misspelt fields here.
    for key in body:
        if key not in allowed:
            errors.append({"fieldName": f"/{key}", "errorType": "invalid", "errorMessage": "Unknown field"})


def _check_cf(store: DeskSandbox, cf, errors: list) -> None:
    if cf is None:
        return
    if not isinstance(cf, dict):
        errors.append({"fieldName": "/cf", "errorType": "invalid"})
        return
    for key, value in cf.items():
        if key not in store.custom_fields:
            errors.append({"fieldName": f"/cf/{key}", "errorType": "invalid", "errorMessage": "No such custom field"})
        elif value is not None and (not isinstance(value, str) or len(value) > 255):
            errors.append({"fieldName": f"/cf/{key}", "errorType": "invalid"})


def _web_url(kind: str, record_id: str) -> str:
    return url_for("sandbox_desk.tickets_page", _external=True) + f"#{kind}-{record_id}"


@api_bp.get("/organizations")
def organizations():
    _allow()
    store = desk_sandbox()
    return _json_response({"data": [{
        "id": store.org_id, "companyName": "AceBuddy Demo Hosting", "portalName": PORTAL, "isDefault": True,
        "edition": "PROFESSIONAL", "isAdminInOrg": True, "isPayloadEncryptionEnabled": False,
    }]})


@api_bp.get("/departments")
def departments():
    _allow("isEnabled", "chatStatus", "searchStr", "from", "limit")
    g.desk_weight = 3
    store = desk_sandbox()
    with store.lock:
        rows = list(copy.deepcopy(store.departments).values())
    enabled = request.args.get("isEnabled")
    if enabled is not None:
        if enabled not in ("true", "false"):
            raise bad_param("isEnabled")
        rows = [d for d in rows if d["isEnabled"] == (enabled == "true")]
    if request.args.get("searchStr"):
        rows = [d for d in rows if _matches(d["name"], request.args["searchStr"])]
    return _page(rows, default_limit=10, max_limit=200)


@api_bp.get("/departments/<dep_id>")
def department(dep_id):
    _allow()
    store = desk_sandbox()
    with store.lock:
        dep = copy.deepcopy(store.departments.get(dep_id))
    if dep is None:
        raise DeskApiError(*NOT_FOUND)
    dep["associatedAgentIds"] = [AGENT_ID]
    return _json_response(dep)


@api_bp.get("/fields")
def fields():
    _allow("module", "apiNames", "filter", "associatedDepartments")
    g.desk_weight = 3
    module = request.args.get("module")
    if module not in ("tickets", "contacts"):
        raise bad_param("module")
    store = desk_sandbox()
    system = {
        "tickets": [("subject", "Subject", "Text", True), ("departmentId", "Department", "LookUp", True),
                    ("contactId", "Contact Name", "LookUp", True), ("status", "Status", "Picklist", False),
                    ("priority", "Priority", "Picklist", False), ("channel", "Channel", "Picklist", False),
                    ("dueDate", "Due Date", "DateTime", False), ("description", "Description", "Textarea", False),
                    ("email", "Email", "Email", False), ("phone", "Phone", "Phone", False)],
        "contacts": [("lastName", "Last Name", "Text", True), ("firstName", "First Name", "Text", False),
                     ("email", "Email", "Email", False), ("phone", "Phone", "Phone", False)],
    }[module]
    rows = [_field(api, label, kind, mandatory, False) for api, label, kind, mandatory in system]
    if module == "tickets":
        with store.lock:
            rows += [_field(api, label, "Text", False, True) for api, label in store.custom_fields.items()]
    if request.args.get("apiNames"):
        wanted = set(request.args["apiNames"].split(","))
        rows = [r for r in rows if r["apiName"] in wanted]
    return _json_response({"data": rows})


def _field(api: str, label: str, kind: str, mandatory: bool, custom: bool) -> dict:
    return {
        "id": f"{ID_PREFIX}{zlib.crc32(api.encode()) % 10**9:09d}", "apiName": api, "displayLabel": label,
        "i18NLabel": label, "name": label if custom else api, "type": kind, "isCustomField": custom,
        "isMandatory": mandatory, "maxLength": 255, "isEncryptedField": False, "isSortable": False,
        "sourceType": "USERDEFINED" if custom else "SYSTEM", "showToHelpCenter": False,
    }


def _new_contact(store: DeskSandbox, body: dict) -> dict:
    now = _iso(_now())
    contact_id = store.new_id()
    contact = {
        "id": contact_id, "firstName": body.get("firstName"), "lastName": body.get("lastName"),
        "email": body.get("email"), "secondaryEmail": body.get("secondaryEmail"), "phone": body.get("phone"),
        "mobile": body.get("mobile"), "ownerId": AGENT_ID, "accountId": body.get("accountId"),
        "type": body.get("type"), "title": body.get("title"), "description": body.get("description"),
        "cf": {}, "customFields": {}, "createdTime": now, "modifiedTime": now, "isSpam": False,
        "webUrl": _web_url("contact", contact_id),
    }
    store.contacts[contact_id] = contact
    return contact


def _contact_by_email(store: DeskSandbox, email: str | None) -> dict | None:
    if not email:
        return None
    for contact in store.contacts.values():
        if (contact.get("email") or "").lower() == email.lower():
            return contact
    return None


@api_bp.post("/contacts")
def create_contact():
    _allow()
    body = _body()
    store = desk_sandbox()
    errors: list[dict] = []
    _check_unknown(body, CONTACT_FIELDS, errors)
    if not body.get("lastName"):
        errors.append({"fieldName": "/lastName", "errorType": "missing"})
    _check_text(body, errors, "lastName", "firstName", "email", "secondaryEmail", "phone", "mobile")
    with store.lock:
        # A second contact with the same e-mail: low-confidence reading of the spec (§6.2).
        if not errors and _contact_by_email(store, body.get("email")) is not None:
            errors.append({"fieldName": "/email", "errorType": "duplicate"})
        if errors:
            raise invalid_data(errors)
        return _json_response(copy.deepcopy(_new_contact(store, body)))


@api_bp.get("/contacts/<contact_id>")
def get_contact(contact_id):
    _allow("include")
    store = desk_sandbox()
    with store.lock:
        contact = copy.deepcopy(store.contacts.get(contact_id))
    if contact is None:
        raise DeskApiError(*NOT_FOUND)
    return _json_response(contact)


@api_bp.get("/contacts/search")
def search_contacts():
    filters = ("email", "phone", "mobile", "firstName", "lastName", "id")
    _allow(*filters, "fullName", "from", "limit", "sortBy")
    g.desk_weight = 3
    store = desk_sandbox()
    with store.lock:
        rows = copy.deepcopy(list(store.contacts.values()))
    for name in filters:
        if name in request.args:
            rows = [c for c in rows if _matches(c.get(name), request.args[name])]
    if "fullName" in request.args:
        rows = [c for c in rows
                if _matches(" ".join(filter(None, (c.get("firstName"), c.get("lastName")))), request.args["fullName"])]
    rows.sort(key=lambda c: c["createdTime"], reverse=True)
    return _page(rows, search=True, default_limit=10, max_limit=100, max_from=999)


def _validate_ticket(store: DeskSandbox, body: dict, creating: bool) -> list[dict]:
    errors: list[dict] = []
    _check_unknown(body, TICKET_FIELDS, errors)
    if creating:
        for name in ("subject", "departmentId"):
            if not body.get(name):
                errors.append({"fieldName": f"/{name}", "errorType": "missing"})
        if not body.get("contactId") and not body.get("contact"):
            errors.append({"fieldName": "/contactId", "errorType": "missing"})
    elif "subject" in body and not body.get("subject"):
        errors.append({"fieldName": "/subject", "errorType": "invalid"})
    _check_text(body, errors, "subject", "description", "email", "phone")
    if body.get("departmentId") and str(body["departmentId"]) not in store.departments:
        errors.append({"fieldName": "/departmentId", "errorType": "invalid"})
    if body.get("contactId") and str(body["contactId"]) not in store.contacts:
        errors.append({"fieldName": "/contactId", "errorType": "invalid"})
    contact = body.get("contact")
    if contact is not None and not body.get("contactId"):
        if not isinstance(contact, dict):
            errors.append({"fieldName": "/contact", "errorType": "invalid"})
        elif not _contact_by_email(store, contact.get("email")) and not contact.get("lastName"):
            errors.append({"fieldName": "/contact/lastName", "errorType": "missing"})
    if "priority" in body and body["priority"] is not None and body["priority"] not in PRIORITIES:
        errors.append({"fieldName": "/priority", "errorType": "invalid"})
    if "status" in body and body["status"] not in STATUS_TYPES:
        errors.append({"fieldName": "/status", "errorType": "invalid"})
    if "channel" in body and body["channel"] not in CHANNELS:
        errors.append({"fieldName": "/channel", "errorType": "invalid"})
    due = body.get("dueDate")
    if due is not None and (not isinstance(due, str) or not ISO_Z.match(due) or clock.parse_iso(due) is None):
        errors.append({"fieldName": "/dueDate", "errorType": "invalid"})
    _check_cf(store, body.get("cf"), errors)
    return errors


def _decorated(store: DeskSandbox, ticket: dict) -> dict:
    """A search row: the ticket plus its contact and department objects."""
    row = copy.deepcopy(ticket)
    contact = store.contacts.get(ticket["contactId"]) or {}
    row["contact"] = {k: contact.get(k) for k in ("id", "firstName", "lastName", "email", "phone")}
    dep = store.departments.get(ticket["departmentId"]) or {}
    row["department"] = {"id": dep.get("id"), "name": dep.get("name")}
    row["assignee"] = None
    return row


@api_bp.post("/tickets")
def create_ticket():
    _allow()
    body = _body()
    store = desk_sandbox()
    with store.lock:
        errors = _validate_ticket(store, body, creating=True)
        if errors:
            raise invalid_data(errors)
        contact_id = str(body.get("contactId") or "")
        if not contact_id:
            inline = body["contact"]
            contact = _contact_by_email(store, inline.get("email")) or _new_contact(store, inline)
            contact_id = contact["id"]
        now = _iso(_now())
        ticket_id = store.new_id()
        status = body.get("status") or "Open"
        cf = {name: None for name in store.custom_fields}
        cf.update(body.get("cf") or {})
        ticket = {
            "id": ticket_id, "ticketNumber": str(store._next_number), "subject": body["subject"],
            "status": status, "statusType": STATUS_TYPES[status], "departmentId": str(body["departmentId"]),
            "contactId": contact_id, "accountId": None,
            # Desk answered "Phone" for a ticket created without a channel (NANGO recording).
            "channel": body.get("channel") or "Phone", "language": "English",
            "priority": body.get("priority"), "classification": body.get("classification"),
            "category": body.get("category"), "subCategory": body.get("subCategory"),
            "description": body.get("description"), "email": body.get("email"), "phone": body.get("phone"),
            "dueDate": _iso(clock.parse_iso(body["dueDate"]).replace(microsecond=0)) if body.get("dueDate") else None,
            "createdTime": now, "modifiedTime": now,
            "closedTime": now if STATUS_TYPES[status] == "Closed" else None,
            "onholdTime": now if STATUS_TYPES[status] == "On Hold" else None,
            "assigneeId": None, "teamId": None, "productId": None, "layoutId": LAYOUT_ID, "resolution": None,
            "threadCount": "0", "commentCount": "0", "attachmentCount": "0", "isSpam": False,
            "isDeleted": False, "isTrashed": False, "isEscalated": status == "Escalated",
            "modifiedBy": AGENT_ID, "source": {"type": "SYSTEM", "appName": None, "extId": None},
            "customFields": {store.custom_fields[k]: v for k, v in cf.items()}, "cf": cf,
            "webUrl": _web_url("ticket", ticket_id),
        }
        store._next_number += 1
        store.tickets[ticket_id] = ticket
        store.comments[ticket_id] = []
        return _json_response(copy.deepcopy(ticket))


def _ticket_or_404(store: DeskSandbox, ticket_id: str) -> dict:
    ticket = store.tickets.get(ticket_id)
    if ticket is None:
        raise DeskApiError(*NOT_FOUND)
    return ticket


@api_bp.get("/tickets/<ticket_id>")
def get_ticket(ticket_id):
    _allow("include")
    store = desk_sandbox()
    with store.lock:
        ticket = copy.deepcopy(_ticket_or_404(store, ticket_id))
    ticket.update({"isFollowing": False, "tagCount": "0", "followerCount": "0", "sentiment": None,
                   "createdBy": AGENT_ID})
    return _json_response(ticket)


@api_bp.patch("/tickets/<ticket_id>")
def update_ticket(ticket_id):
    _allow("disableClosureNotification")
    body = _body()
    store = desk_sandbox()
    with store.lock:
        ticket = _ticket_or_404(store, ticket_id)
        errors = _validate_ticket(store, body, creating=False)
        if "contact" in body:
            errors.append({"fieldName": "/contact", "errorType": "invalid"})
        if errors:
            raise invalid_data(errors)
        changes = {k: v for k, v in body.items()}
        if "dueDate" in changes and changes["dueDate"]:
            changes["dueDate"] = _iso(clock.parse_iso(changes["dueDate"]).replace(microsecond=0))
        return _json_response(store._apply_update(ticket, changes))


@api_bp.get("/tickets")
def list_tickets():
    _allow("from", "limit", "departmentId", "departmentIds", "viewId", "assignee", "status", "priority",
           "channel", "receivedInDays", "sortBy", "include", "fields")
    g.desk_weight = 3
    store = desk_sandbox()
    with store.lock:
        rows = copy.deepcopy(list(store.tickets.values()))
    for name in ("status", "priority", "channel", "departmentId"):
        if name in request.args:
            rows = [t for t in rows if _matches(t.get(name), request.args[name])]
    sort = request.args.get("sortBy", "-createdTime")
    key = sort.lstrip("-")
    if key not in ("dueDate", "createdTime", "recentThread"):
        raise bad_param("sortBy")
    key = "modifiedTime" if key == "recentThread" else key
    rows.sort(key=lambda t: (t.get(key) or "", int(t["ticketNumber"])), reverse=sort.startswith("-"))
    return _page(rows, default_limit=25, max_limit=100)


@api_bp.get("/tickets/search")
def search_tickets():
    filters = ("id", "ticketNumber", "email", "phone", "subject", "description", "status", "priority",
               "channel", "category", "departmentId", "contactId")
    custom = tuple(f"customField{i}" for i in range(1, 11))
    ranges = ("createdTimeRange", "modifiedTimeRange", "dueDateRange")
    _allow(*filters, *custom, *ranges, "tag", "accountId", "assigneeId", "_all", "sortBy", "from", "limit")
    g.desk_weight = 3
    store = desk_sandbox()
    with store.lock:
        rows = [_decorated(store, t) for t in store.tickets.values()]
        known_cf = set(store.custom_fields)
    for name in filters:
        if name in request.args:
            rows = [t for t in rows if _matches(t.get(name), request.args[name])]
    for name in custom:
        if name in request.args:
            api_name, sep, value = request.args[name].partition(":")
            if not sep or api_name not in known_cf:
                raise bad_param(name)
            rows = [t for t in rows if _matches(t["cf"].get(api_name), value)]
    for name in ranges:
        window = _time_range(name)
        if window is not None:
            field_name = {"createdTimeRange": "createdTime", "modifiedTimeRange": "modifiedTime",
                          "dueDateRange": "dueDate"}[name]
            rows = [t for t in rows if t.get(field_name)
                    and window[0] <= clock.parse_iso(t[field_name]) <= window[1]]
    sort = request.args.get("sortBy", "relevance")
    key = sort.lstrip("-")
    if key not in ("relevance", "modifiedTime", "createdTime", "customerResponseTime"):
        raise bad_param("sortBy")
    if key in ("relevance", "customerResponseTime"):
        rows.sort(key=lambda t: int(t["ticketNumber"]), reverse=True)
    else:
        rows.sort(key=lambda t: (t[key], int(t["ticketNumber"])), reverse=sort.startswith("-"))
    return _page(rows, search=True, default_limit=10, max_limit=100, max_from=999)


@api_bp.post("/tickets/<ticket_id>/comments")
def add_comment(ticket_id):
    _allow()
    body = _body()
    store = desk_sandbox()
    errors: list[dict] = []
    _check_unknown(body, {"content", "isPublic", "contentType", "attachmentIds"}, errors)
    content = body.get("content")
    if not content:
        errors.append({"fieldName": "/content", "errorType": "missing"})
    elif not isinstance(content, str) or len(content.encode("utf-16-le")) // 2 > 32000:
        errors.append({"fieldName": "/content", "errorType": "invalid"})
    if "isPublic" in body and not isinstance(body["isPublic"], bool):
        errors.append({"fieldName": "/isPublic", "errorType": "invalid"})
    if body.get("contentType", "html") not in ("html", "plainText"):
        errors.append({"fieldName": "/contentType", "errorType": "invalid"})
    with store.lock:
        ticket = _ticket_or_404(store, ticket_id)
        if errors:
            raise invalid_data(errors)
        comment = {
            "id": store.new_id(), "content": content, "contentType": body.get("contentType", "html"),
            "isPublic": bool(body.get("isPublic", False)), "commentedTime": _iso(_now()), "modifiedTime": None,
            "commenterId": AGENT_ID,
            "commenter": {"name": "AceBuddy Integration", "firstName": "AceBuddy", "lastName": "Integration",
                          "email": "integration@acebuddy.example", "photoURL": None, "roleName": "Administrator",
                          "type": "AGENT"},
            "attachments": [], "impersonatedUser": None,
        }
        store.comments.setdefault(ticket_id, []).append(comment)
        ticket["commentCount"] = str(len(store.comments[ticket_id]))
        return _json_response(copy.deepcopy(comment))


@api_bp.get("/tickets/<ticket_id>/comments")
def list_comments(ticket_id):
    _allow("from", "limit", "sortBy", "include")
    g.desk_weight = 3
    store = desk_sandbox()
    with store.lock:
        _ticket_or_404(store, ticket_id)
        rows = copy.deepcopy(store.comments.get(ticket_id, []))
    sort = request.args.get("sortBy", "-commentedTime")
    if sort.lstrip("-") != "commentedTime":
        raise bad_param("sortBy")
    rows.sort(key=lambda c: (c["commentedTime"], c["id"]), reverse=sort.startswith("-"))
    return _page(rows, default_limit=50, max_limit=100)


@api_bp.route("/<path:_rest>", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
def unknown_url(_rest):
    raise DeskApiError(*NOT_FOUND)


@pages_bp.route("/_control", methods=["GET", "POST"])
@csrf.exempt
def control():
    refused = control_refused()
    if refused is not None:
        return refused
    store = desk_sandbox()
    if request.method == "GET":
        return jsonify(store.snapshot())
    body = request.get_json(silent=True) or {}
    action = body.get("action")
    method, path = body.get("method", "*"), body.get("path", "*")
    try:
        if action == "fail":
            store.fail_next(method, path, count=int(body.get("count", 1)), status=int(body.get("status", 503)),
                            error_code=body.get("errorCode"), message=body.get("message"),
                            retry_after=body.get("retryAfter"))
        elif action == "latency":
            store.add_latency(method, path, float(body["seconds"]), count=body.get("count"))
        elif action == "commit_hang":
            store.commit_then_hang(method, path, float(body["seconds"]), count=int(body.get("count", 1)))
        elif action == "commit_drop":
            store.commit_then_drop(method, path, count=int(body.get("count", 1)))
        elif action == "expire_tokens":
            store.expire_tokens()
        elif action == "credits":
            store.set_credits(int(body["remaining"]), daily=body.get("daily"), retry_after=body.get("retryAfter"))
        elif action == "concurrency":
            store.set_concurrency(int(body["limit"]))
        elif action == "webhook":
            store.set_webhook_url(body.get("url"))
        elif action == "custom_fields":
            store.define_custom_fields(dict(body["fields"]))
        elif action == "set_status":
            return jsonify(store.agent_set_status(str(body["ticketId"]), body["status"]))
        elif action == "reset":
            store.reset()
            store.accounts.reset()
        else:
            return jsonify(error=f"unknown action {action!r}"), 400
    except (KeyError, TypeError, ValueError) as exc:
        return jsonify(error=f"bad control request: {exc}"), 400
    except DeskApiError as exc:
        return jsonify(errorCode=exc.code, message=exc.message), exc.status
    return jsonify(ok=True)


@pages_bp.get("/tickets")
@login_required
def tickets_page():
    store = desk_sandbox()
    with store.lock:
        tickets = copy.deepcopy(sorted(store.tickets.values(), key=lambda t: int(t["ticketNumber"]), reverse=True))
        contacts = copy.deepcopy(store.contacts)
        comments = copy.deepcopy(store.comments)
        custom_fields = dict(store.custom_fields)
        credits = store.credits
    return render_template(
        "sandbox/desk_tickets.html", tickets=tickets, contacts=contacts, comments=comments,
        custom_fields=custom_fields, statuses=list(STATUS_TYPES), credits=credits,
    )


@pages_bp.post("/tickets/<ticket_id>/status")
@login_required
def set_ticket_status(ticket_id):
    """An agent changes a ticket's status "in Desk" (and Desk's webhook fires)."""
    try:
        ticket = desk_sandbox().agent_set_status(ticket_id, request.form.get("status", ""))
    except DeskApiError as exc:
        flash(exc.message, "error")
    else:
        flash(f"Ticket #{ticket['ticketNumber']} is now {ticket['status']}.", "info")
    return redirect(url_for("sandbox_desk.tickets_page") + f"#ticket-{ticket_id}")
