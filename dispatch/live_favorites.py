"""Who follows which favorites live, in this process: the customers' favorites streams, woken by the changes that
concern them, and a short log of changes so that a stream that reconnects resumes where it left off.

A stream watches its favorites and, for a workshop, the workshop's members. Three things wake it:
- a presence change of a watched mechanic (the replica's, so every process hears every transition);
- its customer's favorites added or removed (published on `channel` by whichever process changed them);
- a watched mechanic or workshop changed (renamed, deleted, members changed: their own channels), or pub/sub
  reconnected (messages may have been lost): the stream re-reads its favorites.

Changes are numbered per process. An event's id is `<process>.<number>`: a reconnecting stream that names this
process and a number the log still covers is sent what changed since; any other is sent a full snapshot (it
reconnected to another process, or was away longer than the log reaches).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from redis.exceptions import RedisError

from delivery.bus import Bus
from dispatch.metrics import FAVORITES_STREAMS
from presence.replica import PresenceReplica

log = logging.getLogger(__name__)

ANNOUNCE_RETRY_S = 1.0  # a favorites change Redis refused to announce is offered again this often
CHANGE_LOG_LENGTH = 20_000  # at 100 transitions a second, a reconnect within 200 s resumes without a snapshot


class Change(Enum):
    PRESENCE = "presence"  # a mechanic came online or went offline
    FAVORITES = "favorites"  # a customer added or removed a favorite
    RECORD = "record"  # a mechanic or workshop was renamed, deleted, or its members changed
    LOST = "lost"  # pub/sub reconnected: changes may have gone unheard


@dataclass(eq=False)
class Watch:
    """One open stream: what it watches, and what changed since it last looked."""

    customer_id: str
    subjects: frozenset[str] = frozenset()  # favorite ids and favorite workshops' member ids
    changed: set[str] = field(default_factory=set)  # mechanics whose presence changed
    reread: bool = False  # its favorites themselves may have changed
    ended: bool = False  # its client went away, or the server is shutting down
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self) -> None:
        self.ended = True
        self.wake.set()

    @property
    def has_news(self) -> bool:
        """Whether it must end, or something it watches changed since it last looked."""
        return self.ended or self.reread or bool(self.changed)

    def take(self) -> tuple[set[str], bool]:
        """What changed since the last call, and whether to re-read the favorites; clears both."""
        changed, reread = self.changed, self.reread
        self.changed, self.reread = set(), False
        self.wake.clear()
        return changed, reread


class LiveFavorites:
    def __init__(self, replica: PresenceReplica, bus: Bus, channel: str, record_channels: Iterable[str]) -> None:
        self._bus = bus
        self._channel = channel
        self._process = secrets.token_hex(4)
        self._number = 0
        self._log: deque[tuple[int, Change, str]] = deque(maxlen=CHANGE_LOG_LENGTH)
        self._by_subject: dict[str, set[Watch]] = {}
        self._by_customer: dict[str, set[Watch]] = {}
        self._unannounced: set[str] = set()  # customers whose favorites changed, not yet published
        replica.on_change(self._presence_changed)
        bus.subscribe(channel, self._favorites_changed)
        for record_channel in record_channels:
            bus.subscribe(record_channel, self._record_changed)
        bus.on_reconnect(self._messages_may_be_lost)

    def streams_of(self, customer_id: str) -> int:
        return len(self._by_customer.get(customer_id, ()))

    def position(self) -> str:
        """The id of an event that reflects every change heard so far."""
        return f"{self._process}.{self._number}"

    def open(self, customer_id: str) -> Watch:
        watch = Watch(customer_id)
        self._by_customer.setdefault(customer_id, set()).add(watch)
        FAVORITES_STREAMS.inc()
        return watch

    def close(self, watch: Watch) -> None:
        self.follow(watch, frozenset())
        watches = self._by_customer.get(watch.customer_id)
        if watches is not None and watch in watches:
            watches.discard(watch)
            FAVORITES_STREAMS.dec()
            if not watches:
                del self._by_customer[watch.customer_id]

    def follow(self, watch: Watch, subjects: frozenset[str]) -> None:
        """Watch these mechanics and workshops from now on (and no others)."""
        for subject in watch.subjects - subjects:
            watchers = self._by_subject.get(subject)
            if watchers is not None:
                watchers.discard(watch)
                if not watchers:
                    del self._by_subject[subject]
        for subject in subjects - watch.subjects:
            self._by_subject.setdefault(subject, set()).add(watch)
        watch.subjects = subjects

    def changed_since(self, watch: Watch, last_event_id: str) -> set[str] | None:
        """The watched mechanics whose presence changed after the event `last_event_id`, or None when that cannot
        be told (another process's id, older than the log, or the favorites themselves changed since): then the
        stream starts over with a snapshot."""
        process, _, number_text = last_event_id.partition(".")
        if process != self._process or not (number_text.isascii() and number_text.isdigit()) or len(number_text) > 18:
            return None
        number = int(number_text)
        if number > self._number or (self._log and self._log[0][0] > number + 1):
            return None
        changed: set[str] = set()
        for at, change, subject in reversed(self._log):
            if at <= number:
                break
            if change is Change.PRESENCE:
                if subject in watch.subjects:
                    changed.add(subject)
            elif change is not Change.FAVORITES or subject == watch.customer_id:
                return None
        return changed

    async def favorites_changed(self, customer_id: str) -> None:
        """Every process's streams of this customer re-read their favorites (one was added or removed): this
        process's at once, the others' when the announcement reaches them. One that Redis refused is kept and
        published again by `announce_forever`, so a change committed while Redis blinked still reaches them."""
        await self._favorites_changed(customer_id)
        self._unannounced.add(customer_id)
        await self._announce()

    async def announce_forever(self) -> None:
        """Publish the announcements Redis refused, every ANNOUNCE_RETRY_S until it takes them."""
        while True:
            await asyncio.sleep(ANNOUNCE_RETRY_S)
            if self._unannounced:
                await self._announce()

    async def _announce(self) -> None:
        for customer_id in list(self._unannounced):
            try:
                await self._bus.publish(self._channel, customer_id)
            except (RedisError, OSError) as error:
                log.warning(
                    "favorites changes of %d customers unannounced, Redis unreachable (%s): retrying",
                    len(self._unannounced),
                    error,
                )
                return
            self._unannounced.discard(customer_id)

    def _note(self, change: Change, subject: str) -> None:
        self._number += 1
        self._log.append((self._number, change, subject))

    def _presence_changed(self, mechanic_id: str) -> None:
        self._note(Change.PRESENCE, mechanic_id)
        for watch in self._by_subject.get(mechanic_id, ()):
            watch.changed.add(mechanic_id)
            watch.wake.set()

    async def _favorites_changed(self, customer_id: str) -> None:
        self._note(Change.FAVORITES, customer_id)
        self._reread(self._by_customer.get(customer_id, ()))

    async def _record_changed(self, subject: str) -> None:
        self._note(Change.RECORD, subject)
        self._reread(self._by_subject.get(subject, ()))

    async def _messages_may_be_lost(self) -> None:
        self._note(Change.LOST, "")
        self._reread(w for watches in self._by_customer.values() for w in watches)

    @staticmethod
    def _reread(watches: Iterable[Watch]) -> None:
        for watch in list(watches):
            watch.reread = True
            watch.wake.set()
