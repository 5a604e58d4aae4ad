"""The favorites KPIs, computed from the requests and their event logs (definitions in docs/kpis.md).

Requests count when they were created in [since, until). Rates come with the counts behind them; the A/B section
compares the arms with a 95% confidence interval (normal approximation: Welch for means, Wald for proportions).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from databases import Database

from base.clock import as_utc, iso
from base.stats import percentile
from dispatch.changes import FAVORITE_ACCEPT
from dispatch.models import Columns, EventKind, Routing, RoutingType
from dispatch.rollout import Arm
from dispatch.tables import request_events, session_requests
from dispatch.what_if import Estimate, Served, estimate

FAVORITE_ACCEPTANCE_TARGET = 0.70
FALLBACK_TARGET = 0.30
REBOOK_TARGET = 0.60
Z95 = 1.959964


class Accept(NamedTuple):
    mechanic: str
    at: datetime
    by_favorite: bool  # the accept's event says the favorite (a mechanic, or a member of a workshop) took it


@dataclass(frozen=True)
class _Request:
    id: str
    customer_id: str
    arm: str
    routing_type: str
    provider_type: str | None
    preferred_mechanic_id: str | None
    preferred_workshop_id: str | None
    mechanic_id: str | None
    created_at: datetime
    accepted_at: datetime | None
    fallback_broadcast_at: datetime | None


def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


class Kpis:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def report(self, since: datetime | None, until: datetime | None, arm: Arm | None = None) -> dict[str, Any]:
        requests = await self._requests(since, until)
        accepted_by = await self._accepters([r.id for r in requests])
        fallback_reasons = await self._fallback_reasons([r.id for r in requests])
        history = await self._accepted_history(until)
        report: dict[str, Any] = {
            "range": {"since": iso(since), "until": iso(until), "arm": arm.value if arm else None},
        }
        chosen = [r for r in requests if arm is None or r.arm == arm.value]
        report.update(_metrics(chosen, accepted_by, fallback_reasons, history))
        if arm is None:
            arms = {a.value: [r for r in requests if r.arm == a.value] for a in Arm}
            report["arms"] = {
                name: _metrics(subset, accepted_by, fallback_reasons, history) for name, subset in arms.items()
            }
            report["ab_test"] = _compare(arms[Arm.PRIORITY.value], arms[Arm.CONTROL.value], accepted_by)
        return report

    async def series(self, end: datetime, bucket: timedelta, count: int) -> list[tuple[datetime, dict[str, Any]]]:
        """The KPIs of `count` consecutive buckets ending at `end`, oldest first, each as `report` gives them
        for both arms together (with the end of its bucket): one read of the whole span, not one per bucket."""
        since = end - bucket * count
        requests = await self._requests(since, end)
        ids = [r.id for r in requests]
        accepted_by = await self._accepters(ids)
        fallback_reasons = await self._fallback_reasons(ids)
        history = await self._accepted_history(end)
        series = []
        for i in range(count):
            start, stop = since + bucket * i, since + bucket * (i + 1)
            chosen = [r for r in requests if start <= r.created_at < stop]
            before = {customer: [h for h in past if h[0] < stop] for customer, past in history.items()}
            series.append((stop, _metrics(chosen, accepted_by, fallback_reasons, before)))
        return series

    async def what_if(
        self, windows_s: list[float], since: datetime | None = None, until: datetime | None = None
    ) -> list[Estimate]:
        """What each priority window would have done to the priority arm's requests to an online favorite created
        in [since, until) that reached an accept or a fallback (`dispatch/what_if.py`)."""
        served = await self._served_priority(since, until)
        return [estimate(served, window_s) for window_s in windows_s]

    async def _served_priority(self, since: datetime | None, until: datetime | None) -> list[Served]:
        sr = session_requests
        query = sa.select(sr.c.id, sr.c.created_at, sr.c.priority_notified_at, sr.c.fallback_broadcast_at).where(
            sr.c.routing == Routing.PRIORITY.value,
            sr.c.routing_type == RoutingType.PRIORITY_BROADCAST.value,
            sr.c.arm == Arm.PRIORITY.value,
            sa.or_(sr.c.accepted_at.is_not(None), sr.c.fallback_broadcast_at.is_not(None)),
        )
        if since is not None:
            query = query.where(sr.c.created_at >= since)
        if until is not None:
            query = query.where(sr.c.created_at < until)
        rows = await self._db.fetch_all(query)
        ids = [str(row["id"]) for row in rows]
        accepts, reasons = await self._accepters(ids), await self._fallback_reasons(ids)
        served = []
        for row in rows:
            request_id = str(row["id"])
            offered = as_utc(row["priority_notified_at"] or row["created_at"])
            fell_back = as_utc(row["fallback_broadcast_at"]) if row["fallback_broadcast_at"] is not None else None
            first = accepts[request_id][0] if accepts[request_id] else None
            by_favorite = first is not None and first.by_favorite and (fell_back is None or first.at <= fell_back)
            after_fallback = first is not None and fell_back is not None and first.at >= fell_back
            served.append(
                Served(
                    favorite_accepted_s=(first.at - offered).total_seconds() if first and by_favorite else None,
                    fell_back_s=(fell_back - offered).total_seconds() if fell_back else None,
                    reason=reasons[request_id][0] if reasons[request_id] else None,
                    broadcast_accepted_s=(first.at - fell_back).total_seconds()
                    if first and fell_back and after_fallback
                    else None,
                )
            )
        return served

    async def _requests(self, since: datetime | None, until: datetime | None) -> list[_Request]:
        sr = session_requests
        query = sa.select(
            sr.c.id,
            sr.c.customer_id,
            sr.c.arm,
            sr.c.routing_type,
            sr.c.provider_type,
            sr.c.preferred_mechanic_id,
            sr.c.preferred_workshop_id,
            sr.c.mechanic_id,
            sr.c.created_at,
            sr.c.accepted_at,
            sr.c.fallback_broadcast_at,
        )
        if since is not None:
            query = query.where(sr.c.created_at >= since)
        if until is not None:
            query = query.where(sr.c.created_at < until)
        return [_request(row) for row in await self._db.fetch_all(query)]

    async def _accepters(self, request_ids: list[str]) -> dict[str, list[Accept]]:
        """Each request's accepts, in order. A give-back leaves the first accept on record."""
        accepts: dict[str, list[Accept]] = defaultdict(list)
        for chunk in _chunks(request_ids):
            rows = await self._db.fetch_all(
                sa.select(
                    request_events.c.request_id,
                    request_events.c.mechanic_id,
                    request_events.c.at,
                    request_events.c.detail,
                )
                .where(request_events.c.request_id.in_(chunk), request_events.c.kind == EventKind.ACCEPTED.value)
                .order_by(request_events.c.id)
            )
            for row in rows:
                accept = Accept(str(row["mechanic_id"]), as_utc(row["at"]), row["detail"] == FAVORITE_ACCEPT)
                accepts[str(row["request_id"])].append(accept)
        return accepts

    async def _fallback_reasons(self, request_ids: list[str]) -> dict[str, list[str]]:
        reasons: dict[str, list[str]] = defaultdict(list)
        for chunk in _chunks(request_ids):
            rows = await self._db.fetch_all(
                sa.select(request_events.c.request_id, request_events.c.detail)
                .where(request_events.c.request_id.in_(chunk), request_events.c.kind == EventKind.FELL_BACK.value)
                .order_by(request_events.c.id)
            )
            for row in rows:
                reasons[str(row["request_id"])].append(row["detail"] or "unknown")
        return reasons

    async def _accepted_history(self, until: datetime | None) -> dict[str, list[tuple[datetime, str]]]:
        """Every customer's accepted bookings before `until`, oldest first: who they had before."""
        sr = session_requests
        query = sa.select(sr.c.customer_id, sr.c.created_at, sr.c.mechanic_id).where(sr.c.mechanic_id.is_not(None))
        if until is not None:
            query = query.where(sr.c.created_at < until)
        history: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        for row in await self._db.fetch_all(query.order_by(sr.c.created_at)):
            history[str(row["customer_id"])].append((as_utc(row["created_at"]), str(row["mechanic_id"])))
        return history


