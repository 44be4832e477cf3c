"""The shared send-rate limiter, on the database and on Redis.

``reserve`` never sleeps, it returns the wait, so these tests check the planned send times
(``time.time() + wait``) and need no waiting. The moment between the limiter reading the clock
and the test reading it (a commit, a thread switch) blurs each planned time a little, so spacing
is checked with slow rates, where a generous tolerance is still small.
"""

import itertools
import threading
import time

import pytest

from telegram_bridge import ratelimit
from tests.telegram.windows import most_within

TOLERANCE = 1.0
# Times kept by the limiter are rounded to the microsecond (Redis keeps them as text).
CLOCK_DIGITS = 1e-5


@pytest.fixture(params=["database", "redis"])
def limiter(request, settings, transactional_db):
    """The limiter on each backend, with the documented default rates.

    Reservations commit (other connections must see them), hence ``transactional_db``.
    """
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 30
    settings.TELEGRAM_RATE_CHAT_PER_SECOND = 1
    settings.TELEGRAM_RATE_GROUP_PER_MINUTE = 20
    if request.param == "redis":
        test_redis = request.getfixturevalue("test_redis")
        settings.REDIS_URL = test_redis.url
        settings.TELEGRAM_RATE_REDIS_PREFIX = f"{test_redis.prefix}:tg-rate"
        yield ratelimit
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
    """300 chats, two messages each: planned at ~30/s, not slowed by the per-chat spacing.

    Checked on the limiter's own clock (a booking's planned time is its chat's new next free
    time less the interval; the moment it was asked is that less the wait), so a slow machine
    that reserves slowly changes the plan but not what is checked: no slot is left idle while a
    send waits, and no one-second window holds more than rate + 1 planned sends.
    """
    rate = 30
    bookings = [limiter.reserve(10_000 + chat) for _ in range(2) for chat in range(300)]
    planned = [booking.next_at - limiter.chat_interval(booking.chat_id) for booking in bookings]
    asked = [at - booking.wait for at, booking in zip(planned, bookings, strict=True)]

    for n in range(1, len(planned)):
        assert planned[n] <= max(asked[n], planned[n - 1]) + 1 / rate + CLOCK_DIGITS, n
    assert most_within(planned, 1.0) <= rate + 1


def admitted(limiter, chat_id, count):
    permits = [limiter.admit(chat_id) for _ in range(count)]
    assert all(permit.granted for permit in permits)
    return permits


def test_at_most_rate_plus_one_sends_count_at_once(limiter, settings):
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 2
    admitted(limiter, 4001, 3)

    refused = limiter.admit(4002)
    # All three are in flight: their answers may come any moment, so ask again a slot later.
    assert not refused.granted
    assert 0 < refused.wait <= 0.5


def test_a_finished_send_counts_until_one_second_after_its_call_ended(limiter, settings):
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 1
    first, second = admitted(limiter, 4003, 2)
    limiter.finish(first, age=0.5)

    refused = limiter.admit(4004)
    assert not refused.granted
    assert 0 < refused.wait <= 0.5

    limiter.finish(second, age=1.0)
    assert limiter.admit(4004).granted


def test_a_rate_of_zero_admits_every_send(limiter, settings):
    settings.TELEGRAM_RATE_GLOBAL_PER_SECOND = 0

    permits = admitted(limiter, 4005, 50)
    for permit in permits:
        limiter.finish(permit)


def test_a_chats_next_send_is_spaced_from_the_answer_of_its_last(limiter, settings):
    """The chat's next send is timed from the answer, not from the plan, so a send that left
    late cannot crowd the next one to its chat."""
    settings.TELEGRAM_RATE_CHAT_PER_SECOND = 0.2
    # Nothing was booked for this send: only its answer can mark the chat.
    limiter.finish(limiter.admit(4006))

    assert limiter.reserve(4006).wait >= 5.0 - TOLERANCE


def test_a_send_finished_late_is_timed_from_when_its_call_ended(limiter, settings):
    """The outcome of a batch is committed after the batch; the call ended earlier."""
    settings.TELEGRAM_RATE_CHAT_PER_SECOND = 0.2
    limiter.finish(limiter.admit(4007), age=3.0)

    assert 2.0 - TOLERANCE <= limiter.reserve(4007).wait <= 2.0


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
