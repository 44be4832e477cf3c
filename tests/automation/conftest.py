"""Fixtures for the automation runner: a submitter, manifests, approving, running in-process."""

import sys

import pytest
from model_bakery import baker

from automation import runner, services
from backoffice.actors import Actor, Source
from claims import services as claims

# Harmless executables the tests' steps start, by name or (the interpreter) by absolute path.
ALLOWLIST = ["echo", "true", "false", "sh", "sleep", "printf", sys.executable]


@pytest.fixture(autouse=True)
def automation_settings(settings, tmp_path):
    settings.AUTOMATION_COMMAND_ALLOWLIST = ALLOWLIST
    settings.AUTOMATION_WORK_ROOT = tmp_path / "jobs"
    settings.AUTOMATION_RETRY_BACKOFF = 0.01
    settings.AUTOMATION_ALLOW_EXECUTION = False
    return settings


@pytest.fixture
def live(automation_settings):
    """Execution allowed: jobs submitted live really run."""
    automation_settings.AUTOMATION_ALLOW_EXECUTION = True
    return automation_settings


@pytest.fixture
def submitter(db):
    return baker.make("auth.User", username="release-bot", is_active=True)


@pytest.fixture
def submitter_actor(submitter):
    return Actor(source=Source.API, user=submitter, label="agent-1")


def one_step(*argv, **step):
    return {"name": "one", "steps": [{"id": "only", "argv": list(argv), **step}]}


@pytest.fixture
def submit(submitter_actor):
    def submit(manifest_data, *, live=False):
        return services.submit(manifest_data=manifest_data, actor=submitter_actor, live=live)

    return submit


@pytest.fixture
def approve(approver_actor):
    def approve(job):
        claims.decide(job.approval_id, "approve", actor=approver_actor)
        job.refresh_from_db()
        return job

    return approve


@pytest.fixture
def run_job():
    """Run the next job in this process, as a worker of the runner cluster would."""

    def run():
        job = runner.run_next()
        assert job is not None, "no job was ready to run"
        job.refresh_from_db()
        return job

    return run