def _chunks(ids: list[str], size: int = 500) -> list[list[str]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _request(row: Any) -> _Request:
    m = row._mapping
    ts, text = Columns(m).time, Columns(m).text
    return _Request(
        id=str(m["id"]),
        customer_id=str(m["customer_id"]),
        arm=m["arm"],
        routing_type=m["routing_type"],
        provider_type=m["provider_type"],
        preferred_mechanic_id=text("preferred_mechanic_id"),
        preferred_workshop_id=text("preferred_workshop_id"),
        mechanic_id=text("mechanic_id"),
        created_at=as_utc(m["created_at"]),
        accepted_at=ts("accepted_at"),
        fallback_broadcast_at=ts("fallback_broadcast_at"),
    )


def _has_favorite(request: _Request) -> bool:
    return request.preferred_mechanic_id is not None or request.preferred_workshop_id is not None


def _accepted_by_favorite(request: _Request, accepted_by: dict[str, list[Accept]]) -> bool:
    """The favorite accepted: the favorite mechanic, or any member of the favorite workshop (the accept's event
    says so, as membership was at the time)."""
    return any(a.by_favorite or a.mechanic == request.preferred_mechanic_id for a in accepted_by.get(request.id, ()))


def _favorite_acceptance(requests: list[_Request], accepted_by: dict[str, list[Accept]]) -> dict[str, Any]:
    with_favorite = [r for r in requests if _has_favorite(r)]
    by_favorite = sum(1 for r in with_favorite if _accepted_by_favorite(r, accepted_by))
    return {
        "rate": _rate(by_favorite, len(with_favorite)),
        "accepted_by_favorite": by_favorite,
        "with_favorite": len(with_favorite),
    }


def _minutes_to_accept(request: _Request, accepted_by: dict[str, list[Accept]]) -> float | None:
    accepts = accepted_by.get(request.id)
    if not accepts:
        return None
    return (accepts[0].at - request.created_at).total_seconds() / 60


def _metrics(
    requests: list[_Request],
    accepted_by: dict[str, list[Accept]],
    fallback_reasons: dict[str, list[str]],
    history: dict[str, list[tuple[datetime, str]]],
) -> dict[str, Any]:
    provider_types = sorted({r.provider_type for r in requests if _has_favorite(r) and r.provider_type})
    priority = [r for r in requests if r.routing_type == "priority_broadcast"]
    fell_back = [r for r in priority if r.fallback_broadcast_at is not None]
    reasons: dict[str, int] = defaultdict(int)
    for r in fell_back:
        reasons[fallback_reasons.get(r.id, ["unknown"])[0]] += 1

    accepted = [r for r in requests if accepted_by.get(r.id)]
    per_customer: dict[str, list[_Request]] = defaultdict(list)
    for r in accepted:
        per_customer[r.customer_id].append(r)
    repeat_customers = {c: rs for c, rs in per_customer.items() if len(rs) >= 2}
    rebooked = sum(1 for c, rs in repeat_customers.items() if _rebooked(rs, history.get(c, []), accepted_by))

    times: dict[str, list[float]] = defaultdict(list)
    for r in accepted:
        minutes = _minutes_to_accept(r, accepted_by)
        if minutes is not None:
            times[r.routing_type].append(minutes)
    return {
        "requests": len(requests),
        "favorite_acceptance": {
            **_favorite_acceptance(requests, accepted_by),
            "target": FAVORITE_ACCEPTANCE_TARGET,
            "by_provider_type": {
                kind: _favorite_acceptance([r for r in requests if r.provider_type == kind], accepted_by)
                for kind in provider_types
            },
        },
        "fallback": {
            "rate": _rate(len(fell_back), len(priority)),
            "fell_back": len(fell_back),
            "priority_requests": len(priority),
            "target": FALLBACK_TARGET,
            "reasons": dict(sorted(reasons.items())),
        },
        "rebook": {
            "rate": _rate(rebooked, len(repeat_customers)),
            "rebooked_customers": rebooked,
            "customers_with_two_or_more": len(repeat_customers),
            "target": REBOOK_TARGET,
        },
        "time_to_accept_minutes": {
            routing_type: {
                "count": len(values),
                "mean": _round(statistics.fmean(values)),
                "p50": _round(percentile(values, 0.5)),
                "p90": _round(percentile(values, 0.9)),
            }
            for routing_type, values in sorted(times.items())
        },
    }


def _rebooked(
    bookings: list[_Request],
    history: list[tuple[datetime, str]],
    accepted_by: dict[str, list[Accept]],
) -> bool:
    """Did any of these bookings go to a mechanic this customer had had on an earlier booking?"""
    for booking in bookings:
        mechanic = booking.mechanic_id or accepted_by[booking.id][0].mechanic
        if any(at < booking.created_at and earlier == mechanic for at, earlier in history):
            return True
    return False


def _compare(priority: list[_Request], control: list[_Request], accepted_by: dict[str, list[Accept]]) -> dict[str, Any]:
    def times(requests: list[_Request]) -> list[float]:
        return [m for r in requests if (m := _minutes_to_accept(r, accepted_by)) is not None]

    def acceptance(requests: list[_Request]) -> tuple[int, int]:
        with_favorite = [r for r in requests if _has_favorite(r)]
        return sum(1 for r in with_favorite if _accepted_by_favorite(r, accepted_by)), len(with_favorite)

    return {
        "time_to_accept_minutes": _difference_of_means(times(priority), times(control)),
        "favorite_acceptance": _difference_of_proportions(*acceptance(priority), *acceptance(control)),
    }


def _difference_of_means(a: list[float], b: list[float]) -> dict[str, Any]:
    result: dict[str, Any] = {
        "priority_n": len(a),
        "control_n": len(b),
        "priority_mean": None,
        "control_mean": None,
        "difference": None,
        "ci95": None,
        "significant": False,
    }
    if len(a) < 2 or len(b) < 2:
        return result
    mean_a, mean_b = statistics.fmean(a), statistics.fmean(b)
    se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    difference = mean_a - mean_b
    low, high = difference - Z95 * se, difference + Z95 * se
    result.update(
        priority_mean=_round(mean_a),
        control_mean=_round(mean_b),
        difference=_round(difference),
        ci95=[_round(low), _round(high)],
        significant=bool(se > 0 and (low > 0 or high < 0)),
    )
    return result


def _difference_of_proportions(hits_a: int, n_a: int, hits_b: int, n_b: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "priority_n": n_a,
        "control_n": n_b,
        "priority_rate": _rate(hits_a, n_a),
        "control_rate": _rate(hits_b, n_b),
        "difference": None,
        "ci95": None,
        "significant": False,
    }
    if not n_a or not n_b:
        return result
    p_a, p_b = hits_a / n_a, hits_b / n_b
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    difference = p_a - p_b
    low, high = difference - Z95 * se, difference + Z95 * se
    result.update(
        difference=round(difference, 4),
        ci95=[round(low, 4), round(high, 4)],
        significant=bool(se > 0 and (low > 0 or high < 0)),
    )
    return result
