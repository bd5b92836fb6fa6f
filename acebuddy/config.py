"""Configuration: every environment variable of CONTRACT.md with its default, grouped by integration.

`Config(environ)` reads a mapping (normally `os.environ`) when the app is created, never at import.
Demo mode (no Zoho credentials) points the real clients at the sandboxes mounted in the app.
"""
from __future__ import annotations

import os
import re

from .sla import policy_from_env

# Each Zoho data centre has its own accounts (OAuth) host and Desk host (specs/zoho-desk-api.md §1).
ZOHO_DATA_CENTRES = {
    "us": ("https://accounts.zoho.com", "https://desk.zoho.com"),
    "eu": ("https://accounts.zoho.eu", "https://desk.zoho.eu"),
    "in": ("https://accounts.zoho.in", "https://desk.zoho.in"),
    "au": ("https://accounts.zoho.com.au", "https://desk.zoho.com.au"),
    "jp": ("https://accounts.zoho.jp", "https://desk.zoho.jp"),
    "ca": ("https://accounts.zohocloud.ca", "https://desk.zohocloud.ca"),
    "cn": ("https://accounts.zoho.com.cn", "https://desk.zoho.com.cn"),
    "sa": ("https://accounts.zoho.sa", "https://desk.zoho.sa"),
    "sg": ("https://accounts.zoho.sg", "https://desk.zoho.sg"),
    "ae": ("https://accounts.zoho.ae", "https://desk.zoho.ae"),
}

# What the sandboxes answer to; the demo clients use these credentials against them.
SANDBOX_CLIENT_ID = "1000.SANDBOXCLIENT"
SANDBOX_CLIENT_SECRET = "sandbox-secret"
SANDBOX_REFRESH_TOKEN = "1000.sandbox-refresh-token"
SANDBOX_ORG_ID = "60000000001"
SANDBOX_DEPARTMENT_ID = "1892000000006907"
SANDBOX_SALESIQ_SCREEN = "acebuddy-demo"
SANDBOX_SALESIQ_DEPARTMENT_ID = "3465000000005"

