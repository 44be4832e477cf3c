"""Waiting for an approval request's decision, bounded, without holding a database connection.

An agent that asked for approval wants the answer as soon as it exists, and a web process must
hold many such waiters at once. So a waiter holds a thread and nothing else: it looks at the
request, closes its database connection, and sleeps until woken or until its next look.

One watcher thread per process wakes the waiters of a decided request. With ``REDIS_URL`` set it
listens on a Redis channel where every decision, expiry and default outcome publishes the
request's id when its transaction commits (the subscriber is registered in
``ClaimsConfig.ready()``); while it is not subscribed, waiters look for themselves every
``POLL_INTERVAL`` seconds. Without Redis it asks the database every ``POLL_INTERVAL`` seconds, in
one query for all the requests waited on, which of them are decided. Either way each waiter also
looks every ``RECHECK_INTERVAL`` seconds, in case a wake-up was lost.
"""

import logging
import math
import os
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from functools import partial

import redis
from django.conf import settings
from django.db import connection, transaction

from backoffice import redis_client
from backoffice.errors import InvalidInput

from .events import ApprovalDecided, ApprovalDefaulted, ApprovalEvent, ApprovalExpired, subscribe
from .models import ApprovalRequest
from .selectors import approval_id_for, get_approval, votes_with_voters

logger = logging.getLogger(__name__)

# The longest one wait may last: well under the proxy's and the clients' read timeouts, so a long
# wait is many short ones (docs/api.md).
MAX_WAIT_SECONDS = 30.0
# How often the watcher asks the database (without Redis), or a waiter looks for itself (while
# the Redis subscription is down).
POLL_INTERVAL = 0.5
# How often a waiter looks anyway, in case a wake-up was lost.
RECHECK_INTERVAL = 5.0
# Redis pub/sub channels are shared by every database of a server; a message from another
# deployment names an id nobody here waits for and wakes no one.
CHANNEL = "claimdesk:approval-decided"
# How long the Redis listener waits before reconnecting after Redis failed it.
RECONNECT_DELAY = 1.0


def wait_for_decision(approval_id: uuid.UUID | str, timeout: float) -> ApprovalRequest:
    """The request as soon as it is no longer awaiting a decision, or as it is after ``timeout``
    seconds (at most ``MAX_WAIT_SECONDS``), whatever its status.

    A postponed request still awaits its decision, so the wait goes on. Call it outside a
    transaction: inside one, the connection cannot be let go, and a decision committed meanwhile
    may not be seen.
    """
    timeout = checked_timeout(timeout)
    deadline = time.monotonic() + timeout
    approval_pk = approval_id_for(approval_id)
    with _wake_up_for(approval_pk) as woken:
        while True:
            # Each look comes after the waiter is registered, so no decision falls between them.
            approval = get_approval(approval_pk)
            remaining = deadline - time.monotonic()
            if approval.status not in ApprovalRequest.AWAITING_DECISION or remaining <= 0:
                # The answer shows the votes: read them once, with their voters.
                votes_with_voters(approval)
                return approval
            let_go_of_the_database()
            woken.wait(min(remaining, _watcher().recheck_interval()))
            woken.clear()


def checked_timeout(timeout: object) -> float:
    """``timeout`` as seconds to wait, or ``InvalidInput`` if it is not 0 to the cap."""
    if isinstance(timeout, str):
        with suppress(ValueError):
            timeout = float(timeout)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or not 0 <= timeout <= MAX_WAIT_SECONDS
    ):
        raise InvalidInput(
            {"timeout": f"must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}"}
        )
    return float(timeout)


def let_go_of_the_database() -> None:
    """Close this thread's database connection, outside a transaction.

    A caller that reads more after a wait (the request's votes, to answer with it) calls it once
    done, or every thread that served a wait would keep an idle connection for
    ``DATABASE_CONN_MAX_AGE`` seconds: a process holding hundreds of waiters would hold hundreds
    of connections.
    """
    # Inside a transaction (a test's, or a caller's mistake) the connection is not ours to close.
    if not connection.in_atomic_block:
        connection.close()


@contextmanager
def _wake_up_for(approval_id: uuid.UUID) -> Iterator[threading.Event]:
    """An event set when ``approval_id`` is decided, for as long as the block runs.

    Registered before the waiter looks at the request, so a decision between a look and the
    sleep still wakes it.
    """
    woken = threading.Event()
    watcher = _watcher()
    watcher.add(str(approval_id), woken)
    try:
        yield woken
    finally:
        watcher.remove(str(approval_id), woken)


# --- Announcing decisions -------------------------------------------------------------------


