"""A server in a process of its own on a free loopback port: what the test suite, the benchmark and the operator
tools start, watch and stop the same way."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psutil

from scripts.embedded_redis import free_port

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/mechanic"

    def kill_group(self) -> None:
        """SIGKILL to its process group (spawned with `own_process_group`: the server and its workers), as a
        crash would end them; waited for."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, and SIGKILL if it has not exited within 10 s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn_python(
    args: list[str],
    env: dict[str, str] | None = None,
    output: IO[bytes] | int | None = None,
    *,
    port: int | None = None,
    own_process_group: bool = False,
) -> ServerProcess:
    """`python <args>` from the project's root, `{port}` in the arguments replaced by `port` (a free one by
    default); not waited for. `output`: where its stdout and stderr go (by default, this process's).
    `own_process_group`: so that `kill_group` takes its worker processes with it."""
    port = port or free_port()
    command = [sys.executable, *(arg.replace("{port}", str(port)) for arg in args)]
    stderr = None if output is None else subprocess.STDOUT
    process = subprocess.Popen(
        command,
        cwd=PROJECT_ROOT,
        env=env or dict(os.environ),
        stdout=output,
        stderr=stderr,
        start_new_session=own_process_group,
    )
    return ServerProcess(process, port)


class PortTaken(RuntimeError):
    """The server exited at start-up: another process took its port first."""


async def wait_ready(server: ServerProcess, timeout_s: float = 20.0) -> None:
    """Until favdispatch answers `/readyz` with 200 from this process (killed, and RuntimeError, if it exits or
    takes too long; PortTaken if another server holds its port)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                if _holds_port(server, any_process=True):
                    raise PortTaken(f"port {server.port} was taken before the server could listen on it")
                raise RuntimeError(f"the server exited with {server.process.returncode}")
            try:
                answer = await client.get(f"{server.base_url}/readyz")
                if answer.status_code == 200 and _holds_port(server):
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    server.process.kill()
    raise RuntimeError("the server did not become ready")


def _holds_port(server: ServerProcess, *, any_process: bool = False) -> bool:
    """Whether the server's process (or one of its workers) listens on its port; `any_process`: whether anything
    does. Another server that took the port first would answer `/readyz` too."""
    try:
        if any_process:
            listening = [c.laddr for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
        else:
            root = psutil.Process(server.process.pid)
            processes = (root, *root.children(recursive=True))
            listening = [c.laddr for p in processes for c in p.net_connections("tcp") if c.status == psutil.CONN_LISTEN]
    except psutil.Error:
        return False
    return any(_port(address) == server.port for address in listening)


def _port(address: object) -> int | None:
    return getattr(address, "port", None)


def wait_listening(server: ServerProcess, timeout_s: float = 30.0) -> None:
    """Until any server (a bare or peer one, with no `/readyz`) accepts connections on its port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=0.2).close()
            time.sleep(0.3)
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start")
