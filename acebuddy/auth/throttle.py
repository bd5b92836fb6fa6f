"""Sign-in throttling in Redis, shared by every web process: failures are counted per account and per
client address within a window; past the limit, sign-in is refused (429) until the window ends.

Keys hold a hash of the e-mail, never the address itself. If Redis is away, sign-in is not throttled
(and a warning is logged): agents must still be able to reach a live chat.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import redis

log = logging.getLogger(__name__)

PREFIX = "acebuddy:login"


@dataclass(frozen=True)
class Verdict:
    blocked: bool
    retry_after: int = 0  # seconds until the oldest failure leaves the window


def _account_key(email: str) -> str:
    digest = hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()[:32]
    return f"{PREFIX}:account:{digest}"


def _ip_key(ip: str) -> str:
    return f"{PREFIX}:ip:{ip or 'unknown'}"


class LoginThrottle:
    def __init__(self, client: redis.Redis, *, max_per_account: int, max_per_ip: int, window_seconds: int):
        self.client = client
        self.max_per_account = max_per_account
        self.max_per_ip = max_per_ip
        self.window = window_seconds

    def check(self, email: str, ip: str) -> Verdict:
        """Whether this account or address has used up its failures."""
        try:
            pipe = self.client.pipeline()
            for key in (_account_key(email), _ip_key(ip)):
                pipe.get(key)
                pipe.ttl(key)
            account, account_ttl, by_ip, ip_ttl = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("sign-in throttle unavailable (%s); not throttling", exc)
            return Verdict(False)
        waits = []
        if account is not None and int(account) >= self.max_per_account:
            waits.append(account_ttl)
        if by_ip is not None and int(by_ip) >= self.max_per_ip:
            waits.append(ip_ttl)
        if not waits:
            return Verdict(False)
        return Verdict(True, max(1, max(w if w and w > 0 else self.window for w in waits)))

    def failed(self, email: str, ip: str) -> Verdict:
        """Count one failure; answers whether the limit is now reached."""
        try:
            pipe = self.client.pipeline()
            for key in (_account_key(email), _ip_key(ip)):
                # The window starts at the first failure (INCR keeps the expiry; Redis 6 lacks EXPIRE NX).
                pipe.set(key, 0, ex=self.window, nx=True)
                pipe.incr(key)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            log.warning("sign-in throttle unavailable (%s); failure not counted", exc)
            return Verdict(False)
        return self.check(email, ip)

    def succeeded(self, email: str) -> None:
        """A correct password clears the account's count (the address keeps its own)."""
        try:
            self.client.delete(_account_key(email))
        except (redis.RedisError, OSError) as exc:
            log.warning("sign-in throttle unavailable (%s)", exc)
