"""Submit → approval → run → executed, dry run by default, bound to the approved bytes."""

import pytest

from audit.models import AuditEvent
from automation import manifest, runner, services
from automation.errors import CommandNotAllowed
from automation.models import Job, JobStep
from backoffice.errors import InvalidInput, InvalidTransition
from claims import services as claims
from claims.models import ApprovalRequest

from .conftest import one_step

pytestmark = pytest.mark.django_db

RELEASE = {
    "name": "release",
    "steps": [
        {"id": "tag", "argv": ["echo", "tag v1"]},
        {"id": "build", "argv": ["sh", "-c", "echo built > artefact && cat artefact"]},
    ],
}


def actions(job):
    return list(
        AuditEvent.objects.filter(object_id=str(job.pk))
        .order_by("id")
        .values_list("action", flat=True)
    )


def test_submitting_creates_a_job_and_an_approval_request_that_binds_its_hash(submit):
    job = submit(RELEASE)

    approval = job.approval
    digest = manifest.sha256(RELEASE)
    assert job.status == Job.Status.AWAITING_APPROVAL
    assert job.manifest_sha256 == digest
    assert approval.kind == "manifest"
    assert approval.status == ApprovalRequest.Status.PENDING
    assert approval.payload["manifest_sha256"] == digest
    assert digest[:12] in approval.text
    assert "DRY RUN" in approval.text
    assert [step.step_id for step in job.steps.all()] == ["tag", "build"]
    assert actions(job) == ["job.submitted"]


def test_a_single_command_asks_for_a_command_approval(submit):
    assert submit(one_step("true")).approval.kind == "command"


def test_an_invalid_manifest_lists_every_problem_and_saves_nothing(submit):
    bad = {
        "name": "",
        "colour": "red",
        "steps": [
            {"id": "a", "argv": "echo hi"},
            {"id": "a", "argv": ["true"], "timeout": 0, "env": {"PATH": "/tmp"}, "cwd": "../x"},
        ],
    }

    with pytest.raises(InvalidInput) as raised:
        submit(bad)

    fields = raised.value.fields
    assert set(fields) >= {"name", "manifest", "steps/0/argv", "steps/1/timeout"}
    assert Job.objects.count() == 0
    assert ApprovalRequest.objects.count() == 0


def test_the_rules_a_schema_cannot_say_are_listed_too(submit):
    bad = {
        "name": "x",
        "steps": [
            {"id": "a", "argv": ["true"]},
            {"id": "a", "argv": ["true"], "env": {"PATH": "/tmp", "GITHUB_TOKEN": "x"}, "cwd": "/"},
        ],
    }

    with pytest.raises(InvalidInput) as raised:
        submit(bad)

    assert set(raised.value.fields) == {
        "steps/1/id",
        "steps/1/cwd",
        "steps/1/env/PATH",
        "steps/1/env/GITHUB_TOKEN",
    }


def test_a_step_may_not_be_handed_a_project_secret(submit, settings):
    leaky = one_step("true", env={"MESSAGE": f"key={settings.SECRET_KEY}"})

    with pytest.raises(InvalidInput) as raised:
        submit(leaky)

    assert raised.value.fields == {"steps/0/env/MESSAGE": "holds a project secret"}


def test_a_command_outside_the_allowlist_is_refused_at_submission_and_audited(submit):
    with pytest.raises(CommandNotAllowed) as raised:
        submit(one_step("rm", "-rf", "/"))

    assert raised.value.code == "command_not_allowed"
    assert "steps/0/argv/0" in raised.value.context["steps"]
    assert Job.objects.count() == 0
    refused = AuditEvent.objects.get(action="job.refused")
    assert refused.details["steps"] == raised.value.context["steps"]


def test_a_relative_path_is_never_on_the_allowlist(submit, settings):
    settings.AUTOMATION_COMMAND_ALLOWLIST = ["./deploy.sh", "bin/deploy"]

    with pytest.raises(CommandNotAllowed):
        submit(one_step("./deploy.sh"))


def test_an_approved_job_runs_dry_and_the_request_becomes_executed(submit, approve, run_job):
    job = approve(submit(RELEASE, live=True))
    assert job.status == Job.Status.QUEUED

    job = run_job()

    assert job.status == Job.Status.SUCCEEDED
    assert job.dry_run
    assert job.approval.status == ApprovalRequest.Status.EXECUTED
    steps = list(job.steps.all())
    assert [(s.status, s.returncode, s.stdout, s.dry_run) for s in steps] == [
        ("succeeded", 0, "DRY_RUN", True),
        ("succeeded", 0, "DRY_RUN", True),
    ]
    assert actions(job) == [
        "job.submitted",
        "job.queued",
        "job.started",
        "job.dry_run",
        "job.step.started",
        "job.step.finished",
        "job.step.started",
        "job.step.finished",
        "job.completed",
    ]


