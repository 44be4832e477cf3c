"""The send rate shared by every worker, kept under Telegram's flood limits.

Telegram answers 429 beyond ~30 messages a second overall, ~1 a second per chat and 20 a minute
per group. Rather than try-and-fail, a sender *reserves* a slot: ``reserve(chat_id)`` books the
earliest moment that keeps every limit and returns how long to wait for it, so many workers
sending to many chats stay just under the global rate without polling.

The global limit is a calendar of slots 1/rate seconds long, each handed out once (a send may
go out at any moment of its slot, so a one-second window sees at most rate + 1); a chat's next
send is ``interval`` after its last one (groups: the slower of the chat and group intervals).
A chat delayed by its own limit takes a later global slot and leaves the earlier ones to other
chats. ``pause`` records Telegram's ``retry_after`` for one chat or for every send.

The bookkeeping lives in Redis (one Lua script, atomic) when ``REDIS_URL`` is set, otherwise in
``RateLimitState`` rows locked with ``select_for_update`` (serialised on SQLite too). Call these
outside a transaction, so the lock is held for a moment and not for the caller's whole work.
"""

import math
import time

from django.conf import settings
from django.db import transaction

from backoffice.redis_client import run_script

from .models import RateLimitState

GLOBAL_KEY = "global"
# Slots further in the past than this can no longer be taken, so they are forgotten.
SLOT_MEMORY_SECONDS = 2.0
# A chat's Redis bookkeeping is dropped after this long without sends.
REDIS_KEY_TTL_SECONDS = 24 * 3600


def reserve(chat_id):
    """Book the next send to ``chat_id``; return the seconds to wait before sending (0.0: now)."""
    if settings.REDIS_URL:
        return _redis_reserve(int(chat_id))
    return _db_reserve(int(chat_id))


def pause(chat_id, seconds):
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


def chat_interval(chat_id):
    """Seconds between two sends to ``chat_id``."""
    intervals = [_interval(settings.TELEGRAM_RATE_CHAT_PER_SECOND)]
    if chat_id < 0:
        intervals.append(_interval(settings.TELEGRAM_RATE_GROUP_PER_MINUTE / 60))
    return max(intervals)


def _interval(rate):
    """A rate of zero or less means no limit."""
    return 1.0 / rate if rate > 0 else 0.0


def _chat_key(chat_id):
    return f"chat:{chat_id}"


# --- Database --------------------------------------------------------------------------------


def _locked(key):
    return RateLimitState.objects.select_for_update().get_or_create(key=key)[0]


def _db_reserve(chat_id):
    rate = settings.TELEGRAM_RATE_GLOBAL_PER_SECOND
    with transaction.atomic():
        # Always the global row first, so two reservations never wait for each other in a cycle.
        global_row = _locked(GLOBAL_KEY)
        chat = _locked(_chat_key(chat_id))
        now = time.time()
        at = max(now, chat.next_at, chat.paused_until, global_row.paused_until)
        if rate > 0:
            oldest = math.floor((now - SLOT_MEMORY_SECONDS) * rate)
            reserved = {slot for slot in global_row.reserved_slots if slot >= oldest}
            slot = math.floor(at * rate)
            while slot in reserved:
                slot += 1
            reserved.add(slot)
            global_row.reserved_slots = sorted(reserved)
            global_row.save(update_fields=["reserved_slots"])
            at = max(at, slot / rate)
        chat.next_at = at + chat_interval(chat_id)
        chat.save(update_fields=["next_at"])
    return max(at - now, 0.0)


# --- Redis -----------------------------------------------------------------------------------

# KEYS: the chat's hash, the global hash, the global slot calendar (a sorted set).
# ARGV: chat interval, global rate, slot memory, key TTL. Redis' clock is the one clock
# every worker host shares.
RESERVE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local rate = tonumber(ARGV[2])
local at = math.max(
  now,
  tonumber(redis.call('HGET', KEYS[1], 'next_at') or '0'),
  tonumber(redis.call('HGET', KEYS[1], 'paused_until') or '0'),
  tonumber(redis.call('HGET', KEYS[2], 'paused_until') or '0'))
if rate > 0 then
  local oldest = math.floor((now - tonumber(ARGV[3])) * rate)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. oldest)
  local slot = math.floor(at * rate)
  while redis.call('ZSCORE', KEYS[3], slot) do
    slot = slot + 1
  end
  redis.call('ZADD', KEYS[3], slot, slot)
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  at = math.max(at, slot / rate)
end
redis.call('HSET', KEYS[1], 'next_at', string.format('%.6f', at + tonumber(ARGV[1])))
redis.call('EXPIRE', KEYS[1], ARGV[4])
return string.format('%.6f', at - now)
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


def _redis_key(name):
    return f"{settings.TELEGRAM_RATE_REDIS_PREFIX}:{name}"


def _redis_reserve(chat_id):
    wait = run_script(
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
        ],
    )
    return max(float(wait), 0.0)
