"""The one source of "now" (naive UTC, as stored in the database), so tests can control time."""
from datetime import datetime, timezone


def now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


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