_TRUE = {"1", "true", "yes", "on"}
_PEM_BLOCK = re.compile(r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", re.S)


class ConfigError(RuntimeError):
    """A setting is missing or malformed; raised at start-up, never later."""


def _flag(value: str | None, default: bool = False) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in _TRUE


def engine_options(env, url: str | None) -> dict:
    """SQLAlchemy's engine options: a pre-ping on checkout, and a pool that keeps a connection for each
    of a web process's threads (DATABASE_POOL_SIZE, by default GUNICORN_THREADS, else 16).

    SQLAlchemy's default pool keeps 5 and closes every connection above them when it is returned: under
    load, 16 threads opened and closed connections without pause (PostgreSQL counted 3,800 new sessions
    in one 70-second webhook benchmark, each a new server process; docs/performance/webhook.md, change
    -27). The pool only opens what is used, so a worker process still holds one. bench/baseline_app.py
    uses the same options. Every process may open DATABASE_POOL_SIZE + DATABASE_MAX_OVERFLOW: count
    them against PostgreSQL's max_connections (docs/DEPLOY.md)."""
    options: dict = {"pool_pre_ping": True}
    if url and url.startswith("sqlite") and (":memory:" in url or url.rstrip("/") == "sqlite:"):
        return options  # one static connection: no pool to size
    options["pool_size"] = _int(env, "DATABASE_POOL_SIZE", _int(env, "GUNICORN_THREADS", 16))
    options["max_overflow"] = _int(env, "DATABASE_MAX_OVERFLOW", 4)
    if options["pool_size"] < 1 or options["max_overflow"] < 0:
        raise ConfigError("DATABASE_POOL_SIZE must be at least 1 and DATABASE_MAX_OVERFLOW at least 0")
    return options


def _int(env, name: str, default: int) -> int:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None


def _float(env, name: str, default: float) -> float:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def split_public_keys(text: str) -> list[str]:
    """SALESIQ_PUBLIC_KEYS holds one or two PEM blocks (``\\n`` escapes allowed, as in .env files)."""
    text = (text or "").replace("\\n", "\n").strip()
    if not text:
        return []
    keys = _PEM_BLOCK.findall(text)
    if not keys:
        raise ConfigError("SALESIQ_PUBLIC_KEYS must hold PEM public keys (-----BEGIN PUBLIC KEY-----)")
    if len(keys) > 2:
        raise ConfigError("SALESIQ_PUBLIC_KEYS holds at most two keys (SalesIQ rotates between two)")
    return keys


class Config:
    """Settings for one app instance, read from `environ` at construction."""

    def __init__(self, environ=None):
        env = os.environ if environ is None else environ

        # Core
        self.PORT = _int(env, "PORT", 5000)
        self.PUBLIC_URL = (env.get("ACEBUDDY_URL") or f"http://127.0.0.1:{self.PORT}").rstrip("/")
        self.SQLALCHEMY_DATABASE_URI = env.get("DATABASE_URL") or None  # None: SQLite under instance/
        self.REDIS_URL = env.get("REDIS_URL") or None  # None: embedded Redis under instance/
        self.SECRET_KEY = env.get("SECRET_KEY") or None
        self.LOG_LEVEL = env.get("LOG_LEVEL", "INFO")
        # Behind an HTTPS proxy or load balancer: how many proxies' X-Forwarded-* headers to trust
        # (client addresses for login throttling, https for links and cookies).
        self.PROXY_COUNT = _int(env, "PROXY_COUNT", 0)

        # Zoho OAuth, shared by Desk and SalesIQ REST
        self.ZOHO_DC = (env.get("ZOHO_DC") or "us").lower()
        if self.ZOHO_DC not in ZOHO_DATA_CENTRES:
            raise ConfigError(f"ZOHO_DC must be one of {' '.join(ZOHO_DATA_CENTRES)}, got {self.ZOHO_DC!r}")
        self.ZOHO_CLIENT_ID = env.get("ZOHO_CLIENT_ID") or None
        self.ZOHO_CLIENT_SECRET = env.get("ZOHO_CLIENT_SECRET") or None
        self.ZOHO_REFRESH_TOKEN = env.get("ZOHO_REFRESH_TOKEN") or None
        # Demo mode: no Zoho credentials at all, so the sandboxes stand in for Zoho.
        self.DEMO_MODE = _flag(
            env.get("ACEBUDDY_DEMO"),
            default=not (self.ZOHO_CLIENT_ID or self.ZOHO_REFRESH_TOKEN or env.get("SALESIQ_API_URL")),
        )
        accounts_default, desk_default = ZOHO_DATA_CENTRES[self.ZOHO_DC]
        sandbox = f"{self.PUBLIC_URL}/sandbox"
        self.DESK_SANDBOX = not self.ZOHO_REFRESH_TOKEN
        if self.DESK_SANDBOX:
            accounts_default, desk_default = f"{sandbox}/accounts", f"{sandbox}/desk"
            self.ZOHO_CLIENT_ID = self.ZOHO_CLIENT_ID or SANDBOX_CLIENT_ID
            self.ZOHO_CLIENT_SECRET = self.ZOHO_CLIENT_SECRET or SANDBOX_CLIENT_SECRET
            self.ZOHO_REFRESH_TOKEN = SANDBOX_REFRESH_TOKEN
        self.ZOHO_ACCOUNTS_URL = (env.get("ZOHO_ACCOUNTS_URL") or accounts_default).rstrip("/")
        self.ZOHO_DESK_URL = (env.get("ZOHO_DESK_URL") or f"{desk_default}/api/v1").rstrip("/")
        self.ZOHO_ORG_ID = env.get("ZOHO_ORG_ID") or (SANDBOX_ORG_ID if self.DESK_SANDBOX else None)
        self.ZOHO_DEPARTMENT_ID = env.get("ZOHO_DEPARTMENT_ID") or (
            SANDBOX_DEPARTMENT_ID if self.DESK_SANDBOX else None
        )
        self.DESK_TIMEOUT = _float(env, "DESK_TIMEOUT", 10.0)
        self.DESK_CONCURRENCY = _int(env, "DESK_CONCURRENCY", 10)
        # A killed worker's create may still land at Desk this long after its timeout (see tickets.py).
        self.DESK_LANDING_MARGIN = _float(env, "DESK_LANDING_MARGIN", 15.0)
        # Multiplies every outbox retry delay (tickets and notifications); tests shrink it.
        self.OUTBOX_BACKOFF_SCALE = _float(env, "OUTBOX_BACKOFF_SCALE", 1.0)
        # The outbox sweep (worker.py --cron) runs this often and takes rows untouched this long.
        self.SWEEP_INTERVAL = _int(env, "SWEEP_INTERVAL", 30)
        self.SWEEP_STALE_AFTER = _float(env, "SWEEP_STALE_AFTER", 30.0)
        self.DESK_CREDITS_WARN_BELOW = _int(env, "DESK_CREDITS_WARN_BELOW", 500)
        self.DESK_WEBHOOK_TOKEN = env.get("DESK_WEBHOOK_TOKEN") or ("sandbox-desk-webhook" if self.DESK_SANDBOX else None)
        # Demo mode: the Desk sandbox reports status changes to our own webhook, as Desk would.
        self.DESK_SANDBOX_WEBHOOK_URL = env.get("DESK_SANDBOX_WEBHOOK_URL") or (
            f"{self.PUBLIC_URL}/webhook/desk?token={self.DESK_WEBHOOK_TOKEN}" if self.DESK_SANDBOX else None
        )

        # SalesIQ
        self.SALESIQ_SANDBOX = not env.get("SALESIQ_API_URL")
        self.SALESIQ_API_URL = (
            env.get("SALESIQ_API_URL") or f"{sandbox}/salesiq/api/v2/{SANDBOX_SALESIQ_SCREEN}"
        ).rstrip("/")
        self.SALESIQ_PUBLIC_KEYS = split_public_keys(env.get("SALESIQ_PUBLIC_KEYS", ""))
        self.SALESIQ_DEPARTMENT_ID = env.get("SALESIQ_DEPARTMENT_ID") or (
            SANDBOX_SALESIQ_DEPARTMENT_ID if self.SALESIQ_SANDBOX else None
        )
        self.SALESIQ_TIMEOUT = _float(env, "SALESIQ_TIMEOUT", 10.0)
        # SalesIQ documents no payload limit; real bot payloads are a few KiB.
        self.WEBHOOK_MAX_BYTES = _int(env, "WEBHOOK_MAX_BYTES", 64 * 1024)
        self.MAX_CONTENT_LENGTH = max(self.WEBHOOK_MAX_BYTES, 1024 * 1024)
        # Demo mode's customer chat simulator (acebuddy/sandbox/simulator.py).
        self.SALESIQ_SANDBOX_PRIVATE_KEY = (env.get("SALESIQ_SANDBOX_PRIVATE_KEY") or "").replace("\\n", "\n") or None
        self.SIMULATOR_WEBHOOK_URL = env.get("SIMULATOR_WEBHOOK_URL") or None
        self.SIMULATOR_EVENTS_URL = env.get("SIMULATOR_EVENTS_URL") or None
        self.SIMULATOR_WEBHOOK_TIMEOUT = _float(env, "SIMULATOR_WEBHOOK_TIMEOUT", 10.0)
        self.MAILCATCHER_DIR = env.get("MAILCATCHER_DIR") or None
        # Lets scripts drive the sandboxes' fault hooks without signing in (X-Sandbox-Token).
        self.SANDBOX_CONTROL_TOKEN = env.get("SANDBOX_CONTROL_TOKEN") or None
        # How long a webhook turn waits for the new ticket before answering without its number.
        self.TICKET_REPLY_WAIT = _float(env, "TICKET_REPLY_WAIT", 3.0)

        # E-mail (Flask-Mail names); demo mode delivers to the mail catcher.
        self.MAILCATCHER_PORT = _int(env, "MAILCATCHER_PORT", 1025)
        self.MAIL_SERVER = env.get("MAIL_SERVER") or ("127.0.0.1" if self.DEMO_MODE else "localhost")
        self.MAIL_PORT = _int(env, "MAIL_PORT", self.MAILCATCHER_PORT if self.DEMO_MODE else 25)
        self.MAIL_USE_TLS = _flag(env.get("MAIL_USE_TLS"))
        self.MAIL_USE_SSL = _flag(env.get("MAIL_USE_SSL"))
        self.MAIL_USERNAME = env.get("MAIL_USERNAME") or None
        self.MAIL_PASSWORD = env.get("MAIL_PASSWORD") or None
        self.MAIL_DEFAULT_SENDER = env.get("MAIL_DEFAULT_SENDER") or "AceBuddy Support <support@acebuddy.example>"
        self.MAIL_TIMEOUT = _float(env, "MAIL_TIMEOUT", 10.0)
        # Flask-Mail swallows mail when TESTING; ours goes to a real SMTP server in tests too.
        self.MAIL_SUPPRESS_SEND = False
        self.SUPPORT_TEAM_EMAIL = env.get("SUPPORT_TEAM_EMAIL") or (
            "support-team@acebuddy.example" if self.DEMO_MODE else None
        )

        # Knowledge answers composed by a language model, OpenAI-compatible (docs/llm.md); off when unset.
        # LLM_TIMEOUT is the whole call's budget: the SalesIQ answer must leave within 5 s.
        self.LLM_API_URL = (env.get("LLM_API_URL") or "").rstrip("/") or None  # includes /v1
        self.LLM_API_KEY = env.get("LLM_API_KEY") or None
        self.LLM_MODEL = env.get("LLM_MODEL") or None
        self.LLM_TIMEOUT = _float(env, "LLM_TIMEOUT", 4.0)
        if self.LLM_API_URL and not self.LLM_MODEL:
            raise ConfigError("LLM_MODEL is required when LLM_API_URL is set")
        if self.LLM_TIMEOUT <= 0:
            raise ConfigError(f"LLM_TIMEOUT must be more than 0 seconds, got {self.LLM_TIMEOUT}")

        # SLA policy, business-hours calendar and breach alerts (docs/sla.md).
        try:
            self.SLA_POLICY = policy_from_env(env)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.SLA_ALERT_EMAILS = [a.strip() for a in (env.get("SLA_ALERT_EMAILS") or "").split(",") if a.strip()]

        # Cookies and forms: strict by default (README explains HTTPS).
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Strict"
        self.SESSION_COOKIE_SECURE = _flag(env.get("SESSION_COOKIE_SECURE"), default=not self.DEMO_MODE)
        self.REMEMBER_COOKIE_HTTPONLY = True
        self.REMEMBER_COOKIE_SAMESITE = "Strict"
        self.REMEMBER_COOKIE_SECURE = self.SESSION_COOKIE_SECURE
        self.SQLALCHEMY_ENGINE_OPTIONS = engine_options(env, self.SQLALCHEMY_DATABASE_URI)

        # Dashboard: idle close (0 turns it off) and sign-in throttling (failures per window, in Redis).
        self.IDLE_CLOSE_MINUTES = _int(env, "IDLE_CLOSE_MINUTES", 30)
        self.LOGIN_MAX_FAILURES = _int(env, "LOGIN_MAX_FAILURES", 5)  # per account
        self.LOGIN_MAX_FAILURES_PER_IP = _int(env, "LOGIN_MAX_FAILURES_PER_IP", 20)
        self.LOGIN_WINDOW_MINUTES = _int(env, "LOGIN_WINDOW_MINUTES", 15)

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items() if k.isupper()}

    def validate(self) -> None:
        """Fail fast outside demo and test mode; called by create_app."""
        missing = []
        if not self.SECRET_KEY:
            missing.append("SECRET_KEY")
        if not self.DESK_SANDBOX:
            for name in ("ZOHO_CLIENT_ID", "ZOHO_CLIENT_SECRET", "ZOHO_ORG_ID", "ZOHO_DEPARTMENT_ID"):
                if not getattr(self, name):
                    missing.append(name)
        if not self.DESK_SANDBOX and self.SALESIQ_SANDBOX:
            # The sandbox would swallow the chat follow-ups of a real deployment.
            missing.append("SALESIQ_API_URL")
        if not self.SALESIQ_SANDBOX and not self.SALESIQ_DEPARTMENT_ID:
            missing.append("SALESIQ_DEPARTMENT_ID")
        if missing:
            raise ConfigError("missing configuration: " + ", ".join(missing) + " (see README, Production)")
