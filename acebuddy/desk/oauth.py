"""Zoho OAuth: the refresh-token grant, with the access token cached in Redis for every process.

Zoho limits how many access tokens a refresh token may mint (specs/zoho-desk-api.md §2.1), so all web
and worker processes share one cached token and only one of them refreshes it at a time.
"""
from __future__ import annotations

import hashlib
import threading
import time

import requests
from redis.exceptions import LockError

from .errors import AuthError, RetryableError

# Refresh this long before Zoho's expiry, so a token never dies in the middle of a call.
EXPIRY_MARGIN = 300

# Delete the cached token only if it is still the rejected one: another process may already have
# stored a fresh token, and deleting that would cost an extra mint.
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class TokenProvider:
    def __init__(
        self,
        accounts_url: str,
        client_id: str,
        client_secret: str,
        refresh_token: str,
        *,
        redis=None,
        session: requests.Session | None = None,
        timeout: float = 10.0,
    ):
        self.token_url = accounts_url.rstrip("/") + "/oauth/v2/token"
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.redis = redis
        self.session = session or requests.Session()
        self.timeout = timeout
        digest = hashlib.sha256(f"{self.token_url}|{client_id}|{refresh_token}".encode()).hexdigest()[:20]
        self.cache_key = f"acebuddy:zoho:token:{digest}"
        self._local: tuple[str, float] | None = None  # (token, expires_at) when there is no Redis
        self._lock = threading.Lock()

    def get(self) -> str:
        """A valid access token, from the shared cache or freshly minted."""
        token = self._cached()
        return token or self.refresh()

    def refresh(self, stale: str | None = None) -> str:
        """Mint a new token, unless another process already replaced `stale` (the rejected one)."""
        with self._lock:
            token = self._cached()
            if token and token != stale:
                return token
            if self.redis is None:
                return self._mint()
            wait = self.timeout + 5
            lock = self.redis.lock(self.cache_key + ":lock", timeout=wait, blocking_timeout=wait)
            if not lock.acquire():
                raise RetryableError("another process is refreshing the Zoho token", code="TOKEN_BUSY",
                                     never_sent=True)
            try:
                token = self._cached()
                if token and token != stale:
                    return token
                return self._mint()
            finally:
                try:
                    lock.release()
                except LockError:  # the lock expired under us; the token is still good
                    pass

    def invalidate(self, token: str) -> None:
        """Forget `token` after Zoho answered INVALID_OAUTH for it."""
        if self.redis is not None:
            self.redis.eval(_DELETE_IF_EQUAL, 1, self.cache_key, token)
        if self._local and self._local[0] == token:
            self._local = None

    def _cached(self) -> str | None:
        if self.redis is not None:
            value = self.redis.get(self.cache_key)
            return value.decode() if value else None
        if self._local and self._local[1] > time.time():
            return self._local[0]
        return None

    def _mint(self) -> str:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
        }
        try:
            response = self.session.post(self.token_url, data=form, timeout=self.timeout)
        except requests.RequestException as exc:
            raise RetryableError(f"Zoho accounts unreachable: {type(exc).__name__}", code="NETWORK") from None
        if response.status_code >= 500 or response.status_code == 429:
            raise RetryableError(f"Zoho accounts answered {response.status_code}", status=response.status_code)
        try:
            body = response.json()
        except ValueError:
            raise RetryableError(f"Zoho accounts answered {response.status_code} without JSON") from None
        # Zoho reports token errors with HTTP 200 and an `error` field.
        error = body.get("error") if isinstance(body, dict) else "malformed"
        if error:
            if "denied" in str(error).lower():  # throttled: too many tokens minted recently
                raise RetryableError("Zoho accounts throttled the token refresh", code=str(error), retry_after=60)
            raise AuthError(f"Zoho refused the refresh token: {error}", code=str(error), status=response.status_code)
        token = body.get("access_token")
        if not token:
            raise RetryableError("Zoho accounts answered without an access_token")
        ttl = max(60, int(body.get("expires_in") or 3600) - EXPIRY_MARGIN)
        if self.redis is not None:
            self.redis.set(self.cache_key, token, ex=ttl)
        else:
            self._local = (token, time.time() + ttl)
        return token
