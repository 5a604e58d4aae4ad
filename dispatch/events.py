"""The per-request event log: support reads it to answer "why didn't my favorite respond?", the KPIs count it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Event:
    at: datetime
    kind: str
    mechanic_id: str | None
    attempt: int | None
    detail: str | None
