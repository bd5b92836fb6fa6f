"""Zoho Desk REST API v1 client (specs/zoho-desk-api.md): contacts, tickets, comments, fields.

Every process shares, through Redis, the OAuth token, a concurrency cap on in-flight calls, the
"daily credits exhausted" block and the last credit reading, because Zoho counts all of them per org.
"""
from __future__ import annotations

import logging
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import requests
import urllib3.exceptions

from ..clock import iso_z, parse_iso
from .errors import AuthError, PermanentError, RetryableError
from .oauth import TokenProvider

log = logging.getLogger(__name__)

# Field limits from the spec; where the sources disagree the smaller number is used (§7.1, §11).
COMMENT_MAX = 32000
SUBJECT_MAX = 255  # QDX says 255, OAS 1000
DESCRIPTION_MAX = 65535
CF_VALUE_MAX = 255
FIRST_NAME_MAX = 40  # the spec reads "40-100"
LAST_NAME_MAX = 200
SEARCH_LIMIT_MAX = 100
SEARCH_FROM_MAX = 999

REF_FIELD = "cf_acebuddy_ref"

# TOO_MANY_REQUESTS is retried inside the call only while the wait stays this short; a longer
# Retry-After goes back to the caller (a job is better re-queued than asleep).
MAX_INLINE_WAIT = 5.0

# Characters with a meaning in Desk search values (§6.1): OR, wildcard, ${empty}/${notempty}.
_SEARCH_SPECIAL = re.compile(r"[,*]|\$\{")
_DIGITS = re.compile(r"^[0-9]{1,30}$")

# Acquire a concurrency slot when fewer than `limit` unexpired leases exist (scores = expiry, ms).
_ACQUIRE_SLOT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
  end
  return 1
end
return 0
"""

# Only ever lengthen the shared THRESHOLD_EXCEEDED block.
_EXTEND_BLOCK = """
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
  return 1
