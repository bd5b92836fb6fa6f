"""An SMTP outage of a while in the middle of a burst of tickets: afterwards every e-mail is delivered,
once. Real worker and scheduler processes, real Redis, a real SMTP server that goes down and comes back."""
import time

import pytest
from sqlalchemy import select

from acebuddy import mail
from acebuddy.extensions import db
from acebuddy.models import Notification
from tests.conftest import WorkerProcess, wait_until
from tests.helpers import request_tickets

pytestmark = pytest.mark.slow


def test_smtp_outage_ends_with_every_message_delivered_once(live_server, smtp_server):
    app = live_server.app
    app.config.update(OUTBOX_BACKOFF_SCALE=0.05, SWEEP_INTERVAL=1, SWEEP_STALE_AFTER=2.0, MAIL_TIMEOUT=2.0)
    smtp_server.stop()
    ids = request_tickets(app, 4)
    processes = [WorkerProcess(app).start(), WorkerProcess(app).start(), WorkerProcess(app, "--cron").start()]
    try:
        def emails():
            with app.app_context():
                return db.session.scalars(select(Notification).where(Notification.channel == "email")).all()

        # Tickets are filed, and their e-mails fail while the server is down.
        wait_until(lambda: len(emails()) == 2 * len(ids) and all(r.attempts >= 1 for r in emails()), timeout=40)
        time.sleep(1.5)
        assert smtp_server.messages == []
        smtp_server.start()
        wait_until(lambda: all(r.state == "sent" for r in emails()), timeout=60)
        time.sleep(2)  # anything sent twice would arrive by now
        with app.app_context():
            expected = sorted(mail.message_id(row) for row in emails())
    finally:
        for process in processes:
            process.stop()
    received = sorted(m["message"]["Message-ID"] for m in smtp_server.messages)
    assert received == expected and len(expected) == 2 * len(ids)
