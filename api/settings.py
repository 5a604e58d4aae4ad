"""The one place the environment is read.

Every value is typed and documented in the README's settings table. The domain packages never see the
environment: `presence_config()` and `dispatch_config()` hand them plain dataclasses.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from starlette.config import Config
from starlette.datastructures import Secret

from api.push_targets import PushTargets, host_list
from api.web_push import new_vapid_private_key, vapid_public_key
from base.redis_client import check_url as check_redis_url
from dispatch.config import DispatchConfig
from presence.config import PresenceConfig

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = PROJECT_ROOT / "var"
DEV_SECRET_FILE = VAR_DIR / "dev_jwt_secret"
DEV_VAPID_FILE = VAR_DIR / "dev_vapid_private_key"


@dataclass(frozen=True)
class Settings:
    port: int
    redis_url: str | None
    database_url: str
    database_url_is_default: bool  # DATABASE_URL unset: a SQLite file under var/
    jwt_secret: Secret
    jwt_secret_is_generated: bool
    key_prefix: str
    heartbeat_interval_s: float
    presence_ttl_s: float
    last_seen_flush_s: float
    priority_window_s: float
    notify_wait_window_s: float
    offer_ack_timeout_s: float
    offer_resends: int
    log_level: str
    graceful_shutdown_s: float
    rollout_percent: int
    stripe_secret_key: Secret | None
    stripe_webhook_secret: Secret | None
    stripe_api_base: str | None
    checkout_success_url: str
    checkout_cancel_url: str
    max_body_bytes: int
    socket_frames_per_s: float
    socket_frame_burst: int
    metrics_open_to_loopback: bool
    prometheus_multiproc_dir: str | None
    web_push: bool
    vapid_private_key: Secret
    vapid_public_key: str
    vapid_subject: str
    vapid_is_generated: bool
    push_endpoints_may_be_loopback_http: bool
    push_allowed_hosts: tuple[str, ...]
    push_retry_base_s: float
    push_timeout_s: float
    routed_deliveries: bool
    poll_log_interval_s: float
    stream_keepalive_s: float

    def push_targets(self) -> PushTargets:
        return PushTargets(
            loopback_http=self.push_endpoints_may_be_loopback_http, allowed_hosts=self.push_allowed_hosts
        )

    @property
    def payments_enabled(self) -> bool:
        """With no Stripe key, requests are created directly (the demo and most tests)."""
        return self.stripe_secret_key is not None

    def presence_config(self) -> PresenceConfig:
        return PresenceConfig(
            key_prefix=self.key_prefix,
            ttl_s=self.presence_ttl_s,
        )

    def dispatch_config(self) -> DispatchConfig:
        return DispatchConfig(
            key_prefix=self.key_prefix,
            priority_window_s=self.priority_window_s,
            notify_wait_window_s=self.notify_wait_window_s,
            offer_ack_timeout_s=self.offer_ack_timeout_s,
            offer_resends=self.offer_resends,
            rollout_percent=self.rollout_percent,
            push_retry_base_s=self.push_retry_base_s,
            routed_deliveries=self.routed_deliveries,
        )


def _dev_secret() -> str:
    """A development secret kept under var/ so that tokens printed by `make run` stay valid across restarts."""
    if DEV_SECRET_FILE.exists():
        return DEV_SECRET_FILE.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    DEV_SECRET_FILE.write_text(value)
    DEV_SECRET_FILE.chmod(0o600)
    return value


def _dev_vapid_key() -> str:
    """A development VAPID key under var/, like the JWT secret: browsers subscribed to it stay subscribed."""
    if DEV_VAPID_FILE.exists():
        return DEV_VAPID_FILE.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    value = new_vapid_private_key()
    DEV_VAPID_FILE.write_text(value)
    DEV_VAPID_FILE.chmod(0o600)
    return value


def _optional_secret(value: str) -> Secret | None:
    return Secret(value) if value else None


def load_settings(env_file: str | None = None) -> Settings:
    """Read and validate the environment; a bad value fails here, at start-up, not mid-request."""
    config = Config(env_file)
    raw_secret = config("JWT_SECRET", cast=str, default="")
    is_generated = not raw_secret
    raw_vapid = config("VAPID_PRIVATE_KEY", cast=str, default="")
    web_push = config("WEB_PUSH", cast=str, default="on").lower()
    if web_push not in ("on", "off"):
        raise ValueError("WEB_PUSH must be on or off")
    vapid_private_key = raw_vapid or (_dev_vapid_key() if web_push == "on" else new_vapid_private_key())
    try:
        derived_public_key = vapid_public_key(vapid_private_key)
    except ValueError as invalid:
        raise ValueError(
            f"VAPID_PRIVATE_KEY is not a base64url P-256 private key ({invalid}): make one with "
            "`python -m scripts.vapid_keys`"
        ) from None
    given_public_key = config("VAPID_PUBLIC_KEY", cast=str, default="")
    if given_public_key and given_public_key != derived_public_key:
        raise ValueError("VAPID_PUBLIC_KEY does not belong to VAPID_PRIVATE_KEY (leave it unset: it is derived)")
    settings = Settings(
        port=config("PORT", cast=int, default=8000),
        redis_url=config("REDIS_URL", cast=str, default="") or None,
        database_url=config("DATABASE_URL", cast=str, default="") or f"sqlite:///{VAR_DIR / 'favdispatch.db'}",
        database_url_is_default=not config("DATABASE_URL", cast=str, default=""),
        jwt_secret=Secret(raw_secret or _dev_secret()),
        jwt_secret_is_generated=is_generated,
        key_prefix=config("REDIS_KEY_PREFIX", cast=str, default="favdispatch"),
        heartbeat_interval_s=config("HEARTBEAT_INTERVAL_S", cast=float, default=10.0),
        presence_ttl_s=config("PRESENCE_TTL_S", cast=float, default=30.0),
        last_seen_flush_s=config("LAST_SEEN_FLUSH_S", cast=float, default=5.0),
        priority_window_s=config("PRIORITY_WINDOW_S", cast=float, default=600.0),
        notify_wait_window_s=config("NOTIFY_WAIT_WINDOW_S", cast=float, default=1800.0),
        offer_ack_timeout_s=config("OFFER_ACK_TIMEOUT_S", cast=float, default=5.0),
        offer_resends=config("OFFER_RESENDS", cast=int, default=2),
        log_level=config("LOG_LEVEL", cast=str, default="INFO").upper(),
        graceful_shutdown_s=config("GRACEFUL_SHUTDOWN_S", cast=float, default=5.0),
        rollout_percent=config("FAVORITES_ROLLOUT_PERCENT", cast=int, default=100),
        stripe_secret_key=_optional_secret(config("STRIPE_SECRET_KEY", cast=str, default="")),
        stripe_webhook_secret=_optional_secret(config("STRIPE_WEBHOOK_SECRET", cast=str, default="")),
        stripe_api_base=config("STRIPE_API_BASE", cast=str, default="") or None,
        checkout_success_url=config(
            "CHECKOUT_SUCCESS_URL",
            cast=str,
            default="http://127.0.0.1:8000/console/customer?paid={CHECKOUT_SESSION_ID}",
        ),
        checkout_cancel_url=config("CHECKOUT_CANCEL_URL", cast=str, default="http://127.0.0.1:8000/console/customer"),
        max_body_bytes=config("MAX_BODY_BYTES", cast=int, default=64 * 1024),
        socket_frames_per_s=config("SOCKET_FRAMES_PER_S", cast=float, default=100.0),
        socket_frame_burst=config("SOCKET_FRAME_BURST", cast=int, default=300),
        metrics_open_to_loopback=config("METRICS_OPEN_TO_LOOPBACK", cast=bool, default=False),
        # prometheus_client reads it too: it is the library's own switch to multiprocess mode.
        prometheus_multiproc_dir=config("PROMETHEUS_MULTIPROC_DIR", cast=str, default="") or None,
        web_push=web_push == "on",
        vapid_private_key=Secret(vapid_private_key),
        vapid_public_key=derived_public_key,
        vapid_subject=config("VAPID_SUBJECT", cast=str, default="mailto:webpush@localhost"),
        vapid_is_generated=not raw_vapid,
        push_endpoints_may_be_loopback_http=config("WEB_PUSH_ALLOW_LOOPBACK_HTTP", cast=bool, default=False),
        push_allowed_hosts=host_list(config("WEB_PUSH_ALLOWED_HOSTS", default="").split(",")),
        push_retry_base_s=config("PUSH_RETRY_BASE_S", cast=float, default=1.0),
        push_timeout_s=config("PUSH_TIMEOUT_S", cast=float, default=5.0),
        routed_deliveries=config("ROUTED_DELIVERIES", cast=bool, default=True),
        poll_log_interval_s=config("POLL_LOG_INTERVAL_S", cast=float, default=60.0),
        stream_keepalive_s=config("STREAM_KEEPALIVE_S", cast=float, default=15.0),
    )
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    positive = {
        "HEARTBEAT_INTERVAL_S": settings.heartbeat_interval_s,
        "PRESENCE_TTL_S": settings.presence_ttl_s,
        "LAST_SEEN_FLUSH_S": settings.last_seen_flush_s,
        "PRIORITY_WINDOW_S": settings.priority_window_s,
        "NOTIFY_WAIT_WINDOW_S": settings.notify_wait_window_s,
        "OFFER_ACK_TIMEOUT_S": settings.offer_ack_timeout_s,
        "STREAM_KEEPALIVE_S": settings.stream_keepalive_s,
    }
    for name, value in positive.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")
    if settings.presence_ttl_s <= settings.heartbeat_interval_s:
        raise ValueError("PRESENCE_TTL_S must exceed HEARTBEAT_INTERVAL_S, or live mechanics would flap offline")
    if not 0 <= settings.rollout_percent <= 100:
        raise ValueError("FAVORITES_ROLLOUT_PERCENT must be between 0 and 100")
    if settings.payments_enabled and settings.stripe_webhook_secret is None:
        raise ValueError("STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: webhooks could not be verified")
    if settings.redis_url is not None:
        check_redis_url(settings.redis_url)
    if "{" in settings.key_prefix or "}" in settings.key_prefix:
        raise ValueError("REDIS_KEY_PREFIX must not hold { or }: they would change the keys' cluster hash slots")
    if settings.max_body_bytes < 1024:
        raise ValueError("MAX_BODY_BYTES must be at least 1024")
    if settings.socket_frames_per_s <= 0 or settings.socket_frame_burst < 1:
        raise ValueError("SOCKET_FRAMES_PER_S must be positive and SOCKET_FRAME_BURST at least 1")
    if settings.offer_resends < 0:
        raise ValueError("OFFER_RESENDS must be zero or more")
    if not settings.vapid_subject.startswith(("mailto:", "https:")):
        raise ValueError("VAPID_SUBJECT must be a mailto: or https: URL (push services contact it)")
    if settings.push_retry_base_s < 0:
        raise ValueError("PUSH_RETRY_BASE_S must be zero or more")
    if settings.push_timeout_s <= 0:
        raise ValueError("PUSH_TIMEOUT_S must be more than zero")
    if settings.poll_log_interval_s < 0:
        raise ValueError("POLL_LOG_INTERVAL_S must be zero (a line per poll) or more")
    if settings.log_level not in logging.getLevelNamesMapping():
        raise ValueError(f"LOG_LEVEL {settings.log_level!r} is not a logging level")
