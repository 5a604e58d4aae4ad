"""A Redis Cluster on this machine, to try favdispatch on one: three primaries and a replica on loopback.

python -m scripts.local_cluster

Prints the `REDIS_URL` to start the server with and runs until interrupted (Ctrl-C), keeping nothing on disk.
Needs `redis-server` 7 or later on PATH (Debian: `apt-get install redis-server`).
"""

from __future__ import annotations

import signal
import sys

from scripts.embedded_redis import EmbeddedCluster, cluster_binary


def main() -> int:
    binary = cluster_binary()
    if binary is None:
        print("A Redis Cluster needs redis-server 7 or later on PATH (e.g. apt-get install redis-server)")
        return 1
    with EmbeddedCluster(binary) as cluster:
        nodes = ", ".join(str(node.port) for node in cluster.primaries)
        print(
            f"Redis Cluster up: primaries on 127.0.0.1 ports {nodes}, a replica of the first on {cluster.replica.port}"
        )
        print(f"REDIS_URL={cluster.url}", flush=True)
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