end
return 0
"""


def _str(value) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class DeskOrganization:
    id: str
    company_name: str | None
    portal_name: str | None
    is_default: bool
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict) -> DeskOrganization:
        return cls(
            id=str(data["id"]),
            company_name=data.get("companyName"),
            portal_name=data.get("portalName"),
            is_default=bool(data.get("isDefault")),
            raw=data,
        )


@dataclass(frozen=True)
class DeskDepartment:
    id: str
    name: str | None
    is_enabled: bool
    is_default: bool
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict) -> DeskDepartment:
        return cls(
            id=str(data["id"]),
            name=data.get("name"),
            is_enabled=bool(data.get("isEnabled", True)),
            is_default=bool(data.get("isDefault")),
            raw=data,
        )


@dataclass(frozen=True)
class DeskContact:
    id: str
    first_name: str | None = field(default=None, repr=False)
    last_name: str | None = field(default=None, repr=False)
    email: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    web_url: str | None = None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict) -> DeskContact:
        return cls(
            id=str(data["id"]),
            first_name=data.get("firstName"),
            last_name=data.get("lastName"),
            email=data.get("email"),
            phone=data.get("phone"),
            web_url=data.get("webUrl"),
            raw=data,
        )


@dataclass(frozen=True)
class DeskTicket:
    """A ticket as Desk returned it. Times are naive UTC; `raw` is the whole JSON object."""

    id: str
    number: str | None
    status: str | None
    status_type: str | None
    web_url: str | None = None
    closed_time: datetime | None = None
    modified_time: datetime | None = None
    due_date: datetime | None = None
    created_time: datetime | None = None
    priority: str | None = None
    department_id: str | None = None
    contact_id: str | None = None
    subject: str | None = field(default=None, repr=False)
    cf: dict = field(default_factory=dict, repr=False, compare=False)
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_closed(self) -> bool:
        # Sync logic keys on statusType: custom statuses all map onto Open / On Hold / Closed (§7.6).
        return self.status_type == "Closed"

    @classmethod
    def from_json(cls, data: dict) -> DeskTicket:
        return cls(
            id=str(data["id"]),
            number=_str(data.get("ticketNumber")),
            status=data.get("status"),
            status_type=data.get("statusType"),
            web_url=data.get("webUrl"),
            closed_time=parse_iso(data.get("closedTime")),
            modified_time=parse_iso(data.get("modifiedTime")),
            due_date=parse_iso(data.get("dueDate")),
            created_time=parse_iso(data.get("createdTime")),
            priority=data.get("priority"),
            department_id=_str(data.get("departmentId")),
            contact_id=_str(data.get("contactId")),
            subject=data.get("subject"),
            cf=dict(data.get("cf") or {}),
            raw=data,
        )


@dataclass(frozen=True)
class DeskComment:
    id: str
    content: str = field(repr=False)
    is_public: bool
    content_type: str | None
    commented_time: datetime | None
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict) -> DeskComment:
        return cls(
            id=str(data["id"]),
            content=data.get("content") or "",
            is_public=bool(data.get("isPublic")),
            content_type=data.get("contentType"),
            commented_time=parse_iso(data.get("commentedTime")),
            raw=data,
        )


@dataclass(frozen=True)
class DeskField:
    id: str | None
    api_name: str
    display_label: str | None
    type: str | None
    is_custom: bool
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: dict) -> DeskField:
        return cls(
            id=_str(data.get("id")),
            api_name=data.get("apiName") or data.get("name") or "",
            display_label=data.get("displayLabel"),
            type=data.get("type"),
            is_custom=bool(data.get("isCustomField")),
            raw=data,
        )


@dataclass
class NewTicket:
    """What AceBuddy sends to create a ticket (CONTRACT.md "Zoho Desk ticket fields written")."""

    subject: str = field(repr=False)
    department_id: str
    contact_id: str
    description: str | None = field(default=None, repr=False)
    priority: str | None = None  # High / Medium / Low
    channel: str = "Chat"
    due_date: datetime | None = None  # naive UTC, or aware (converted)
    email: str | None = field(default=None, repr=False)
    phone: str | None = field(default=None, repr=False)
    status: str = "Open"  # or "Escalated"
    cf: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_json(self) -> dict:
        body: dict[str, Any] = {
            "subject": _clip(self.subject, SUBJECT_MAX),
            "departmentId": str(self.department_id),
            "contactId": str(self.contact_id),
        }
        optional = {
            "description": _clip(self.description, DESCRIPTION_MAX),
            "priority": self.priority,
            "channel": self.channel,
            "dueDate": zoho_time(self.due_date),
            "email": self.email,
            "phone": self.phone,
            "status": self.status,
        }
        body.update({k: v for k, v in optional.items() if v not in (None, "")})
        if self.cf:
            # Custom field values are strings of at most 255 characters, or null (§7.1).
            body["cf"] = {k: (None if v is None else _clip(str(v), CF_VALUE_MAX)) for k, v in self.cf.items()}
        return body


def zoho_time(moment: datetime | None) -> str | None:
    """Desk's time format, `2026-06-11T16:12:11.000Z`: naive datetimes are taken as UTC, aware ones
    converted. Desk keeps whole seconds, so the milliseconds are always 000."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return iso_z(moment.replace(microsecond=0))


