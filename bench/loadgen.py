"""An HTTP load generator for a second process: GET one URL with 32 concurrent connections for some seconds.

python -m bench.loadgen URL HEADERS_JSON SECONDS     ->  {"rps", "p50_ms", "p99_ms", "requests", "errors"}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx
import uvloop

CONCURRENCY = 32


async def main(url: str, headers: dict[str, str], seconds: float) -> None:
    latencies: list[float] = []
    errors = 0
    async with httpx.AsyncClient(headers=headers, limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
        await client.get(url)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.get(url)
                latencies.append(time.perf_counter() - started)
                errors += response.status_code != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    print(
        json.dumps(
            {
                "requests": len(latencies),
                "errors": errors,
                "rps": round(len(latencies) / elapsed),
                "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
                "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
            }
        )
    )


if __name__ == "__main__":
    uvloop.run(main(sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])))
