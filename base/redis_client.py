"""The Redis a process talks to: one server (`redis://`, `rediss://`, `unix://`) or a Redis Cluster, named by
its startup nodes in a `redis+cluster://host:port,host:port/` URL (`rediss+cluster://` for TLS).

Both clients answer the same commands; what differs (where pub/sub is heard, how a delivery is published) is
decided by `is_cluster`, in the floors that own it.
"""

from __future__ import annotations

from urllib.parse import unquote

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import EncodableT

RedisClient = Redis | RedisCluster

SINGLE_SCHEMES = ("redis://", "rediss://", "unix://")
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster_url(url: str) -> bool:
    return url.startswith(CLUSTER_SCHEMES)


def check_url(url: str) -> None:
    """Raise ValueError, naming the problem, for a URL that names neither a Redis nor a cluster."""
    if is_cluster_url(url):
        cluster_nodes(url)
    elif not url.startswith(SINGLE_SCHEMES):
        raise ValueError("REDIS_URL must be a redis://, rediss://, unix://, redis+cluster:// or rediss+cluster:// URL")


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """The startup nodes, user name and password of a `redis+cluster://[user:password@]host:port,…/` URL."""
    rest = url.split("://", 1)[1]
    location = rest.split("/", 1)[0]
    credentials, _, hosts = location.rpartition("@")
    username, _, password = credentials.partition(":") if credentials else ("", "", "")
    nodes = []
    for host_port in filter(None, hosts.split(",")):
        host, _, port = host_port.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"REDIS_URL: cluster node {host_port!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError("REDIS_URL: a redis+cluster:// URL names at least one host:port")
    return nodes, unquote(username) or None, unquote(password) or None


def connect(url: str, max_connections: int) -> RedisClient:
    """A client with bounded pools that waits for a free connection rather than failing when thousands of sockets
    connect at once, and that replaces a connection lost with a restarted server and retries the command."""
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), 3)
    retry_on_error: list[type[Exception]] = [RedisConnectionError, RedisTimeoutError]
    if is_cluster_url(url):
        nodes, username, password = cluster_nodes(url)
        return RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in nodes],
            username=username,
            password=password,
            ssl=url.startswith("rediss+"),
            max_connections=max_connections,
            decode_responses=True,
            health_check_interval=10,
            retry=retry,
            retry_on_error=retry_on_error,
        )
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=10,
        decode_responses=True,
        health_check_interval=10,
        retry=retry,
        retry_on_error=retry_on_error,
    )
    pool.connection_class = _PACKED_BY_HIREDIS[pool.connection_class]
    return Redis(connection_pool=pool)


class _HiredisPacking(AbstractConnection):
    """Commands packed by hiredis, as redis-py's sync client does and its asyncio client does not yet
    (redis/redis-py#4176). Its Python packer recopies a growing buffer for every argument: on a heartbeat flush
    (one script call with eight arguments per device) that was a tenth of a busy process's CPU."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        command = args[0]
        if isinstance(command, str):
            args = (*command.encode().split(), *args[1:])
        elif isinstance(command, bytes) and b" " in command:
            args = (*command.split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]  # type: ignore[arg-type]  # its stub says a 1-tuple
        except TypeError as error:  # what redis-py's packer raises for an argument it cannot encode
            raise DataError(str(error)) from error


class _PackedConnection(_HiredisPacking, Connection):
    pass


class _PackedSSLConnection(_HiredisPacking, SSLConnection):
    pass


class _PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


_PACKED_BY_HIREDIS: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _PackedConnection,
    SSLConnection: _PackedSSLConnection,
    UnixDomainSocketConnection: _PackedUnixConnection,
}


def is_cluster(redis: RedisClient) -> bool:
    return isinstance(redis, RedisCluster)
