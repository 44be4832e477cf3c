"""Sustained outbox delivery rate against Telegram's flood limits.

    .venv/bin/python bench/outbox_drain.py                       # SQLite file in a temp dir
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/claimdesk .venv/bin/python bench/outbox_drain.py

Starts the fake Bot API with Telegram's default flood limits (30/s overall, ~1/s per chat) on a
throwaway database (created from the migrations, dropped afterwards), enqueues ``--messages``
messages over ``--chats`` chats in one transaction and measures, from the fake's own records, the
rate between the first and the last send, the most sends in any one second (overall and to one
chat) and in any minute (to one chat), and how many 429s the fake answered. The target is at
least 28 messages/s (Telegram allows 30) and no self-inflicted 429 at all.

``--burst group`` sends every message to one group chat (Telegram allows 20 a minute),
``--burst private`` to one private chat (1 a second): the target is then 28/30 of that chat's
ceiling, the whole burst delivered, in the order it was queued.

    .venv/bin/python bench/outbox_drain.py --burst group --messages 60

``--mode tasks`` (default) is what production does with a burst: ``--processes`` real
``manage.py qcluster`` processes run the per-message delivery tasks, plus one sweep each (its
bulk drain), as their schedule would start it. ``--mode drain`` runs ``delivery.drain()`` in
``--processes`` plain processes, the bulk path alone.
"""

import argparse
import subprocess
import sys
import time

from support import start_django, throwaway_database

start_django("outbox-bench")

from django.conf import settings  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django_q.tasks import async_task  # noqa: E402

from telegram_bridge import outbox  # noqa: E402
from telegram_bridge.fake_server import FakeTelegramServer  # noqa: E402
from telegram_bridge.models import OutboundMessage  # noqa: E402
from tests.telegram.windows import most_within  # noqa: E402
from tests.telegram.worker import Workers, wait_for, worker_env  # noqa: E402

# Telegram's ceilings, messages a second, for each kind of burst; the target is 28/30 of it.
CEILINGS = {"spread": 30.0, "private": 1.0, "group": 20 / 60}
TARGET_SHARE = 28 / 30
GROUP_CHAT_ID = -1001


def chat_ids(options):
    if options.burst == "group":
        return [GROUP_CHAT_ID]
    if options.burst == "private":
        return [100_000]
    return [100_000 + n for n in range(options.chats)]


def enqueue(messages, chats):
    """Queue ``messages`` sendMessage calls round-robin over the ``chats``; one commit."""
    with transaction.atomic():
        for n in range(messages):
            outbox.enqueue(
                method="sendMessage",
                chat_id=chats[n % len(chats)],
                payload={"text": f"bench message {n}"},
                dedupe_key=f"bench:{n}",
            )


def start_drains(count, env, log_dir):
    """``count`` processes that each run ``delivery.drain()`` until nothing is due."""
    code = "from telegram_bridge import delivery; print(delivery.drain())"
    processes = []
    for n in range(count):
        with (log_dir / f"drain-{n}.log").open("wb") as log:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "manage.py", "shell", "-c", code],
                    cwd=settings.BASE_DIR,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
    return processes


def run(options, log_dir):
    server = FakeTelegramServer(token=settings.TELEGRAM_BOT_TOKEN).start()
    control = server.control
    env = worker_env(base_url=server.base_url, token=server.token)
    workers = Workers(log_dir, env)
    drains = []
    try:
        enqueued_at = time.time()
        chats = chat_ids(options)
        enqueue(options.messages, chats)
        if options.mode == "tasks":
            workers.start(count=options.processes, Q_WORKERS=options.workers_per_cluster)
            for _ in range(options.processes):
                async_task("telegram_bridge.tasks.sweep")
        else:
            drains = start_drains(options.processes, env, log_dir)
        wait_for(
            lambda: (
                OutboundMessage.objects.filter(
                    status__in=[OutboundMessage.Status.SENT, OutboundMessage.Status.DEAD]
                ).count()
                == options.messages
            ),
            timeout=options.messages / min(CEILINGS[options.burst], 10) * 1.5 + 60,
            interval=0.2,
            message="every message to be delivered",
        )
        finished_at = time.time()
        sent = control.sent(method="sendMessage")
        stats = control.stats()
    finally:
        workers.stop()
        for process in drains:
            process.wait(timeout=60)
        control.close()
        server.stop()

    ceiling = CEILINGS[options.burst]
    target = ceiling * TARGET_SHARE
    in_order = all(
        [entry["payload"]["text"] for entry in sent if entry["chat_id"] == chat]
        == [f"bench message {n}" for n in range(options.messages) if chats[n % len(chats)] == chat]
        for chat in chats
    )
    times = sorted(entry["at"] for entry in sent)
    span = times[-1] - times[0]
    rate = (len(times) - 1) / span if span > 0 else float("inf")
    dead = OutboundMessage.objects.filter(status=OutboundMessage.Status.DEAD).count()
    shape = (
        f"{options.processes} qcluster processes x {options.workers_per_cluster} workers"
        if options.mode == "tasks"
        else f"{options.processes} drain processes"
    )
    print(
        f"{options.messages} messages over {len(chats)} chats ({options.burst}), "
        f"mode {options.mode}: {shape}, {connection.vendor}"
        f"{', Redis limiter' if settings.REDIS_URL else ', database limiter'}"
    )
    print(
        f"Sustained rate, first to last send: {rate:.2f} msg/s over {span:.1f} s "
        f"({rate / ceiling:.0%} of Telegram's {ceiling:.2f}/s; "
        f"target {target:.2f}/s: {'met' if rate >= target else 'MISSED'})"
    )
    per_chat = {chat: [entry["at"] for entry in sent if entry["chat_id"] == chat] for chat in chats}
    groups = [chat_times for chat, chat_times in per_chat.items() if chat < 0]
    per_minute = (
        f", {max(most_within(chat_times, 60.0) for chat_times in groups)} in any minute to one "
        "group (Telegram: 20)"
        if groups
        else ""
    )
    print(
        f"Most sends the fake saw in any one second: {most_within(times, 1.0)} "
        f"(bound: {settings.TELEGRAM_RATE_GLOBAL_PER_SECOND:g} + 1), "
        f"{max(most_within(chat_times, 1.0) for chat_times in per_chat.values())} to one chat "
        f"(Telegram: 1){per_minute}; each chat's messages in the order queued: "
        f"{'yes' if in_order else 'NO'}"
    )
    print(
        "From the start of enqueueing (workers starting) to the last delivery: "
        f"{finished_at - enqueued_at:.1f} s"
    )
    print(
        f"429s answered by the fake: {stats['too_many_requests']} "
        f"({stats['too_many_requests'] / max(len(times), 1):.1%} of sends); "
        f"sends {len(times)}, duplicates {len(times) - options.messages + dead}, dead {dead}"
    )
    return rate >= target and stats["too_many_requests"] == 0 and in_order


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=900, help="messages to send (900)")
    parser.add_argument("--chats", type=int, default=300, help="distinct chats (300)")
    parser.add_argument(
        "--burst",
        choices=list(CEILINGS),
        default="spread",
        help="spread over --chats chats, or all to one group or one private chat (spread)",
    )
    parser.add_argument("--mode", choices=["tasks", "drain"], default="tasks")
    parser.add_argument("--processes", type=int, default=2, help="qclusters or drains (2)")
    parser.add_argument(
        "--workers-per-cluster", type=int, default=1, help="worker processes per qcluster (1)"
    )
    options = parser.parse_args()

    with throwaway_database("outbox-bench") as tmp:
        ok = run(options, tmp)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
