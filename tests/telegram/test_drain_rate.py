"""Bursts drain completely, in order, at each chat's rate: real workers, the fake Bot API.

The matrix is the issue's: 60 messages to one group chat, 60 to one private chat and 300 over
100 chats; on the database limiter and on Redis; one worker and two; each also with a 429
``retry_after`` injected half way. So that it takes seconds, Telegram's limits are sped up: a
group allows 400 a minute here and a worker waits at most 0.5 s inline, both 20 times
Telegram's 20 a minute and the default 10 s, so a group's spacing against the inline wait (and
the batch) keeps the proportions that made bursts stall. A chat allows 10 a second (10 times
Telegram's): each send to one chat waits for the outcome of the one before it to be committed,
which must stay small next to the interval on a busy machine. The global limit is 60 a second,
which the 100-chat burst reaches. The production ceilings themselves (20 a minute per group,
1 a second per chat, 30 a second overall, the fake's default flood limits, which are
Telegram's) are covered by a shorter group and private burst at the end.

Every bound is checked on the times the fake recorded each request, with sliding windows: at
most rate + 1 sends in any second overall, at most the chat's rate + 1 in any second to one
chat, at most 20 in any (sped-up) minute to one group, and never two sends to a chat closer
than its interval. The limiter guarantees these however late a worker on a busy machine sends,
so they are checked exactly; only the drain rate's lower bound allows for a slow machine.
"""

from itertools import pairwise

import pytest
import redis
from django.conf import settings
from django.db import transaction
from django_q.brokers.redis_broker import Redis as RedisBroker
from django_q.tasks import async_task

from telegram_bridge import outbox
from telegram_bridge.models import OutboundMessage
from tests.telegram.windows import most_within
from tests.telegram.worker import wait_for

Status = OutboundMessage.Status

GLOBAL_PER_SECOND = 60
CHAT_PER_SECOND = 10
GROUP_PER_MINUTE = 400
INLINE_WAIT_MAX = 0.5
RETRY_AFTER = 1
# The fewest sends of one chat measured for a drain rate, and how slow that rate may be: a
# stalled chat sends nothing, a busy machine sends a little late.
RATE_SAMPLE = 10
RATE_FLOOR = 0.5
# Times are kept to the microsecond by the limiter and the fake.
CLOCK_DIGITS = 1e-3

FAST_RATES = {
    "TELEGRAM_RATE_GLOBAL_PER_SECOND": GLOBAL_PER_SECOND,
    "TELEGRAM_RATE_CHAT_PER_SECOND": CHAT_PER_SECOND,
    "TELEGRAM_RATE_GROUP_PER_MINUTE": GROUP_PER_MINUTE,
    "OUTBOX_INLINE_WAIT_MAX": INLINE_WAIT_MAX,
}

# name: (messages, the chats they go to, round robin)
BURSTS = {
    "group": (60, [-1001]),
    "private": (60, [7001]),
    "many-chats": (300, list(range(8000, 8100))),
}


@pytest.fixture(params=["database", "redis"])
def limiter(request):
    """Worker settings for the limiter on each backend (Redis also carries the task queue)."""
    if request.param == "database":
        yield {}
        return
    test_redis = request.getfixturevalue("test_redis")
    broker = RedisBroker(list_key=settings.Q_CLUSTER["name"])
    broker.connection = test_redis.client
    broker.delete_queue()
    yield {
        "REDIS_URL": test_redis.url,
        "TELEGRAM_RATE_REDIS_PREFIX": f"{test_redis.prefix}:tg-rate",
    }
    broker.delete_queue()


def enqueue_burst(messages, chats):
    with transaction.atomic():
        return [
            outbox.enqueue(
                method="sendMessage",
                chat_id=chats[n % len(chats)],
                payload={"text": f"burst {n}"},
                dedupe_key=f"burst:{n}",
            )
            for n in range(messages)
        ]


def hand_to_redis(messages):
    """Queue the delivery tasks on the Redis broker, as a process with ``REDIS_URL`` would."""
    broker = RedisBroker(list_key=settings.Q_CLUSTER["name"])
    broker.connection = redis.Redis.from_url(settings.TEST_REDIS_URL)
    for message in messages:
        async_task(outbox.DELIVER_TASK, message.pk, broker=broker)
    broker.connection.close()


