"""Jobs on a real runner cluster (``qcluster`` on the jobs queue): approval to executed, and a
worker killed mid-step whose job resumes on the next cluster without repeating finished steps.

The cluster is a separate process group on this test's database, so these tests commit
(``transaction=True``) and poll with deadlines.
"""

import contextlib
import os
import signal
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from automation import services
from automation.models import Job, JobStep
from claims import services as claims
from tests.telegram.worker import Workers, database_url, wait_for

from .conftest import ALLOWLIST

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def runner_cluster(tmp_path, automation_settings):
    """Starts runner clusters serving the jobs queue, with execution allowed."""
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "VAR_DIR": str(settings.VAR_DIR),
        "Q_CLUSTER_NAME": settings.AUTOMATION_QUEUE,
        "AUTOMATION_ALLOW_EXECUTION": "1",
        "AUTOMATION_COMMAND_ALLOWLIST": ",".join(ALLOWLIST),
        "AUTOMATION_WORK_ROOT": str(tmp_path / "jobs"),
        "AUTOMATION_MAX_CONCURRENT_JOBS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("REDIS_URL", None)
    workers = Workers(tmp_path, env)
    try:
        yield workers
    finally:
        workers.stop()


def executed(job):
    job.refresh_from_db()
    return job.ended and job.approval.status == "executed"


def test_an_approved_live_job_runs_on_the_runner_cluster(live, runner_cluster, submit, approve):
    runner_cluster.start()
    job = approve(
        submit({"name": "hello", "steps": [{"id": "hi", "argv": ["echo", "hi"]}]}, live=True)
    )

    wait_for(lambda: executed(job), timeout=30, message=f"the job\n{runner_cluster.output()}")

    step = job.steps.get()
    assert job.status == Job.Status.SUCCEEDED
    assert (step.returncode, step.stdout, step.dry_run) == (0, "hi\n", False)


SLOW_STEP = """
import os, pathlib, sys, time
pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))
if not pathlib.Path(sys.argv[2]).exists():
    time.sleep(60)
"""


def test_a_job_whose_worker_was_killed_mid_step_resumes_without_repeating_steps(
    live, runner_cluster, submit, approve, tmp_path
):
    pid_file, marker = tmp_path / "slow.pid", tmp_path / "go-on"
    manifest = {
        "name": "crash",
        "steps": [
            {"id": "first", "argv": ["echo", "first"]},
            {
                "id": "slow",
                "argv": [sys.executable, "-c", SLOW_STEP, str(pid_file), str(marker)],
                "retries": 1,
            },
            {"id": "last", "argv": ["true"]},
        ],
    }
    (first_cluster,) = runner_cluster.start()
    job = approve(submit(manifest, live=True))
    wait_for(pid_file.exists, timeout=30, message=f"the slow step\n{runner_cluster.output()}")

    # The machine is lost: the cluster and the step's own process group die at once.
    first_cluster.kill()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)
    marker.touch()
    (resumed,) = services.resume_stalled(now=timezone.now() + timedelta(hours=1))
    runner_cluster.start()

    wait_for(lambda: executed(resumed), timeout=30, message=f"resume\n{runner_cluster.output()}")
    job.refresh_from_db()
    steps = {step.step_id: (step.status, step.attempts) for step in job.steps.all()}
    assert job.status == Job.Status.SUCCEEDED
    assert job.runs == 2
    assert steps == {"first": ("succeeded", 1), "slow": ("succeeded", 2), "last": ("succeeded", 1)}
    assert JobStep.objects.filter(job=job, status="interrupted").count() == 0
    assert claims.get_approval(job.approval_id).status == "executed"
