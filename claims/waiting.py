"""Waiting for an approval request's decision, bounded, without holding a database connection.

An agent that asked for approval wants the answer as soon as it exists, and a web process must
hold many such waiters at once. So a waiter holds a thread and nothing else: it looks at the
request, closes its database connection, and sleeps until woken or until its next look.

With ``REDIS_URL`` set, a decision wakes the waiters at once: every decision, expiry or default
outcome publishes the request's id on a Redis channel when its transaction commits (the
subscriber is registered in ``ClaimsConfig.ready()``), and one listener thread per process wakes
the waiters of that id. A look at the database every ``REDIS_RECHECK_INTERVAL`` seconds still
catches a wake-up lost to a Redis outage. Without Redis, waiters look every ``POLL_INTERVAL``
seconds.
"""

import logging
import math
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial

import redis
from django.conf import settings
from django.db import connection, transaction

from backoffice import redis_client
from backoffice.errors import InvalidInput

from .events import ApprovalDecided, ApprovalDefaulted, ApprovalEvent, ApprovalExpired, subscribe
from .models import ApprovalRequest
from .selectors import get_approval, resolve_approval

logger = logging.getLogger(__name__)

# The longest one wait may last: well under the proxy's and the clients' read timeouts, so a long
# wait is many short ones (docs/api.md).
MAX_WAIT_SECONDS = 30.0
# Without Redis: how often a waiter looks at the request.
POLL_INTERVAL = 0.5
# With Redis: how often a waiter looks anyway, in case a wake-up was lost.
REDIS_RECHECK_INTERVAL = 5.0
# Redis pub/sub channels are shared by every database of a server; a message from another
# deployment names an id nobody here waits for and wakes no one.
CHANNEL = "claimdesk:approval-decided"
# How long the listener waits before reconnecting after Redis failed it.
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
    approval = resolve_approval(approval_id)
    with _wake_up_for(approval.pk) as woken:
        while True:
            if approval.status not in ApprovalRequest.AWAITING_DECISION:
                return approval
            _let_go_of_the_database()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return approval
            woken.wait(min(remaining, _recheck_interval()))
            woken.clear()
            approval = get_approval(approval.pk)


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


def _let_go_of_the_database() -> None:
    # Inside a transaction (a test's, or a caller's mistake) the connection is not ours to close.
    if not connection.in_atomic_block:
        connection.close()


def _recheck_interval() -> float:
    listener = _listener()
    return REDIS_RECHECK_INTERVAL if listener and listener.subscribed.is_set() else POLL_INTERVAL


@contextmanager
def _wake_up_for(approval_id: uuid.UUID) -> Iterator[threading.Event]:
    """An event set when ``approval_id`` is announced decided, for as long as the block runs.

    Registered before the first look at the request, so a decision between that look and the
    sleep still wakes the waiter.
    """
    woken = threading.Event()
    listener = _listener()
    if listener is None:
        yield woken
        return
    listener.add(str(approval_id), woken)
    try:
        yield woken
    finally:
        listener.remove(str(approval_id), woken)


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


# --- The listener: one Redis subscription per process ---------------------------------------


class _Listener:
    """A daemon thread subscribed to ``CHANNEL`` that sets the events of an announced id."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.subscribed = threading.Event()
        self._lock = threading.Lock()
        self._waiters: defaultdict[str, set[threading.Event]] = defaultdict(set)
        self._thread = threading.Thread(target=self._run, name="approval-waits", daemon=True)
        self._thread.start()

    def add(self, approval_id: str, woken: threading.Event) -> None:
        with self._lock:
            self._waiters[approval_id].add(woken)

    def remove(self, approval_id: str, woken: threading.Event) -> None:
        with self._lock:
            waiting = self._waiters.get(approval_id)
            if waiting is not None:
                waiting.discard(woken)
                if not waiting:
                    del self._waiters[approval_id]

    def _wake(self, approval_id: str) -> None:
        with self._lock:
            for woken in self._waiters.get(approval_id, ()):
                woken.set()

    def _run(self) -> None:
        while True:
            try:
                self._listen()
            except redis.RedisError:
                logger.warning("Lost the Redis subscription to decisions; reconnecting")
            self.subscribed.clear()
            self._wake_everyone()
            time.sleep(RECONNECT_DELAY)

    def _listen(self) -> None:
        pubsub = redis.Redis.from_url(self.url).pubsub(ignore_subscribe_messages=True)
        try:
            pubsub.subscribe(CHANNEL)
            self.subscribed.set()
            # Announcements missed while (re)connecting are caught by one look each.
            self._wake_everyone()
            for message in pubsub.listen():
                data = message.get("data")
                if isinstance(data, bytes):
                    self._wake(data.decode("ascii", "replace"))
        finally:
            pubsub.close()

    def _wake_everyone(self) -> None:
        with self._lock:
            for waiting in self._waiters.values():
                for woken in waiting:
                    woken.set()


_listeners: dict[tuple[int, str], _Listener] = {}
_listeners_lock = threading.Lock()


def _listener() -> _Listener | None:
    """This process's listener for ``REDIS_URL``, started on first use; None without Redis."""
    url = settings.REDIS_URL
    if not url:
        return None
    # Per process, since a forked worker inherits no threads, and per URL, since tests point
    # REDIS_URL elsewhere.
    key = (os.getpid(), url)
    with _listeners_lock:
        listener = _listeners.get(key)
        if listener is None:
            listener = _listeners[key] = _Listener(url)
        return listener
