import sys
from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from automation import services as jobs
from automation.models import Job
from backoffice.cli import JsonCommand
from backoffice.errors import InvalidInput
from claims import services
from claims.models import ApprovalRequest, Claim
from telegram_bridge import accounts

Status = ApprovalRequest.Status

# The demo approver's Telegram identity, so button presses on the fake Bot API decide requests.
DEMO_TELEGRAM_USER_ID = 1001
DEMO_TELEGRAM_USERNAME = "ada_approver"

# (story, todolist, owner, agent id, what becomes of the lease)
CLAIMS = [
    ("checkout-redesign", "payment-form", "maria", "builder-7", "live"),
    ("checkout-redesign", "address-validation", "maria", "builder-8", "expiring"),
    ("search-relevance", "synonym-index", "platform-team", "indexer-2", "expired"),
    ("search-relevance", "query-logging", "tomasz", "logger-1", "released"),
    ("onboarding-emails", "welcome-sequence", "growth-team", "mailer-1", "taken_over"),
]

# (kind, requested by, text, payload, what becomes of the request, decision note)
APPROVALS: list[tuple[str, str, str, dict[str, Any], str, str]] = [
    (
        "command",
        "deploy-bot",
        "Run `manage.py migrate` on production: 3 new migrations in billing, "
        "one adds an index on invoices.created_at.",
        {"command": "manage.py migrate", "host": "app-01.prod", "migrations": 3},
        Status.PENDING,
        "",
    ),
    (
        "manifest",
        "release-bot",
        "Release 2026.11.4 to production: 14 changes, 2 migrations, "
        "feature flag new-checkout stays off.",
        {"version": "2026.11.4", "changes": 14, "migrations": 2, "flags": {"new-checkout": False}},
        Status.PENDING,
        "",
    ),
    (
        "claim",
        "indexer-3",
        "Take over search-relevance/synonym-index: the lease of indexer-2 expired "
        "20 minutes ago without a release.",
        {"story": "search-relevance", "todolist": "synonym-index"},
        Status.PENDING,
        "",
    ),
    (
        "command",
        "ops-bot",
        "Restart the queue workers on worker-03 (memory at 94% for 2 hours).",
        {"command": "systemctl restart claimdesk-worker", "host": "worker-03"},
        Status.APPROVED,
        "Go ahead, outside peak hours anyway.",
    ),
    (
        "command",
        "cleanup-bot",
        "Truncate the sessions table on production to free 12 GB.",
        {"command": "TRUNCATE django_session", "host": "db-01.prod"},
        Status.DENIED,
        "Logs everyone out. Use clearsessions instead.",
    ),
    (
        "manifest",
        "release-bot",
        "Release 2026.11.3-hotfix1 to production: fixes rounding of VAT on credit notes.",
        {"version": "2026.11.3-hotfix1", "changes": 1, "migrations": 0},
        Status.POSTPONED,
        "After the month-end close, please.",
    ),
    (
        "claim",
        "mailer-2",
        "Claim onboarding-emails/welcome-sequence while mailer-1 is offline.",
        {"story": "onboarding-emails", "todolist": "welcome-sequence"},
        Status.EXPIRED,
        "",
    ),
    (
        "command",
        "ops-bot",
        "Rotate the Redis password on cache-01 and restart the web processes.",
        {"command": "rotate-redis-password", "host": "cache-01"},
        Status.EXECUTED,
        "Approved for the Tuesday window.",
    ),
    (
        "manifest",
        "release-bot",
        "Release 2026.11.2 to production: 22 changes, 1 migration.",
        {"version": "2026.11.2", "changes": 22, "migrations": 1},
        Status.ARCHIVED,
        "Smoke tests green on staging.",
    ),
]


# A harmless release manifest (it prints versions and a date), run as a dry run. One job is
# approved at once, so the runner cluster takes it to executed as deploy/run starts; the other
# waits for an approver (the admin, Telegram, manage.py approvals).
RELEASE_MANIFEST: dict[str, Any] = {
    "name": "demo-release-2026.12.0",
    "steps": [
        {"id": "versions", "argv": ["uname", "-srm"], "timeout": 10},
        {"id": "build-date", "argv": ["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"], "timeout": 10},
        {"id": "announce", "argv": ["echo", "Release 2026.12.0 is out"], "timeout": 10},
    ],
}
# (agent id, approved at once)
RELEASE_JOBS = [("release-bot-approved", True), ("release-bot-waiting", False)]


