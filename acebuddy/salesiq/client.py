"""SalesIQ REST API v2 client: post to a live chat as an operator, transfer it, close it, read it.

Errors come back with HTTP 200 and an `error` body (specs/salesiq-webhook.md §7), so every answer's body
is checked. Failures raise the typed errors shared with the Desk client (`acebuddy.desk.errors`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

import requests

from ..desk.errors import AuthError, PermanentError, RetryableError, ZohoError
from ..desk.oauth import TokenProvider

# SalesIQ error codes (spec §7). 1008/1002: the token or the header is refused, worth one refresh.
AUTH_CODES = {"1002", "1008"}
RETRYABLE_CODES = {"1001", "1023"}  # SalesIQ's internal error; too many requests (IP locked a while)
PERMANENT_CODES = {"1009", "1016", "1025"}  # invalid scope, permission denied, invalid department
# How long to wait after a 1023; SalesIQ does not say how long its lock lasts.
RATE_LOCK_WAIT = 60.0


@dataclass(frozen=True)
class ChatMessage:
    """One line of a SalesIQ conversation as the REST API lists it."""

    id: str
    text: str
    sender_type: str  # visitor | bot | operator
    sender_name: str | None = None
    sender_id: str | None = None
    time: int | None = None  # epoch milliseconds, as SalesIQ counts
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_api(cls, item: dict) -> ChatMessage:
        sender = item.get("sender") or {}
        message = item.get("message")
        text = message.get("text") if isinstance(message, dict) else item.get("text")
        try:
            time = int(item["time"]) if item.get("time") is not None else None
        except (TypeError, ValueError):
            time = None
        return cls(
            id=str(item.get("id") or ""),
            text=str(text or ""),
            sender_type=str(sender.get("type") or ""),
            sender_name=sender.get("name"),
            sender_id=str(sender["id"]) if sender.get("id") is not None else None,
            time=time,
            raw=item,
        )


class SalesIQClient:
    """REST API v2 of one SalesIQ portal; `base_url` includes `/api/v2/<screen name>`."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenProvider,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.tokens = tokens
        self.session = session or requests.Session()
        self.timeout = timeout

    def post_message(self, conversation_id: str, text: str) -> ChatMessage:
        """Post `text` into the conversation as the operator who owns the OAuth token."""
        data = self._request("POST", f"/conversations/{_segment(conversation_id)}/messages", json={"text": text})
        return ChatMessage.from_api(data if isinstance(data, dict) else {})

    def post_to_visitor(self, email: str, text: str) -> ChatMessage:
        """Post `text` into the latest open conversation of the visitor with this e-mail."""
        data = self._request("POST", f"/visitors/{_segment(email, safe='@')}/messages", json={"text": text})
        return ChatMessage.from_api(data if isinstance(data, dict) else {})

    def transfer(
        self,
        conversation_id: str,
        department_id: str,
        operator_id: str | None = None,
        note: str | None = None,
    ) -> dict:
        """Hand the chat to a department (any available operator there), or to one operator in it."""
        if not department_id:
            raise PermanentError("a SalesIQ transfer needs a department id", code="NO_DEPARTMENT")
        body = {"department_id": str(department_id)}
        if operator_id:
            body["operator_id"] = str(operator_id)
        if note:
            body["note"] = note
        return self._request("PUT", f"/conversations/{_segment(conversation_id)}/transfer", json=body)

    def close(self, conversation_id: str) -> dict:
        """End the chat; answers the closed conversation.

        The retrieved docs give the path but not the HTTP method [U]. PUT, like every other action that
        updates a conversation under the same scope (transfer, tags); the sandbox accepts PUT and POST.
        """
        return self._request("PUT", f"/conversations/{_segment(conversation_id)}/close")

    def list_messages(self, conversation_id: str, limit: int | None = None, from_time: int | None = None) -> list[ChatMessage]:
        params = {}
        if limit is not None:
            params["limit"] = int(limit)
        if from_time is not None:
            params["from_time"] = int(from_time)
        data = self._request("GET", f"/conversations/{_segment(conversation_id)}/messages", params=params or None)
        return [ChatMessage.from_api(item) for item in data or [] if isinstance(item, dict)]

    def _request(self, method: str, path: str, *, json=None, params=None):
        """One call, with one token refresh when SalesIQ refuses the token; answers the body's `data`."""
        url = self.base_url + path
        token = self.tokens.get()
        for attempt in (1, 2):
            headers = {"Authorization": f"Zoho-oauthtoken {token}", "Accept": "application/json"}
            if json is not None:
                headers["Content-Type"] = "application/json"
            try:
                response = self.session.request(
                    method, url, json=json, params=params, headers=headers, timeout=self.timeout
                )
            except requests.ConnectTimeout:
                raise RetryableError(f"SalesIQ unreachable ({method} {path}): connect timeout", code="NETWORK") from None
            except requests.RequestException as exc:
                # The request may have reached SalesIQ; a repeated POST could post the message twice.
                raise RetryableError(
                    f"SalesIQ call failed ({method} {path}): {type(exc).__name__}",
                    code="NETWORK",
                    outcome_unknown=method != "GET",
                ) from None
            body, error = _check(response, method, path)
            if error is None:
                return body.get("data")
            if error.code in AUTH_CODES and attempt == 1:
                self.tokens.invalidate(token)
                token = self.tokens.refresh(stale=token)
                continue
            raise error
        raise AssertionError("unreachable")  # pragma: no cover


def _segment(value, safe: str = "") -> str:
    """A path segment: ids and e-mails are quoted so they cannot change the path."""
    text = str(value)
    if not text:
        raise PermanentError("an empty id cannot name a SalesIQ resource", code="EMPTY_ID")
    return quote(text, safe=safe)


def _check(response: requests.Response, method: str, path: str) -> tuple[dict | None, ZohoError | None]:
    """(body, None) for a success; else (None, the typed error), returned so the caller can refresh."""
    status = response.status_code
    where = f"{method} {path}"
    if status >= 500 or status == 429:
        retry_after = _retry_after(response.headers.get("Retry-After"))
        return None, RetryableError(f"SalesIQ answered {status} to {where}", status=status, retry_after=retry_after)
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("error"):
        raw = body["error"]
        code = str(raw.get("code")) if isinstance(raw, dict) else str(raw)
        message = raw.get("message", "") if isinstance(raw, dict) else ""
        text = f"SalesIQ error {code} on {where}: {message}".rstrip(": ")
        if code in AUTH_CODES:
            return None, AuthError(text, code=code, status=status)
        if code in RETRYABLE_CODES:
            return None, RetryableError(text, code=code, status=status, retry_after=RATE_LOCK_WAIT)
        return None, PermanentError(text, code=code, status=status)
    if status == 401:
        return None, AuthError(f"SalesIQ refused the credentials on {where}", code="1008", status=status)
    if not 200 <= status < 300:
        return None, PermanentError(f"SalesIQ answered {status} to {where}", code=f"HTTP_{status}", status=status)
    if not isinstance(body, dict) or "data" not in body:
        return None, PermanentError(f"SalesIQ answered {where} without a data body", code="MALFORMED", status=status)
    return body, None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def salesiq_client(app=None, *, session: requests.Session | None = None) -> SalesIQClient:
    """The client for this app's configuration; the Zoho OAuth token is the one Desk uses too."""
    from flask import current_app

    from ..desk import zoho_tokens

    app = app or current_app._get_current_object()
    return SalesIQClient(
        app.config["SALESIQ_API_URL"],
        zoho_tokens(app),
        session=session,
        timeout=float(app.config.get("SALESIQ_TIMEOUT") or 10.0),
    )
