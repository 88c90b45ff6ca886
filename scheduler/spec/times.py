"""Times as Marathon writes them: ISO 8601 UTC with milliseconds and `Z`."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def format_time(epoch_seconds: float) -> str:
    """ISO 8601 UTC with milliseconds and `Z`: `2026-11-24T06:30:00.123Z`."""
    dt = datetime.fromtimestamp(epoch_seconds, tz=UTC)
    if dt.year >= 1000:
        # isoformat (C) is twice as fast as strftime, with the same digits for 4-digit years
        # (milliseconds truncated, as below); every change stamps two or three times.
        return dt.isoformat(timespec="milliseconds")[:-6] + "Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def iso_now() -> str:
    return format_time(time.time())


def parse_time(iso: str) -> float:
    """Epoch seconds from an ISO 8601 time (`Z` or an offset; naive times are taken as UTC)."""
    text = iso.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
