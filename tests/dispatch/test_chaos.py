"""A few rounds of the chaos tool: the server SIGKILLed mid-window, restarted, apps reconnecting."""

from __future__ import annotations

import argparse

from scripts import chaos


async def test_killing_the_server_mid_window_loses_and_doubles_nothing(database_url: str, redis_url: str) -> None:
    args = argparse.Namespace(
        rounds=3, bookings=3, mechanics=3, window_s=1.0, database_url=database_url, redis_url=redis_url, seed=11
    )
    problems = await chaos.run(args)
    assert problems == []
