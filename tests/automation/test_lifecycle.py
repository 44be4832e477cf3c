"""Re-run from the failed step, resume after a lost worker, cancel a running job."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from model_bakery import baker

from automation import runner, services
from automation.models import Job, JobStep
from backoffice.actors import Actor, Source
from backoffice.errors import InvalidTransition, NotPermitted
from claims import services as claims
from tests.telegram.worker import wait_for

from .test_runner import alive

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_actor(db):
    staff = baker.make("auth.User", username="ops", is_staff=True, is_superuser=True)
    return Actor(source=Source.ADMIN, user=staff)


def three_steps(marker, retries=0):
    return {
        "name": "three",
        "steps": [
            {"id": "first", "argv": ["sh", "-c", "echo ran >> first.log; echo first"]},
            {"id": "flaky", "argv": ["sh", "-c", f"test -f {marker}"], "retries": retries},
            {"id": "last", "argv": ["echo", "last"]},
        ],
    }


def attempts(job):
    return {step.step_id: (step.status, step.attempts) for step in job.steps.all()}


def test_a_failed_job_reruns_from_its_failed_step(
    live, submit, approve, run_job, staff_actor, tmp_path
):
    marker = tmp_path / "ready"
    approve(submit(three_steps(marker), live=True))
    job = run_job()
    assert job.status == Job.Status.FAILED
    marker.touch()

    services.rerun(job.pk, actor=staff_actor)
    job = run_job()

    assert job.status == Job.Status.SUCCEEDED
    assert attempts(job) == {
        "first": ("succeeded", 1),
        "flaky": ("succeeded", 1),
        "last": ("succeeded", 1),
    }
    assert job.runs == 2


def test_rerun_needs_the_permission(live, submit, approve, run_job, submitter_actor, tmp_path):
    approve(submit(three_steps(tmp_path / "never"), live=True))
    job = run_job()

    with pytest.raises(NotPermitted):
        services.rerun(job.pk, actor=submitter_actor)


def test_rerun_needs_a_new_approval_once_the_request_is_archived(
    live, submit, approve, run_job, staff_actor, tmp_path
):
    approve(submit(three_steps(tmp_path / "never"), live=True))
    job = run_job()
    claims.archive(job.approval_id, actor=staff_actor)

    with pytest.raises(InvalidTransition, match="needs a new approval"):
        services.rerun(job.pk, actor=staff_actor)


def test_rerun_needs_a_new_approval_once_the_manifest_changed(
    live, submit, approve, run_job, staff_actor, tmp_path
):
    approve(submit(three_steps(tmp_path / "never"), live=True))
    job = run_job()
    Job.objects.filter(pk=job.pk).update(manifest=three_steps(tmp_path / "other"))

    with pytest.raises(InvalidTransition, match="changed after approval"):
        services.rerun(job.pk, actor=staff_actor)


def test_only_a_failed_or_cancelled_job_reruns(submit, approve, run_job, staff_actor):
    approve(submit({"name": "ok", "steps": [{"id": "a", "argv": ["true"]}]}))
    job = run_job()

    with pytest.raises(InvalidTransition):
        services.rerun(job.pk, actor=staff_actor)


def died_during_flaky_step(submit, approve, marker, retries):
    """A job whose worker finished the first step, started the second, and died."""
    job = approve(submit(three_steps(marker, retries=retries), live=True))
    job = services.take_next("lost-worker:1")
    first, flaky, _ = job.steps.all()
    first = services.step_started(job, first, "lost-worker:1", dry_run=False)
    services.step_finished(
        job, first, "lost-worker:1", returncode=0, stdout="first\n", stderr="", duration_ms=5
    )
    services.step_started(job, flaky, "lost-worker:1", dry_run=False)
    return job


def test_a_job_whose_worker_died_resumes_without_repeating_finished_steps(
    live, submit, approve, run_job, tmp_path
):
    marker = tmp_path / "ready"
    marker.touch()
    job = died_during_flaky_step(submit, approve, marker, retries=1)
    later = timezone.now() + timedelta(hours=1)

    (resumed,) = services.resume_stalled(now=later)
    assert resumed.pk == job.pk
    assert job.steps.get(step_id="flaky").status == JobStep.Status.INTERRUPTED
    job = run_job()

    assert job.status == Job.Status.SUCCEEDED
    assert attempts(job) == {
        "first": ("succeeded", 1),
        "flaky": ("succeeded", 2),
        "last": ("succeeded", 1),
    }


def test_an_interrupted_step_without_retries_fails_the_job(live, submit, approve, tmp_path):
    job = died_during_flaky_step(submit, approve, tmp_path / "ready", retries=0)

    assert services.resume_stalled(now=timezone.now() + timedelta(hours=1)) == []

    job.refresh_from_db()
    assert job.status == Job.Status.FAILED
    assert "interrupted" in job.reason


def test_a_live_worker_is_not_taken_for_dead(live, submit, approve, tmp_path):
    died_during_flaky_step(submit, approve, tmp_path / "ready", retries=1)

    assert services.resume_stalled() == []


def test_the_lost_worker_can_no_longer_write(live, submit, approve, tmp_path):
    job = died_during_flaky_step(submit, approve, tmp_path / "ready", retries=1)
    services.resume_stalled(now=timezone.now() + timedelta(hours=1))

    with pytest.raises(services.LostJob):
        services.finish(job, "lost-worker:1", Job.Status.SUCCEEDED)


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_running_job_kills_its_process_group(
    live, submit, approve, submitter_actor, tmp_path
):
    pids = tmp_path / "pids"
    job = approve(
        submit(
            {
                "name": "long",
                "steps": [
                    {"id": "wait", "argv": ["sh", "-c", f"sleep 60 & echo $! > {pids}; wait"]},
                    {"id": "never", "argv": ["true"]},
                ],
            },
            live=True,
        )
    )
    worker = threading.Thread(target=runner.run_next)
    worker.start()
    wait_for(lambda: pids.exists() and pids.read_text().strip(), timeout=10, message="the step")

    services.cancel(job.pk, actor=submitter_actor)
    worker.join(timeout=20)

    job.refresh_from_db()
    assert job.status == Job.Status.CANCELLED
    assert attempts(job) == {"wait": ("cancelled", 1), "never": ("pending", 0)}
    wait_for(lambda: not alive(int(pids.read_text())), timeout=5, message="the grandchild")