def test_a_dry_run_changes_nothing(submit, approve, run_job, tmp_path, settings):
    target = tmp_path / "must-not-exist"
    settings.AUTOMATION_ALLOW_EXECUTION = True  # the job was not submitted live
    approve(submit(one_step("sh", "-c", f"touch {target}")))

    job = run_job()

    assert job.status == Job.Status.SUCCEEDED
    assert not target.exists()


def test_an_unapproved_job_never_runs(submit):
    submit(RELEASE)

    assert runner.run_next() is None


def test_a_denied_job_is_refused_and_never_runs(submit, approver_actor):
    job = submit(RELEASE)

    claims.decide(job.approval_id, "deny", actor=approver_actor)

    job.refresh_from_db()
    assert job.status == Job.Status.REFUSED
    assert runner.run_next() is None
    assert job.steps.filter(attempts__gt=0).count() == 0
    assert "job.refused" in actions(job)


def test_an_expired_request_refuses_its_job(submit, approver_actor):
    job = submit(RELEASE)
    ApprovalRequest.objects.filter(pk=job.approval_id).update(expires_at=job.created_at)

    claims.expire_overdue(actor=approver_actor)

    job.refresh_from_db()
    assert job.status == Job.Status.REFUSED
    assert runner.run_next() is None


def test_a_manifest_changed_after_approval_is_refused(submit, approve):
    job = approve(submit(RELEASE))
    changed = {**RELEASE, "steps": [{"id": "tag", "argv": ["echo", "other"]}]}
    Job.objects.filter(pk=job.pk).update(manifest=changed)

    assert runner.run_next() is None

    job.refresh_from_db()
    assert job.status == Job.Status.REFUSED
    assert "changed after approval" in job.reason
    assert job.steps.filter(attempts__gt=0).count() == 0


def test_a_step_row_changed_after_approval_is_refused(submit, approve):
    job = approve(submit(RELEASE))
    JobStep.objects.filter(job=job, position=0).update(idempotency_key="0" * 64)

    assert runner.run_next() is None

    job.refresh_from_db()
    assert job.status == Job.Status.REFUSED


def test_a_command_taken_off_the_allowlist_is_refused_at_run_time(submit, approve, settings):
    job = approve(submit(RELEASE))
    settings.AUTOMATION_COMMAND_ALLOWLIST = ["echo"]

    assert runner.run_next() is None

    job.refresh_from_db()
    assert job.status == Job.Status.REFUSED
    assert "'sh' is not on AUTOMATION_COMMAND_ALLOWLIST" in job.reason
    assert "job.refused" in actions(job)
    assert job.approval.status == ApprovalRequest.Status.EXECUTED


def test_jobs_start_in_order_of_approval_within_the_global_limit(
    submit, approve, approver_actor, settings
):
    settings.AUTOMATION_MAX_CONCURRENT_JOBS = 1
    first, second = submit(one_step("true")), submit(one_step("true"))
    approve(second)
    approve(first)

    taken = services.take_next("w1")

    assert taken.pk == second.pk
    assert services.take_next("w2") is None


def test_the_manifest_concurrency_limits_jobs_of_its_name(submit, approve, settings):
    settings.AUTOMATION_MAX_CONCURRENT_JOBS = 5
    manifest_data = {**one_step("true"), "concurrency": 1}
    other = {**one_step("true"), "name": "other"}
    jobs = [approve(submit(data)) for data in (manifest_data, manifest_data, other)]

    taken = [services.take_next("w1"), services.take_next("w2"), services.take_next("w3")]

    assert [job.pk if job else None for job in taken] == [jobs[0].pk, jobs[2].pk, None]


def test_cancelling_a_queued_job_ends_it(submit, approve, submitter_actor):
    job = approve(submit(RELEASE))

    job, changed = services.cancel(job.pk, actor=submitter_actor)

    assert changed
    assert job.status == Job.Status.CANCELLED
    assert runner.run_next() is None
    assert services.cancel(job.pk, actor=submitter_actor)[1] is False


def test_someone_else_may_not_cancel_without_the_permission(submit, agent_actor):
    job = submit(RELEASE)

    with pytest.raises(services.NotPermitted):
        services.cancel(job.pk, actor=agent_actor)


def test_a_finished_job_cannot_be_cancelled(submit, approve, run_job, submitter_actor):
    approve(submit(RELEASE))
    job = run_job()

    with pytest.raises(InvalidTransition):
        services.cancel(job.pk, actor=submitter_actor)
