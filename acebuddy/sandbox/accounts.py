"""Zoho Accounts sandbox: the OAuth refresh-token grant (specs/zoho-desk-api.md §2.1), and the
token check the Desk and SalesIQ sandboxes run on every call (§2.4).

Valid credentials are the app's ZOHO_CLIENT_ID / ZOHO_CLIENT_SECRET / ZOHO_REFRESH_TOKEN (the
SANDBOX_* constants in demo and test mode). State lives on the app, in `app.extensions`.
"""
from __future__ import annotations

import secrets
import threading
import time

from flask import Blueprint, Flask, current_app, jsonify, request

bp = Blueprint("sandbox_accounts", __name__, url_prefix="/sandbox/accounts")

TOKEN_LIFETIME = 3600
# Zoho throttles minting per refresh token; its docs disagree on the numbers (§2.1). This is the
# stricter figure (10 tokens per 10 minutes), so a client that fails to cache shows up here.
MINT_LIMIT = 10
MINT_WINDOW = 600

UNAUTHORIZED = {"errorCode": "UNAUTHORIZED", "message": "You are not authenticated to perform this operation."}
INVALID_OAUTH = {"errorCode": "INVALID_OAUTH", "message": "The OAuth Token you provided is invalid."}

_create_guard = threading.Lock()


class AccountsSandbox:
    """Issued access tokens and how many were minted; thread-safe."""

    def __init__(self, client_id: str, client_secret: str, refresh_token: str):
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self._tokens: dict[str, float] = {}  # token -> expiry (time.time())
            self._mint_times: list[float] = []
            self.minted = 0
            self._deny_next = 0
            self.grants: list[dict] = []  # every token request: grant type and outcome, no secrets

    def grant(self, params) -> tuple[dict, int]:
        """Answer a token request as Zoho does: errors come back with HTTP 200 and an `error`."""
        grant_type = params.get("grant_type")
        with self.lock:
            outcome = self._grant(params, grant_type)
            self.grants.append({"grant_type": grant_type, "outcome": outcome[0].get("error", "ok")})
            return outcome

    def _grant(self, params, grant_type) -> tuple[dict, int]:
        if grant_type not in ("refresh_token", "authorization_code"):
            return {"error": "unsupported_grant_type"}, 200
        if params.get("client_id") != self.client_id or params.get("client_secret") != self.client_secret:
            return {"error": "invalid_client"}, 200
        if grant_type == "authorization_code" or params.get("refresh_token") != self.refresh_token:
            return {"error": "invalid_code"}, 200
        now = time.time()
        self._mint_times = [t for t in self._mint_times if t > now - MINT_WINDOW]
        if self._deny_next > 0 or len(self._mint_times) >= MINT_LIMIT:
            self._deny_next = max(0, self._deny_next - 1)
            # Status and wording as public clients report them; Zoho does not document the status.
            return {
                "error_description": "You have made too many requests continuously. Please try again after some time.",
                "error": "Access Denied",
                "status": "failure",
            }, 400
        self._tokens = {t: exp for t, exp in self._tokens.items() if exp > now}
        token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
        self._tokens[token] = now + TOKEN_LIFETIME
        self._mint_times.append(now)
        self.minted += 1
        return {
            "access_token": token,
            "api_domain": "https://www.zohoapis.com",  # as Zoho answers: not the Desk host (§1)
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
        }, 200

    def is_valid(self, token: str) -> bool:
        with self.lock:
            expiry = self._tokens.get(token)
            return expiry is not None and expiry > time.time()

    def expire_tokens(self) -> None:
        """Every token issued so far stops working, as when they reach their expiry."""
        with self.lock:
            self._tokens.clear()

    def deny_next(self, count: int = 1) -> None:
        """The next `count` grants are throttled ("Access Denied")."""
        with self.lock:
            self._deny_next = count


def accounts_sandbox(app: Flask | None = None) -> AccountsSandbox:
    app = app or current_app._get_current_object()
    store = app.extensions.get("accounts_sandbox")
    if store is None:
        with _create_guard:
            store = app.extensions.get("accounts_sandbox")
            if store is None:
                store = AccountsSandbox(
                    app.config.get("ZOHO_CLIENT_ID") or "",
                    app.config.get("ZOHO_CLIENT_SECRET") or "",
                    app.config.get("ZOHO_REFRESH_TOKEN") or "",
                )
                app.extensions["accounts_sandbox"] = store
    return store


def authenticate() -> tuple[dict, int] | None:
    """None when this request carries a valid `Authorization: Zoho-oauthtoken`, else Desk's error."""
    header = request.headers.get("Authorization", "").strip()
    scheme, _, token = header.partition(" ")
    if not header or scheme != "Zoho-oauthtoken" or not token.strip():
        return dict(UNAUTHORIZED), 401
    if not accounts_sandbox().is_valid(token.strip()):
        return dict(INVALID_OAUTH), 401
    return None


def expire_tokens(app: Flask | None = None) -> None:
    accounts_sandbox(app).expire_tokens()


def tokens_minted(app: Flask | None = None) -> int:
    return accounts_sandbox(app).minted


@bp.post("/oauth/v2/token")
def token():
    # Zoho takes the parameters as a form body or in the query string.
    params = request.args.to_dict()
    params.update(request.form.to_dict())
    body, status = accounts_sandbox().grant(params)
    return jsonify(body), status
