"""The shared send-rate limiter, on the database and on Redis.

``reserve`` never sleeps, it returns the wait, so these tests check the planned send times
(``time.time() + wait``) and need no waiting. A small tolerance absorbs the moment between the
limiter reading the clock and the test reading it.
"""

import itertools
import threading
import time
import uuid

import pytest
import redis

from telegram_bridge import ratelimit

TOLERANCE = 0.25
REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["database", "redis"])
def limiter(request, settings, transactional_db):
    """The limiter on each backend, with the documented default rates.

    Reservations commit (other connections must see them), hence ``transactional_db``.
    """
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 30
    settings.TELEGRAM_RATE_CHAT_PER_SECOND = 1
    settings.TELEGRAM_RATE_GROUP_PER_MINUTE = 20
    if request.param == "redis":
        prefix = f"test-tg-rate:{uuid.uuid4().hex}"
        settings.REDIS_URL = REDIS_URL
        settings.TELEGRAM_RATE_REDIS_PREFIX = prefix
        yield ratelimit
        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(f"{prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()
    else:
        settings.REDIS_URL = ""
        yield ratelimit


def planned(chat_id):
    """When the reserved send will go out."""
    return time.time() + ratelimit.reserve(chat_id)


def gaps(times):
    times = sorted(times)
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def most_in_one_second(times):
    """Sends in the busiest one-second window: at most rate + 1, as a send may go out at any
    moment of its 1/rate-second slot."""
    return max(sum(1 for other in times if start <= other < start + 1) for start in times)


def test_first_send_to_a_chat_goes_out_at_once(limiter):
    assert limiter.reserve(1001) == 0.0


def test_sends_to_one_chat_are_a_second_apart(limiter):
    times = [planned(1002) for _ in range(4)]

    assert all(gap >= 1.0 - TOLERANCE for gap in gaps(times))
    assert times[-1] - times[0] >= 3.0 - TOLERANCE


def test_sends_to_a_group_are_three_seconds_apart(limiter):
    times = [planned(-1001234) for _ in range(3)]

    assert all(gap >= 3.0 - TOLERANCE for gap in gaps(times))


def test_concurrent_reservations_from_separate_connections_share_the_spacing(limiter):
    times, errors = [], []

    def reserve_twice():
        try:
            times.extend(planned(1003) for _ in range(2))
        except Exception as exc:  # reported below, a thread cannot fail the test itself
            errors.append(exc)
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=reserve_twice) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not errors
    assert len(times) == 8
    assert all(gap >= 1.0 - TOLERANCE for gap in gaps(times))


def test_many_chats_share_the_global_rate(limiter, settings):
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 2
    times = [planned(2000 + n) for n in range(6)]

    assert most_in_one_second(times) <= 3
    assert times[-1] - times[0] >= 2.0 - TOLERANCE


def test_reserving_ahead_keeps_near_the_global_rate_across_many_chats(limiter):
    """300 chats, three messages each: planned at ~30/s, not slowed by the per-chat spacing."""
    times = [planned(10_000 + chat) for _ in range(3) for chat in range(300)]

    span = max(times) - min(times)
    assert (len(times) - 1) / span >= 28
    assert most_in_one_second(times) <= 31


def test_a_paused_chat_waits_out_the_pause_while_others_send(limiter):
    limiter.pause(1004, 5)

    assert limiter.reserve(1004) >= 5 - TOLERANCE
    assert limiter.reserve(1005) < 1


def test_a_global_pause_holds_every_chat(limiter):
    limiter.pause(None, 4)

    assert limiter.reserve(1006) >= 4 - TOLERANCE
    assert limiter.reserve(1007) >= 4 - TOLERANCE


def test_a_shorter_pause_does_not_cut_a_longer_one(limiter):
    limiter.pause(1008, 6)
    limiter.pause(1008, 1)

    assert limiter.reserve(1008) >= 6 - TOLERANCE


def test_a_rate_of_zero_means_no_limit(limiter, settings):
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 0
    settings.TELEGRAM_RATE_CHAT_PER_SECOND = 0

    assert [limiter.reserve(1009) for _ in range(5)] == [0.0] * 5
