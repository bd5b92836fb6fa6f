"""The soak's short version (`bench/soak.py --short`): about 45 s of concurrent chats through the webhook,
with every fault kind injected (Desk 5xx, 429 with Retry-After, commit-then-hang, commit-then-drop,
worker and scheduler SIGKILLs, a Redis restart or FLUSHDB, an SMTP outage), real worker processes,
real Redis, a real SMTP server; then the reconciliation must come out clean."""
import os

import pytest

from bench import soak

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]


def test_short_soak_with_every_fault_reconciles(tmp_path, _external_schema):
    # On CI's second pass (DATABASE_URL, REDIS_URL) the soak runs on them: both are throw-away there.
    settings = soak.Settings.short(instance=str(tmp_path / "soak"), database_url=os.environ.get("DATABASE_URL"),
                                   redis_url=os.environ.get("REDIS_URL"), wipe=True)
    progress = []
    report = soak.run(settings, log=progress.append)
    story = "\n".join(progress) + report.text()
    assert set(report.faults) == set(soak.FAULT_KINDS), story
    assert report.traffic["chats"] >= 50 and report.traffic["webhook deliveries (200)"] >= 250, story
    assert report.ok, story
