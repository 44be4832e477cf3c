"""The send rate shared by every worker, kept under Telegram's flood limits.

Telegram answers 429 beyond ~30 messages a second overall, ~1 a second per chat and 20 a minute
per group. Rather than try-and-fail, a sender *reserves* a slot: ``reserve(chat_id, max_wait)``
finds the earliest moment that keeps every limit and books it only when the sender will wait
for it (at most ``max_wait``); a slot further away is quoted, not booked, so a sender that gives
up on waiting delays nobody. A booked slot the sender ends up not using (a 429 stopped its
batch) is given back with ``release``.

The global limit is a calendar of slots 1/rate seconds long, each handed out once, which plans
the sends evenly. A plan is not a guarantee: a send that leaves late (a slow commit, a busy
machine) would arrive beside later ones. So the bound is enforced where the send happens: right
before the call the sender is ``admit``-ted, and right after the answer it calls ``finish``. An
admitted send counts against the global rate from its admission until ``WINDOW`` seconds after
its answer, and at most rate + 1 sends count at once; since a request reaches Telegram between
those two moments, no one-second window at Telegram ever holds more than rate + 1 of them,
however late a sender is. ``finish`` also spaces the chat from the answer, not from the plan:
the chat's next send is ``interval`` after it (groups: the slower of the chat and group
intervals), so a late send cannot crowd the next one to its chat either. A chat delayed by its
own limit takes a later global slot and leaves the earlier ones to other chats. ``pause``
records Telegram's ``retry_after`` for one chat or for every send.

The bookkeeping lives in Redis (Lua scripts, atomic) when ``REDIS_URL`` is set, otherwise in
``RateLimitState`` rows locked with ``select_for_update`` (serialised on SQLite too). Call these
outside a long transaction, so the lock is held for a moment and not for the caller's whole work.
"""

import math
import secrets
import time
from typing import NamedTuple

from django.conf import settings
from django.db import transaction

from backoffice.redis_client import run_script

from .models import RateLimitState

GLOBAL_KEY = "global"
# Slots further in the past than this can no longer be taken, so they are forgotten.
SLOT_MEMORY_SECONDS = 2.0
# A chat's Redis bookkeeping is dropped after this long without sends.
REDIS_KEY_TTL_SECONDS = 24 * 3600
# What Redis is told for "no limit on the wait" (Lua has no infinity literal to parse).
FOREVER = 1e18
# The span of the global limit: at most rate + 1 sends in any window this long.
WINDOW = 1.0
# How long an admitted send counts while its answer has not come: a call's longest life (the
# worker's task timeout), so a worker lost mid-call frees its place in the end.
IN_FLIGHT_MAX_SECONDS = 120.0


class Reservation(NamedTuple):
    """A send slot for one chat, booked or only quoted.

    ``wait`` is the seconds from the moment of the reservation until the send may go out.
    ``next_at``/``previous`` are the chat's next free time with and without this
    booking, so ``release`` can give the slot back if nobody booked after it.
    """

    chat_id: int
    wait: float
    booked: bool
    slot: int | None = None
    next_at: float = 0.0
    previous: float = 0.0


class Permit(NamedTuple):
    """Leave to send to ``chat_id`` now (``granted``), or the ``wait`` before asking again.

    ``token`` names the send among those counting against the global rate ("" with no limit).
    """

    chat_id: int
    granted: bool
    wait: float = 0.0
    token: str = ""


def reserve(chat_id: int, max_wait: float = math.inf) -> Reservation:
    """Book the next send to ``chat_id`` if it is at most ``max_wait`` seconds away.

    A slot further away is not booked: the answer only says how long the wait would be.
    """
    max_wait = max(float(max_wait), 0.0)
    if settings.REDIS_URL:
        return _redis_reserve(int(chat_id), max_wait)
    return _db_reserve(int(chat_id), max_wait)


def release(reservation: Reservation) -> None:
    """Give back a booked slot that will not be used, so it delays nobody.

    The chat's next free time goes back to what it was, unless a later booking moved it on.
    """
    if not reservation.booked:
        return
    if settings.REDIS_URL:
        _redis_release(reservation)
        return
    with transaction.atomic():
        global_row = _locked(GLOBAL_KEY)
        chat = _locked(_chat_key(reservation.chat_id))
        if reservation.slot in global_row.reserved_slots:
            global_row.reserved_slots = [
                slot for slot in global_row.reserved_slots if slot != reservation.slot
            ]
            global_row.save(update_fields=["reserved_slots"])
        if chat.next_at == reservation.next_at:
            chat.next_at = reservation.previous
            chat.save(update_fields=["next_at"])


