r"""Queries and server time of the admin's busiest pages on a large PostgreSQL database.

    DEBUG=1 DATABASE_URL=postgres://postgres@127.0.0.1:5432/claimdesk_admin_bench \
        .venv/bin/python bench/admin_pages.py [--claims 100000] [--requests 100000] \
        [--events 1000000] [--rounds 5]

(``DEBUG=1`` only spares setting production secrets; the run itself turns query logging off.)

The database named by ``DATABASE_URL`` is migrated and filled up to the sizes asked for, inside
PostgreSQL (``INSERT … SELECT generate_series``: a million audit events in well under a minute),
then vacuumed and analysed; a second run reuses the rows, so use a database of its own. Each page
is fetched once to warm up, then ``--rounds`` times through Django's test client in this process
(no HTTP, no gunicorn: the server's own time); the table shows queries per page and the median
time. The target is under 150 ms for every page, with query counts that do not grow with the data.
"""

import argparse
import os
import statistics
import sys
import time
import warnings

from support import ROOT

sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "backoffice.settings")

import django

django.setup()
# The static files are served by the benchmark's client, never collected: no warning about it.
warnings.filterwarnings("ignore", message="No directory at")

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402

TARGET_MS = 150.0
ADMIN_USERNAME = "admin-bench"

# Each table is filled with rows shaped like the real ones: a spread of states and ages, so the
# dashboard's panels and the lists' filters have something to find. Requests are asked over 90
# days (about 1,100 a day) and decided within 12 hours; audit events cover the last 12 days.
FILL = {
    "claims_claim": """
        INSERT INTO claims_claim (story, todolist, owner, agent_id, fingerprint, ttl_seconds,
            version, acquired_at, expires_at, released_at, previous_owner, previous_agent_id,
            created_at, updated_at, fencing_token, frozen_reason, lease_token_hash, takeovers)
        SELECT 'story-' || i, 'release', 'builder-' || i %% 40, 'agent-' || i %% 40, '', 300, 1,
            now() - interval '5 minutes', now() + (i %% 900 - 300) * interval '1 second',
            CASE WHEN i %% 3 = 0 THEN now() - interval '1 minute' END, '', '', now(), now(), i,
            '', '', i %% 5
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS i
    """,
    "claims_approvalrequest": """
        INSERT INTO claims_approvalrequest (id, kind, text, payload, requested_by, status,
            decided_at, decision_source, decision_note, expires_at, created_at, updated_at,
            agent_id, reminders_sent, rules)
        SELECT gen_random_uuid(), (ARRAY['claim', 'command', 'manifest'])[i %% 3 + 1],
            'Run the migration ' || i || ' on production, then restart the workers and check '
            || 'that every queue drains before the release window closes',
            '{}', 'deploy-bot', (ARRAY['pending', 'approved', 'denied', 'archived'])[i %% 4 + 1],
            CASE WHEN i %% 4 > 0
                THEN now() - (i %% 129600) * interval '1 minute' + (i %% 720) * interval '1 minute'
            END,
            CASE WHEN i %% 4 > 0 THEN 'admin' ELSE '' END, '',
            now() + (i %% 2880) * interval '1 minute',
            now() - (i %% 129600) * interval '1 minute', now(), 'agent-' || i %% 40, 0, '{}'
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS i
    """,
    "audit_auditevent": """
        INSERT INTO audit_auditevent (seq, prev_hash, hash, timestamp, actor_label, action,
            source, object_type, object_id, trace_id, details)
        SELECT i, md5((i - 1)::text) || md5((i - 1)::text), md5(i::text) || md5(i::text),
            now() - i * interval '1 second', 'agent-' || i %% 40,
            (ARRAY['claim.acquired', 'claim.refreshed', 'approval.requested',
                   'approval.approved', 'telegram.requeued'])[i %% 5 + 1],
            (ARRAY['api', 'admin', 'cli', 'telegram', 'system'])[i %% 5 + 1],
            'claims.claim', (i %% 100000)::text, md5(i::text), '{}'
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS i
    """,
    "telegram_bridge_outboundmessage": """
        INSERT INTO telegram_bridge_outboundmessage (method, chat_id, payload, dedupe_key, status,
            attempts, requeues, next_attempt_at, last_error, last_status_code, failed_at,
            created_at, updated_at)
        SELECT 'sendMessage', -1001, '{}', 'bench:' || i,
            (ARRAY['sent', 'sent', 'sent', 'failed', 'dead'])[i %% 5 + 1], 1 + i %% 4, 0, now(),
            CASE WHEN i %% 5 >= 3 THEN 'TransientError: Internal Server Error' ELSE '' END,
            CASE WHEN i %% 5 >= 3 THEN 500 END,
            CASE WHEN i %% 5 >= 3 THEN now() END,
            now() - (i %% 10080) * interval '1 minute', now()
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS i
    """,
    "telegram_bridge_inboundupdate": """
        INSERT INTO telegram_bridge_inboundupdate (update_id, payload, status, error, received_at)
        SELECT i, '{}', CASE WHEN i %% 50 = 0 THEN 'failed' ELSE 'processed' END,
            CASE WHEN i %% 50 = 0 THEN 'KeyError: message' ELSE '' END,
            now() - i * interval '1 minute'
        FROM generate_series(%(start)s::bigint, %(stop)s::bigint) AS i
    """,
}


