r"""What one /metrics scrape costs with large tables, on PostgreSQL.

    DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/claimdesk \
        .venv/bin/python bench/metrics_scrape.py --rows 100000

(``DEBUG=1`` only spares setting production secrets; the run itself turns query logging off.)

Runs in a throwaway database (created from the migrations, dropped afterwards). It fills
``--rows`` outbox messages, inbound updates and approval requests (half of them decided), three
audit events per request and a tenth as many claims, runs ANALYZE, then times ``--scrapes``
scrapes (the whole collector, as /metrics runs it) and each section of one. Every figure is one
aggregate query, so the query count must not grow with the rows; the target is a scrape under
500 ms at 100,000 rows a table, far below a 30 s scrape interval.
"""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta

from support import ROOT, postgresql_database

sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")

import django

django.setup()

from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from prometheus_client import generate_latest  # noqa: E402

from audit.models import AuditEvent  # noqa: E402
from claims.models import ApprovalRequest, Claim  # noqa: E402
from monitoring import metrics  # noqa: E402
from telegram_bridge.models import InboundUpdate, OutboundMessage  # noqa: E402

TARGET_SECONDS = 0.5
BATCH = 5000
OUTBOX_STATUSES = ["sent"] * 16 + ["queued", "failed", "dead", "sending"]
INBOUND_STATUSES = ["processed"] * 8 + ["ignored", "failed"]
DECISIONS = ["approval.approved", "approval.denied", "approval.expired"]


def fill(rows):
    now = timezone.now()
    OutboundMessage.objects.bulk_create(
        (
            OutboundMessage(
                chat_id=-1000 - i % 50,
                dedupe_key=f"bench:{i}",
                status=OUTBOX_STATUSES[i % len(OUTBOX_STATUSES)],
                attempts=1 + i % 3,
                failed_at=now - timedelta(minutes=i % 600) if i % 3 else None,
                next_attempt_at=now - timedelta(seconds=i % 900),
            )
            for i in range(rows)
        ),
        batch_size=BATCH,
    )
    InboundUpdate.objects.bulk_create(
        (
            InboundUpdate(
                update_id=i,
                payload={"update_id": i},
                status=INBOUND_STATUSES[i % len(INBOUND_STATUSES)],
                duplicates=i % 7 == 0,
            )
            for i in range(rows)
        ),
        batch_size=BATCH,
    )
    requests = ApprovalRequest.objects.bulk_create(
        (
            ApprovalRequest(
                kind=ApprovalRequest.Kind.values[i % 3],
                text=f"Request {i}",
                requested_by="bench",
                status="approved" if i % 2 else "pending",
                decided_at=now + timedelta(minutes=i % 500) if i % 2 else None,
                decision_source="admin" if i % 2 else "",
                expires_at=now + timedelta(days=1),
            )
            for i in range(rows)
        ),
        batch_size=BATCH,
    )
    AuditEvent.objects.bulk_create(
        (
            AuditEvent(
                action=action,
                source="admin",
                object_type="claims.approvalrequest",
                object_id=str(request.pk),
                details={"kind": request.kind},
            )
            for i, request in enumerate(requests)
            for action in ("approval.requested", DECISIONS[i % 3], "claim.acquired")
        ),
        batch_size=BATCH,
    )
    Claim.objects.bulk_create(
        (
            Claim(
                story=f"S-{i}",
                todolist="t",
                owner="bench",
                agent_id="bench",
                ttl_seconds=300,
                acquired_at=now,
                expires_at=now + timedelta(seconds=300 - i % 600),
                released_at=now if i % 4 == 0 else None,
            )
            for i in range(rows // 10)
        ),
        batch_size=BATCH,
    )
    # What autovacuum does to tables this size soon after: statistics, and the visibility map
    # that lets counts over an index skip the table.
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")


def timed(operation, times):
    seconds = []
    for _ in range(times):
        started = time.perf_counter()
        operation()
        seconds.append(time.perf_counter() - started)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows a table (100000)")
    parser.add_argument("--scrapes", type=int, default=10, help="scrapes to time (10)")
    options = parser.parse_args()
    if options.rows < 10 or options.scrapes < 1:
        parser.error("--rows must be at least 10 and --scrapes at least 1")
    with postgresql_database("metrics-bench") as bench_name:
        if bench_name is None:
            return 2
        version = connection.cursor().connection.info.server_version
        print(f"Database {bench_name}, PostgreSQL {version // 10000}.{version % 10000}")
        started = time.perf_counter()
        fill(options.rows)
        print(
            f"Filled {options.rows} outbox messages, inbound updates and approval requests, "
            f"{3 * options.rows} audit events, {options.rows // 10} claims "
            f"in {time.perf_counter() - started:.1f} s"
        )
        registry = metrics.registry()
        generate_latest(registry)  # warm: the first scrape opens the connection, plans, caches
        with CaptureQueriesContext(connection) as queries:
            generate_latest(registry)
        scrapes = timed(lambda: generate_latest(registry), options.scrapes)
        now = timezone.now()
        sections = {
            section.__name__: statistics.median(timed(lambda s=section: list(s(now)), 3))
            for section in metrics.SECTIONS
        }

    median = statistics.median(scrapes)
    print(f"Queries per scrape: {len(queries)}; the slowest:")
    for query in sorted(queries.captured_queries, key=lambda q: -float(q["time"]))[:4]:
        print(f"  {float(query['time']) * 1000:7.1f} ms  {query['sql'][:110]}")
    print(
        f"Scrape: median {median * 1000:.0f} ms, slowest {max(scrapes) * 1000:.0f} ms "
        f"over {options.scrapes} scrapes"
    )
    for name, seconds in sections.items():
        print(f"  {name:<18} {seconds * 1000:7.1f} ms")
    verdict = "meets" if median <= TARGET_SECONDS else "ABOVE"
    print(f"Target: a scrape under {TARGET_SECONDS * 1000:.0f} ms ({verdict} target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
