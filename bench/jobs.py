"""Approved one-step dry-run jobs through a runner cluster with two workers, approval to executed.

    .venv/bin/python bench/jobs.py                       # SQLite file in a temp dir
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/claimdesk .venv/bin/python bench/jobs.py

On a throwaway database (created from the migrations, dropped afterwards) it submits ``--jobs``
one-step manifests (dry run), starts one runner cluster (``Q_CLUSTER_NAME=<name>-jobs qcluster``
with ``AUTOMATION_MAX_CONCURRENT_JOBS=2``: two workers, two jobs at once) and approves every job,
each in its own transaction as an approver would. It reports jobs per second from the first
approval to the last request executed, and the p50/p99 time from a job's approval to its request's
``executed_at``. The target is 10 jobs/s and a p99 under 30 s with two workers.
"""

import argparse
import os
import statistics
import sys
import time

from support import start_django, throwaway_database

start_django("jobs-bench")

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402

from automation import services  # noqa: E402
from automation.models import Job  # noqa: E402
from backoffice.actors import Actor, Source  # noqa: E402
from claims import services as claims  # noqa: E402
from tests.telegram.worker import Workers, database_url, wait_for  # noqa: E402

WORKERS = 2
TARGET_RATE = 10.0
TARGET_P99 = 30.0


def percentile(values, share):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run(options, log_dir):
    submitter = User.objects.create_user("bench-agent")
    approver = User.objects.create_user("bench-approver", is_staff=True)
    approver.groups.add(Group.objects.get(name="Approvers"))
    agent = Actor(source=Source.API, user=submitter, label="bench")
    deciding = Actor(source=Source.ADMIN, user=approver)
    manifest = {"name": "bench", "concurrency": WORKERS, "steps": [{"id": "x", "argv": ["true"]}]}
    jobs = [services.submit(manifest_data=manifest, actor=agent) for _ in range(options.jobs)]

    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "Q_CLUSTER_NAME": settings.AUTOMATION_QUEUE,
        "AUTOMATION_MAX_CONCURRENT_JOBS": str(WORKERS),
        "AUTOMATION_WORK_ROOT": str(log_dir / "jobs"),
    }
    workers = Workers(log_dir, env)
    try:
        workers.start()
        started = time.monotonic()
        for job in jobs:
            claims.decide(job.approval_id, "approve", actor=deciding)
        approved_in = time.monotonic() - started
        wait_for(
            lambda: Job.objects.filter(approval__status="executed").count() == options.jobs,
            timeout=options.jobs * 2 + 60,
            interval=0.2,
            message=f"every job to be executed\n{workers.output()}",
        )
    finally:
        workers.stop()

    ended = Job.objects.select_related("approval")
    latencies = [(job.approval.executed_at - job.approved_at).total_seconds() for job in ended]
    first = min(job.approved_at for job in ended)
    last = max(job.approval.executed_at for job in ended)
    span = (last - first).total_seconds()
    rate = options.jobs / span
    p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    statuses = sorted(set(ended.values_list("status", flat=True)))
    print(
        f"{options.jobs} one-step dry-run jobs, one runner cluster with {WORKERS} workers, "
        f"{connection.vendor}{', Redis broker' if settings.REDIS_URL else ', ORM broker'}"
    )
    print(f"Approving them all took {approved_in:.1f} s (one transaction each)")
    print(
        f"Throughput, first approval to last executed: {rate:.1f} jobs/s over {span:.1f} s "
        f"(target {TARGET_RATE:.0f}/s: {'met' if rate >= TARGET_RATE else 'MISSED'})"
    )
    print(
        f"Approval to executed: p50 {p50:.2f} s, p99 {p99:.2f} s "
        f"(target p99 < {TARGET_P99:.0f} s: {'met' if p99 < TARGET_P99 else 'MISSED'}); "
        f"job statuses: {', '.join(statuses)}"
    )
    return rate >= TARGET_RATE and p99 < TARGET_P99 and statuses == ["succeeded"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200, help="jobs to run (200)")
    options = parser.parse_args()

    with throwaway_database("jobs-bench") as tmp:
        ok = run(options, tmp)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