def drain(fake, qcluster, count, chats, *, refusal, timeout):
    """Wait until the fake received every message and every row is sent; returns the sends."""

    def sent():
        return fake.sent(method="sendMessage")

    try:
        if refusal:
            wait_for(lambda: len(sent()) >= count // 2, timeout=timeout, message="half the burst")
            fake.inject("sendMessage", 429, retry_after=RETRY_AFTER)
        wait_for(
            lambda: len(sent()) >= count, timeout=timeout, interval=0.1, message="the whole burst"
        )
        wait_for(
            lambda: not OutboundMessage.objects.exclude(status=Status.SENT).exists(),
            message="every row to be marked sent",
        )
    except AssertionError:
        print(qcluster.output())
        raise
    entries = sent()
    assert sorted(entry["payload"]["text"] for entry in entries) == sorted(
        f"burst {n}" for n in range(count)
    )
    stats = fake.stats()
    assert stats["flood_limited"] == 0
    assert stats["too_many_requests"] == int(refusal)
    return entries


def check_chat(entries, chat_id, *, chat_per_second, group_per_minute, paused=False):
    """One chat's sends: in the order queued, never closer than its interval, at most its rate
    + 1 in any second (a group also at most 20 in any 20 intervals: Telegram's minute), and,
    when there are enough of them, at no less than ``RATE_FLOOR`` of its rate."""
    texts = [entry["payload"]["text"] for entry in entries]
    assert sorted(texts, key=lambda text: int(text.split()[1])) == texts
    times = [entry["at"] for entry in entries]
    interval = 1 / chat_per_second
    assert most_within(times, 1.0) <= chat_per_second + 1
    if chat_id < 0:
        interval = max(interval, 60 / group_per_minute)
        # Telegram's 20 in any minute, in the time of these rates.
        assert most_within(times, 20 * interval) <= 20
    gaps = [later - earlier for earlier, later in pairwise(times)]
    assert all(gap >= interval - CLOCK_DIGITS for gap in gaps), (chat_id, min(gaps, default=0))
    if paused:
        # The refused send waited out retry_after; the others kept the chat's rate.
        assert max(gaps) >= RETRY_AFTER - 0.1
        gaps.remove(max(gaps))
    if len(gaps) >= RATE_SAMPLE:
        assert len(gaps) / sum(gaps) >= RATE_FLOOR / interval, (chat_id, len(gaps) / sum(gaps))


RUNS = [
    pytest.param(burst, workers, refusal, id=f"{burst}-{workers}{'-429' if refusal else ''}")
    for burst in BURSTS
    for workers in (1, 2)
    for refusal in (False, True)
]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("burst", "workers", "refusal"), RUNS)
def test_a_burst_drains_completely_in_order_at_each_chats_rate(
    qcluster, fake_telegram, limiter, burst, workers, refusal
):
    count, chats = BURSTS[burst]
    fake = fake_telegram.control
    fake.configure_flood(
        chat_per_second=CHAT_PER_SECOND,
        group_per_minute=GROUP_PER_MINUTE,
        global_per_second=GLOBAL_PER_SECOND,
    )
    qcluster.start(Q_WORKERS=workers, **FAST_RATES, **limiter)
    messages = enqueue_burst(count, chats)
    if limiter:
        hand_to_redis(messages)

    slowest = max(count / len(chats) * 60 / GROUP_PER_MINUTE, count / GLOBAL_PER_SECOND)
    entries = drain(fake, qcluster, count, chats, refusal=refusal, timeout=slowest * 4 + 30)

    for chat in chats:
        check_chat(
            [entry for entry in entries if entry["chat_id"] == chat],
            chat,
            chat_per_second=CHAT_PER_SECOND,
            group_per_minute=GROUP_PER_MINUTE,
            # With many chats, the refused one sent too few messages to measure a rate.
            paused=refusal and len(chats) == 1,
        )
    assert most_within([entry["at"] for entry in entries], 1.0) <= GLOBAL_PER_SECOND + 1


@pytest.mark.django_db(transaction=True)
def test_bursts_keep_telegrams_own_ceilings(qcluster, fake_telegram):
    """Telegram's limits and the documented defaults, unscaled: a group gets a send every 3 s,
    a private chat one a second, against the fake's default flood limits (Telegram's)."""
    group, private = -1002, 7002
    qcluster.start()
    with transaction.atomic():
        for n in range(13):
            outbox.enqueue(
                method="sendMessage",
                chat_id=group if n < 5 else private,
                payload={"text": f"burst {n}"},
                dedupe_key=f"burst:{n}",
            )

    entries = drain(
        fake_telegram.control, qcluster, 13, [group, private], refusal=False, timeout=60
    )

    for chat in (group, private):
        check_chat(
            [entry for entry in entries if entry["chat_id"] == chat],
            chat,
            chat_per_second=1,
            group_per_minute=20,
        )
