"""A real SMTP server (aiosmtpd) on a free loopback port that keeps every message it accepts. Shared by
the benchmarks, the soak and the test suite's `smtp_server` fixture (which adds refusals)."""
from __future__ import annotations

import socket
import threading
from email import message_from_bytes, policy


class SmtpSink:
    """stop() is an outage; start() again listens on the same port and ends it."""

    def __init__(self):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.messages: list[dict] = []  # {"to", "from", "message"}
        self.controller = None
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.messages.append({"to": list(envelope.rcpt_tos), "from": envelope.mail_from, "message": message})
        return "250 Message accepted for delivery"

    def start(self):
        from aiosmtpd.controller import Controller

        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def up(self) -> bool:
        return self.controller is not None

    @property
    def count(self) -> int:
        return len(self.messages)

    @property
    def message_ids(self) -> list[str]:
        return [str(m["message"]["Message-ID"]) for m in list(self.messages)]