def _clip(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"


def _utf16_len(text: str) -> int:
    # Desk is a Java service: its length limits most likely count UTF-16 code units, in which an
    # emoji counts twice. Measuring that way is safe whichever way Desk counts.
    return len(text.encode("utf-16-le")) // 2


def split_name(full_name: str | None) -> tuple[str | None, str | None]:
    """"Mary Ann Smith" -> ("Mary Ann", "Smith"); a single word is the last name (Desk requires one)."""
    parts = (full_name or "").split()
    if not parts:
        return None, None
    if len(parts) == 1:
        return None, parts[0]
    return " ".join(parts[:-1]), parts[-1]


def _part_marker(k: int, n: int) -> str:
    return f"(part {k} of {n})\n"


def _chunks(text: str, size: int) -> list[str]:
    """Cut `text` into pieces of at most `size` UTF-16 units, at a line break when one is near."""
    pieces, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        while _utf16_len(text[start:end]) > size:
            end -= _utf16_len(text[start:end]) - size
        if end < len(text):
            newline = text.rfind("\n", start, end)
            if newline > start + size // 2:
                end = newline + 1
        pieces.append(text[start:end])
        start = end
    return pieces


def split_comment(text: str, limit: int = COMMENT_MAX) -> list[str]:
    """Comments hold at most 32000 characters (§8): longer text becomes "(part k of n)" comments."""
    if _utf16_len(text) <= limit:
        return [text]
    n = 2
    while True:
        pieces = _chunks(text, limit - len(_part_marker(n, n)))
        if len(pieces) <= n:
            return [_part_marker(k, len(pieces)) + piece for k, piece in enumerate(pieces, 1)]
        n = len(pieces)


def _check_id(value: str) -> str:
    value = str(value)
    if not _DIGITS.match(value):
        raise ValueError("Desk ids are numeric strings")
    return value


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request certainly did not reach Desk (no connection was made)."""
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return True
    reason = exc.args[0] if exc.args else None
    reason = getattr(reason, "reason", reason)  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError))


_local_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_local_blocks: dict[str, float] = {}
_local_guard = threading.Lock()


class SlotLimiter:
    """A semaphore shared by every process through Redis.

    Each holder takes a lease that expires on its own, so a process killed mid-call frees its slot
    after `lease_seconds` instead of leaking it. Without Redis, a per-process semaphore.
    """

    def __init__(self, redis, key: str, limit: int, lease_seconds: float):
        self.redis = redis
        self.key = key
        self.limit = max(1, int(limit))
        self.lease_ms = max(1, int(lease_seconds * 1000))
        self._acquire = redis.register_script(_ACQUIRE_SLOT) if redis is not None else None
        if redis is None:
            with _local_guard:
                self._local = _local_slots.setdefault((key, self.limit), threading.BoundedSemaphore(self.limit))

    def acquire(self, wait: float) -> str | None:
        """A lease id, or None when no slot freed up within `wait` seconds."""
        if self.redis is None:
            return "local" if self._local.acquire(timeout=wait) else None
        lease = uuid.uuid4().hex
        deadline = time.monotonic() + wait
        while True:
            if self._acquire(keys=[self.key], args=[self.limit, self.lease_ms, lease]):
                return lease
            if time.monotonic() >= deadline:
                return None
            time.sleep(random.uniform(0.01, 0.04))

    def release(self, lease: str) -> None:
        if self.redis is None:
            self._local.release()
        else:
            self.redis.zrem(self.key, lease)


class DeskClient:
    """Zoho Desk API v1 for one org. Safe to build per job; the shared state lives in Redis."""

    def __init__(
        self,
        base_url: str,
        org_id: str,
        tokens: TokenProvider,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        redis=None,
        concurrency: int = 10,
        credits_warn_below: int = 500,
        busy_retries: int = 2,
        busy_backoff: float = 0.5,
        slot_wait: float | None = None,
        page_size: int = SEARCH_LIMIT_MAX,
        blocks=None,
    ):
        if not org_id:
            raise ValueError("ZOHO_ORG_ID is required for every Desk call but /organizations")
        self.base_url = base_url.rstrip("/")
        self.org_id = str(org_id)
        self.tokens = tokens
        self.session = session or requests.Session()
        self.timeout = timeout
        self.redis = redis
        # The durable copy of the THRESHOLD_EXCEEDED block (desk/blocks.py): `extend(key, seconds)`,
        # `remaining(key)`. None: the block lives in Redis (or this process) only.
        self.blocks = blocks
        self.credits_warn_below = credits_warn_below
        self.busy_retries = busy_retries
        self.busy_backoff = busy_backoff
        self.slot_wait = timeout if slot_wait is None else slot_wait
        self.page_size = max(1, min(SEARCH_LIMIT_MAX, page_size))
        self.key_prefix = f"acebuddy:desk:{self.org_id}"
        # A lease outlives the longest call (connect + read timeouts) with room to spare.
        self.slots = SlotLimiter(redis, self.key_prefix + ":slots", concurrency, lease_seconds=2 * timeout + 5)
        self.last_credits: int | None = None
        self._warned_at = 0.0

    def list_organizations(self) -> list[DeskOrganization]:
        """The orgs the token can reach (the one call that needs no orgId header)."""
        body = self._request("GET", "/organizations", with_org=False)
        return [DeskOrganization.from_json(row) for row in (body or {}).get("data", [])]

    def list_departments(self) -> list[DeskDepartment]:
        body = self._request("GET", "/departments", params={"isEnabled": "true", "from": 0, "limit": 200})
        return [DeskDepartment.from_json(row) for row in (body or {}).get("data", [])]

    def get_department(self, department_id: str) -> DeskDepartment:
        return DeskDepartment.from_json(self._request("GET", f"/departments/{_check_id(department_id)}"))

    def list_custom_fields(self, module: str = "tickets") -> list[DeskField]:
        """The module's custom fields, from `GET /fields?module=` (Zoho's OpenAPI Field.json).

        Not in the spec digest: found in zoho/zohodesk-oas v1.0/Field.json (scopes Desk.basic.READ
        or Desk.fields.READ). The older /organizationFields is deprecated there.
        """
        body = self._request("GET", "/fields", params={"module": module})
        fields = [DeskField.from_json(row) for row in (body or {}).get("data", [])]
        return [f for f in fields if f.is_custom]

    def missing_custom_fields(self, required: Iterable[str], module: str = "tickets") -> list[str]:
        """Which of the `cf_` API names AceBuddy writes do not exist in Desk (for `desk check`)."""
        present = {f.api_name for f in self.list_custom_fields(module)}
        return [name for name in required if name not in present]

    def find_contact_by_email(self, email: str) -> DeskContact | None:
        """The contact with exactly this e-mail (case-insensitive), or None (Desk answers 204)."""
        email = (email or "").strip()
        if not email:
            return None
        if _SEARCH_SPECIAL.search(email):
            # A comma or star would turn the exact search into an OR or a wildcard search, and
            # Desk documents no escape: such a (rare, legal) address is treated as not found.
            log.warning("Desk contact search skipped: the e-mail holds a search operator")
            return None
        body = self._request("GET", "/contacts/search", params={"email": email, "limit": 1})
        for row in (body or {}).get("data", []):
            if (row.get("email") or "").lower() == email.lower():
                return DeskContact.from_json(row)
        return None

    def create_contact(
        self,
        first_name: str | None,
        last_name: str | None,
        email: str | None = None,
        phone: str | None = None,
    ) -> DeskContact:
        """Create a contact. Desk requires lastName: a full name in `first_name` is split, and with
        no name at all the e-mail's local part stands in."""
        first = (first_name or "").strip() or None
        last = (last_name or "").strip() or None
        if not last and first:
            first, last = split_name(first)
        if not last and email:
            last = email.split("@", 1)[0].strip() or None
        if not last:
            raise ValueError("a Desk contact needs a last name or an e-mail address")
        body = {"lastName": _clip(last, LAST_NAME_MAX)}
        if first:
            body["firstName"] = _clip(first, FIRST_NAME_MAX)
        if email:
            body["email"] = email.strip()
        if phone:
            body["phone"] = phone.strip()
        try:
            return DeskContact.from_json(self._request("POST", "/contacts", body=body))
        except PermanentError as exc:
            # Whether Desk refuses a second contact with the same e-mail is unconfirmed (§6.2);
            # if it does, another worker created it between our search and this create.
            duplicate = any(e.get("errorType") == "duplicate" for e in exc.errors)
            if duplicate and email:
                found = self.find_contact_by_email(email)
                if found is not None:
                    return found
            raise

    def create_ticket(self, ticket: NewTicket) -> DeskTicket:
        return DeskTicket.from_json(self._request("POST", "/tickets", body=ticket.to_json()))

    def get_ticket(self, ticket_id: str) -> DeskTicket:
        return DeskTicket.from_json(self._request("GET", f"/tickets/{_check_id(ticket_id)}"))

    _UPDATABLE = {"status": "status", "priority": "priority", "due_date": "dueDate", "subject": "subject", "cf": "cf"}

    def update_ticket(self, ticket_id: str, **fields) -> DeskTicket:
        """PATCH only the given fields: status, priority, due_date, subject, cf."""
        unknown = set(fields) - set(self._UPDATABLE)
        if unknown:
            raise TypeError(f"update_ticket() cannot set {', '.join(sorted(unknown))}")
        if not fields:
            raise ValueError("update_ticket() needs at least one field")
        body = {}
        for name, value in fields.items():
            if name == "due_date":
                value = zoho_time(value)
            elif name == "subject":
                value = _clip(value, SUBJECT_MAX)
            body[self._UPDATABLE[name]] = value
        return DeskTicket.from_json(self._request("PATCH", f"/tickets/{_check_id(ticket_id)}", body=body))

    def find_ticket_by_ref(self, ref: str) -> DeskTicket | None:
        """The ticket whose cf_acebuddy_ref is `ref`, via search (§7.5), or None.

        Whether Desk's search index shows a ticket at once after its create is not documented;
        callers already wait out the create's timeout before looking (DESIGN.md).
        """
        ref = str(ref)
        if not ref or _SEARCH_SPECIAL.search(ref):
            raise ValueError("an AceBuddy reference must not contain ',', '*' or '${'")
        body = self._request("GET", "/tickets/search", params={"customField1": f"{REF_FIELD}:{ref}", "limit": 1})
        for row in (body or {}).get("data", []):
            if (row.get("cf") or {}).get(REF_FIELD) == ref:
                return DeskTicket.from_json(row)
        return None

    def tickets_modified_between(self, start: datetime, end: datetime) -> list[DeskTicket]:
        """Every ticket whose modifiedTime lies in [start, end], oldest change first (for polling).

        Search pages with from/limit, and `from` stops at 999 (§7.5): past that, the window
        restarts at the last modifiedTime seen, and rows seen twice are dropped by id.
        """
        seen: dict[str, DeskTicket] = {}
        window_start = start
        end_text = zoho_time(end)
        while True:
            offset, last_time, truncated = 0, None, False
            while True:
                if offset > SEARCH_FROM_MAX:
                    truncated = True
                    break
                params = {
                    "modifiedTimeRange": f"{zoho_time(window_start)},{end_text}",
                    "sortBy": "modifiedTime",
                    "from": offset,
                    "limit": self.page_size,
                }
                rows = (self._request("GET", "/tickets/search", params=params) or {}).get("data", [])
                for row in rows:
                    ticket = DeskTicket.from_json(row)
                    seen[ticket.id] = ticket
                    last_time = ticket.modified_time or last_time
                if len(rows) < self.page_size:
                    break
                offset += self.page_size
            if not truncated:
                break
            if last_time is None or last_time <= window_start:
                log.warning("Desk poll: over %d tickets changed within one second; some skipped", SEARCH_FROM_MAX + 1)
                break
            window_start = last_time
        return sorted(seen.values(), key=lambda t: (t.modified_time or datetime.min, t.id))

    def add_comment(
        self, ticket_id: str, content: str, is_public: bool = True, content_type: str = "plainText"
    ) -> list[DeskComment]:
        """Add `content` as one comment, or as several "(part k of n)" comments when it is longer
        than Desk's 32000-character limit. Returns the comments created, in order."""
        if not content:
            raise ValueError("a Desk comment needs content")
        if content_type not in ("plainText", "html"):
            raise ValueError("content_type is 'plainText' or 'html'")
        path = f"/tickets/{_check_id(ticket_id)}/comments"
        created = []
        for part in split_comment(content):
            body = {"content": part, "isPublic": bool(is_public), "contentType": content_type}
            created.append(DeskComment.from_json(self._request("POST", path, body=body)))
        return created

    def list_comments(self, ticket_id: str) -> list[DeskComment]:
        """All comments of a ticket, oldest first."""
        path = f"/tickets/{_check_id(ticket_id)}/comments"
        comments, start, limit = [], 0, 100
        while True:
            params = {"from": start, "limit": limit, "sortBy": "commentedTime"}
            rows = (self._request("GET", path, params=params) or {}).get("data", [])
            comments.extend(DeskComment.from_json(row) for row in rows)
            if len(rows) < limit:
                return comments
            start += limit

    def _request(self, method: str, path: str, *, params: dict | None = None, body: dict | None = None,
                 with_org: bool = True):
        """Send one Desk call; return the decoded JSON (None for 204) or raise a typed error."""
        auth_retried = False
        busy_attempt = 0
        while True:
            token = self.tokens.get()
            response = self._send(method, path, params, body, token, with_org)
            self._read_credits(response)
            status = response.status_code
            if 200 <= status < 300:
                return self._decode(method, path, response)
            info = self._error_body(response)
            code = info.get("errorCode")
            if status == 401 and code == "INVALID_OAUTH" and not auth_retried:
                # Expired and revoked tokens look the same (§2.4): mint a new one, retry once.
                auth_retried = True
                self.tokens.invalidate(token)
                self.tokens.refresh(stale=token)
                continue
            if status == 429 and code != "THRESHOLD_EXCEEDED":
                # TOO_MANY_REQUESTS: the concurrency limit refused the call before doing anything,
                # so even a create is safe to resend after a short backoff.
                delay = _retry_after(response)
                if delay is None:
                    delay = self.busy_backoff * (2**busy_attempt) * random.uniform(1.0, 1.25)
                if busy_attempt < self.busy_retries and delay <= MAX_INLINE_WAIT:
                    busy_attempt += 1
                    time.sleep(delay)
                    continue
                raise RetryableError(
                    self._describe(method, path, status, info), code=code or "TOO_MANY_REQUESTS",
                    status=status, retry_after=delay,
                )
            raise self._error(method, path, response, info)

    def _send(self, method, path, params, body, token, with_org) -> requests.Response:
        self._check_blocked()
        lease = self.slots.acquire(self.slot_wait)
        if lease is None:
            raise RetryableError("every Desk concurrency slot is busy", code="DESK_BUSY", retry_after=1.0,
                                 never_sent=True)
        headers = {"Authorization": f"Zoho-oauthtoken {token}", "Accept": "application/json"}
        if with_org:
            headers["orgId"] = self.org_id
        try:
            return self.session.request(
                method, self.base_url + path, params=params, json=body, headers=headers, timeout=self.timeout
            )
        except (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                requests.exceptions.InvalidSchema) as exc:
            raise PermanentError(f"bad ZOHO_DESK_URL: {type(exc).__name__}", code="CONFIG") from None
        except requests.RequestException as exc:
            maybe_reached = not _never_sent(exc)
            raise RetryableError(
                f"Zoho Desk {method} {path} failed: {type(exc).__name__}"
                + (" (the request may have been processed)" if maybe_reached else ""),
                code="TIMEOUT" if isinstance(exc, requests.exceptions.Timeout) else "NETWORK",
                outcome_unknown=maybe_reached and method == "POST",
            ) from None
        finally:
            self.slots.release(lease)

    def _decode(self, method, path, response):
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RetryableError(
                f"Zoho Desk {method} {path} answered {response.status_code} without JSON",
                status=response.status_code, outcome_unknown=method == "POST",
            ) from None

    @staticmethod
    def _error_body(response) -> dict:
        try:
            body = response.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _describe(method, path, status, info) -> str:
        text = f"Zoho Desk {status} {info.get('errorCode') or ''} on {method} {path}: {info.get('message') or ''}"
        errors = info.get("errors") or []
        if errors:
            details = ", ".join(
                f"{e.get('fieldName')} {e.get('errorType')}"
                + (f" ({e['errorMessage']})" if e.get("errorMessage") else "")
                for e in errors if isinstance(e, dict)
            )
            text += f" [{details}]"
        return " ".join(text.split())

    def _error(self, method, path, response, info):
        status = response.status_code
        code = info.get("errorCode")
        errors = [e for e in (info.get("errors") or []) if isinstance(e, dict)]
        message = self._describe(method, path, status, info)
        if status == 429:  # THRESHOLD_EXCEEDED: the org's daily credits are gone
            wait = _retry_after(response)
            wait = 60.0 if wait is None else wait
            self._block(wait)
            log.warning("Zoho Desk daily API credits exhausted; no Desk calls for %.0f s", wait)
            return RetryableError(message, code=code, status=status, retry_after=wait)
        if status >= 500 or status == 408:
            return RetryableError(message, code=code, status=status, outcome_unknown=method == "POST")
        if status == 401 or code in ("SCOPE_MISMATCH", "OAUTH_ORG_MISMATCH"):
            return AuthError(message, code=code, status=status, errors=errors)
        return PermanentError(message, code=code, status=status, errors=errors)

    def _block(self, seconds: float, *, durable: bool = True) -> None:
        key = self.key_prefix + ":blocked"
        if self.redis is not None:
            self.redis.eval(_EXTEND_BLOCK, 1, key, max(1, int(seconds * 1000)), "THRESHOLD_EXCEEDED")
        else:
            with _local_guard:
                _local_blocks[key] = max(_local_blocks.get(key, 0.0), time.monotonic() + seconds)
        if durable and self.blocks is not None:
            self.blocks.extend(key, seconds)

    def _check_blocked(self) -> None:
        """Raise the RetryableError a call would get while the org's daily credits are out (no call made)."""
        key = self.key_prefix + ":blocked"
        if self.redis is not None:
            remaining = self.redis.pttl(key) / 1000
        else:
            remaining = _local_blocks.get(key, 0.0) - time.monotonic()
        if remaining <= 0 and self.blocks is not None:
            # Redis may have lost the block (a restart, a flush): the database's copy says, and puts
            # it back for the other processes.
            remaining = self.blocks.remaining(key)
            if remaining > 0:
                self._block(remaining, durable=False)
        if remaining > 0:
            raise RetryableError(
                f"Zoho Desk daily API credits exhausted; calls resume in {remaining:.0f} s",
                code="THRESHOLD_EXCEEDED", status=429, retry_after=remaining, never_sent=True,
            )

    def _read_credits(self, response) -> None:
        raw = response.headers.get("X-Rate-Limit-Remaining-v3")
        if raw is None:
            return
        try:
            remaining = int(raw)
        except ValueError:
            return
        self.last_credits = remaining
        if self.redis is not None:
            self.redis.set(self.key_prefix + ":credits", remaining, ex=2 * 86400)
        if remaining >= self.credits_warn_below:
            return
        # One warning per quarter hour for all processes, not one per call.
        if self.redis is not None:
            first = self.redis.set(self.key_prefix + ":credits_warned", "1", nx=True, ex=900)
        else:
            first = time.monotonic() - self._warned_at > 900 or not self._warned_at
            self._warned_at = time.monotonic()
        if first:
            log.warning(
                "Zoho Desk API credits low: %d left today (warning below %d)", remaining, self.credits_warn_below
            )

    def credits_remaining(self) -> int | None:
        """The last `X-Rate-Limit-Remaining-v3` any process saw (None before the first call)."""
        if self.redis is not None:
            value = self.redis.get(self.key_prefix + ":credits")
            return int(value) if value is not None else None
        return self.last_credits
