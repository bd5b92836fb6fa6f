"""Typed errors shared by the Zoho clients (Desk, SalesIQ REST, OAuth): retryable or permanent."""
from __future__ import annotations


class ZohoError(Exception):
    """A Zoho call failed. `code` is Zoho's errorCode (or ours), `status` the HTTP status if any.

    `errors` carries Desk's per-field validation errors (`[{"fieldName": "/departmentId",
    "errorType": "missing"}, ...]`), empty when Zoho gave none.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        errors: list[dict] | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.status = status
        self.errors = list(errors or [])


class RetryableError(ZohoError):
    """Worth trying again later: network trouble, 5xx, 429, token throttling.

    `retry_after` (seconds) is set when Zoho said how long to wait; `outcome_unknown` is True when
    the request may have reached Zoho (timeout, connection lost mid-request), so a create must be
    looked up before it is retried. `never_sent` is True when our own client refused the call before
    sending it (no free concurrency slot, the org's credits out, another process refreshing the token):
    nothing reached Desk, so the try it ended is no attempt at all.
    """

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, outcome_unknown: bool = False,
                 never_sent: bool = False, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        self.never_sent = never_sent


class PermanentError(ZohoError):
    """Retrying cannot help: invalid data, unknown id, missing scope, bad credentials."""


class AuthError(PermanentError):
    """The OAuth credentials themselves are refused (revoked refresh token, wrong DC or client)."""
