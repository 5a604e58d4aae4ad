"""The favorites KPI report, read straight from the database (no server needed).

python scripts/kpis.py [--since 2026-11-01] [--until 2026-12-01] [--arm priority|control] [--json]
python scripts/kpis.py what-if --priority-window 300 [--priority-window 900 ...] [--since] [--until] [--json]
    what other priority windows would have done to the requests served (method and limits: docs/kpis.md)
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

import argparse
import json
import textwrap
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from api.settings import load_settings
from base.database import open_database
from dispatch.kpis import Kpis
from dispatch.rollout import Arm
from dispatch.what_if import CANNOT_KNOW, Estimate, Interval
from scripts import cli


def _instant(value: str) -> datetime:
    """An ISO-8601 time; argparse prefixes the flag's name to the error ("argument --since: …")."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time such as 2026-11-24T08:00:00Z, got {value!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render(report: dict[str, Any]) -> str:
    lines = []
    r = report["range"]
    lines.append(f"Favorites KPIs  since={r['since'] or 'start'}  until={r['until'] or 'now'}  arm={r['arm'] or 'all'}")
    lines.append(f"requests: {report['requests']}")
    lines.append("")
    lines.append(f"{'KPI':<28}{'value':>10}{'target':>10}   counts")
    fa, fb, rb = report["favorite_acceptance"], report["fallback"], report["rebook"]
    lines.append(
        f"{'favorite acceptance rate':<28}{_pct(fa['rate']):>10}{'> 70%':>10}   "
        f"{fa['accepted_by_favorite']} of {fa['with_favorite']} with a favorite"
    )
    lines.append(
        f"{'fallback rate':<28}{_pct(fb['rate']):>10}{'< 30%':>10}   "
        f"{fb['fell_back']} of {fb['priority_requests']} priority requests"
    )
    reasons = ", ".join(f"{k} {v}" for k, v in fb["reasons"].items()) or "none"
    lines.append(f"{'  fallback reasons':<28}{'':>10}{'':>10}   {reasons}")
    lines.append(
        f"{'rebook rate':<28}{_pct(rb['rate']):>10}{'> 60%':>10}   "
        f"{rb['rebooked_customers']} of {rb['customers_with_two_or_more']} customers with 2+ bookings"
    )
    lines.append("")
    lines.append(f"{'time to accept (min)':<28}{'n':>6}{'mean':>9}{'p50':>9}{'p90':>9}")
    for routing_type, t in report["time_to_accept_minutes"].items():
        lines.append(
            f"{'  ' + routing_type:<28}{t['count']:>6}{_num(t['mean']):>9}{_num(t['p50']):>9}{_num(t['p90']):>9}"
        )
    if "ab_test" in report:
        lines.append("")
        lines.append("A/B: priority arm minus control arm (95% CI)")
        for name, c in report["ab_test"].items():
            ci = "—" if c["ci95"] is None else f"[{c['ci95'][0]}, {c['ci95'][1]}]"
            verdict = "significant" if c["significant"] else "not significant yet"
            lines.append(
                f"  {name:<26} diff={c['difference'] if c['difference'] is not None else '—'}  ci95={ci}  "
                f"n={c['priority_n']}/{c['control_n']}  {verdict}"
            )
    return "\n".join(lines)


def render_what_if(estimates: list[Estimate], current_s: float) -> str:
    def interval(i: Interval, show: Callable[[float | None], str]) -> str:
        return f"{show(i.value)} [{show(i.low)}, {show(i.high)}]"

    lines = [
        f"Priority window what-if (current {current_s:g} s), 95% intervals",
        f"{'window (s)':>10}{'requests':>10}   {'favorite acceptance':<26}{'fallback rate':<26}"
        "time to start, mean (min)",
    ]
    for e in estimates:
        lines.append(
            f"{e.priority_window_s:>10g}{e.requests:>10}   {interval(e.favorite_acceptance, _pct):<26}"
            f"{interval(e.fallback, _pct):<26}{interval(e.time_to_start_minutes, _num)}"
            + ("   (beyond the log: acceptance a lower bound)" if e.beyond_the_log else "")
        )
    lines += ["", textwrap.fill(CANNOT_KNOW, 100)]
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--since", type=_instant)
    parser.add_argument("--until", type=_instant)
    parser.add_argument("--arm", choices=[a.value for a in Arm])
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    commands = parser.add_subparsers(dest="command")
    what_if = commands.add_parser("what-if", help="what other priority windows would have done")
    what_if.add_argument(
        "--priority-window", type=_seconds, action="append", required=True, help="seconds; repeat for several"
    )
    what_if.add_argument("--since", type=_instant)
    what_if.add_argument("--until", type=_instant)
    what_if.add_argument("--json", action="store_true", help="print the estimates as JSON")
    args = parser.parse_args()
    settings = load_settings()
    database = open_database(settings.database_url)
    await database.connect()
    try:
        if args.command == "what-if":
            windows = sorted(set(args.priority_window))
            estimates = await Kpis(database).what_if(windows, args.since, args.until)
        else:
            report = await Kpis(database).report(args.since, args.until, Arm(args.arm) if args.arm else None)
    finally:
        await database.disconnect()
    if args.command == "what-if":
        shown = json.dumps([asdict(e) for e in estimates], indent=2) if args.json else None
        print(shown or render_what_if(estimates, settings.priority_window_s))
    else:
        print(json.dumps(report, indent=2) if args.json else render(report))


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, such as 300, got {value!r}") from None
    if not 0 < seconds <= 86_400:
        raise argparse.ArgumentTypeError(f"expected 1 s to a day, got {value!r}")
    return seconds


if __name__ == "__main__":
    cli.run(main())
