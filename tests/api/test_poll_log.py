"""The status poll's access lines are summarised (one line per interval, by status, with the server's time); every
other request, and a poll answered with an error, keeps its own line. Read from a real server's log."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from pathlib import Path

import httpx

from api.poll_log import PollLog
from tests.helpers import Harness, spawn_server, stop_server


async def test_polls_are_summarised_and_other_requests_keep_their_lines(harness: Harness, tmp_path: Path) -> None:
    sam = await harness.create_mechanic("Sam")
    log_path = tmp_path / "server.log"
    with log_path.open("wb") as output:
        server = await spawn_server(harness.settings, output, LOG_LEVEL="INFO", POLL_LOG_INTERVAL_S="0.5")
        try:
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                for _ in range(20):
                    assert (await http.get(f"/api/mechanics/{sam}/status", headers=harness.customer)).status_code == 200
                unknown = "00000000-0000-4000-8000-000000000000"
                assert (await http.get(f"/api/mechanics/{unknown}/status", headers=harness.customer)).status_code == 404
                assert (await http.get(f"/api/mechanics/{sam}/status")).status_code == 401
                assert (await http.get(f"/api/mechanics/{sam}", headers=harness.customer)).status_code in (200, 404)
                await asyncio.sleep(0.6)
                assert (await http.get(f"/api/mechanics/{sam}/status", headers=harness.customer)).status_code == 200
                await asyncio.sleep(0.3)
        finally:
            stop_server(server)
    lines = log_path.read_text().splitlines()
    poll_lines = [line for line in lines if f"/api/mechanics/{sam}/status" in line or unknown in line]
    assert len(poll_lines) == 1 and '" 401' in poll_lines[0], poll_lines  # only the refused poll, on its own
    assert any(f'"GET /api/mechanics/{sam} HTTP/1.1"' in line for line in lines)  # other routes: a line each
    summaries = [line for line in lines if "status polls:" in line]
    assert summaries, lines
    # The 401 is counted too: the summary is of every poll, its own line is on top. A slow machine may spread the
    # polls over two intervals: every poll is in exactly one summary.
    total, by_code = 0, Counter[str]()
    for summary in summaries:
        found = re.search(r"status polls: (\d+) in the last [\d.]+ s \((.*)\); server time p50 ≤[\d.]+ ms", summary)
        assert found is not None, summary
        total += int(found[1])
        by_code.update({code: int(n) for code, n in (part.split(": ") for part in found[2].split(", "))})
    assert total == 23 and by_code == {"200": 21, "401": 1, "404": 1}, summaries


def test_percentiles_read_from_buckets_and_the_line_comes_when_due(caplog: object) -> None:
    now = [0.0]
    logger = logging.getLogger("test.poll_log")
    lines: list[str] = []
    logger.addHandler(_Collect(lines))
    logger.setLevel(logging.INFO)
    poll_log = PollLog(10, logger, clock=lambda: now[0])
    for _ in range(98):
        poll_log.record(200, 0.0004)  # ≤0.5 ms
    poll_log.record(200, 0.004)  # ≤5 ms
    poll_log.record(404, 0.030)  # ≤50 ms, the slowest
    assert lines == []
    now[0] = 10.0
    poll_log.record(200, 0.0004)
    assert lines == [
        "status polls: 101 in the last 10 s (200: 100, 404: 1); server time p50 ≤0.5 ms, p99 ≤5 ms, max 30.0 ms"
    ]
    assert not PollLog(0, logger).summarises(200) and poll_log.summarises(404) and not poll_log.summarises(500)


class _Collect(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__()
        self._lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        self._lines.append(record.getMessage())
