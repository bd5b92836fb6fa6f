"""The one source of "now" (naive UTC, as stored in the database), so tests can control time."""
import time
from datetime import datetime, timedelta, timezone

_EPOCH = datetime(1970, 1, 1)


def now() -> datetime:
    # The epoch plus the system clock's microseconds: what datetime.now(timezone.utc) gives without its
    # zone, at half the cost of dropping the zone with replace() (a webhook turn asks ten times).
    return _EPOCH + timedelta(0, 0, time.time_ns() // 1000)


def iso_z(moment: datetime | None) -> str | None:
    """Zoho's time format: ISO-8601 UTC with milliseconds and a Z."""
    if moment is None:
        return None
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_iso(text: str | None) -> datetime | None:
    """Parse an ISO-8601 time (Z or offset) into naive UTC; None when empty or unreadable."""
    if not text or not isinstance(text, str):  # Desk webhooks are outside input: anything can come
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is not None:
            moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted past the range
        return None
    return moment
