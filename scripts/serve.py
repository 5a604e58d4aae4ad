"""The one way the server starts: `make run`, the Procfile, the tests and the benchmarks all come through here.

python -m scripts.serve [--host 127.0.0.1] [--port 8000] [--workers 1] [--no-demo] [--production]

Development (`make run`): start a private Redis if none is configured, migrate, seed the demo, print tokens.
`--production` (the Procfile): none of that; REDIS_URL and a JWT_SECRET of at least 32 bytes are required.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Iterator

import uvicorn

from api.settings import VAR_DIR, Settings, load_settings
from base.database import migrate
from dispatch.frames import MAX_FRAME_BYTES
from scripts.demo import DEMO_WORKSHOP, demo_users, seed
from scripts.embedded_redis import EmbeddedRedis, end_with_parent

MIN_SECRET_BYTES = 32
MIN_DISTINCT_SECRET_CHARACTERS = 8


@contextlib.contextmanager
def redis_for(settings: Settings) -> Iterator[str]:
    if settings.redis_url:
        yield settings.redis_url
        return
    with EmbeddedRedis() as redis:
        print(f"No REDIS_URL: started a private Redis server at {redis.url} (stopped on exit)")
        yield redis.url


WORKER_HEALTHCHECK_S = 30


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """The uvicorn settings every entry point shares (`make run` and the Procfile both start through here)."""
    return {
        "http": "delivery.uvicorn_protocols:HttpProtocol",
        "ws": "delivery.uvicorn_protocols:WebSocketProtocol",
        "ws_max_size": MAX_FRAME_BYTES,
        "ws_per_message_deflate": False,
        # Liveness is the apps' heartbeats (a silent socket is closed with 4408): no protocol pings besides.
        "ws_ping_interval": None,
        "timeout_graceful_shutdown": int(settings.graceful_shutdown_s),
        # uvicorn kills a worker that leaves its health check unanswered this long (5 s by default). A worker
        # holding 11,000 sockets on a loaded machine answered late without being hung (a collection of its objects
        # holds the interpreter for seconds there), and killing it dropped every one of its sockets onto the
        # others at once: at 100,000 mechanics on 2 cores that cascaded into restart after restart.
        "timeout_worker_healthcheck": WORKER_HEALTHCHECK_S,
        "log_level": settings.log_level.lower(),
        "lifespan": "on",
    }


def _print_demo(settings: Settings, host: str, port: int) -> None:
    lines = ["", "Demo users (tokens valid 7 days):"]
    exports = []
    for user in demo_users(str(settings.jwt_secret)):
        lines.append(f"  {user.role:<9} {user.name:<12} id={user.id}")
        lines.append(f"            token={user.token}")
        var = {"mechanic": f"MECHANIC_{user.name.split()[0].upper()}", "customer": "CUSTOMER", "admin": "ADMIN"}
        exports.append(f"export {var[user.role]}_ID={user.id}\nexport {var[user.role]}_TOKEN={user.token}")
    workshop_id, workshop_name = DEMO_WORKSHOP
    lines.append(f"  workshop  {workshop_name:<12} id={workshop_id}  (members: Alex Chen, Priya Patel)")
    exports.append(f"export WORKSHOP_ID={workshop_id}")
    VAR_DIR.mkdir(exist_ok=True)
    (VAR_DIR / "demo.env").write_text("\n".join(exports) + f"\nexport BASE=http://{host}:{port}\n")
    lines.append("  (also written as shell exports to var/demo.env: `source var/demo.env`)")
    lines.append(f"\nConsoles: http://{host}:{port}/console/  (customer, mechanic, operations)")
    lines.append(f"Serving on http://{host}:{port}  (OpenAPI: /openapi.json, socket: ws://{host}:{port}/ws/mechanic)")
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-demo", action="store_true")
    parser.add_argument("--production", action="store_true", help="no demo, no embedded Redis, no generated secret")
    args = parser.parse_args()
    try:
        settings = load_settings()
    except ValueError as invalid:  # one line naming the setting, not a traceback
        raise SystemExit(f"configuration: {invalid}") from None
    port = args.port or settings.port
    if args.production:
        _check_production(settings)
        _serve(settings, args.host, port, args.workers)
        return
    if settings.jwt_secret_is_generated:
        print("JWT_SECRET is not set: using a generated development secret kept in var/dev_jwt_secret")
    # Development: a Prometheus on this machine may scrape without a token (workers read the environment).
    os.environ.setdefault("METRICS_OPEN_TO_LOOPBACK", "true")
    migrate(settings.database_url)
    if not args.no_demo:
        asyncio.run(seed(settings.database_url))
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Several workers: each writes its samples here and /metrics sums them.
        metrics_dir = VAR_DIR / "prometheus"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    _stop_cleanly_on(signal.SIGTERM, signal.SIGHUP)
    # Started by `make run`, which does not pass SIGHUP (or its own SIGKILL) on: stop with it, Redis included.
    end_with_parent(signal.SIGTERM)
    with redis_for(settings) as redis_url:
        # Worker processes read their settings from the environment, like a deployment.
        os.environ["REDIS_URL"] = redis_url
        if not args.no_demo:
            _print_demo(settings, args.host, port)
        _serve(settings, args.host, port, args.workers)


def _stop_cleanly_on(*signals: signal.Signals) -> None:
    """SIGTERM (what systemd, supervisord, `docker stop` and IDE stop buttons send) and SIGHUP end the process the
    way Ctrl-C does, so that the private Redis is stopped on the way out. uvicorn shuts down gracefully on SIGTERM
    and then raises it again, which without a handler of ours would end the process before any clean-up; SIGHUP,
    which uvicorn leaves alone, is turned into that same SIGTERM."""

    def stop(received: int, frame: object) -> None:
        if received == signal.SIGHUP:
            signal.raise_signal(signal.SIGTERM)
            return
        raise SystemExit(128 + received)

    for each in signals:
        signal.signal(each, stop)


def _check_production(settings: Settings) -> None:
    """Every host of a deployment must share one secret: a generated one would make the others' tokens fail."""
    if settings.jwt_secret_is_generated:
        raise SystemExit("JWT_SECRET is required in production (--production): set one of at least 32 bytes")
    secret = str(settings.jwt_secret)
    if len(secret.encode()) < MIN_SECRET_BYTES or not _looks_random(secret):
        raise SystemExit(
            f"JWT_SECRET must be at least {MIN_SECRET_BYTES} random bytes, not blanks or one character repeated: "
            "make one with `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    if settings.database_url_is_default:
        raise SystemExit(
            "DATABASE_URL is required in production (--production): every process must share one database, "
            "e.g. postgresql://user:password@host:5432/favdispatch"
        )
    if not settings.redis_url:
        raise SystemExit("REDIS_URL is required in production (--production)")
    if settings.web_push and settings.vapid_is_generated:
        raise SystemExit(
            "VAPID_PRIVATE_KEY is required in production with Web Push on (make one with "
            "`python -m scripts.vapid_keys`), or set WEB_PUSH=off"
        )


def _looks_random(secret: str) -> bool:
    """Not whitespace, not a character or two repeated: the mistakes a real secret never makes (a length check
    alone accepts 32 spaces)."""
    return len(set(secret.strip())) >= MIN_DISTINCT_SECRET_CHARACTERS


def _serve(settings: Settings, host: str, port: int, workers: int) -> None:
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        **uvicorn_options(settings),  # type: ignore[arg-type]
    )


if __name__ == "__main__":
    main()
