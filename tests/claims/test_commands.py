"""The manage.py commands as CI, cron and pipes run them: a subprocess with stdin closed."""

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth import authenticate
from django.db import connection

from audit.models import AuditEvent
from automation.models import Job
from claims import services
from claims.models import ApprovalRequest, Claim

# Data must be committed for the subprocess to see it.
pytestmark = pytest.mark.django_db(transaction=True)

PROJECT_DIR = Path(__file__).resolve().parents[2]


def database_url():
    """The URL of the test database this process uses, for the subprocess to use too."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    credentials = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Run:
    def __init__(self, completed):
        self.code = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr

    @property
    def json(self):
        return json.loads(self.stdout)

    @property
    def error(self):
        return json.loads(self.stderr)


def manage(*args, env=None):
    completed = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": database_url(), **(env or {})},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Run(completed)


@pytest.fixture
def people(django_user_model):
    return [django_user_model.objects.create_user(name) for name in ("maria", "tomasz", "ci")]


# Complete argument lists that each case below spoils in one place.
CLAIM = ["claim", "s", "t", "--user", "maria", "--agent-id", "a", "--fingerprint", "f"]


def request_args(*extra, kind="command"):
    return ["request", "--kind", kind, "--text", "t", "--user", "clerk", *extra]


def test_claim_commands_print_json_and_exit_with_the_outcome(people):
    holder = ["--user", "maria", "--agent-id", "builder-7", "--fingerprint", "fp-7"]

    granted = manage("claim", "checkout", "payment-form", *holder, "--ttl", "120")
    assert granted.code == 0, granted.stderr
    assert granted.json["outcome"] == "acquired"
    shown = {key: granted.json[key] for key in ("owner", "agent_id", "fingerprint", "holder")}
    assert shown == {
        "owner": "maria",
        "agent_id": "builder-7",
        "fingerprint": "fp-7",
        "holder": "maria (builder-7)",
    }
    assert granted.json["fencing_token"] == 1
    assert granted.json["expires_at"].endswith("Z")
    assert 0 < granted.json["seconds_left"] <= 120
    lease_token = granted.json["lease_token"]
    claim_id = str(granted.json["id"])

    copied = ["--user", "tomasz", "--agent-id", "builder-7", "--fingerprint", "fp-7"]
    conflict = manage("claim", "checkout", "payment-form", *copied)
    assert conflict.code == 3
    assert conflict.stdout == ""
    assert conflict.error["error"] == "conflict"
    assert conflict.error["holder"] == {"owner": "maria", "agent_id": "builder-7"}
    assert conflict.error["expires_at"]

    not_holder = manage("refresh", claim_id, "--user", "tomasz", "--lease-token", "clt_guess")
    assert not_holder.code == 4
    assert not_holder.error["error"] == "not_holder"
    refused = AuditEvent.objects.get(action="claim.refused", details__operation="refresh")
    assert (refused.actor.username, refused.source) == ("tomasz", "cli")

    refreshed = manage("refresh", claim_id, "--user", "maria", "--lease-token", lease_token)
    assert refreshed.code == 0, refreshed.stderr
    assert (refreshed.json["outcome"], refreshed.json["version"]) == ("refreshed", 2)
    assert refreshed.json["ttl_seconds"] == 120
    assert "lease_token" not in refreshed.json

    current = manage("claim", "check", "checkout", "payment-form", "--fencing-token", "1")
    assert (current.code, current.json["current"]) == (0, True)
    stale = manage("claim", "check", "checkout", "payment-form", "--fencing-token", "0")
    assert (stale.code, stale.error["error"]) == (3, "stale_fence")

    by_key = manage("inspect", "--story", "checkout", "--todolist", "payment-form")
    assert by_key.code == 0
    assert by_key.json["id"] == int(claim_id)
    assert by_key.json["version"] == 2
    by_id = manage("inspect", claim_id).json
    assert {**by_id, "seconds_left": None} == {**by_key.json, "seconds_left": None}
    assert lease_token not in by_key.stdout

    released = manage(
        "release", claim_id, "--user", "maria", env={"CLAIMDESK_LEASE_TOKEN": lease_token}
    )
    assert released.code == 0, released.stderr
    assert released.json["outcome"] == "released"
    assert released.json["seconds_left"] == 0
    assert released.json["released_at"]

    assert list(
        AuditEvent.objects.filter(object_id=claim_id).order_by("id").values_list("action", "source")
    ) == [
        ("claim.acquired", "cli"),
        ("claim.conflict", "cli"),
        ("claim.refused", "cli"),
        ("claim.refreshed", "cli"),
        ("claim.refused", "cli"),
        ("claim.released", "cli"),
    ]
    assert not AuditEvent.objects.filter(details__icontains=lease_token).exists()


def test_the_configured_service_user_claims_without_user(people):
    run = manage("claim", "ci", "deploy", "--agent-id", "job-1", env={"CLI_SERVICE_USER": "ci"})
    assert run.code == 0, run.stderr
    assert run.json["holder"] == "ci (job-1)"


@pytest.mark.parametrize(
    ("args", "code", "error"),
    [
        (["claim", "s", "t", "--agent-id", "a"], 2, "invalid"),
        (["claim", "s", "t", "--user", "ghost", "--agent-id", "a"], 2, "invalid"),
        ([*CLAIM, "--ttl", "0"], 2, "invalid"),
        ([*CLAIM, "--ttl", "99999999"], 2, "invalid"),
        ([*CLAIM, "--ttl", "ten"], 2, None),
        (["claim", "s"], 2, "invalid"),
        (["claim", "check", "s", "t"], 2, "invalid"),
        (["refresh", "42", "--user", "maria"], 2, "invalid"),
        (["release", "42", "--agent-id", "a"], 2, None),
        (["refresh", "424242", "--user", "maria", "--lease-token", "clt_x"], 5, "not_found"),
        (["release", "424242", "--user", "maria", "--lease-token", "clt_x"], 5, "not_found"),
        (["inspect", "424242"], 5, "not_found"),
        (["inspect", "--story", "nothing", "--todolist", "here"], 5, "not_found"),
        (["inspect"], 2, "invalid"),
        (["inspect", "1", "--story", "s", "--todolist", "t"], 2, "invalid"),
    ],
)
def test_claim_command_errors_have_their_exit_code_and_write_nothing(people, args, code, error):
    run = manage(*args)

    assert run.code == code, run.stderr
    assert run.stdout == ""
    if error:
        assert run.error["error"] == error
        assert run.error["detail"]
    else:
        assert "usage:" in run.stderr
    assert not Claim.objects.exists()
    assert not AuditEvent.objects.exists()


def test_approvals_commands_request_list_decide_and_archive(approver, make_approval):
    make_approval(text="Release 2026.11.2 to production", kind="manifest")
    requested = manage(
        "approvals",
        "request",
        "--kind",
        "command",
        "--text",
        "Run migrate on production",
        "--user",
        "approver",
        "--agent-id",
        "deploy-bot",
        "--payload",
        '{"command": "migrate"}',
    )
    assert requested.code == 0, requested.stderr
    assert requested.json["status"] == "pending"
    assert (requested.json["requested_by"], requested.json["agent_id"]) == (
        "approver",
        "deploy-bot",
    )
    full_id, short_id = requested.json["id"], requested.json["short_id"]

    listed = manage("approvals", "list", "--kind", "command", "--json")
    assert listed.code == 0
    assert [a["id"] for a in listed.json] == [full_id]
    table = manage("approvals", "list", "--status", "pending")
    assert table.code == 0
    assert short_id in table.stdout and "Release 2026.11.2" in table.stdout

    approved = manage("approvals", "approve", short_id, "--user", "approver", "--note", "go")
    assert approved.code == 0, approved.stderr
    assert (approved.json["status"], approved.json["changed"]) == ("approved", True)
    assert approved.json["decided_by"] == "approver"

    again = manage("approvals", "approve", full_id, "--user", "approver")
    assert (again.code, again.json["changed"]) == (0, False)

    denied = manage("approvals", "deny", short_id, "--user", "approver")
    assert denied.code == 3
    assert denied.error == {
        "error": "invalid_transition",
        "detail": f"Request {short_id} is approved; it cannot be denied now.",
        "status": "approved",
    }

    archived = manage("approvals", "archive", short_id, "--user", "approver")
    assert (archived.code, archived.json["status"]) == (0, "archived")

    event = AuditEvent.objects.get(action="approval.approved")
    assert (event.actor, event.source, event.details["decision_note"]) == (approver, "cli", "go")
    assert AuditEvent.objects.filter(object_id=full_id).count() == 3


def test_approvals_postpone_and_reopen(approver, make_approval):
    approval = make_approval()

    postponed = manage("approvals", "postpone", approval.short_id, "--user", "approver")
    reopened = manage("approvals", "reopen", approval.short_id, "--user", "approver")

    assert (postponed.code, postponed.json["status"]) == (0, "postponed")
    assert (reopened.code, reopened.json["status"]) == (0, "pending")


def test_approvals_command_errors_have_their_exit_code(approver, make_approval, django_user_model):
    approval = make_approval()
    django_user_model.objects.create_user("clerk")

    cases = [
        (["approve", approval.short_id, "--user", "clerk"], 4, "forbidden"),
        (["archive", approval.short_id, "--user", "clerk"], 4, "forbidden"),
        (["approve", approval.short_id, "--user", "ghost"], 2, "invalid"),
        (["approve", "abc", "--user", "approver"], 2, "invalid"),
        (["approve", "ffffffff", "--user", "approver"], 5, "not_found"),
        (["archive", approval.short_id, "--user", "approver"], 3, "invalid_transition"),
        (["request", "--kind", "command", "--text", " ", "--user", "clerk"], 2, "invalid"),
        (["request", "--kind", "command", "--text", "t"], 2, "invalid"),
        (request_args("--payload", "[1"), 2, "invalid"),
        (request_args("--claim", "9999", kind="claim"), 5, "not_found"),
        (["approve", approval.short_id], 2, None),
        (["list", "--status", "maybe"], 2, None),
        (["unknown"], 2, None),
    ]
    for args, code, error in cases:
        run = manage("approvals", *args)
        assert run.code == code, (args, run.stderr)
        assert run.stdout == "", args
        if error:
            assert run.error["error"] == error, args

    approval.refresh_from_db()
    assert approval.status == "pending"
    assert ApprovalRequest.objects.count() == 1
    assert not AuditEvent.objects.exists()


def test_expire_approvals_command_expires_overdue_requests(make_approval):
    overdue = make_approval(expires_in=-timedelta(minutes=5))
    make_approval()

    run = manage("expire_approvals")

    assert run.code == 0, run.stderr
    assert run.json == {"expired": 1, "ids": [str(overdue.pk)]}
    overdue.refresh_from_db()
    assert overdue.status == "expired"
    assert manage("expire_approvals").json == {"expired": 0, "ids": []}


def test_demo_data_is_complete_and_idempotent(django_user_model):
    first = manage("demo_data", "--admin-password", "demo-admin-pw")
    assert first.code == 0, first.stderr
    assert first.json["claims"]["created"] == first.json["claims"]["total"]
    statuses = set(ApprovalRequest.objects.values_list("status", flat=True))
    assert statuses == set(ApprovalRequest.Status.values)
    live = [claim for claim in Claim.objects.all() if claim.is_live()]
    assert 0 < len(live) < Claim.objects.count()
    assert Claim.objects.filter(released_at__isnull=False).exists()
    assert Claim.objects.exclude(previous_agent_id="").exists()
    approver = django_user_model.objects.get(username="approver")
    assert approver.is_staff and approver.has_perm("claims.decide_approvalrequest")
    assert authenticate(username="admin", password="demo-admin-pw").is_superuser
    assert first.json["jobs"] == {"created": 2, "total": 2}
    demo_jobs = Job.objects.order_by("agent_id")
    assert [(job.status, job.dry_run) for job in demo_jobs] == [
        ("queued", True),
        ("awaiting_approval", True),
    ]
    counts = (Claim.objects.count(), ApprovalRequest.objects.count(), AuditEvent.objects.count())

    second = manage("demo_data")
    assert second.code == 0
    assert second.json["claims"]["created"] == second.json["approvals"]["created"] == 0
    assert second.json["jobs"]["created"] == 0
    assert (
        Claim.objects.count(),
        ApprovalRequest.objects.count(),
        AuditEvent.objects.count(),
    ) == counts


def test_demo_data_reset_asks_and_refuses_without_an_answer():
    manage("demo_data")
    ids = set(ApprovalRequest.objects.values_list("id", flat=True))

    refused = manage("demo_data", "--reset")
    assert refused.code == 2
    assert refused.stdout == ""
    assert "[y/N]" in refused.stderr
    assert json.loads(refused.stderr.splitlines()[-1])["error"] == "invalid"
    assert set(ApprovalRequest.objects.values_list("id", flat=True)) == ids

    reset = manage("demo_data", "--reset", "--noinput")
    assert reset.code == 0, reset.stderr
    created = reset.json["approvals"]["created"] + reset.json["jobs"]["created"]
    assert created == len(ids)
    assert not ids & set(ApprovalRequest.objects.values_list("id", flat=True))


def test_approve_from_the_command_line_is_a_vote_under_the_policy(
    make_policy, release_managers, agent_actor
):
    make_policy(name="Releases", kind="manifest", quorum=2, approver_groups=[release_managers])
    approval = services.request_approval(kind="manifest", text="Release 2.4", actor=agent_actor)

    first = manage("approvals", "approve", approval.short_id, "--user", "alice")
    listed = manage("approvals", "list", "--status", "pending")
    second = manage("approvals", "approve", approval.short_id, "--user", "bob")

    assert first.code == 0, first.stderr
    assert (first.json["status"], first.json["policy"]) == ("pending", "Releases")
    assert first.json["tally"]["summary"] == "1 of 2 approvals, waiting for bob, carol"
    assert [(v["voter"], v["choice"], v["source"]) for v in first.json["votes"]] == [
        ("alice", "approve", "cli")
    ]
    assert "[1 of 2 approvals, waiting for bob, carol]" in listed.stdout
    assert (second.json["status"], second.json["decided_by"]) == ("approved", "bob")
    assert second.json["tally"]["summary"] == "2 of 2 approvals"