def admit(chat_id: int) -> Permit:
    """Let one send to ``chat_id`` leave now, if fewer than rate + 1 sends count at this moment.

    A send counts from its admission until ``WINDOW`` seconds after its ``finish``. A refusal
    says how long to wait: until the oldest counted send stops counting, or a slot's length
    when every counted send is still in flight (its answer may come any moment).
    """
    rate = settings.TELEGRAM_RATE_GLOBAL_PER_SECOND
    if rate <= 0:
        return Permit(int(chat_id), granted=True)
    token = secrets.token_hex(8)
    if settings.REDIS_URL:
        granted, wait = run_script(
            ADMIT_SCRIPT,
            keys=[_redis_key("sends")],
            args=[
                _permits(rate),
                WINDOW,
                IN_FLIGHT_MAX_SECONDS,
                1 / rate,
                token,
                REDIS_KEY_TTL_SECONDS,
            ],
        )
        return Permit(int(chat_id), bool(granted), float(wait), token if granted else "")
    with transaction.atomic():
        global_row = _locked(GLOBAL_KEY)
        now = time.time()
        counted = {key: until for key, until in global_row.sends.items() if until >= now - WINDOW}
        if len(counted) >= _permits(rate):
            wait = min(min(counted.values()) + WINDOW - now, 1 / rate)
            return Permit(int(chat_id), granted=False, wait=max(wait, 0.001))
        counted[token] = now + IN_FLIGHT_MAX_SECONDS
        global_row.sends = counted
        global_row.save(update_fields=["sends"])
    return Permit(int(chat_id), granted=True, token=token)


def finish(permit: Permit, age: float = 0.0) -> None:
    """The call of an admitted send ended ``age`` seconds ago (answered, refused or failed).

    From then on the send counts against the global rate for ``WINDOW`` seconds more, and the
    chat's next send is at least its interval away. Telling it later (with the call's ``age``,
    when the batch's outcomes are committed) changes nothing: until then the send counted as in
    flight, and the chat's next message waits for that commit anyway.
    """
    interval = chat_interval(permit.chat_id)
    age = max(float(age), 0.0)
    if settings.REDIS_URL:
        run_script(
            FINISH_SCRIPT,
            keys=[_redis_key("sends"), _redis_key(_chat_key(permit.chat_id))],
            args=[permit.token, age, interval, REDIS_KEY_TTL_SECONDS],
        )
        return
    with transaction.atomic():
        global_row = _locked(GLOBAL_KEY)
        chat = _locked(_chat_key(permit.chat_id))
        ended = time.time() - age
        if permit.token in global_row.sends:
            global_row.sends[permit.token] = ended
            global_row.save(update_fields=["sends"])
        if ended + interval > chat.next_at:
            chat.next_at = ended + interval
            chat.save(update_fields=["next_at"])


def pause(chat_id: int | None, seconds: float) -> None:
    """Hold every send to ``chat_id`` (every send at all when ``None``) for ``seconds``."""
    key = GLOBAL_KEY if chat_id is None else _chat_key(int(chat_id))
    seconds = max(float(seconds), 0.0)
    if settings.REDIS_URL:
        run_script(PAUSE_SCRIPT, keys=[_redis_key(key)], args=[seconds, REDIS_KEY_TTL_SECONDS])
        return
    with transaction.atomic():
        row = _locked(key)
        row.paused_until = max(row.paused_until, time.time() + seconds)
        row.save(update_fields=["paused_until"])


def chat_interval(chat_id: int) -> float:
    """Seconds between two sends to ``chat_id``."""
    intervals = [_interval(settings.TELEGRAM_RATE_CHAT_PER_SECOND)]
    if chat_id < 0:
        intervals.append(_interval(settings.TELEGRAM_RATE_GROUP_PER_MINUTE / 60))
    return max(intervals)


def _interval(rate: float) -> float:
    """A rate of zero or less means no limit."""
    return 1.0 / rate if rate > 0 else 0.0


def _permits(rate: float) -> int:
    """Sends that may count at once: the most that fit in one window, plus one."""
    return math.floor(rate * WINDOW) + 1


def _chat_key(chat_id: int) -> str:
    return f"chat:{chat_id}"


# --- Database --------------------------------------------------------------------------------


def _locked(key: str) -> RateLimitState:
    return RateLimitState.objects.select_for_update().get_or_create(key=key)[0]


def _db_reserve(chat_id: int, max_wait: float) -> Reservation:
    rate = settings.TELEGRAM_RATE_GLOBAL_PER_SECOND
    with transaction.atomic():
        # Always the global row first, so two reservations never wait for each other in a cycle.
        global_row = _locked(GLOBAL_KEY)
        chat = _locked(_chat_key(chat_id))
        now = time.time()
        at = max(now, chat.next_at, chat.paused_until, global_row.paused_until)
        slot = None
        if rate > 0:
            oldest = math.floor((now - SLOT_MEMORY_SECONDS) * rate)
            reserved = {slot for slot in global_row.reserved_slots if slot >= oldest}
            slot = math.floor(at * rate)
            while slot in reserved:
                slot += 1
            at = max(at, slot / rate)
        wait = max(at - now, 0.0)
        if wait > max_wait:
            return Reservation(chat_id, wait, booked=False)
        if slot is not None:
            reserved.add(slot)
            global_row.reserved_slots = sorted(reserved)
            global_row.save(update_fields=["reserved_slots"])
        previous = chat.next_at
        chat.next_at = at + chat_interval(chat_id)
        chat.save(update_fields=["next_at"])
    return Reservation(chat_id, wait, True, slot, chat.next_at, previous)


