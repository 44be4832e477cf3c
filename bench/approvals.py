r"""Throughput of approvals and claims through the service layer, on PostgreSQL.

    DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/claimdesk \
        .venv/bin/python bench/approvals.py

(``DEBUG=1`` only spares setting production secrets; the run itself turns query logging off.)

Runs in a throwaway database (created from the migrations, dropped afterwards), one client, one
connection. It times ``services.decide(..., "approve")`` on requests created beforehand, each
with its audit event (and whatever else ``decide`` does in its transaction), and claim + release
pairs. The target is at least 400 approvals per second.
"""

import argparse
import os
import sys
import time
from datetime import timedelta

from support import ROOT, postgresql_database

sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")

import django

django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from audit.models import AuditEvent  # noqa: E402
from backoffice.actors import Actor, Source  # noqa: E402
from claims import services  # noqa: E402
from claims.models import ApprovalRequest  # noqa: E402

TARGET_APPROVALS_PER_SECOND = 400


def commit_latency(samples=200):
    """Seconds one tiny committed write takes: the floor under every audited change."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_commit (id serial PRIMARY KEY)")
        started = time.perf_counter()
        for _ in range(samples):
            cursor.execute("INSERT INTO bench_commit DEFAULT VALUES")
        seconds = (time.perf_counter() - started) / samples
        cursor.execute("DROP TABLE bench_commit")
    return seconds


def queries_per_call(operation):
    with CaptureQueriesContext(connection) as queries:
        operation()
    return len(queries)


class Timing:
    """Wall-clock seconds, and the CPU seconds this process spent (the rest is waiting)."""

    def __init__(self, count, operation):
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(count):
            operation(i)
        self.seconds = time.perf_counter() - wall
        self.cpu_seconds = time.process_time() - cpu


def approver_actor(username="bench-approver"):
    """A staff user in the Approvers group, as the admin would act for them."""
    approver = User.objects.create_user(username, is_staff=True)
    approver.groups.add(Group.objects.get(name="Approvers"))
    return Actor(source=Source.ADMIN, user=approver)


def pending_requests(count):
    """The ids of ``count`` pending command requests, made beforehand (not timed)."""
    expires_at = timezone.now() + timedelta(days=1)
    requests = ApprovalRequest.objects.bulk_create(
        ApprovalRequest(
            kind=ApprovalRequest.Kind.COMMAND,
            text=f"Restart worker-{i:04d}",
            requested_by="bench",
            expires_at=expires_at,
        )
        for i in range(count)
    )
    return [request.pk for request in requests]


def bench_approvals(count):
    actor = approver_actor()
    ids = pending_requests(count)
    # The first decision also loads the approver's permissions; count the queries of the second.
    services.decide(ids.pop(), "approve", actor=actor)
    queries = queries_per_call(lambda: services.decide(ids.pop(), "approve", actor=actor))
    timing = Timing(len(ids), lambda i: services.decide(ids[i], "approve", actor=actor))
    approved = ApprovalRequest.objects.filter(status=ApprovalRequest.Status.APPROVED).count()
    events = AuditEvent.objects.filter(action="approval.approved").count()
    assert approved == events == count, (approved, events, count)
    return len(ids), timing, queries


def bench_claims(pairs):
    actor = Actor(source=Source.API, user=User.objects.create_user("bench"), label="bench-agent")

    def claim_and_release(i):
        granted = services.claim(
            story="bench",
            todolist=f"item-{i % 50}",
            agent_id="bench-agent",
            fingerprint="bench-fp",
            ttl_seconds=60,
            actor=actor,
        )
        services.release(granted.claim.pk, lease_token=granted.lease_token, actor=actor)

    return Timing(pairs, claim_and_release)


def line(label, count, timing, unit):
    return (
        f"{label:<42} {count:>5} in {timing.seconds:6.2f} s = {count / timing.seconds:7.1f} "
        f"{unit}/s  (this process's CPU: {timing.cpu_seconds * 1000 / count:.2f} ms each)"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--approvals", type=int, default=2000, help="approvals to time (2000)")
    parser.add_argument("--pairs", type=int, default=1000, help="claim+release pairs (1000)")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="turn synchronous_commit off for this session, to see the cost without the disk's "
        "flush (not a production setting: the last commits may be lost in a crash)",
    )
    options = parser.parse_args()
    if options.approvals < 3 or options.pairs < 1:
        parser.error("--approvals must be at least 3 and --pairs at least 1")
    with postgresql_database("approvals-bench") as bench_name:
        if bench_name is None:
            return 2
        if options.async_commit:
            with connection.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO off")
        version = connection.cursor().connection.info.server_version
        print(f"Database {bench_name}, PostgreSQL {version // 10000}.{version % 10000}")
        floor = commit_latency()
        approvals, approving, queries = bench_approvals(options.approvals)
        pairing = bench_claims(options.pairs)

    rate = approvals / approving.seconds
    print(
        f"Commit of one tiny write: {floor * 1000:.2f} ms "
        f"(so at most {1 / floor:.0f} transactions/s on this disk)"
    )
    print(f"Queries per approval: {queries}, BEGIN and COMMIT included")
    print(line("Approvals (pending -> approved, audited)", approvals, approving, "ops"))
    print(line("Claim + release pairs (each audited)", options.pairs, pairing, "pairs"))
    verdict = "meets" if rate >= TARGET_APPROVALS_PER_SECOND else "BELOW"
    print(
        f"Approvals: {rate / TARGET_APPROVALS_PER_SECOND:.2f}x the target of "
        f"{TARGET_APPROVALS_PER_SECOND}/s ({verdict} target)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
