"""The one clock: wall time in epoch milliseconds, shared by presence and dispatch."""

from __future__ import annotations

import functools
import time
from datetime import UTC, datetime


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_whole_ms(value: datetime) -> datetime:
    """A time the API can state exactly (`iso` keeps milliseconds): a deadline kept to the microsecond would
    fall due up to a millisecond after the one the apps were told."""
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


def from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """ISO-8601 UTC with milliseconds, the one timestamp format of the API."""
    if value is None:
        return None
    return as_utc(value).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@functools.lru_cache(maxsize=8)
def iso_ms(ms: int) -> str:
    """`iso` of an epoch-milliseconds time; the text is kept for the latest few, so that the status polls of one
    millisecond (every online mechanic's last_seen is now) share one."""
    return from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_stored(at: datetime, dialect: str) -> str:
    """A time as the database keeps it, for comparing inside SQL (a JSON batch parameter): SQLite keeps datetimes as
    text in SQLAlchemy's format (UTC, no offset) and compares them as text."""
    return at.isoformat() if dialect == "postgresql" else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