# --- Redis -----------------------------------------------------------------------------------

# KEYS: the chat's hash, the global hash, the global slot calendar (a sorted set).
# ARGV: chat interval, global rate, slot memory, key TTL, longest wait to book. Redis' clock is
# the one clock every worker host shares. Answers booked (0/1), wait, slot (-1: none),
# the chat's next free time after and before the booking.
RESERVE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = tonumber(ARGV[2])
local previous = redis.call('HGET', KEYS[1], 'next_at') or '0'
local at = math.max(
  now,
  tonumber(previous),
  tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0'),
  tonumber(redis.call('HGET', KEYS[2], 'paused_until') or '0'))
local slot = -1
if rate > 0 then
  local oldest = math.floor((now - tonumber(ARGV[3])) * rate)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. oldest)
  slot = math.floor(at * rate)
  while redis.call('ZSCORE', KEYS[3], slot) do
    slot = slot + 1
  end
  at = math.max(at, slot / rate)
end
local wait = string.format('%.6f', math.max(at - now, 0))
if at - now > tonumber(ARGV[5]) then
  return {0, wait, -1, '0', '0'}
end
if slot >= 0 then
  redis.call('ZADD', KEYS[3], slot, slot)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
local next_at = string.format('%.6f', at + tonumber(ARGV[1]))
redis.call('HSET', KEYS[1], 'next_at', next_at)
redis.call('EXPIRE', KEYS[1], ARGV[4])
return {1, wait, slot, next_at, previous}
"""

# KEYS: the chat's hash, the global slot calendar. ARGV: the chat's next free time the booking
# set, the one before it, the slot (-1: none).
RELEASE_SCRIPT = """
if tonumber(redis.call('HGET', KEYS[1], 'next_at') or '0') == tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'next_at', ARGV[2])
end
if tonumber(ARGV[3]) >= 0 then
  redis.call('ZREM', KEYS[2], ARGV[3])
end
return 1
"""

# KEYS: the admitted sends (a sorted set: token → until when it counts). ARGV: permits, window,
# in-flight maximum, a slot's length, the new token, key TTL. Answers granted (0/1) and the wait.
ADMIT_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. string.format('%.6f', now - window))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  local wait = math.min(tonumber(oldest[2]) + window - now, tonumber(ARGV[4]))
  return {0, string.format('%.6f', math.max(wait, 0.001))}
end
redis.call('ZADD', KEYS[1], string.format('%.6f', now + tonumber(ARGV[3])), ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
return {1, '0'}
"""

# KEYS: the admitted sends, the chat's hash. ARGV: the send's token ("" with no global limit),
# how many seconds ago its call ended, the chat interval, key TTL. The send counts from its end
# on, and the chat waits its interval from then.
FINISH_SCRIPT = """
local clock = redis.call('TIME')
local ended = tonumber(clock[1]) + tonumber(clock[2]) / 1000000 - tonumber(ARGV[2])
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], 'XX', string.format('%.6f', ended), ARGV[1])
end
local next_at = ended + tonumber(ARGV[3])
if next_at > tonumber(redis.call('HGET', KEYS[2], 'next_at') or '0') then
  redis.call('HSET', KEYS[2], 'next_at', string.format('%.6f', next_at))
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: the hash to pause. ARGV: seconds, key TTL.
PAUSE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local paused_until = now + tonumber(ARGV[1])
if paused_until > tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0') then
  redis.call('HSET', KEYS[1], 'paused_until', string.format('%.6f', paused_until))
end
redis.call('EXPIRE', KEYS[1], math.max(tonumber(ARGV[2]), math.ceil(tonumber(ARGV[1]))))
return 1
"""


def _redis_key(name: str) -> str:
    return f"{settings.TELEGRAM_RATE_REDIS_PREFIX}:{name}"


def _redis_reserve(chat_id: int, max_wait: float) -> Reservation:
    booked, wait, slot, next_at, previous = run_script(
        RESERVE_SCRIPT,
        keys=[
            _redis_key(_chat_key(chat_id)),
            _redis_key(GLOBAL_KEY),
            _redis_key("slots"),
        ],
        args=[
            chat_interval(chat_id),
            settings.TELEGRAM_RATE_GLOBAL_PER_SECOND,
            SLOT_MEMORY_SECONDS,
            REDIS_KEY_TTL_SECONDS,
            min(max_wait, FOREVER),
        ],
    )
    if not booked:
        return Reservation(chat_id, max(float(wait), 0.0), booked=False)
    return Reservation(
        chat_id,
        max(float(wait), 0.0),
        True,
        None if int(slot) < 0 else int(slot),
        float(next_at),
        float(previous),
    )


def _redis_release(reservation: Reservation) -> None:
    run_script(
        RELEASE_SCRIPT,
        keys=[_redis_key(_chat_key(reservation.chat_id)), _redis_key("slots")],
        args=[
            reservation.next_at,
            reservation.previous,
            -1 if reservation.slot is None else reservation.slot,
        ],
    )
