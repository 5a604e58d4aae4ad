"""Choosing the priority window from the event log: what another `PRIORITY_WINDOW_S` would have done to the
requests already served.

Each priority request to an online favorite is replayed against a window of `w` seconds:
- the favorite accepted `t` seconds after the offer: with `t <= w`, a favorite accept starting at `t`; with
  `t > w`, it would have fallen back at `w`;
- it fell back because the favorite declined, missed its acks or gave it back at `t`: the same at `t` if `t <= w`,
  else a fallback at `w`;
- it fell back because the window ran out: a fallback at `w`. Whether the favorite would have accepted in a longer
  window than the one served is not in the log (they never had the chance): such requests count as fallbacks, so a
  longer window's favorite acceptance is a lower bound, and the less trustworthy the further `w` reaches past the
  windows the log was served with.
A fallback's session starts when the broadcast was accepted: the delay seen after that request's own fallback
when it had one, else the median delay seen after any fallback.

Rates come with a 95% Wilson interval; the mean time to session start with a 95% normal interval.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from base.stats import percentile

Z95 = 1.959964
WINDOW_FALLBACK = "window"  # the fell_back reason of a window that ran out
CANNOT_KNOW = (
    "Whether a favorite would have accepted later in a longer window than the one their request was served with "
    "is not in the log: such requests count as fallbacks, so a longer window's favorite acceptance is a lower bound "
    "(flagged beyond_the_log past the longest window served). A fallback's time to session start uses the delay "
    "seen after its own fallback, else the median seen after any; customers who would have cancelled or waited "
    "differently under another window are not modelled."
)


@dataclass(frozen=True)
class Served:
    """One priority request as the log tells it: seconds from its offer."""

    favorite_accepted_s: float | None  # the favorite accepted, this long after the offer
    fell_back_s: float | None  # it fell back, this long after the offer
    reason: str | None  # why it fell back (the first fell_back event's)
    broadcast_accepted_s: float | None  # after its fallback, the broadcast was accepted this long after that


@dataclass(frozen=True)
class Interval:
    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Estimate:
    priority_window_s: float
    requests: int
    favorite_acceptance: Interval
    fallback: Interval
    time_to_start_minutes: Interval  # the mean, and its interval
    median_time_to_start_minutes: float | None
    beyond_the_log: bool  # longer than any window the log was served with: a lower bound on acceptance


def estimate(served: list[Served], window_s: float) -> Estimate:
    delays = [s.broadcast_accepted_s for s in served if s.broadcast_accepted_s is not None]
    typical_delay = statistics.median(delays) if delays else None
    favorite_accepts = 0
    starts: list[float] = []
    for request in served:
        accepted_at = request.favorite_accepted_s
        if accepted_at is not None and accepted_at <= window_s:
            favorite_accepts += 1
            starts.append(accepted_at)
            continue
        fell_back_at = window_s
        if request.reason not in (None, WINDOW_FALLBACK) and request.fell_back_s is not None:
            fell_back_at = min(request.fell_back_s, window_s)
        delay = request.broadcast_accepted_s if request.broadcast_accepted_s is not None else typical_delay
        if delay is not None:
            starts.append(fell_back_at + delay)
    n = len(served)
    served_windows = [s.fell_back_s for s in served if s.reason == WINDOW_FALLBACK and s.fell_back_s is not None]
    return Estimate(
        priority_window_s=window_s,
        requests=n,
        favorite_acceptance=_wilson(favorite_accepts, n),
        fallback=_wilson(n - favorite_accepts, n),
        time_to_start_minutes=_mean_interval([s / 60 for s in starts]),
        median_time_to_start_minutes=_round(percentile([s / 60 for s in starts], 0.5)),
        beyond_the_log=window_s > max(served_windows, default=0.0),
    )


def _wilson(successes: int, n: int) -> Interval:
    if n == 0:
        return Interval(None, None, None)
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return Interval(_round(p), _round(max(0.0, centre - half)), _round(min(1.0, centre + half)))


def _mean_interval(values: list[float]) -> Interval:
    if not values:
        return Interval(None, None, None)
    mean = statistics.fmean(values)
    half = Z95 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
    return Interval(
        _round(mean),
        _round(mean - half) if half is not None else None,
        _round(mean + half) if half is not None else None,
    )


def _round(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None