def fill(sizes):
    """Add rows to each table until it holds the size asked for; returns the seconds taken."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for table, wanted in sizes.items():
            cursor.execute(f"SELECT count(*) FROM {table}")
            have = cursor.fetchone()[0]
            if have < wanted and table == "audit_auditevent":
                # Placeholder hashes, not a valid chain (this measures pages, not audit_verify):
                # the head is set once at the end instead of by the per-row trigger.
                cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_advance_head")
                cursor.execute(FILL[table], {"start": have + 1, "stop": wanted})
                cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_advance_head")
                cursor.execute(
                    "UPDATE audit_chainhead SET (seq, hash) = (SELECT seq, hash FROM"
                    " audit_auditevent ORDER BY seq DESC LIMIT 1) WHERE id = 1"
                )
            elif have < wanted:
                cursor.execute(FILL[table], {"start": have + 1, "stop": wanted})
            # As autovacuum would: statistics, and the visibility map index-only scans need.
            cursor.execute(f"VACUUM ANALYZE {table}")
    return time.perf_counter() - started


def pages(client):
    """The pages to time: (name, URL)."""
    from claims.models import ApprovalRequest, Claim

    approval = ApprovalRequest.objects.order_by("created_at").first()
    claim = Claim.objects.order_by("pk").first()
    return [
        ("dashboard", "/admin/"),
        ("claims list", "/admin/claims/claim/"),
        ("claims search story", "/admin/claims/claim/?q=story-4242"),
        ("claims live leases", "/admin/claims/claim/?lease=live"),
        ("requests (pending)", "/admin/claims/approvalrequest/"),
        ("requests (all)", "/admin/claims/approvalrequest/?status__exact=all"),
        ("request page", f"/admin/claims/approvalrequest/{approval.pk}/change/"),
        ("claim page", f"/admin/claims/claim/{claim.pk}/change/"),
        ("audit list", "/admin/audit/auditevent/"),
        ("audit by action", "/admin/audit/auditevent/?action=approval.approved"),
        ("audit search short id", f"/admin/audit/auditevent/?q={approval.short_id}"),
        ("outbox (failed or dead)", "/admin/telegram_bridge/outboundmessage/"),
        ("inbound updates", "/admin/telegram_bridge/inboundupdate/"),
    ]


def measure(client, url, rounds):
    """Queries of one fetch, and the median milliseconds over ``rounds`` fetches."""
    response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    queries = []
    with connection.execute_wrapper(
        lambda execute, sql, *args: queries.append(sql) or execute(sql, *args)
    ):
        client.get(url)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return len(queries), statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--claims", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("Set DATABASE_URL to a PostgreSQL database of this benchmark's own.")
    settings.DEBUG = False
    # Pages render without collectstatic (production's hashed names need its manifest).
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
    call_command("migrate", verbosity=0)
    seconds = fill(
        {
            "claims_claim": args.claims,
            "claims_approvalrequest": args.requests,
            "audit_auditevent": args.events,
            "telegram_bridge_outboundmessage": args.requests // 10,
            "telegram_bridge_inboundupdate": args.requests // 10,
        }
    )
    print(
        f"{args.claims:,} claims, {args.requests:,} requests, {args.events:,} audit events, "
        f"{args.requests // 10:,} outbound messages and inbound updates (filled in {seconds:.1f} s)"
    )
    user, _ = User.objects.get_or_create(
        username=ADMIN_USERNAME, defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client(HTTP_HOST=settings.ALLOWED_HOSTS[0])
    client.force_login(user)
    print(f"{'page':<26} {'queries':>7} {'median ms':>10} {'of target':>10}")
    slowest = 0.0
    for name, url in pages(client):
        count, median = measure(client, url, args.rounds)
        slowest = max(slowest, median)
        print(f"{name:<26} {count:>7} {median:>10.1f} {median / TARGET_MS:>9.0%}")
    print(f"slowest page {slowest:.1f} ms; target under {TARGET_MS:.0f} ms")


if __name__ == "__main__":
    main()