class Command(JsonCommand):
    help = (
        "Load a small, realistic demo set: claims in every state, approval requests in every "
        "status and an 'approver' staff user linked to Telegram user 1001. Running it again adds "
        "nothing twice."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--admin-password", help="Create or update the superuser 'admin' with this password."
        )
        parser.add_argument(
            "--approver-password", help="Let the 'approver' user log in with this password."
        )
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Delete the demo claims and requests first (asks unless --noinput).",
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask before --reset deletes anything.",
        )

    def handle(self, *args, **options):
        for name in ("admin_password", "approver_password"):
            if options[name] is not None and not options[name]:
                raise InvalidInput({name: "must not be empty"})
        if options["reset"]:
            if options["interactive"] and not self.confirm_reset():
                self.write_json({"reset": False, "detail": "Nothing was deleted."})
                return
            self.reset()
        with transaction.atomic():
            users = self.users(options["admin_password"], options["approver_password"])
            approver = get_user_model()._default_manager.get(username="approver")
            claims = self.claims()
            approvals = self.approvals(approver)
            demo_jobs = self.jobs(approver)
        self.write_json(
            {"users": users, "claims": claims, "approvals": approvals, "jobs": demo_jobs}
        )

    def confirm_reset(self):
        # The question goes to stderr so that stdout stays one JSON document.
        self.stderr.write(
            "Delete the demo claims and approval requests (the audit trail stays)? [y/N] ",
            ending="",
        )
        self.stderr.flush()
        answer = sys.stdin.readline()
        if not answer:
            self.stderr.write("")  # end the question's line; the error follows on its own
            raise InvalidInput({"reset": "no answer to the question; add --noinput to skip it"})
        return answer.strip().lower() in ("y", "yes")

    def reset(self):
        with transaction.atomic():
            for story, todolist, *_ in CLAIMS:
                Claim.objects.filter(story=story, todolist=todolist).delete()
            for _, requested_by, text, *_ in APPROVALS:
                ApprovalRequest.objects.filter(requested_by=requested_by, text=text).delete()
            demo_jobs = Job.objects.filter(name=RELEASE_MANIFEST["name"])
            approval_ids = list(demo_jobs.values_list("approval_id", flat=True))
            demo_jobs.delete()
            ApprovalRequest.objects.filter(pk__in=approval_ids).delete()

    def users(self, admin_password, approver_password):
        User = get_user_model()
        approver, created = User._default_manager.get_or_create(
            username="approver",
            defaults={"is_staff": True, "first_name": "Ada", "last_name": "Approver"},
        )
        if created or approver_password:
            if approver_password:
                approver.set_password(approver_password)
            else:
                approver.set_unusable_password()
            approver.save()
        approver.groups.add(Group.objects.get(name="Approvers"))
        accounts.link(approver, DEMO_TELEGRAM_USER_ID, DEMO_TELEGRAM_USERNAME)
        users = ["approver"]
        if admin_password:
            admin, _ = User._default_manager.get_or_create(username="admin")
            admin.is_staff = admin.is_superuser = admin.is_active = True
            admin.set_password(admin_password)
            admin.save()
            users.append("admin")
        return users

    def claims(self):
        created = 0
        now = timezone.now()
        for story, todolist, owner, agent_id, state in CLAIMS:
            if Claim.objects.filter(story=story, todolist=todolist).exists():
                continue
            ttl = 90 if state == "expiring" else 3600
            granted = self.take(story, todolist, owner, agent_id, ttl)
            claim = granted.claim
            if state == "released":
                services.release(
                    claim.pk,
                    lease_token=granted.lease_token,
                    actor=self.actor(user=self.member(owner), label=agent_id),
                )
            elif state in ("expired", "taken_over"):
                # Leases expire with time; the demo moves them into the past instead of waiting.
                Claim.objects.filter(pk=claim.pk).update(
                    acquired_at=now - timedelta(minutes=80), expires_at=now - timedelta(minutes=20)
                )
            if state == "taken_over":
                self.take(story, todolist, owner, "mailer-2", 3600)
            created += 1
        return {"created": created, "total": len(CLAIMS)}

    def take(self, story, todolist, owner, agent_id, ttl_seconds):
        return services.claim(
            story=story,
            todolist=todolist,
            agent_id=agent_id,
            fingerprint=f"{agent_id}@demo",
            ttl_seconds=ttl_seconds,
            actor=self.actor(user=self.member(owner), label=agent_id),
        )

    def member(self, username):
        """A demo user who claims work or asks for approval; it cannot log in."""
        user, created = get_user_model()._default_manager.get_or_create(username=username)
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        return user

    def approvals(self, approver):
        created = 0
        decider = self.actor(user=approver)
        for kind, requested_by, text, payload, status, note in APPROVALS:
            if ApprovalRequest.objects.filter(requested_by=requested_by, text=text).exists():
                continue
            claim = None
            if kind == "claim":
                claim = Claim.objects.filter(
                    story=payload["story"], todolist=payload["todolist"]
                ).first()
            approval = services.request_approval(
                kind=kind,
                text=text,
                payload=payload,
                claim_id=claim.pk if claim else None,
                actor=self.actor(user=self.member(requested_by)),
            )
            self.bring_to(approval, status, note, decider)
            created += 1
        return {"created": created, "total": len(APPROVALS)}

    def jobs(self, approver):
        """The demo release, submitted by release-bot (dry run); one copy approved at once."""
        created = 0
        submitter = self.member("release-bot")
        for agent_id, approved in RELEASE_JOBS:
            if Job.objects.filter(name=RELEASE_MANIFEST["name"], agent_id=agent_id).exists():
                continue
            job = jobs.submit(
                manifest_data=RELEASE_MANIFEST,
                agent_id=agent_id,
                actor=self.actor(user=submitter, label=agent_id),
            )
            if approved:
                services.decide(
                    job.approval_id, "approve", actor=self.actor(user=approver), note="Demo."
                )
            created += 1
        return {"created": created, "total": len(RELEASE_JOBS)}

    def bring_to(self, approval, status, note, decider):
        """Walk a fresh request to ``status`` the way people would, through the services."""
        if status == Status.EXPIRED:
            # Nobody decided in time; the demo moves the deadline into the past instead of waiting.
            ApprovalRequest.objects.filter(pk=approval.pk).update(
                expires_at=timezone.now() - timedelta(hours=1)
            )
            services.expire_overdue(actor=self.actor(label="expire_approvals"))
            return
        decision = {
            Status.APPROVED: "approve",
            Status.EXECUTED: "approve",
            Status.ARCHIVED: "approve",
            Status.DENIED: "deny",
            Status.POSTPONED: "postpone",
        }.get(status)
        if decision:
            services.decide(approval.pk, decision, actor=decider, note=note)
        if status == Status.EXECUTED:
            # Execution is reported by whoever ran the command; the demo plays that part.
            services.mark_executed(approval.pk, actor=self.actor(user=approval.requested_by_user))
        if status == Status.ARCHIVED:
            services.archive(approval.pk, actor=decider)
