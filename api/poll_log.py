"""The status poll's access log, summarised: a poll every few seconds from every customer app is traffic, not an
event, and a line for each cost the server a third of its CPU under load (py-spy: `Logger.info`, the redaction
filter, the handler's write), more than answering the poll.

Every `POLL_LOG_INTERVAL_S` one line (logger `api.poll_log`: uvicorn's access formatter takes only its own lines)
says how many polls were answered, by status, and how long the server took (p50, p99, max). A poll answered with
anything but 200 or 404 (a bad token, an error) keeps its own access line, as every other route's request does.
The counts and the time spent are also in the metrics (`favdispatch_status_polls_total{code}`,
`favdispatch_status_poll_seconds_total`), added in bulk once a second rather than per poll.
`POLL_LOG_INTERVAL_S=0` logs every poll as before.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable
from time import monotonic

from prometheus_client import Counter

STATUS_POLLS = Counter("favdispatch_status_polls_total", "Status polls answered, by HTTP status", ["code"])
STATUS_POLL_SECONDS = Counter("favdispatch_status_poll_seconds_total", "Server time spent answering status polls")

SUMMARISED = frozenset({200, 304, 404})  # what a poll normally answers; anything else is logged on its own line
METRICS_EVERY_S = 1.0
# Upper bounds (ms) of the buckets a poll's server time is counted in; a percentile is read as its bucket's bound.
BUCKETS_MS = (0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 20, 50, 100, 250, 500, 1000, float("inf"))


class PollLog:
    def __init__(self, interval_s: float, logger: logging.Logger, clock: Callable[[], float] = monotonic) -> None:
        self.interval_s = interval_s
        self._logger = logger
        self._clock = clock
        now = clock()
        self._next_line = now + interval_s
        self._next_metrics = now + METRICS_EVERY_S
        self._codes: Tally[int] = Tally()  # since the last line
        self._buckets = [0] * len(BUCKETS_MS)
        self._slowest_s = 0.0
        self._unmetered: Tally[int] = Tally()  # since the metrics were last added to
        self._unmetered_s = 0.0

    def summarises(self, status: int) -> bool:
        """Whether this poll's answer is left out of the access log (and counted in the next summary instead)."""
        return self.interval_s > 0 and status in SUMMARISED

    def record(self, status: int, seconds: float) -> None:
        """One poll answered. The summary line and the metrics are written by the poll that finds them due."""
        self._codes[status] += 1
        self._buckets[bisect_left(BUCKETS_MS, seconds * 1000)] += 1
        self._slowest_s = max(self._slowest_s, seconds)
        self._unmetered[status] += 1
        self._unmetered_s += seconds
        now = self._clock()
        if now >= self._next_metrics:
            self._meter(now)
        if self.interval_s > 0 and now >= self._next_line:
            self._write_line(now)

    def _meter(self, now: float) -> None:
        for code, count in self._unmetered.items():
            STATUS_POLLS.labels(code=str(code)).inc(count)
        STATUS_POLL_SECONDS.inc(self._unmetered_s)
        self._unmetered.clear()
        self._unmetered_s = 0.0
        self._next_metrics = now + METRICS_EVERY_S

    def _write_line(self, now: float) -> None:
        elapsed_s = now - (self._next_line - self.interval_s)
        total = sum(self._codes.values())
        if self._logger.isEnabledFor(logging.INFO):
            by_code = ", ".join(f"{code}: {count}" for code, count in sorted(self._codes.items()))
            self._logger.info(
                "status polls: %d in the last %.0f s (%s); server time p50 %s ms, p99 %s ms, max %.1f ms",
                total,
                elapsed_s,
                by_code,
                self._percentile(total, 0.50),
                self._percentile(total, 0.99),
                self._slowest_s * 1000,
            )
        self._codes.clear()
        self._buckets = [0] * len(BUCKETS_MS)
        self._slowest_s = 0.0
        self._next_line = now + self.interval_s

    def _percentile(self, total: int, fraction: float) -> str:
        """The bound of the bucket holding this fraction of the polls ("≤ x"), as a reader of the log wants it."""
        wanted, seen = fraction * total, 0
        for bound, count in zip(BUCKETS_MS, self._buckets, strict=True):
            seen += count
            if seen >= wanted:
                return f"≤{bound:g}" if bound != float("inf") else f">{BUCKETS_MS[-2]:g}"
        return "-"
