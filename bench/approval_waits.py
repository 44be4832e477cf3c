"""How many agents one web process holds waiting on ``approvals/{id}/wait/``, and how soon a
decision wakes them.

Starts one gunicorn process (gthread, a thread per waiter plus four) against a throwaway
PostgreSQL database, then for each round asks one question, sends ``--waiters`` concurrent
``GET .../wait/?timeout=30`` calls, approves the request over the API, and times every waiter from
the moment the decision was sent until its answer arrived. Prints the wake-up delay (p50, p99,
max), the worker's memory and the database connections open while they all wait, once with
waiters polling the database and once woken through Redis pub/sub (when it answers).

    .venv/bin/python bench/approval_waits.py [--waiters 200] [--rounds 5]

PostgreSQL comes from BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres),
Redis from BENCH_REDIS_URL (default redis://127.0.0.1:6379/14).
"""

import argparse
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psycopg
import requests
import support

WAIT_SECONDS = 30
SPARE_THREADS = 4


def prepare(env):
    """Migrate, then make a requester and an approver with a token each."""
    support.setup_django(env)
    from django.contrib.auth.models import Group, User
    from django.db import connections

    from api.tokens import create_token
    from backoffice.actors import system_actor

    actor = system_actor("bench")
    requester = User.objects.create(username="bench-agent")
    approver = User.objects.create(username="bench-approver", is_staff=True)
    approver.groups.add(Group.objects.get(name="Approvers"))
    keys = (create_token(requester, actor=actor)[1], create_token(approver, actor=actor)[1])
    connections.close_all()
    return keys


def worker_pid(master_pid):
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    return int(children[0])


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def open_connections(database_url):
    with psycopg.connect(database_url, autocommit=True) as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()[0]


def settled_connections(database_url, seconds=5.0):
    """The connections open once the waiters have settled: each needs one for a moment when it
    arrives, so give them up to ``seconds`` to let go (the watcher keeps one, without Redis)."""
    deadline = time.monotonic() + seconds
    count = open_connections(database_url)
    while count > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
        count = min(count, open_connections(database_url))
    return count


def one_round(base_url, keys, waiters, database_url, worker):
    """One question, ``waiters`` waiting for it, one approval; returns the delays in seconds of
    the waiters answered approved, the worker's state while they waited, and the other answers
    (a 500 when the database refused a connection)."""
    agent, approver = ({"Authorization": f"Token {key}"} for key in keys)
    asked = requests.post(
        f"{base_url}/api/v1/approvals/",
        json={"kind": "command", "text": "bench: may I?"},
        headers=agent,
        timeout=30,
    )
    asked.raise_for_status()
    url = f"{base_url}/api/v1/approvals/{asked.json()['id']}/"
    answered = []
    lock = threading.Lock()
    session_per_thread = threading.local()

    def wait():
        session = session_per_thread.__dict__.setdefault("session", requests.Session())
        response = session.get(
            f"{url}wait/?timeout={WAIT_SECONDS}", headers=agent, timeout=WAIT_SECONDS + 30
        )
        at = time.monotonic()
        status = response.json()["status"] if response.ok else f"HTTP {response.status_code}"
        with lock:
            answered.append((at, status))

    threads = [threading.Thread(target=wait) for _ in range(waiters)]
    for thread in threads:
        thread.start()
    # Connections are accepted in order: a later call answered means every waiter is in.
    requests.get(url, headers=agent, timeout=30).raise_for_status()
    held = (rss_mib(worker), settled_connections(database_url), len(answered))
    decided = time.monotonic()
    requests.post(f"{url}approve/", json={}, headers=approver, timeout=30).raise_for_status()
    for thread in threads:
        thread.join()
    failed = [status for _, status in answered if status != "approved"]
    return [at - decided for at, status in answered if status == "approved"], held, failed


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(label, env, keys, options, database_url):
    port = support.free_port()
    process = support.start_gunicorn(env, port, workers=1, threads=options.waiters + SPARE_THREADS)
    try:
        base_url = f"http://127.0.0.1:{port}"
        # The master listens before it forks the worker; an answer means the worker is up.
        requests.get(f"{base_url}/api/v1/", timeout=60)
        worker = worker_pid(process.pid)
        delays, helds, failed = [], [], []
        for _ in range(options.rounds):
            round_delays, held, round_failed = one_round(
                base_url, keys, options.waiters, database_url, worker
            )
            delays += round_delays
            helds.append(held)
            failed += round_failed
    finally:
        support.stop_gunicorn(process)
    early = max(answered_early for _, _, answered_early in helds)
    print(
        f"{label}: {options.waiters} waiters x {options.rounds} rounds on 1 process "
        f"({options.waiters + SPARE_THREADS} threads); wake-up after the decision p50 "
        f"{statistics.median(delays) * 1000:.0f} ms, p99 {percentile(delays, 0.99) * 1000:.0f} ms, "
        f"max {max(delays) * 1000:.0f} ms; while waiting: worker RSS "
        f"{max(rss for rss, _, _ in helds):.0f} MiB, database connections once settled "
        f"{max(conns for _, conns, _ in helds)}; answered before the decision: {early}; "
        f"failed: {len(failed)} {sorted(set(failed))}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiters", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    options = parser.parse_args()

    redis_url = support.REDIS_URL
    redis_url = redis_url if support.redis_answers(redis_url) else ""
    run_id = uuid.uuid4().hex[:8]
    with support.ThrowawayPostgres(support.POSTGRES_URL) as database_url:
        env = support.benchmark_environment(
            database_url=database_url,
            redis_url="",
            var_dir=tempfile.mkdtemp(prefix="claimdesk-bench-"),
            cluster_name=f"bench-{run_id}",
            API_THROTTLE_RATE="100000000/min",
            CACHE_KEY_PREFIX=f"bench-{run_id}",
        )
        env.pop("TELEGRAM_APPROVER_CHAT_ID", None)
        keys = prepare(env)
        measure("polling the database", env, keys, options, database_url)
        if redis_url:
            measure("Redis pub/sub", {**env, "REDIS_URL": redis_url}, keys, options, database_url)


if __name__ == "__main__":
    main()
