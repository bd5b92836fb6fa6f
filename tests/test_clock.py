"""The one source of "now": naive UTC, what the database stores."""
from datetime import datetime, timezone

from acebuddy import clock


def test_now_is_naive_utc_to_the_microsecond():
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    moment = clock.now()
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert moment.tzinfo is None
    assert before <= moment <= after
    stamps = {clock.now().microsecond for _ in range(50)}
    assert len(stamps) > 1  # microseconds, not whole seconds
