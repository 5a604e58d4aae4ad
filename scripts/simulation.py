"""Simulated mechanics' apps and an operator's HTTP client, shared by the simulator, the load test and benchmarks.

Traffic goes only where the caller points it; every loop is bounded by the caller's duration or count.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from api.auth import Role, mint_token


@dataclass(frozen=True)
class Behaviour:
    """How a simulated mechanic answers offers: chances to accept or decline (the rest are ignored: no ack, no
    answer), and an exponential reply delay with the given mean, capped."""

    accept: float = 1.0
    decline: float = 0.0
    delay_mean_ms: float = 200.0
    delay_max_ms: float = 3000.0

    def decide(self, rng: random.Random) -> str:
        roll = rng.random()
        if roll < self.accept:
            return "accept"
        if roll < self.accept + self.decline:
            return "decline"
        return "ignore"

    def delay_s(self, rng: random.Random) -> float:
        if self.delay_mean_ms <= 0:
            return 0.0
        return min(rng.expovariate(1000.0 / self.delay_mean_ms), self.delay_max_ms / 1000.0)


@dataclass
class SimulatedMechanic:
    mechanic_id: str
    token: str
    ws_url: str
    behaviour: Behaviour
    rng: random.Random
    counts: Counter[str] = field(default_factory=Counter)
    first_offer_at: dict[str, float] = field(default_factory=dict)
    won: list[str] = field(default_factory=list)
    ws: ClientConnection | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def connect(self) -> None:
        self.ws = await connect(f"{self.ws_url}?token={self.token}", compression=None, open_timeout=20, max_queue=None)
        welcome = json.loads(await self.ws.recv())
        if welcome.get("type") != "welcome":
            raise RuntimeError(f"expected welcome, got {welcome}")
        self.counts["connected"] += 1
        self._spawn(self._heartbeat(float(welcome["heartbeat_interval_s"])))
        self._spawn(self._read())

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _heartbeat(self, interval_s: float) -> None:
        assert self.ws is not None
        while True:
            await asyncio.sleep(interval_s * (0.9 + 0.2 * self.rng.random()))
            try:
                await self.ws.send('{"type":"heartbeat"}')
            except ConnectionClosed:
                return

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                message = json.loads(frame)
                kind = message.get("type")
                self.counts[kind] += 1
                if kind == "offer":
                    self.first_offer_at.setdefault(message["request_id"], time.time())
                    self._spawn(self._answer(message))
                elif kind == "accepted":
                    self.won.append(message["request_id"])
        except ConnectionClosed:
            self.counts["closed"] += 1

    async def _answer(self, offer: dict[str, Any]) -> None:
        assert self.ws is not None
        decision = self.behaviour.decide(self.rng)
        if decision == "ignore":
            return
        try:
            await self.ws.send(json.dumps({"type": "ack", "offer_id": offer["offer_id"]}))
            await asyncio.sleep(self.behaviour.delay_s(self.rng))
            await self.ws.send(
                json.dumps({"type": decision, "request_id": offer["request_id"], "attempt": offer["attempt"]})
            )
        except ConnectionClosed:
            return
        self.counts[f"sent_{decision}"] += 1

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.ws is not None:
            await self.ws.close()


class Operator:
    """An admin's HTTP client for the tools: create mechanics, book as customers, read requests."""

    def __init__(self, base_url: str, secret: str) -> None:
        self.secret = secret
        self.http = httpx.AsyncClient(
            base_url=base_url, timeout=30, limits=httpx.Limits(max_connections=100, max_keepalive_connections=100)
        )
        self.admin = self.headers(mint_token(secret, sub="00000000-0000-4000-8000-00000000a0a0", role=Role.ADMIN))

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def mechanic_token(self, mechanic_id: str) -> str:
        return mint_token(self.secret, sub=mechanic_id, role=Role.MECHANIC, ttl_s=24 * 3600)

    def customer_headers(self, customer_id: str, name: str) -> dict[str, str]:
        return self.headers(mint_token(self.secret, sub=customer_id, role=Role.CUSTOMER, name=name))

    async def create_mechanic(self, name: str) -> str:
        response = await self.http.post("/api/admin/mechanics", json={"name": name}, headers=self.admin)
        response.raise_for_status()
        return str(response.json()["id"])

    async def delete_mechanic(self, mechanic_id: str) -> None:
        """A tool removes the mechanics it created (404: someone removed it already)."""
        response = await self.http.delete(f"/api/admin/mechanics/{mechanic_id}", headers=self.admin)
        if response.status_code != 404:
            response.raise_for_status()

    async def request(self, request_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/api/session-requests/{request_id}", headers=self.admin)
        response.raise_for_status()
        return dict(response.json())

    async def events(self, request_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(f"/api/admin/session-requests/{request_id}/events", headers=self.admin)
        response.raise_for_status()
        return list(response.json()["events"])

    async def aclose(self) -> None:
        await self.http.aclose()


async def connect_all(mechanics: list[SimulatedMechanic], concurrency: int = 100, progress: Any = None) -> int:
    """Connect every simulated mechanic, `concurrency` at a time; returns how many failed."""
    gate = asyncio.Semaphore(concurrency)
    failed = 0

    async def one(mechanic: SimulatedMechanic) -> None:
        nonlocal failed
        async with gate:
            try:
                await mechanic.connect()
            except (OSError, InvalidHandshake, ConnectionClosed, RuntimeError, TimeoutError):
                failed += 1
            if progress is not None:
                progress.update(1)

    await asyncio.gather(*(one(m) for m in mechanics))
    return failed