def announce_decision(event: ApprovalEvent) -> None:
    """Publish the request's id once the transaction that decided it commits."""
    if settings.REDIS_URL:
        transaction.on_commit(partial(_publish, str(event.approval.pk)), robust=True)


def _publish(approval_id: str) -> None:
    try:
        redis_client.publish(CHANNEL, approval_id)
    except redis.RedisError:
        # The decision is committed; its waiters see it at their next look.
        logger.warning("Could not announce the decision of %s on Redis", approval_id)


def subscribe_to_decisions() -> None:
    """Announce every event after which a request no longer awaits a decision."""
    for event_type in (ApprovalDecided, ApprovalExpired, ApprovalDefaulted):
        subscribe(event_type, announce_decision)


# --- The watcher: one per process ------------------------------------------------------------


class _Watcher(ABC):
    """The waiters of this process by request id, and a daemon thread that wakes them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: defaultdict[str, set[threading.Event]] = defaultdict(set)
        self._someone_waits = threading.Event()
        self._thread = threading.Thread(target=self._run, name="approval-waits", daemon=True)
        self._thread.start()

    def recheck_interval(self) -> float:
        return RECHECK_INTERVAL

    def add(self, approval_id: str, woken: threading.Event) -> None:
        with self._lock:
            self._waiters[approval_id].add(woken)
            self._someone_waits.set()

    def remove(self, approval_id: str, woken: threading.Event) -> None:
        with self._lock:
            waiting = self._waiters.get(approval_id)
            if waiting is not None:
                waiting.discard(woken)
                if not waiting:
                    del self._waiters[approval_id]
            if not self._waiters:
                self._someone_waits.clear()

    def waited_for(self) -> list[str]:
        with self._lock:
            return list(self._waiters)

    def wake(self, approval_ids: Iterable[str]) -> None:
        with self._lock:
            for approval_id in approval_ids:
                for woken in self._waiters.get(approval_id, ()):
                    woken.set()

    def wake_everyone(self) -> None:
        self.wake(self.waited_for())

    @abstractmethod
    def _run(self) -> None:
        """Wake the waiters of decided requests, for as long as the process lives."""


class _DatabaseWatcher(_Watcher):
    """Asks the database which of the requests waited on are decided, in one query per tick, on
    one connection it closes whenever nobody waits."""

    def _run(self) -> None:
        while True:
            self._someone_waits.wait()
            time.sleep(POLL_INTERVAL)
            waited_for = self.waited_for()
            try:
                still_awaiting = {
                    str(pk)
                    for pk in ApprovalRequest.objects.filter(
                        pk__in=waited_for, status__in=ApprovalRequest.AWAITING_DECISION
                    ).values_list("pk", flat=True)
                }
            except Exception:
                # A database that failed the watcher fails the waiters' own looks too, with an
                # error their callers see; wake them to find out.
                logger.exception("Could not look for decided approval requests")
                still_awaiting = set()
            self.wake([pk for pk in waited_for if pk not in still_awaiting])
            if not self._someone_waits.is_set():
                connection.close()


class _RedisListener(_Watcher):
    """Subscribed to ``CHANNEL``: wakes the waiters of each announced id."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.subscribed = threading.Event()
        super().__init__()

    def recheck_interval(self) -> float:
        return RECHECK_INTERVAL if self.subscribed.is_set() else POLL_INTERVAL

    def _run(self) -> None:
        while True:
            with suppress(redis.RedisError):
                self._listen()
            logger.warning("Lost the Redis subscription to decisions; reconnecting")
            self.subscribed.clear()
            self.wake_everyone()
            time.sleep(RECONNECT_DELAY)

    def _listen(self) -> None:
        pubsub = redis.Redis.from_url(self.url).pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL)
            self.subscribed.set()
            # Announcements missed while (re)connecting are caught by one look each.
            self.wake_everyone()
            for message in pubsub.listen():
                data = message.get("data")
                if isinstance(data, bytes):
                    self.wake([data.decode("ascii", "replace")])
        finally:
            pubsub.close()


_watchers: dict[tuple[int, str], _Watcher] = {}
_watchers_lock = threading.Lock()


def _watcher() -> _Watcher:
    """This process's watcher for ``REDIS_URL`` (the database's without it), started on first
    use: per process, since a forked worker inherits no threads, and per URL, since tests point
    ``REDIS_URL`` elsewhere."""
    url = settings.REDIS_URL
    key = (os.getpid(), url)
    with _watchers_lock:
        watcher = _watchers.get(key)
        if watcher is None:
            watcher = _watchers[key] = _RedisListener(url) if url else _DatabaseWatcher()
        return watcher
