"""Bursts drain completely, in order, at each chat's rate: real workers, the fake Bot API.

The rates are Telegram's scaled up (a group allows 400 a minute here, not 20 a minute) and the
longest in-process wait with them, so each run takes seconds and keeps the proportions that
matter: a batch of sends to one group spans more than a worker will wait inline. Rates are
computed from the times the fake recorded each send, so they check what the limiter planned,
not how fast this machine is.
"""

import uuid
from itertools import pairwise

import pytest
import redis
from django.conf import settings
from django.db import transaction
from django_q.brokers.redis_broker import Redis as RedisBroker
from django_q.tasks import async_task

from telegram_bridge import outbox
from telegram_bridge.models import OutboundMessage
from tests.telegram.worker import TEST_REDIS_URL, wait_for

Status = OutboundMessage.Status

GLOBAL_PER_SECOND = 60
CHAT_PER_SECOND = 10
GROUP_PER_MINUTE = 400
# Telegram's 3 s group spacing against a 10 s inline wait, in the same proportion.
INLINE_WAIT_MAX = 0.5
RETRY_AFTER = 1
# How far the measured rate may stray from the planned one (a send late on a busy machine).
RATE_TOLERANCE = 0.2

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


def interval(chat_id):
    if chat_id < 0:
        return 60 / GROUP_PER_MINUTE
    return 1 / CHAT_PER_SECOND


@pytest.fixture(params=["database", "redis"])
def limiter(request):
    """Worker settings for the limiter on each backend (Redis also carries the task queue)."""
    if request.param == "database":
        yield {}
        return
    client = redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip("Redis is not reachable")
    prefix = f"claimdesk-test-drain-{uuid.uuid4().hex}"
    broker = RedisBroker(list_key=settings.Q_CLUSTER["name"])
    broker.connection = client
    broker.delete_queue()
    yield {"REDIS_URL": TEST_REDIS_URL, "TELEGRAM_RATE_REDIS_PREFIX": prefix}
    broker.delete_queue()
    for key in client.scan_iter(match=f"{prefix}*"):
        client.delete(key)
    client.close()


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
    broker.connection = redis.Redis.from_url(TEST_REDIS_URL)
    for message in messages:
        async_task(outbox.DELIVER_TASK, message.pk, broker=broker)
    broker.connection.close()


def most_in_one_second(times):
    times = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def check_chat(entries, chat_id, *, paused):
    """One chat's sends: in the order queued, at its rate (the fake's own flood control, with
    Telegram's limits and small burst allowance, checks each gap)."""
    texts = [entry["payload"]["text"] for entry in entries]
    assert sorted(texts, key=lambda text: int(text.split()[1])) == texts
    times = [entry["at"] for entry in entries]
    gaps = [later - earlier for earlier, later in pairwise(times)]
    if not gaps:
        return
    if paused:
        # The refused send waited out retry_after; the others kept the chat's rate.
        assert max(gaps) >= RETRY_AFTER - 0.1
        gaps.remove(max(gaps))
    if len(gaps) >= 10:
        rate = len(gaps) / sum(gaps)
        assert rate >= (1 - RATE_TOLERANCE) / interval(chat_id), (chat_id, rate)
        assert rate <= (1 + RATE_TOLERANCE) / interval(chat_id), (chat_id, rate)


# One worker on the bursts to one chat; two, with a 429 injected half way, on every burst.
RUNS = [
    pytest.param("group", 1, False, id="group-one"),
    pytest.param("private", 1, False, id="private-one"),
    pytest.param("group", 2, True, id="group-two-429"),
    pytest.param("private", 2, True, id="private-two-429"),
    pytest.param("many-chats", 2, True, id="many-chats-two-429"),
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

    def sent():
        return fake.sent(method="sendMessage")

    if refusal:
        wait_for(lambda: len(sent()) >= count // 2, timeout=60, message="half the burst")
        fake.inject("sendMessage", 429, retry_after=RETRY_AFTER)
    try:
        wait_for(
            lambda: len(sent()) >= count,
            timeout=count * max(interval(chat) for chat in chats) / len(chats) * 3 + 30,
            interval=0.1,
            message="the whole burst",
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
    for chat in chats:
        check_chat(
            [entry for entry in entries if entry["chat_id"] == chat],
            chat,
            # With many chats, the refused one sent too few messages to measure a rate.
            paused=refusal and len(chats) == 1,
        )
    assert most_in_one_second([entry["at"] for entry in entries]) <= GLOBAL_PER_SECOND + 1
