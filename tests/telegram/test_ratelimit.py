"""The shared send-rate limiter, on the database and on Redis.

``reserve`` never sleeps, it returns the wait, so these tests check the planned send times
(``time.time() + wait``) and need no waiting. The moment between the limiter reading the clock
and the test reading it (a commit, a thread switch) blurs each planned time a little, so spacing
is checked with slow rates, where a generous tolerance is still small.
"""

import itertools
import threading
import time
import uuid

import pytest
import redis

from telegram_bridge import ratelimit
from tests.telegram.worker import TEST_REDIS_URL as REDIS_URL

TOLERANCE = 1.0


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
    return time.time() + ratelimit.reserve(chat_id).wait


def gaps(times):
    times = sorted(times)
    return [later - earlier for earlier, later in itertools.pairwise(times)]


def test_first_send_to_a_chat_goes_out_at_once(limiter):
    assert limiter.reserve(1001).wait == 0.0


def test_sends_to_one_chat_are_spaced_by_the_chat_rate(limiter, settings):
    settings.TELEGRAM_RATE_CHAT_PER_SECOND = 0.2
    times = [planned(1002) for _ in range(4)]

    assert all(gap >= 5.0 - TOLERANCE for gap in gaps(times))
    assert times[-1] - times[0] >= 15.0 - TOLERANCE


def test_sends_to_a_group_are_spaced_by_the_group_rate(limiter, settings):
    settings.TELEGRAM_RATE_GROUP_PER_MINUTE = 6
    times = [planned(-1001234) for _ in range(3)]

    assert all(gap >= 10.0 - TOLERANCE for gap in gaps(times))


def test_a_group_is_held_to_its_per_minute_rate_by_default(limiter):
    first, second = planned(-1005678), planned(-1005678)

    assert second - first >= 3.0 - TOLERANCE


def test_concurrent_reservations_from_separate_connections_share_the_spacing(limiter, settings):
    settings.TELEGRAM_RATE_CHAT_PER_SECOND = 0.2
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
    assert all(gap >= 5.0 - TOLERANCE for gap in gaps(times))


def test_many_chats_share_the_global_rate(limiter, settings):
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 0.2
    times = sorted(planned(2000 + n) for n in range(5))

    # The first send goes out at once, somewhere in its slot; the next ones a slot apart.
    assert all(gap >= 5.0 - TOLERANCE for gap in gaps(times)[1:])
    assert times[-1] - times[0] >= 15.0 - TOLERANCE


def test_reserving_ahead_keeps_near_the_global_rate_across_many_chats(limiter):
    """300 chats, two messages each: planned at ~30/s, not slowed by the per-chat spacing."""
    times = [planned(10_000 + chat) for _ in range(2) for chat in range(300)]

    rate = (len(times) - 1) / (max(times) - min(times))
    assert 28 <= rate <= 31


def test_a_paused_chat_waits_out_the_pause_while_others_send(limiter):
    limiter.pause(1004, 5)

    assert limiter.reserve(1004).wait >= 5 - TOLERANCE
    assert limiter.reserve(1005).wait < 1


def test_a_global_pause_holds_every_chat(limiter):
    limiter.pause(None, 4)

    assert limiter.reserve(1006).wait >= 4 - TOLERANCE
    assert limiter.reserve(1007).wait >= 4 - TOLERANCE


def test_a_shorter_pause_does_not_cut_a_longer_one(limiter):
    limiter.pause(1008, 6)
    limiter.pause(1008, 1)

    assert limiter.reserve(1008).wait >= 6 - TOLERANCE


def test_a_rate_of_zero_means_no_limit(limiter, settings):
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 0
    settings.TELEGRAM_RATE_CHAT_PER_SECOND = 0

    assert [limiter.reserve(1009).wait for _ in range(5)] == [0.0] * 5


def test_a_slot_beyond_the_longest_wait_is_quoted_not_booked(limiter, settings):
    settings.TELEGRAM_RATE_GROUP_PER_MINUTE = 6
    assert limiter.reserve(-1001).booked
    quotes = [limiter.reserve(-1001, max_wait=5) for _ in range(20)]

    # A sender that will not wait that long books nothing: the quote stays where it was.
    assert not any(quote.booked for quote in quotes)
    assert max(quote.wait for quote in quotes) - min(quote.wait for quote in quotes) < TOLERANCE
    assert 10 - TOLERANCE <= limiter.reserve(-1001).wait <= 10


def test_a_released_slot_delays_nobody(limiter, settings):
    settings.TELEGRAM_RATE_GROUP_PER_MINUTE = 6
    first = limiter.reserve(-1002)
    for _ in range(5):
        limiter.release(limiter.reserve(-1002))

    assert first.booked
    assert limiter.reserve(-1002).wait <= 10


def test_a_release_after_a_later_booking_keeps_the_later_one(limiter, settings):
    settings.TELEGRAM_RATE_GROUP_PER_MINUTE = 6
    limiter.reserve(-1003)
    second = limiter.reserve(-1003)
    limiter.reserve(-1003)
    limiter.release(second)

    assert limiter.reserve(-1003).wait >= 30 - TOLERANCE


def test_a_released_global_slot_goes_to_the_next_chat(limiter, settings):
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 0.2
    limiter.reserve(3000)
    second = limiter.reserve(3001)
    limiter.release(second)

    assert abs(limiter.reserve(3002).wait - second.wait) < TOLERANCE
